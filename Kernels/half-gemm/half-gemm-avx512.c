/* Half-precision micro-kernels 12x32 for AVX-512: the widen kernel (exact f32, as the AVX2 one,
 * 32 columns per K step) and the bf16 dot kernel: per pair of K columns, two loads of 16 weight
 * pairs and, per row of X, one broadcast bf16 pair and two vdpbf16ps (each 32 multiply-adds:
 * twice an f32 FMA's work at the same issue rate on Zen 5). */
#include "internal.h"

#if CONDENSE_X86
#include <immintrin.h>
#include "vecmath-avx512.h"

#define CONDENSE_TARGET_AVX512BF16 \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma")))

/* The epilogue both kernels share: accumulate, bias, activation, masked store of nv ≤ 32. */
#define EPILOGUE_512()                                                                                   \
    const __mmask16 m0 = nv >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nv) - 1);                    \
    const __mmask16 m1 = nv >= 32 ? (__mmask16)0xFFFF : nv <= 16 ? 0 : (__mmask16)((1u << (nv - 16)) - 1); \
    const int final = flags & CONDENSE_UK_FINAL;                                                         \
    __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();                                     \
    if (final && bias) {                                                                                 \
        bias0 = _mm512_maskz_loadu_ps(m0, bias);                                                         \
        bias1 = _mm512_maskz_loadu_ps(m1, bias + 16);                                                    \
    }                                                                                                    \
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {                                    \
        float *ci = c + (size_t)i * ldc;                                                                 \
        if (flags & CONDENSE_UK_ACCUMULATE) {                                                            \
            c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, ci));                                 \
            c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, ci + 16));                            \
        }                                                                                                \
        if (final) {                                                                                     \
            c0[i] = act_512(_mm512_add_ps(c0[i], bias0), act);                                           \
            c1[i] = act_512(_mm512_add_ps(c1[i], bias1), act);                                           \
        }                                                                                                \
        _mm512_mask_storeu_ps(ci, m0, c0[i]);                                                            \
        _mm512_mask_storeu_ps(ci + 16, m1, c1[i]);                                                       \
    }

/* One column k of X against a widened K step of the panel: c += x[i][k] · (w0 | w1), MR rows. */
CONDENSE_INLINE CONDENSE_TARGET_AVX512 void column_512(const int MR, const float *a, size_t lda, size_t k, __m512 w0,
                                                       __m512 w1, __m512 *c0, __m512 *c1) {
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
        const __m512 ak = _mm512_set1_ps(a[(size_t)i * lda + k]);
        c0[i] = _mm512_fmadd_ps(ak, w0, c0[i]);
        c1[i] = _mm512_fmadd_ps(ak, w1, c1[i]);
    }
}

CONDENSE_INLINE CONDENSE_TARGET_AVX512 void widen_512(const int MR, const int BF, int nv, size_t kc, const float *a,
                                                       size_t lda, const uint16_t *b, float *c, size_t ldc, int flags,
                                                       const float *bias, int act) {
    __m512 c0[12], c1[12];
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    if (BF) {
        const __m512i hi = _mm512_set1_epi32((int)0xFFFF0000u);
        for (size_t k = 0; k < kc; k += 2) {
            const uint16_t *bk = b + k * 32;
            _mm_prefetch((const char *)(bk + 4096), _MM_HINT_T0);
            _mm_prefetch((const char *)(bk + 4096 + 32), _MM_HINT_T0);
            const __m512i v0 = _mm512_load_si512(bk), v1 = _mm512_load_si512(bk + 32);
            column_512(MR, a, lda, k, _mm512_castsi512_ps(_mm512_slli_epi32(v0, 16)),
                       _mm512_castsi512_ps(_mm512_slli_epi32(v1, 16)), c0, c1);
            if (k + 1 == kc) break; /* odd K: the pair's second weight is padding; X has no column k + 1 */
            column_512(MR, a, lda, k + 1, _mm512_castsi512_ps(_mm512_and_si512(v0, hi)),
                       _mm512_castsi512_ps(_mm512_and_si512(v1, hi)), c0, c1);
        }
    } else {
        for (size_t k = 0; k < kc; k++) {
            const uint16_t *bk = b + k * 32;
            _mm_prefetch((const char *)(bk + 4096), _MM_HINT_T0);
            column_512(MR, a, lda, k, _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)bk)),
                       _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(bk + 16))), c0, c1);
        }
    }
    EPILOGUE_512()
}

