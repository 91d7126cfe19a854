/* The 2:4-int4 (S24Q4) block kernels on AArch64 (NEON and dotprod). They run on the GGUF block
 * driver (gguf-gemm.c), registered in its table. */
#include "../gguf/gguf-neon.h"

#if CONDENSE_ARM64
#include <string.h>
#include <pthread.h>

/* S24Q4 on AArch64: per step (4 columns) the 16 rows' nibble masks give a TBL index per (row,
 * column): 2r + the kept value's slot, or 0x80 + 2r (out of the 32-byte table: reads 0) for a
 * pruned column. TBL places the 32 kept q = code − 8 into the 16 rows × 4 columns, and the dot is
 * Σ q·qx itself (= Σ code·qx − 8·Σ qx exactly): bit-identical to the scalar kernel. */
static uint32_t s24_ctl_neon[16];
static pthread_once_t s24_ctl_once = PTHREAD_ONCE_INIT;
static void s24_ctl_build(void) {
    for (int nib = 0; nib < 16; nib++) {
        uint32_t c = 0;
        int slot = 0;
        for (int t = 0; t < 4; t++) c |= (uint32_t)((nib >> t) & 1 ? slot++ : 0x80) << (8 * t);
        s24_ctl_neon[nib] = __builtin_popcount((unsigned)nib) == 2 ? c : 0x80808080u;
    }
}
#define S24_GROUP_NEON(NAME, ATTR, DOT)                                                                        \
    CONDENSE_INLINE ATTR void NAME##_rows(const int MR, const uint8_t *gw, const qx_rows *x, size_t i0, float *y, \
                                          size_t ldy, int valid) {                                             \
        float32x4_t acc[2][4];                                                                                 \
        for (int ii = 0; ii < MR; ii++)                                                                        \
            for (int qq = 0; qq < 4; qq++) acc[ii][qq] = vdupq_n_f32(0.0f);                                    \
        const uint8x16_t lo4 = vdupq_n_u8(0x0F);                                                               \
        const int8x16_t eight = vdupq_n_s8(8);                                                                 \
        for (size_t b = 0; b < x->nb / 2; b++) {                                                               \
            const uint8_t *blk = gw + b * S24_GB;                                                              \
            float32x4_t sc[4];                                                                                 \
            for (int qq = 0; qq < 4; qq++) sc[qq] = f16x4_f32(blk + 384 + 8 * qq);                             \
            for (int h = 0; h < 2; h++) {                                                                      \
                int32x4_t sd[2][4];                                                                            \
                for (int ii = 0; ii < MR; ii++)                                                                \
                    for (int qq = 0; qq < 4; qq++) sd[ii][qq] = vdupq_n_s32(0);                                \
                for (int st = 8 * h; st < 8 * h + 8; st++) {                                                   \
                    uint64_t m64;                                                                              \
                    memcpy(&m64, blk + 256 + 8 * st, 8);                                                       \
                    uint32_t idx[16];                                                                          \
                    for (int r = 0; r < 16; r++) idx[r] = s24_ctl_neon[(m64 >> (4 * r)) & 15] + 0x02020202u * (uint32_t)r; \
                    const uint8_t *pr = blk + 32 * (st / 2);                                                   \
                    uint8x16x2_t q;                                                                            \
                    for (int j = 0; j < 2; j++) {                                                              \
                        uint8x16_t c = vld1q_u8(pr + 16 * j);                                                  \
                        if (st % 2) c = vshrq_n_u8(c, 4);                                                      \
                        q.val[j] = vreinterpretq_u8_s8(vsubq_s8(vreinterpretq_s8_u8(vandq_u8(c, lo4)), eight)); \
                    }                                                                                          \
                    int8x16_t wq[4];                                                                           \
                    for (int qq = 0; qq < 4; qq++)                                                             \
                        wq[qq] = vreinterpretq_s8_u8(vqtbl2q_u8(q, vld1q_u8((const uint8_t *)(idx + 4 * qq)))); \
                    for (int ii = 0; ii < MR; ii++) {                                                          \
                        const int8x16_t xv = xquad(x->q + (i0 + (size_t)ii) * x->k + 64 * b + 32 * (size_t)h, st % 8); \
                        for (int qq = 0; qq < 4; qq++) sd[ii][qq] = DOT(sd[ii][qq], wq[qq], xv);               \
                    }                                                                                          \
                }                                                                                              \
                for (int ii = 0; ii < MR; ii++) {                                                              \
                    const float dx = x->d[(i0 + (size_t)ii) * x->nb + 2 * b + (size_t)h];                     \
                    for (int qq = 0; qq < 4; qq++)                                                             \
                        acc[ii][qq] = vfmaq_f32(acc[ii][qq], vcvtq_f32_s32(sd[ii][qq]), vmulq_n_f32(sc[qq], dx)); \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
        store_group_neon(MR, (const float32x4_t (*)[4])acc, y, ldy, i0, valid);                              \
    }                                                                                                          \
    ATTR void NAME(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y,  \
                          size_t ldy, int valid) {                                                             \
        (void)L;                                                                                               \
        pthread_once(&s24_ctl_once, s24_ctl_build);                                                            \
        size_t i = m0;                                                                                         \
        for (; i + 2 <= m1; i += 2) NAME##_rows(2, gw, x, i, y, ldy, valid);                                   \
        if (i < m1) NAME##_rows(1, gw, x, i, y, ldy, valid);                                                   \
    }
S24_GROUP_NEON(condense_s24q4_group_neon, , dot4_neon)
S24_GROUP_NEON(condense_s24q4_group_dotprod, CONDENSE_TARGET_DOTPROD, dot4_sdot)

#endif
