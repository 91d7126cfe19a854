/* The AArch64 block kernels' shared steps (gguf-neon.c, and the 2:4-int4 kernels in
 * s24-gemm/s24q4-neon.c). */
#ifndef CONDENSE_GGUF_NEON_H
#define CONDENSE_GGUF_NEON_H
#include "gguf-internal.h"
#if CONDENSE_ARM64
#include <arm_neon.h>
#include <string.h>
CONDENSE_INLINE int32x4_t dot4_neon(int32x4_t acc, int8x16_t w, int8x16_t x) {
    const int16x8_t lo = vmull_s8(vget_low_s8(w), vget_low_s8(x)), hi = vmull_s8(vget_high_s8(w), vget_high_s8(x));
    return vaddq_s32(acc, vpaddlq_s16(vpaddq_s16(lo, hi)));
}
CONDENSE_INLINE CONDENSE_TARGET_DOTPROD int32x4_t dot4_sdot(int32x4_t acc, int8x16_t w, int8x16_t x) {
    return vdotq_s32(acc, w, x);
}
CONDENSE_INLINE float32x4_t u8x4_f32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return vcvtq_f32_u32(vmovl_u16(vget_low_u16(vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(v))))));
}
CONDENSE_INLINE float32x4_t s8x4_f32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return vcvtq_f32_s32(vmovl_s16(vget_low_s16(vmovl_s8(vreinterpret_s8_u32(vdup_n_u32(v))))));
}
CONDENSE_INLINE float32x4_t f16x4_f32(const uint8_t *p) { return vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(p))); }
CONDENSE_INLINE int8x16_t xquad(const int8_t *xq, int quad) {
    int32_t v;
    memcpy(&v, xq + 4 * quad, 4);
    return vreinterpretq_s8_s32(vdupq_n_s32(v));
}
/* Rows i0 … i0 + MR − 1 of Y: the first `valid` of the group's 16 rows of each row of X, held in
 * four quarters. */
CONDENSE_INLINE void store_group_neon(const int MR, const float32x4_t (*acc)[4], float *y, size_t ldy, size_t i0, int valid) {
    for (int ii = 0; ii < MR; ii++) {
        float out[16];
        for (int qq = 0; qq < 4; qq++) vst1q_f32(out + 4 * qq, acc[ii][qq]);
        float *yi = y + (i0 + (size_t)ii) * ldy;
        for (int r = 0; r < valid; r++) yi[r] = out[r];
    }
}
#endif
#endif
