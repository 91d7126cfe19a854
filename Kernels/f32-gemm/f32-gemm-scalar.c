/* f32 GEMM micro-kernel 4x16 in portable C: the reference sibling of the SIMD kernels and the
 * path for CPUs without AVX2. Compiled without ISA attributes, so it runs anywhere. */
#include "internal.h"
#include <math.h>

float condense_gelu_scalar(float x) {
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

static inline float act_scalar(float v, int act) {
    if (act == CONDENSE_ACT_RELU) return (v > 0.0f || v != v) ? v : 0.0f;
    if (act == CONDENSE_ACT_GELU) return condense_gelu_scalar(v);
    return v;
}

void condense_f32_gemm_ukernel_4x16__scalar(int mr, int nv, size_t kc, const float *a,
                                            size_t lda, const float *b, float *c, size_t ldc, int flags,
                                            const float *bias, int act) {
    float acc[4][16] = {{0}};
    for (size_t k = 0; k < kc; k++) {
        const float *bk = b + k * 16;
        for (int i = 0; i < mr; i++) {
            float ai = a[i * lda + k];
            for (int j = 0; j < 16; j++) acc[i][j] += ai * bk[j];
        }
    }
    condense_uk_epilogue_4x16__scalar(mr, nv, acc, c, ldc, flags, bias, act);
}

void condense_uk_epilogue_4x16__scalar(int mr, int nv, const float acc[4][16], float *c, size_t ldc, int flags,
                                       const float *bias, int act) {
    for (int i = 0; i < mr; i++) {
        float *ci = c + (size_t)i * ldc;
        for (int j = 0; j < nv; j++) {
            float v = acc[i][j];
            if (flags & CONDENSE_UK_ACCUMULATE) v += ci[j];
            if (flags & CONDENSE_UK_FINAL) {
                if (bias) v += bias[j];
                v = act_scalar(v, act);
            }
            ci[j] = v;
        }
    }
}

void condense_f32_activation__scalar(float *y, size_t n, int act) {
    if (act == CONDENSE_ACT_NONE) return;
    for (size_t i = 0; i < n; i++) y[i] = act_scalar(y[i], act);
}
