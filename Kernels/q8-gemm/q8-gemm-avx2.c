/* int8 micro-kernel 4×16 for AVX2 without VNNI. The obvious vpmaddubsw (u8×s8 pairs summed into
 * int16) saturates: 255·127 + 255·127 = 64 770 > 32 767, a silent accuracy loss other libraries
 * shipped. Here weights are packed as int16 pairs and activations widened to int16, so
 * vpmaddwd sums each pair straight into int32: no intermediate can overflow. */
#include "internal.h"

#if CONDENSE_X86
#include <immintrin.h>
#include <string.h>
#include "vecmath-avx2.h"
#include "q8-epilogue-256.h"

CONDENSE_INLINE CONDENSE_TARGET_AVX2 void q8_256(const int MR, int nv, size_t kq, const uint8_t *a,
                                                  size_t lda, const int16_t *b,
                                                  const condense_q8_epilogue *ep) {
    __m256i c0[4], c1[4];
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm256_setzero_si256();
    /* kq counts 4-byte steps of X; the packed B holds two int16-pair steps per quad. */
    for (size_t q = 0; q < kq; q++) {
        const int16_t *bq = b + q * 64; /* 2 pair-steps × 16 channels × 2 */
        const __m256i b00 = _mm256_load_si256((const __m256i *)bq);
        const __m256i b01 = _mm256_load_si256((const __m256i *)(bq + 16));
        const __m256i b10 = _mm256_load_si256((const __m256i *)(bq + 32));
        const __m256i b11 = _mm256_load_si256((const __m256i *)(bq + 48));
        _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
            const uint8_t *ai = a + (size_t)i * lda + 4 * q;
            const int32_t p0 = (int32_t)ai[0] | ((int32_t)ai[1] << 16);
            const int32_t p1 = (int32_t)ai[2] | ((int32_t)ai[3] << 16);
            const __m256i a0 = _mm256_set1_epi32(p0), a1 = _mm256_set1_epi32(p1);
            c0[i] = _mm256_add_epi32(c0[i], _mm256_madd_epi16(a0, b00));
            c1[i] = _mm256_add_epi32(c1[i], _mm256_madd_epi16(a0, b01));
            c0[i] = _mm256_add_epi32(c0[i], _mm256_madd_epi16(a1, b10));
            c1[i] = _mm256_add_epi32(c1[i], _mm256_madd_epi16(a1, b11));
        }
    }
    q8_epilogue_256(MR, nv, c0, c1, ep);
}

CONDENSE_TARGET_AVX2 void condense_q8_ukernel_4x16__avx2(int mr, int nv, size_t kq,
                                                         const uint8_t *a, size_t lda,
                                                         const void *b, const condense_q8_epilogue *ep) {
    switch (mr) {
    case 1: q8_256(1, nv, kq, a, lda, (const int16_t *)b, ep); break;
    case 2: q8_256(2, nv, kq, a, lda, (const int16_t *)b, ep); break;
    case 3: q8_256(3, nv, kq, a, lda, (const int16_t *)b, ep); break;
    case 4: q8_256(4, nv, kq, a, lda, (const int16_t *)b, ep); break;
    default: break;
    }
}
#endif
