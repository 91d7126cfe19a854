/* Half-precision micro-kernel 4x16 in portable C: widens each weight exactly to f32 and
 * accumulates in f32 in K order (the reference sibling of the SIMD widen kernels). */
#include "internal.h"

void condense_half_widen_4x16__scalar(int type, int mr, int nv, size_t kc, const void *a_, size_t lda,
                                      const uint16_t *b, float *c, size_t ldc, int flags, const float *bias,
                                      int act) {
    const float *a = a_;
    float acc[4][16] = {{0}};
    for (size_t k = 0; k < kc; k++) {
        float wk[16];
        for (int j = 0; j < 16; j++)
            wk[j] = type == CONDENSE_HALF_BF16 ? condense_bf16_to_f32(b[(k / 2) * 32 + (size_t)j * 2 + k % 2])
                                               : condense_f16_to_f32(b[k * 16 + (size_t)j]);
        for (int i = 0; i < mr; i++) {
            const float ai = a[(size_t)i * lda + k];
            for (int j = 0; j < 16; j++) acc[i][j] += ai * wk[j];
        }
    }
    condense_uk_epilogue_4x16__scalar(mr, nv, acc, c, ldc, flags, bias, act);
}
