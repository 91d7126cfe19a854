/* int4 for AArch64: the panel unpack for f32_gemm_6x16__neon (16 rows: byte j holds rows j and
 * j + 8; nibbles sign-extend with a shift pair in 8-bit lanes, widen twice, convert, scale), and
 * the integer path below. */
#include "internal.h"

#if CONDENSE_ARM64
#include <string.h>
#include "vecmath-neon.h"

void condense_q4_unpack__neon(const condense_q4_packed *w, size_t panel, size_t k0, size_t kc, float *buf) {
    const uint8_t *nb = w->nib + (panel * w->k16 + k0) * 8;
    for (size_t kk = 0; kk < kc; kk++) {
        const float *s = w->pscale + (panel * w->groups + (k0 + kk) / w->group) * 16;
        const int8x8_t v = vreinterpret_s8_u8(vld1_u8(nb + kk * 8));
        const int16x8_t lo = vmovl_s8(vshr_n_s8(vshl_n_s8(v, 4), 4)), hi = vmovl_s8(vshr_n_s8(v, 4));
        float *d = buf + kk * 16;
        vst1q_f32(d, vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), vld1q_f32(s)));
        vst1q_f32(d + 4, vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(lo))), vld1q_f32(s + 4)));
        vst1q_f32(d + 8, vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), vld1q_f32(s + 8)));
        vst1q_f32(d + 12, vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(hi))), vld1q_f32(s + 12)));
    }
}

/* The integer path (as q4_gemm_vnni_4x16__avx512vnni, on the same packed blocks): per 8 columns
 * one 64-byte block of 16 rows × 4 bytes, low nibbles the quad of columns 8q…8q+3 (+8), high
 * nibbles 8q+4…8q+7. Each group's int32 dot is scaled into f32 accumulators, and the zero point is
 * corrected once with the precomputed comp = Σ_g s_g · Σ_{k∈g} w.
 *  - dotprod: SDOT is s8·s8, so X goes in as x − 128; Σ_g s_g·128·Σw is 128·comp, folded into
 *    the same correction: (128 − zx)·comp.
 *  - i8mm: USDOT takes the u8 X as it is. */
