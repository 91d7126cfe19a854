/* Half-precision widen micro-kernel 6x16 for AVX2 + F16C: per K step the 16 weights of the panel
 * become two ymm of f32 (f16: vcvtph2ps; bf16 pairs: a shift and a mask give columns k and k+1),
 * then the f32 kernel's FMAs. */
#include "internal.h"

#if CONDENSE_X86
#include <immintrin.h>
#include "vecmath-avx2.h"

/* One column k of X against a widened K step of the panel: c += x[i][k] · (w0 | w1), MR rows. */
CONDENSE_INLINE CONDENSE_TARGET_AVX2 void column_256(const int MR, const float *a, size_t lda, size_t k, __m256 w0,
                                                     __m256 w1, __m256 *c0, __m256 *c1) {
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
        const __m256 ak = _mm256_broadcast_ss(a + (size_t)i * lda + k);
        c0[i] = _mm256_fmadd_ps(ak, w0, c0[i]);
        c1[i] = _mm256_fmadd_ps(ak, w1, c1[i]);
    }
}

CONDENSE_INLINE CONDENSE_TARGET_AVX2 void widen_256(const int MR, const int BF, int nv, size_t kc, const float *a,
                                                     size_t lda, const uint16_t *b, float *c, size_t ldc, int flags,
                                                     const float *bias, int act) {
    __m256 c0[6], c1[6];
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm256_setzero_ps();
    if (BF) {
        const __m256i hi = _mm256_set1_epi32((int)0xFFFF0000u);
        for (size_t k = 0; k < kc; k += 2) {
            const uint16_t *bk = b + k * 16;
            _mm_prefetch((const char *)(bk + 2048), _MM_HINT_T0);
            /* Column k, then column k + 1: 12 accumulators + 2 weight vectors + a broadcast fit
             * the 16 ymm registers (all four widened vectors at once spilled, at half speed). */
            const __m256i v0 = _mm256_load_si256((const __m256i *)bk), v1 = _mm256_load_si256((const __m256i *)(bk + 16));
            column_256(MR, a, lda, k, _mm256_castsi256_ps(_mm256_slli_epi32(v0, 16)),
                       _mm256_castsi256_ps(_mm256_slli_epi32(v1, 16)), c0, c1);
            if (k + 1 == kc) break; /* odd K: the pair's second weight is padding; X has no column k + 1 */
            /* Reload the pairs (L1) rather than keep them live: the empty asm hides that bk is
             * unchanged, so the compiler cannot hold v0/v1 across the first half. */
            const uint16_t *bk2 = bk;
            __asm__("" : "+r"(bk2));
            const __m256i u0 = _mm256_load_si256((const __m256i *)bk2), u1 = _mm256_load_si256((const __m256i *)(bk2 + 16));
            column_256(MR, a, lda, k + 1, _mm256_castsi256_ps(_mm256_and_si256(u0, hi)),
                       _mm256_castsi256_ps(_mm256_and_si256(u1, hi)), c0, c1);
        }
    } else {
        for (size_t k = 0; k < kc; k++) {
            const uint16_t *bk = b + k * 16;
            _mm_prefetch((const char *)(bk + 2048), _MM_HINT_T0);
            column_256(MR, a, lda, k, _mm256_cvtph_ps(_mm_load_si128((const __m128i *)bk)),
                       _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(bk + 8))), c0, c1);
        }
    }
    const int final = flags & CONDENSE_UK_FINAL;
    float bb[16] = {0};
    if (final && bias) for (int j = 0; j < nv; j++) bb[j] = bias[j];
    const __m256 bias0 = _mm256_loadu_ps(bb), bias1 = _mm256_loadu_ps(bb + 8);
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
        float *ci = c + (size_t)i * ldc;
        float t[16];
        _mm256_storeu_ps(t, c0[i]);
        _mm256_storeu_ps(t + 8, c1[i]);
        if (flags & CONDENSE_UK_ACCUMULATE) for (int j = 0; j < nv; j++) t[j] += ci[j];
        if (final) {
            _mm256_storeu_ps(t, act_256(_mm256_add_ps(_mm256_loadu_ps(t), bias0), act));
            _mm256_storeu_ps(t + 8, act_256(_mm256_add_ps(_mm256_loadu_ps(t + 8), bias1), act));
        }
        if (nv == 16) {
            _mm256_storeu_ps(ci, _mm256_loadu_ps(t));
            _mm256_storeu_ps(ci + 8, _mm256_loadu_ps(t + 8));
        } else {
            for (int j = 0; j < nv; j++) ci[j] = t[j];
        }
    }
}

CONDENSE_TARGET_AVX2 void condense_half_widen_6x16__avx2(int type, int mr, int nv, size_t kc, const void *a,
                                                         size_t lda, const uint16_t *b, float *c, size_t ldc,
                                                         int flags, const float *bias, int act) {
    const int bf = type == CONDENSE_HALF_BF16;
#define UK_CASE(R) case R: if (bf) widen_256(R, 1, nv, kc, a, lda, b, c, ldc, flags, bias, act); \
                           else widen_256(R, 0, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    switch (mr) {
        UK_CASE(1) UK_CASE(2) UK_CASE(3) UK_CASE(4) UK_CASE(5) UK_CASE(6)
        default: break;
    }
#undef UK_CASE
}
#endif
