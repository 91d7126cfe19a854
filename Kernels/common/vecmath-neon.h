/* Vector math for the AArch64 Advanced SIMD kernels: exp on non-positive inputs, exact GELU,
 * the epilogue activations and tail-safe row stores. The same method and constants as the AVX2
 * file, so every ISA path rounds alike. */
#ifndef CONDENSE_VECMATH_NEON_H
#define CONDENSE_VECMATH_NEON_H
#include "internal.h"
#if CONDENSE_ARM64
#include <arm_neon.h>

CONDENSE_INLINE float32x4_t exp_nonpos_neon(float32x4_t v) {
    v = vmaxq_f32(v, vdupq_n_f32(-87.0f));
    const float32x4_t n = vrndnq_f32(vmulq_n_f32(v, 1.44269504088896341f));
    float32x4_t r = vfmsq_n_f32(v, n, 0.693359375f);
    r = vfmsq_n_f32(r, n, -2.12194440e-4f);
    float32x4_t p = vdupq_n_f32(1.0f / 720);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

CONDENSE_INLINE float32x4_t gelu_neon(float32x4_t x) {
    const float32x4_t z = vmulq_n_f32(vabsq_f32(x), 0.70710678118654752f);
    const float32x4_t t = vdivq_f32(vdupq_n_f32(1.0f), vfmaq_n_f32(vdupq_n_f32(1.0f), z, 0.3275911f));
    float32x4_t p = vdupq_n_f32(1.061405429f);
    p = vfmaq_f32(vdupq_n_f32(-1.453152027f), p, t);
    p = vfmaq_f32(vdupq_n_f32(1.421413741f), p, t);
    p = vfmaq_f32(vdupq_n_f32(-0.284496736f), p, t);
    p = vfmaq_f32(vdupq_n_f32(0.254829592f), p, t);
    p = vmulq_f32(p, t);
    const float32x4_t pe = vmulq_f32(p, exp_nonpos_neon(vnegq_f32(vmulq_f32(z, z))));
    const uint32x4_t pos = vcgeq_f32(x, vdupq_n_f32(0.0f));
    const float32x4_t onep = vbslq_f32(pos, vsubq_f32(vdupq_n_f32(2.0f), pe), pe);
    return vmulq_f32(vmulq_n_f32(x, 0.5f), onep);
}

/* ReLU keeps NaN: FMAX returns NaN when either input is NaN. */
CONDENSE_INLINE float32x4_t act_neon(float32x4_t v, int act) {
    if (act == CONDENSE_ACT_RELU) return vmaxq_f32(vdupq_n_f32(0.0f), v);
    if (act == CONDENSE_ACT_GELU) return gelu_neon(v);
    return v;
}

/* One row of an f32 tile, 4·NV columns in registers, nv of them real: accumulate into C, add
 * the bias and the activation on the final pass, store only nv columns (a short row goes
 * through a stack copy: NEON has no masked loads or stores). */
CONDENSE_INLINE void store_row_neon(const int NV, float32x4_t *acc, int nv, float *c, int flags, const float *bias,
                                    int act) {
    if (nv < 4 * NV) {
        float tmp[4 * 8];
        for (int j = 0; j < NV; j++) vst1q_f32(tmp + 4 * j, acc[j]);
        if (flags & CONDENSE_UK_ACCUMULATE)
            for (int j = 0; j < nv; j++) tmp[j] += c[j];
        for (int j = 0; j < NV; j++) acc[j] = vld1q_f32(tmp + 4 * j);
        if (flags & CONDENSE_UK_FINAL) {
            if (bias) {
                for (int j = 0; j < nv; j++) tmp[j] = bias[j];
                for (int j = 0; j < NV; j++) acc[j] = vaddq_f32(acc[j], vld1q_f32(tmp + 4 * j));
            }
            for (int j = 0; j < NV; j++) acc[j] = act_neon(acc[j], act);
        }
        for (int j = 0; j < NV; j++) vst1q_f32(tmp + 4 * j, acc[j]);
        for (int j = 0; j < nv; j++) c[j] = tmp[j];
        return;
    }
    for (int j = 0; j < NV; j++) {
        float32x4_t v = acc[j];
        if (flags & CONDENSE_UK_ACCUMULATE) v = vaddq_f32(v, vld1q_f32(c + 4 * j));
        if (flags & CONDENSE_UK_FINAL) {
            if (bias) v = vaddq_f32(v, vld1q_f32(bias + 4 * j));
            v = act_neon(v, act);
        }
        vst1q_f32(c + 4 * j, v);
    }
}

#endif
#endif