#define Q4_INTEGER_NEON(NAME, ATTR, XFORM, DOT, ZOFF)                                                   \
    CONDENSE_INLINE ATTR void NAME##_tile(const int MR, const condense_q4_packed *w, size_t p, const uint8_t *xq, \
                                          size_t ldq, const float *sx, const int32_t *zx, float *y, size_t ldy, int act) { \
        const size_t G = w->group, groups = w->groups, k16 = w->k16;                                       \
        const uint8_t *blk = w->blocks + p * (k16 / 8) * 64;                                               \
        const float *ps = w->pscale + p * groups * 16;                                                     \
        const uint8x16_t lo4 = vdupq_n_u8(0x0F);                                                           \
        const int8x16_t eight = vdupq_n_s8(8);                                                             \
        float32x4_t facc[4][4];                                                                            \
        for (int i = 0; i < MR; i++)                                                                       \
            for (int qq = 0; qq < 4; qq++) facc[i][qq] = vdupq_n_f32(0.0f);                                \
        for (size_t g = 0; g < groups; g++) {                                                              \
            int32x4_t acc[4][4];                                                                           \
            for (int i = 0; i < MR; i++)                                                                   \
                for (int qq = 0; qq < 4; qq++) acc[i][qq] = vdupq_n_s32(0);                                \
            const size_t q0 = g * G / 8, q1 = ((g + 1) * G < k16 ? (g + 1) * G : k16) / 8;                \
            for (size_t q = q0; q < q1; q++) {                                                             \
                __builtin_prefetch(blk + q * 64 + 4096);                                                   \
                int8x16_t wl[4], wh[4];                                                                    \
                for (int qq = 0; qq < 4; qq++) {                                                           \
                    const uint8x16_t v = vld1q_u8(blk + q * 64 + 16 * qq);                                 \
                    wl[qq] = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, lo4)), eight);                       \
                    wh[qq] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight);                       \
                }                                                                                          \
                for (int i = 0; i < MR; i++) {                                                             \
                    uint32_t a0, a1;                                                                       \
                    memcpy(&a0, xq + (size_t)i * ldq + 8 * q, 4);                                          \
                    memcpy(&a1, xq + (size_t)i * ldq + 8 * q + 4, 4);                                      \
                    const uint8x16_t x0 = XFORM(vreinterpretq_u8_u32(vdupq_n_u32(a0)));                    \
                    const uint8x16_t x1 = XFORM(vreinterpretq_u8_u32(vdupq_n_u32(a1)));                    \
                    for (int qq = 0; qq < 4; qq++) acc[i][qq] = DOT(DOT(acc[i][qq], x0, wl[qq]), x1, wh[qq]); \
                }                                                                                          \
            }                                                                                              \
            for (int qq = 0; qq < 4; qq++) {                                                               \
                const float32x4_t sg = vld1q_f32(ps + g * 16 + 4 * qq);                                    \
                for (int i = 0; i < MR; i++) facc[i][qq] = vfmaq_f32(facc[i][qq], sg, vcvtq_f32_s32(acc[i][qq])); \
            }                                                                                              \
        }                                                                                                  \
        const size_t col = p * 16, nv = w->n - col < 16 ? w->n - col : 16;                                 \
        float bb[16] = {0};                                                                                \
        if (w->bias) for (size_t j = 0; j < nv; j++) bb[j] = w->bias[col + j];                             \
        for (int i = 0; i < MR; i++) {                                                                     \
            float out[16];                                                                                 \
            const float32x4_t z = vdupq_n_f32((float)(zx[i] - (ZOFF)));                                    \
            for (int qq = 0; qq < 4; qq++) {                                                               \
                const float32x4_t corrected = vfmsq_f32(facc[i][qq], z, vld1q_f32(w->pcomp + p * 16 + 4 * qq)); \
                vst1q_f32(out + 4 * qq, act_neon(vfmaq_f32(vld1q_f32(bb + 4 * qq), vdupq_n_f32(sx[i]), corrected), act)); \
            }                                                                                              \
            for (size_t j = 0; j < nv; j++) y[(size_t)i * ldy + col + j] = out[j];                         \
        }                                                                                                  \
    }                                                                                                      \
    ATTR void NAME(const condense_q4_packed *w, size_t p0, size_t p1, size_t m, const uint8_t *xq, size_t ldq, \
                   const float *sx, const int32_t *zx, float *y, size_t ldy, int act) {                    \
        for (size_t p = p0; p < p1; p++)                                                                   \
            for (size_t i = 0; i < m; i += 4) {                                                            \
                const uint8_t *xi = xq + i * ldq;                                                          \
                float *yi = y + i * ldy;                                                                   \
                switch (m - i < 4 ? m - i : 4) {                                                           \
                case 1: NAME##_tile(1, w, p, xi, ldq, sx + i, zx + i, yi, ldy, act); break;                \
                case 2: NAME##_tile(2, w, p, xi, ldq, sx + i, zx + i, yi, ldy, act); break;                \
                case 3: NAME##_tile(3, w, p, xi, ldq, sx + i, zx + i, yi, ldy, act); break;                \
                default: NAME##_tile(4, w, p, xi, ldq, sx + i, zx + i, yi, ldy, act); break;               \
                }                                                                                          \
            }                                                                                              \
    }

#define FLIP128(x) veorq_u8((x), vdupq_n_u8(0x80))
#define KEEP(x) (x)
#define DOT_S(acc, x, w) vdotq_s32((acc), vreinterpretq_s8_u8(x), (w))
#define DOT_US(acc, x, w) vusdotq_s32((acc), (x), (w))
Q4_INTEGER_NEON(condense_q4_integer__dotprod, CONDENSE_TARGET_DOTPROD, FLIP128, DOT_S, 128)
Q4_INTEGER_NEON(condense_q4_integer__i8mm, CONDENSE_TARGET_I8MM, KEEP, DOT_US, 0)
#endif
