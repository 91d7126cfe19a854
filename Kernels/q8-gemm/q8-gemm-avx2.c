/* int8 micro-kernel 4×16 for AVX2 without VNNI. The obvious vpmaddubsw (u8×s8 pairs summed into
 * int16) saturates: 255·127 + 255·127 = 64 770 > 32 767, a silent accuracy loss other libraries
 * shipped. Here weights are packed as int16 pairs and activations widened to int16, so
 * vpmaddwd sums each pair straight into int32: no intermediate can overflow. */
#include "internal.h"

#if CONDENSE_X86
#include <immintrin.h>
#include <string.h>
#include "vecmath-avx2.h"

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
    const __m256i m0 = tail_mask_256(nv), m1 = tail_mask_256(nv - 8);
    if (ep->c) {
        _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
            _mm256_maskstore_epi32(ep->c + (size_t)i * ep->ldc, m0, c0[i]);
            _mm256_maskstore_epi32(ep->c + (size_t)i * ep->ldc + 8, m1, c1[i]);
        }
        return;
    }
    const __m256i ws0 = _mm256_maskload_epi32(ep->wsum, m0), ws1 = _mm256_maskload_epi32(ep->wsum + 8, m1);
    const __m256 sw0 = _mm256_maskload_ps(ep->sw, m0), sw1 = _mm256_maskload_ps(ep->sw + 8, m1);
    const __m256 bz0 = ep->bias ? _mm256_maskload_ps(ep->bias, m0) : _mm256_setzero_ps();
    const __m256 bz1 = ep->bias ? _mm256_maskload_ps(ep->bias + 8, m1) : _mm256_setzero_ps();
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
        const __m256i z = _mm256_set1_epi32(ep->zx[i]);
        const __m256 sx = _mm256_set1_ps(ep->sx[i]);
        __m256 f0 = _mm256_cvtepi32_ps(_mm256_sub_epi32(c0[i], _mm256_mullo_epi32(z, ws0)));
        __m256 f1 = _mm256_cvtepi32_ps(_mm256_sub_epi32(c1[i], _mm256_mullo_epi32(z, ws1)));
        f0 = act_256(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(sx, sw0), f0), bz0), ep->act);
        f1 = act_256(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(sx, sw1), f1), bz1), ep->act);
        _mm256_maskstore_ps(ep->y + (size_t)i * ep->ldy, m0, f0);
        _mm256_maskstore_ps(ep->y + (size_t)i * ep->ldy + 8, m1, f1);
    }
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
