


/* f32 GEMM micro-kernel 12x32 for AVX-512: 24 zmm accumulators, B panel rows of 32 floats. */
#include "internal.h"

#if CONDENSE_X86
#include <immintrin.h>
#include "vecmath-avx512.h"

CONDENSE_INLINE CONDENSE_TARGET_AVX512 void ukernel_512(const int MR, int nv, size_t kc,
                                                         const float *a, size_t lda, const float *b,
                                                         float *c, size_t ldc, int flags, const float *bias,
                                                         int act) {
    __m512 c0[12], c1[12];
    _Pragma("clang loop unroll(full)")
    for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    size_t k = 0;
    if (MR <= 2) {
        /* Few rows: a second set of accumulators hides the FMA latency. */
        __m512 e0[2], e1[2];
        _Pragma("clang loop unroll(full)")
        for (int i = 0; i < MR; i++) e0[i] = e1[i] = _mm512_setzero_ps();
        for (; k + 2 <= kc; k += 2) {
            const float *bk = b + k * 32;
            __m512 b0 = _mm512_load_ps(bk), b1 = _mm512_load_ps(bk + 16);
            __m512 b2 = _mm512_load_ps(bk + 32), b3 = _mm512_load_ps(bk + 48);
            _Pragma("clang loop unroll(full)")
            for (int i = 0; i < MR; i++) {
                __m512 ai = _mm512_set1_ps(a[i * lda + k]);
                __m512 aj = _mm512_set1_ps(a[i * lda + k + 1]);
                c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
                c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
                e0[i] = _mm512_fmadd_ps(aj, b2, e0[i]);
                e1[i] = _mm512_fmadd_ps(aj, b3, e1[i]);
            }
        }
        _Pragma("clang loop unroll(full)")
        for (int i = 0; i < MR; i++) {
            c0[i] = _mm512_add_ps(c0[i], e0[i]);
            c1[i] = _mm512_add_ps(c1[i], e1[i]);
        }
    }
    for (; k < kc; k++) {
        _mm_prefetch((const char *)(b + k * 32 + CONDENSE_F32_GEMM_PREFETCH), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + k * 32 + CONDENSE_F32_GEMM_PREFETCH + 16), _MM_HINT_T0);
        __m512 b0 = _mm512_load_ps(b + k * 32), b1 = _mm512_load_ps(b + k * 32 + 16);
        _Pragma("clang loop unroll(full)")
        for (int i = 0; i < MR; i++) {
            __m512 ai = _mm512_set1_ps(a[i * lda + k]);
            c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
        }
    }
    __mmask16 m0 = nv >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nv) - 1);
    __mmask16 m1 = nv >= 32 ? (__mmask16)0xFFFF : nv <= 16 ? 0 : (__mmask16)((1u << (nv - 16)) - 1);
    int final = flags & CONDENSE_UK_FINAL;
    __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();
    if (final && bias) {
        bias0 = _mm512_maskz_loadu_ps(m0, bias);
        bias1 = _mm512_maskz_loadu_ps(m1, bias + 16);
    }
    _Pragma("clang loop unroll(full)")
    for (int i = 0; i < MR; i++) {
        float *ci = c + i * ldc;
        if (flags & CONDENSE_UK_ACCUMULATE) {
            c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, ci));
            c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, ci + 16));
        }
        if (final) {
            c0[i] = act_512(_mm512_add_ps(c0[i], bias0), act);
            c1[i] = act_512(_mm512_add_ps(c1[i], bias1), act);
        }
        _mm512_mask_storeu_ps(ci, m0, c0[i]);
        _mm512_mask_storeu_ps(ci + 16, m1, c1[i]);
    }
}

CONDENSE_TARGET_AVX512 void condense_f32_gemm_ukernel_12x32__avx512(int mr, int nv, size_t kc,
                                                                    const float *a, size_t lda,
                                                                    const float *b, float *c, size_t ldc, int flags,
                                                                    const float *bias, int act) {
#define UK_CASE(R) case R: ukernel_512(R, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    switch (mr) {
        UK_CASE(1) UK_CASE(2) UK_CASE(3) UK_CASE(4) UK_CASE(5) UK_CASE(6)
        UK_CASE(7) UK_CASE(8) UK_CASE(9) UK_CASE(10) UK_CASE(11) UK_CASE(12)
        default: break;
    }
#undef UK_CASE
}

CONDENSE_TARGET_AVX512 void condense_f32_activation__avx512(float *y, size_t n, int act) {
    if (act == CONDENSE_ACT_NONE) return;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, act_512(_mm512_loadu_ps(y + i), act));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, act_512(_mm512_maskz_loadu_ps(m, y + i), act));
    }
}
#endif
