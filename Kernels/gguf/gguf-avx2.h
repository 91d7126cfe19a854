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
#endif
#endif
