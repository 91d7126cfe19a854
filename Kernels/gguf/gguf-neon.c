/* GGUF block kernels on AArch64: NEON (SMULL) and dotprod (SDOT), X's block quantization. */
#include "gguf-neon.h"

#if CONDENSE_ARM64
#include <string.h>
#include <arm_neon.h>
#include <pthread.h>
/* AArch64: the AVX2 kernel's method on 4-row quarters of the 16-row group. Codes (u8 ≤ 63) and
 * X (s8) give 4-byte dots per row: SDOT at the dotprod level; at the neon level SMULL to int16
 * (|63·127|, and Q8_0's |128·127|·2, fit) and pairwise adds. Q8_0's codes are flipped back to s8,
 * so its dot is Σ q·qx itself and its o·Σqx term is not subtracted. The float steps are the
 * scalar kernel's, in its order: bit-identical results. */

#define GGUF_GROUP_NEON(NAME, ATTR, DOT)                                                                       \
    CONDENSE_INLINE ATTR void NAME##_rows(const int MR, const layout *L, const uint8_t *gw, const qx_rows *x,  \
                                          size_t i0, float *y, size_t ldy, int valid) {                        \
        const int q4 = L->chunks == 4, kind = L->kind, q8 = !q4 || L->lut;                                     \
        const uint8x16_t lo4 = vdupq_n_u8(0x0F), top2 = vdupq_n_u8(0x30), b4 = vdupq_n_u8(0x10);               \
        const uint8x16_t flip = vdupq_n_u8(0x80), lut = vld1q_u8(iq4nl_u8);                                    \
        float32x4_t acc[2][4], dsb[4], msb[4];                                                                 \
        for (int ii = 0; ii < MR; ii++)                                                                        \
            for (int qq = 0; qq < 4; qq++) acc[ii][qq] = vdupq_n_f32(0.0f);                                    \
        for (int qq = 0; qq < 4; qq++) dsb[qq] = msb[qq] = vdupq_n_f32(0.0f);                                  \
        for (size_t b = 0; b < x->nb; b++) {                                                                   \
            const uint8_t *blk = block_at(L, gw, b);                                                           \
            int32x4_t s0[2][4], s1[2][4];                                                                      \
            for (int ii = 0; ii < MR; ii++)                                                                    \
                for (int qq = 0; qq < 4; qq++) s0[ii][qq] = s1[ii][qq] = vdupq_n_s32(0);                       \
            for (int ch = 0; ch < 4; ch++) {                                                                   \
                int8x16_t xa[2], xb[2];                                                                        \
                for (int ii = 0; ii < MR; ii++) {                                                              \
                    const int8_t *xd = x->q + (i0 + (size_t)ii) * x->k + b * 32;                               \
                    xa[ii] = xquad(xd, ch);                                                                    \
                    xb[ii] = xquad(xd, ch + 4);                                                                \
                }                                                                                              \
                for (int qq = 0; qq < 4; qq++) {                                                               \
                    const uint8x16_t v = vld1q_u8(blk + 64 * ch + 16 * qq);                                    \
                    uint8x16_t lo, hi;                                                                         \
                    if (q4) {                                                                                  \
                        lo = vandq_u8(v, lo4);                                                                 \
                        hi = vshrq_n_u8(v, 4);                                                                 \
                        if (L->lut) { /* IQ4_NL: the levels themselves (s8) */                                 \
                            lo = veorq_u8(vqtbl1q_u8(lut, lo), flip);                                          \
                            hi = veorq_u8(vqtbl1q_u8(lut, hi), flip);                                          \
                        }                                                                                      \
                        if (L->hbits) {                                                                        \
                            const uint8x16_t h = vld1q_u8(blk + 256 + 16 * qq);                                \
                            lo = vorrq_u8(lo, vandq_u8(vshlq_u8(h, vdupq_n_s8((int8_t)(4 - ch))), b4));        \
                            hi = vorrq_u8(hi, vandq_u8(vshlq_u8(h, vdupq_n_s8((int8_t)-ch)), b4));             \
                        }                                                                                      \
                        if (kind == KQ6 && L->h2) {                                                            \
                            const uint8x16_t h = vld1q_u8(blk + (ch < 2 ? 256 : 320) + 16 * qq);               \
                            if (ch % 2 == 0) {                                                                 \
                                lo = vorrq_u8(lo, vandq_u8(h, top2));                                          \
                                hi = vorrq_u8(hi, vandq_u8(vshlq_n_u8(h, 4), top2));                           \
                            } else {                                                                           \
                                lo = vorrq_u8(lo, vandq_u8(vshrq_n_u8(h, 2), top2));                           \
                                hi = vorrq_u8(hi, vandq_u8(vshlq_n_u8(h, 2), top2));                           \
                            }                                                                                  \
                        }                                                                                      \
                    } else {                                                                                   \
                        lo = veorq_u8(v, flip);                                                                \
                        hi = veorq_u8(vld1q_u8(blk + 64 * (ch + 4) + 16 * qq), flip);                          \
                    }                                                                                          \
                    for (int ii = 0; ii < MR; ii++) {                                                          \
                        s0[ii][qq] = DOT(s0[ii][qq], vreinterpretq_s8_u8(lo), xa[ii]);                         \
                        s1[ii][qq] = DOT(s1[ii][qq], vreinterpretq_s8_u8(hi), xb[ii]);                         \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
            float32x4_t sc0[4], sc1[4], mw[4], mw1[4];                                                         \
            for (int qq = 0; qq < 4; qq++) {                                                                   \
                sc1[qq] = mw[qq] = mw1[qq] = vdupq_n_f32(0.0f);                                                \
                if (kind == FLAT) {                                                                            \
                    const uint8_t *sc = blk + flat_scales(L);                                                  \
                    sc0[qq] = f16x4_f32(sc + 8 * qq);                                                          \
                    if (L->has_min) mw[qq] = f16x4_f32(sc + 32 + 8 * qq);                                      \
                } else {                                                                                       \
                    if (b % 8 == 0) {                                                                          \
                        const uint8_t *hdr = header_at(L, gw, b);                                              \
                        dsb[qq] = f16x4_f32(hdr + 8 * qq);                                                     \
                        if (kind == KQ4 || kind == KQ2) msb[qq] = f16x4_f32(hdr + 32 + 8 * qq);                \
                    }                                                                                          \
                    if (kind == KQ4) {                                                                         \
                        sc0[qq] = vmulq_f32(dsb[qq], u8x4_f32(blk + L->sc_off + 4 * qq));                      \
                        mw[qq] = vmulq_f32(msb[qq], u8x4_f32(blk + L->sc_off + 16 + 4 * qq));                  \
                    } else if (kind == KIQ) {                                                                  \
                        sc0[qq] = vmulq_f32(dsb[qq], s8x4_f32(blk + L->sc_off + 4 * qq));                      \
                    } else if (kind == KQ2) {                                                                  \
                        sc0[qq] = vmulq_f32(dsb[qq], u8x4_f32(blk + L->sc_off + 4 * qq));                      \
                        sc1[qq] = vmulq_f32(dsb[qq], u8x4_f32(blk + L->sc_off + 16 + 4 * qq));                 \
                        mw[qq] = vmulq_f32(msb[qq], u8x4_f32(blk + L->sc_off + 32 + 4 * qq));                  \
                        mw1[qq] = vmulq_f32(msb[qq], u8x4_f32(blk + L->sc_off + 48 + 4 * qq));                 \
                    } else {                                                                                   \
                        sc0[qq] = vmulq_f32(dsb[qq], s8x4_f32(blk + L->sc_off + 4 * qq));                            \
                        sc1[qq] = vmulq_f32(dsb[qq], s8x4_f32(blk + L->sc_off + 16 + 4 * qq));                            \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
            for (int ii = 0; ii < MR; ii++) {                                                                  \
                const size_t ib = (i0 + (size_t)ii) * x->nb + b;                                               \
                const float dx = x->d[ib];                                                                     \
                for (int qq = 0; qq < 4; qq++) {                                                               \
                    if (kind == KQ2) {                                                                         \
                        acc[ii][qq] = vfmaq_f32(acc[ii][qq], vcvtq_f32_s32(s0[ii][qq]), vmulq_n_f32(sc0[qq], dx));   \
                        acc[ii][qq] = vfmaq_f32(acc[ii][qq], vcvtq_f32_s32(s1[ii][qq]), vmulq_n_f32(sc1[qq], dx));   \
                        acc[ii][qq] = vfmsq_f32(acc[ii][qq], vmulq_n_f32(mw[qq], dx), vdupq_n_f32((float)x->c[ib]));  \
                        acc[ii][qq] = vfmsq_f32(acc[ii][qq], vmulq_n_f32(mw1[qq], dx), vdupq_n_f32((float)x->c2[ib])); \
                        continue;                                                                              \
                    }                                                                                          \
                    if (kind == KQ6) {                                                                         \
                        acc[ii][qq] = vfmaq_f32(acc[ii][qq], vcvtq_f32_s32(vsubq_s32(s0[ii][qq], vdupq_n_s32(x->c[ib]))), \
                                                vmulq_n_f32(sc0[qq], dx));                                     \
                        acc[ii][qq] = vfmaq_f32(acc[ii][qq], vcvtq_f32_s32(vsubq_s32(s1[ii][qq], vdupq_n_s32(x->c2[ib]))), \
                                                vmulq_n_f32(sc1[qq], dx));                                     \
                        continue;                                                                              \
                    }                                                                                          \
                    int32x4_t t = vaddq_s32(s0[ii][qq], s1[ii][qq]);                                           \
                    if (!q8) t = vsubq_s32(t, vdupq_n_s32(x->c[ib]));                                          \
                    acc[ii][qq] = vfmaq_f32(acc[ii][qq], vcvtq_f32_s32(t), vmulq_n_f32(sc0[qq], dx));          \
                    if (kind == KQ4) acc[ii][qq] = vfmsq_f32(acc[ii][qq], mw[qq], vdupq_n_f32(x->s[ib]));      \
                    else if (L->has_min) acc[ii][qq] = vfmaq_f32(acc[ii][qq], mw[qq], vdupq_n_f32(x->s[ib]));  \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
        store_group_neon(MR, (const float32x4_t (*)[4])acc, y, ldy, i0, valid);                              \
    }                                                                                                          \
    ATTR void NAME(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y,  \
                          size_t ldy, int valid) {                                                             \
        size_t i = m0;                                                                                         \
        for (; i + 2 <= m1; i += 2) NAME##_rows(2, L, gw, x, i, y, ldy, valid);                                \
        if (i < m1) NAME##_rows(1, L, gw, x, i, y, ldy, valid);                                                \
    }
GGUF_GROUP_NEON(condense_gguf_group_neon, , dot4_neon)
GGUF_GROUP_NEON(condense_gguf_group_dotprod, CONDENSE_TARGET_DOTPROD, dot4_sdot)

/* ggml's q8_0 of one block, the scalar rule: max by maxNum (NaN ignored, as fmaxf), FCVTNS
 * rounds to nearest even and turns NaN into 0. */
void condense_gguf_quantize_block_neon(const float *x, int8_t *q, float *d, int32_t *sum) {
    float32x4_t v[8], a = vdupq_n_f32(0.0f);
    for (int j = 0; j < 8; j++) {
        v[j] = vld1q_f32(x + 4 * j);
        a = vmaxnmq_f32(a, vabsq_f32(v[j]));
    }
    const float amax = vmaxnmvq_f32(a);
    const float id = amax != 0 ? 127.0f / amax : 0.0f;
    int32x4_t s[2] = {vdupq_n_s32(0), vdupq_n_s32(0)};
    for (int j = 0; j < 8; j++) {
        const int32x4_t qi = vcvtnq_s32_f32(vmulq_n_f32(v[j], id));
        s[j / 4] = vaddq_s32(s[j / 4], qi);
        const int16x4_t h = vmovn_s32(qi);
        const int8x8_t b = vmovn_s16(vcombine_s16(h, h));
        vst1_lane_s32((int32_t *)(void *)(q + 4 * j), vreinterpret_s32_s8(b), 0);
    }
    *d = amax / 127.0f;
    sum[0] = vaddvq_s32(s[0]);
    sum[1] = vaddvq_s32(s[1]);
}
#endif
