/* int4 for AArch64: the panel unpack for f32_gemm_6x16__neon (16 rows: byte j holds rows j and
 * j + 8). Nibbles sign-extend with a shift pair in 8-bit lanes, widen twice, convert, scale. */
#include "internal.h"

#if CONDENSE_ARM64
#include <arm_neon.h>

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
#endif
