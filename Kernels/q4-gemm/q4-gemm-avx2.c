/* int4 for AVX2: the panel unpack (16 rows: byte j holds rows j and j + 8) for
 * f32_gemm_6x16__avx2, by hand: the generic C loop of 8 bytes did not vectorise (0.1× f32 at
 * M = 1). One zero-extending load of 8 bytes, two shift pairs sign-extend the nibbles in 32-bit
 * lanes, convert, scale. */
#include "internal.h"

#if CONDENSE_X86
#include <immintrin.h>

CONDENSE_TARGET_AVX2 void condense_q4_unpack__avx2(const condense_q4_packed *w, size_t panel, size_t k0, size_t kc,
                                                   float *buf) {
    const uint8_t *nb = w->nib + (panel * w->k16 + k0) * 8;
    for (size_t kk = 0; kk < kc; kk++) {
        const float *s = w->pscale + (panel * w->groups + (k0 + kk) / w->group) * 16;
        const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(nb + kk * 8)));
        const __m256i lo = _mm256_srai_epi32(_mm256_slli_epi32(v, 28), 28);
        const __m256i hi = _mm256_srai_epi32(_mm256_slli_epi32(v, 24), 28);
        _mm256_store_ps(buf + kk * 16, _mm256_mul_ps(_mm256_cvtepi32_ps(lo), _mm256_loadu_ps(s)));
        _mm256_store_ps(buf + kk * 16 + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(hi), _mm256_loadu_ps(s + 8)));
    }
}
#endif
