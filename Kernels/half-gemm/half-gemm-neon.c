/* Half-precision widen micro-kernel 6x16 for AArch64 Advanced SIMD: per K step the panel's 16
 * weights become four f32 vectors (f16: FCVTL, in every ARMv8-A; bf16 pairs: a shift and a mask
 * give columns k and k + 1), then the f32 kernel's FMAs. Exact widening, f32 activations. */
#include "internal.h"

#if CONDENSE_ARM64
#include "vecmath-neon.h"

CONDENSE_INLINE void column_neon(const int MR, const float *a, size_t lda, size_t k, const float32x4_t w[4],
                                 float32x4_t acc[6][4]) {
    for (int i = 0; i < MR; i++) {
        const float ak = a[(size_t)i * lda + k];
        for (int j = 0; j < 4; j++) acc[i][j] = vfmaq_n_f32(acc[i][j], w[j], ak);
    }
}

CONDENSE_INLINE void widen_neon(const int MR, int bf, int nv, size_t kc, const float *a, size_t lda, const uint16_t *b,
                                float *c, size_t ldc, int flags, const float *bias, int act) {
    float32x4_t acc[6][4];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = vdupq_n_f32(0.0f);
    if (bf) {
        const uint32x4_t hi = vdupq_n_u32(0xFFFF0000u);
        for (size_t k = 0; k < kc; k += 2) {
            const uint16_t *bk = b + k * 16;
            __builtin_prefetch(bk + 2048);
            uint32x4_t v[4];
            float32x4_t w[4];
            for (int j = 0; j < 4; j++) {
                v[j] = vld1q_u32((const uint32_t *)(bk + 8 * j));
                w[j] = vreinterpretq_f32_u32(vshlq_n_u32(v[j], 16));
            }
            column_neon(MR, a, lda, k, w, acc);
            if (k + 1 == kc) break; /* odd K: the pair's second weight is padding */
            for (int j = 0; j < 4; j++) w[j] = vreinterpretq_f32_u32(vandq_u32(v[j], hi));
            column_neon(MR, a, lda, k + 1, w, acc);
        }
    } else {
        for (size_t k = 0; k < kc; k++) {
            const uint16_t *bk = b + k * 16;
            __builtin_prefetch(bk + 2048);
            float32x4_t w[4];
            for (int j = 0; j < 4; j++) w[j] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(bk + 4 * j)));
            column_neon(MR, a, lda, k, w, acc);
        }
    }
    for (int i = 0; i < MR; i++) store_row_neon(4, acc[i], nv, c + (size_t)i * ldc, flags, bias, act);
}

void condense_half_widen_6x16__neon(int type, int mr, int nv, size_t kc, const void *a, size_t lda, const uint16_t *b,
                                    float *c, size_t ldc, int flags, const float *bias, int act) {
    const int bf = type == CONDENSE_HALF_BF16;
    switch (mr) {
    case 1: widen_neon(1, bf, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    case 2: widen_neon(2, bf, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    case 3: widen_neon(3, bf, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    case 4: widen_neon(4, bf, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    case 5: widen_neon(5, bf, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    case 6: widen_neon(6, bf, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    default: break;
    }
}

/* bf16 dot kernel 6x16 (FEAT_BF16): X rounded to bf16 once per call (the driver), BFDOT by
 * element on the K-pair layout [K/2][16][2] the widen kernel reads: each instruction does 8
 * multiply-adds, twice the f32 FMA's 4, as the x86 dot kernel's vdpbf16ps. */
CONDENSE_INLINE CONDENSE_TARGET_BF16 void bfdot_neon(const int MR, int nv, size_t kc, const uint16_t *a, size_t lda,
                                                     const uint16_t *b, float *c, size_t ldc, int flags, const float *bias,
                                                     int act) {
    float32x4_t acc[6][4];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = vdupq_n_f32(0.0f);
    size_t k = 0;
    for (; k + 8 <= kc; k += 8) { /* four K pairs: one X load per row */
        bfloat16x8_t ai[6];
        for (int i = 0; i < MR; i++) ai[i] = vreinterpretq_bf16_u16(vld1q_u16(a + (size_t)i * lda + k));
        const uint16_t *bk = b + k * 16;
        __builtin_prefetch(bk + 2048);
#define STEP(L)                                                                                  \
        {                                                                                        \
            bfloat16x8_t w[4];                                                                   \
            for (int j = 0; j < 4; j++) w[j] = vreinterpretq_bf16_u16(vld1q_u16(bk + 32 * L + 8 * j)); \
            for (int i = 0; i < MR; i++)                                                         \
                for (int j = 0; j < 4; j++) acc[i][j] = vbfdotq_laneq_f32(acc[i][j], w[j], ai[i], L); \
        }
        STEP(0) STEP(1) STEP(2) STEP(3)
#undef STEP
    }
    for (; k < kc; k += 2) { /* kc is even: the driver pads X and W to kstored */
        const uint16_t *bk = b + k * 16;
        bfloat16x8_t w[4];
        for (int j = 0; j < 4; j++) w[j] = vreinterpretq_bf16_u16(vld1q_u16(bk + 8 * j));
        for (int i = 0; i < MR; i++) {
            uint32_t pair;
            __builtin_memcpy(&pair, a + (size_t)i * lda + k, 4);
            const bfloat16x8_t ap = vreinterpretq_bf16_u32(vdupq_n_u32(pair));
            for (int j = 0; j < 4; j++) acc[i][j] = vbfdotq_f32(acc[i][j], w[j], ap);
        }
    }
    for (int i = 0; i < MR; i++) store_row_neon(4, acc[i], nv, c + (size_t)i * ldc, flags, bias, act);
}

CONDENSE_TARGET_BF16 void condense_bf16_dot_6x16__bf16(int type, int mr, int nv, size_t kc, const void *a, size_t lda,
                                                       const uint16_t *b, float *c, size_t ldc, int flags,
                                                       const float *bias, int act) {
    (void)type;
    switch (mr) {
    case 1: bfdot_neon(1, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    case 2: bfdot_neon(2, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    case 3: bfdot_neon(3, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    case 4: bfdot_neon(4, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    case 5: bfdot_neon(5, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    case 6: bfdot_neon(6, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    default: break;
    }
}
#endif
