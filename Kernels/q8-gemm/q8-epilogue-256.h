/* The int8 epilogue of a 16-column tile on 256-bit vectors, shared by the AVX2 and 256-bit VNNI
 * kernels: raw int32 accumulators (ep->c) or dequantize − zero point · column sums, scales, bias
 * and activation. c0/c1 hold columns 0–7 and 8–15 of MR rows. */
#ifndef CONDENSE_Q8_EPILOGUE_256_H
#define CONDENSE_Q8_EPILOGUE_256_H
#include "internal.h"
#include <immintrin.h>
#include "vecmath-avx2.h"

CONDENSE_INLINE CONDENSE_TARGET_AVX2 void q8_epilogue_256(const int MR, int nv, const __m256i *c0, const __m256i *c1,
                                                           const condense_q8_epilogue *ep) {
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
#endif