CONDENSE_TARGET_AVX512 void condense_half_widen_12x32__avx512(int type, int mr, int nv, size_t kc, const void *a,
                                                              size_t lda, const uint16_t *b, float *c, size_t ldc,
                                                              int flags, const float *bias, int act) {
    const int bf = type == CONDENSE_HALF_BF16;
#define UK_CASE(R) case R: if (bf) widen_512(R, 1, nv, kc, a, lda, b, c, ldc, flags, bias, act); \
                           else widen_512(R, 0, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    switch (mr) {
        UK_CASE(1) UK_CASE(2) UK_CASE(3) UK_CASE(4) UK_CASE(5) UK_CASE(6)
        UK_CASE(7) UK_CASE(8) UK_CASE(9) UK_CASE(10) UK_CASE(11) UK_CASE(12)
        default: break;
    }
#undef UK_CASE
}

/* a: bf16 rows of X (lda in elements, padded to even); kc columns, rounded up to whole pairs
 * (the padding of X and W is zero). Few rows: two accumulator sets hide vdpbf16ps latency. */
CONDENSE_INLINE CONDENSE_TARGET_AVX512BF16 void dot_512(const int MR, int nv, size_t kc, const uint16_t *a,
                                                         size_t lda, const uint16_t *b, float *c, size_t ldc,
                                                         int flags, const float *bias, int act) {
    __m512 c0[12], c1[12];
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    const size_t pairs = (kc + 1) / 2;
    size_t q = 0;
    if (MR <= 2) {
        __m512 e0[2], e1[2];
        _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) e0[i] = e1[i] = _mm512_setzero_ps();
        for (; q + 2 <= pairs; q += 2) {
            const uint16_t *bq = b + q * 64;
            _mm_prefetch((const char *)(bq + 4096), _MM_HINT_T0);
            _mm_prefetch((const char *)(bq + 4096 + 32), _MM_HINT_T0);
            _mm_prefetch((const char *)(bq + 4096 + 64), _MM_HINT_T0);
            _mm_prefetch((const char *)(bq + 4096 + 96), _MM_HINT_T0);
            const __m512bh w0 = (__m512bh)_mm512_load_si512(bq), w1 = (__m512bh)_mm512_load_si512(bq + 32);
            const __m512bh w2 = (__m512bh)_mm512_load_si512(bq + 64), w3 = (__m512bh)_mm512_load_si512(bq + 96);
            _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
                uint32_t xa, xb;
                __builtin_memcpy(&xa, a + (size_t)i * lda + 2 * q, 4);
                __builtin_memcpy(&xb, a + (size_t)i * lda + 2 * q + 2, 4);
                const __m512bh pa = (__m512bh)_mm512_set1_epi32((int)xa), pb = (__m512bh)_mm512_set1_epi32((int)xb);
                c0[i] = _mm512_dpbf16_ps(c0[i], pa, w0);
                c1[i] = _mm512_dpbf16_ps(c1[i], pa, w1);
                e0[i] = _mm512_dpbf16_ps(e0[i], pb, w2);
                e1[i] = _mm512_dpbf16_ps(e1[i], pb, w3);
            }
        }
        _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
            c0[i] = _mm512_add_ps(c0[i], e0[i]);
            c1[i] = _mm512_add_ps(c1[i], e1[i]);
        }
    }
    for (; q < pairs; q++) {
        const uint16_t *bq = b + q * 64;
        _mm_prefetch((const char *)(bq + 4096), _MM_HINT_T0);
        _mm_prefetch((const char *)(bq + 4096 + 32), _MM_HINT_T0);
        const __m512bh w0 = (__m512bh)_mm512_load_si512(bq), w1 = (__m512bh)_mm512_load_si512(bq + 32);
        _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
            uint32_t xa;
            __builtin_memcpy(&xa, a + (size_t)i * lda + 2 * q, 4);
            const __m512bh pa = (__m512bh)_mm512_set1_epi32((int)xa);
            c0[i] = _mm512_dpbf16_ps(c0[i], pa, w0);
            c1[i] = _mm512_dpbf16_ps(c1[i], pa, w1);
        }
    }
    EPILOGUE_512()
}

CONDENSE_TARGET_AVX512BF16 void condense_bf16_dot_12x32__avx512bf16(int type, int mr, int nv, size_t kc, const void *a,
                                                                    size_t lda, const uint16_t *b, float *c,
                                                                    size_t ldc, int flags, const float *bias, int act) {
    (void)type;
#define UK_CASE(R) case R: dot_512(R, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    switch (mr) {
        UK_CASE(1) UK_CASE(2) UK_CASE(3) UK_CASE(4) UK_CASE(5) UK_CASE(6)
        UK_CASE(7) UK_CASE(8) UK_CASE(9) UK_CASE(10) UK_CASE(11) UK_CASE(12)
        default: break;
    }
#undef UK_CASE
}

CONDENSE_TARGET_AVX512BF16 void condense_bf16_round_rows__avx512bf16(const float *x, size_t m, size_t k, size_t lda,
                                                                     uint16_t *xb, size_t kstored) {
    for (size_t i = 0; i < m; i++) {
        const float *src = x + i * lda;
        uint16_t *dst = xb + i * kstored;
        size_t kk = 0;
        for (; kk + 16 <= k; kk += 16)
            _mm256_storeu_si256((__m256i *)(dst + kk), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + kk)));
        if (kk < k) {
            const __mmask16 mk = (__mmask16)((1u << (k - kk)) - 1);
            const __m256i v = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mk, src + kk));
            _mm256_mask_storeu_epi16(dst + kk, mk, v);
        }
        for (size_t p = k; p < kstored; p++) dst[p] = 0;
    }
}
#endif
