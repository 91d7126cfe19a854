/* f32 GEMM micro-kernel 6x16 for AArch64 Advanced SIMD: 24 q-register accumulators, X read four
 * K steps at a time into one register per row and used by lane (FMLA by element), so each B
 * load feeds six FMAs and no broadcast instruction is spent. */
#include "internal.h"

#if CONDENSE_ARM64
#include "vecmath-neon.h"

CONDENSE_INLINE void ukernel_neon(const int MR, int nv, size_t kc, const float *a, size_t lda, const float *b,
                                  float *c, size_t ldc, int flags, const float *bias, int act) {
    /* acc2: a second set for odd K steps when MR <= 2, so M = 1 and 2 (GEMV) keep 8 or 16
     * independent FMA chains in flight instead of 4 or 8 (4 cycles of latency, 2–4 FMA pipes). */
    float32x4_t acc[6][4], acc2[2][4];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = vdupq_n_f32(0.0f);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) acc2[i][j] = vdupq_n_f32(0.0f);
    size_t k = 0;
    for (; k + 4 <= kc; k += 4) {
        float32x4_t ai[6];
        for (int i = 0; i < MR; i++) ai[i] = vld1q_f32(a + (size_t)i * lda + k);
        const float *bk = b + k * 16;
        __builtin_prefetch(bk + CONDENSE_F32_GEMM_PREFETCH);
#define STEP(L)                                                                  \
        {                                                                        \
            const float32x4_t b0 = vld1q_f32(bk + 16 * L), b1 = vld1q_f32(bk + 16 * L + 4); \
            const float32x4_t b2 = vld1q_f32(bk + 16 * L + 8), b3 = vld1q_f32(bk + 16 * L + 12); \
            for (int i = 0; i < MR; i++) {                                       \
                float32x4_t *t = MR <= 2 && (L & 1) ? acc2[i] : acc[i];          \
                t[0] = vfmaq_laneq_f32(t[0], b0, ai[i], L);                      \
                t[1] = vfmaq_laneq_f32(t[1], b1, ai[i], L);                      \
                t[2] = vfmaq_laneq_f32(t[2], b2, ai[i], L);                      \
                t[3] = vfmaq_laneq_f32(t[3], b3, ai[i], L);                      \
            }                                                                    \
        }
        STEP(0) STEP(1) STEP(2) STEP(3)
#undef STEP
    }
    for (; k < kc; k++) {
        const float *bk = b + k * 16;
        const float32x4_t b0 = vld1q_f32(bk), b1 = vld1q_f32(bk + 4), b2 = vld1q_f32(bk + 8), b3 = vld1q_f32(bk + 12);
        for (int i = 0; i < MR; i++) {
            const float ak = a[(size_t)i * lda + k];
            acc[i][0] = vfmaq_n_f32(acc[i][0], b0, ak);
            acc[i][1] = vfmaq_n_f32(acc[i][1], b1, ak);
            acc[i][2] = vfmaq_n_f32(acc[i][2], b2, ak);
            acc[i][3] = vfmaq_n_f32(acc[i][3], b3, ak);
        }
    }
    if (MR <= 2)
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < 4; j++) acc[i][j] = vaddq_f32(acc[i][j], acc2[i][j]);
    for (int i = 0; i < MR; i++) store_row_neon(4, acc[i], nv, c + (size_t)i * ldc, flags, bias, act);
}

void condense_f32_gemm_ukernel_6x16__neon(int mr, int nv, size_t kc, const float *a, size_t lda, const float *b,
                                          float *c, size_t ldc, int flags, const float *bias, int act) {
    switch (mr) {
    case 1: ukernel_neon(1, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    case 2: ukernel_neon(2, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    case 3: ukernel_neon(3, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    case 4: ukernel_neon(4, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    case 5: ukernel_neon(5, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    case 6: ukernel_neon(6, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    default: break;
    }
}

void condense_f32_activation__neon(float *y, size_t n, int act) {
    if (act == CONDENSE_ACT_NONE) return;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, act_neon(vld1q_f32(y + i), act));
    if (i < n) {
        float tmp[4] = {0, 0, 0, 0};
        for (size_t j = i; j < n; j++) tmp[j - i] = y[j];
        vst1q_f32(tmp, act_neon(vld1q_f32(tmp), act));
        for (size_t j = i; j < n; j++) y[j] = tmp[j - i];
    }
}
#endif
