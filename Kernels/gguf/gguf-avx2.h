/* The AVX2 block kernels' shared step (gguf-avx2.c, and the 2:4-int4 kernel in
 * s24-gemm/s24q4-avx2.c). */
#ifndef CONDENSE_GGUF_AVX2_H
#define CONDENSE_GGUF_AVX2_H
#include "gguf-internal.h"
#if CONDENSE_X86
#include <immintrin.h>
#define CONDENSE_TARGET_GGUF256 __attribute__((target("avx2,fma,f16c")))
CONDENSE_INLINE CONDENSE_TARGET_GGUF256 __m256i dot4_u8s8(__m256i w, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
}
/* Rows i0 … i0 + MR − 1 of Y, columns 8·half …: the lanes of each accumulator that are real rows
 * of the group (`valid` of its 16). */
CONDENSE_INLINE CONDENSE_TARGET_GGUF256 void store_half_avx2(const int MR, const __m256 *acc, float *y, size_t ldy, size_t i0,
                                                             int half, int valid) {
    const int lanes = valid - 8 * half;
    for (int ii = 0; ii < MR; ii++) {
        float out[8];
        _mm256_storeu_ps(out, acc[ii]);
        float *yi = y + (i0 + (size_t)ii) * ldy + 8 * half;
        for (int r = 0; r < 8 && r < lanes; r++) yi[r] = out[r];
    }
}
#endif
#endif
