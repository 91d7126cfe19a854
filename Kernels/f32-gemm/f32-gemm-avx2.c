/* f32 GEMM micro-kernel 6x16 for AVX2+FMA: 12 ymm accumulators, B panel rows of 16 floats. */
#include "internal.h"

#if CONDENSE_X86
#include <immintrin.h>
#include "vecmath-avx2.h"

CONDENSE_INLINE CONDENSE_TARGET_AVX2 void ukernel_256(const int MR, int nv, size_t kc,
                                                       const float *a, size_t lda, const float *b,
                                                       float *c, size_t ldc, int flags, const float *bias,
                                                       int act) {
    __m256 c0[6], c1[6];
    _Pragma("clang loop unroll(full)")
    for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm256_setzero_ps();
    size_t k = 0;
    if (MR <= 2) {
        __m256 e0[2], e1[2];
        _Pragma("clang loop unroll(full)")
        for (int i = 0; i < MR; i++) e0[i] = e1[i] = _mm256_setzero_ps();
        for (; k + 2 <= kc; k += 2) {
            const float *bk = b + k * 16;
            __m256 b0 = _mm256_load_ps(bk), b1 = _mm256_load_ps(bk + 8);
            __m256 b2 = _mm256_load_ps(bk + 16), b3 = _mm256_load_ps(bk + 24);
            _Pragma("clang loop unroll(full)")
            for (int i = 0; i < MR; i++) {
                __m256 ai = _mm256_broadcast_ss(a + i * lda + k);
                __m256 aj = _mm256_broadcast_ss(a + i * lda + k + 1);
                c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
                c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
                e0[i] = _mm256_fmadd_ps(aj, b2, e0[i]);
                e1[i] = _mm256_fmadd_ps(aj, b3, e1[i]);
            }
        }
        _Pragma("clang loop unroll(full)")
        for (int i = 0; i < MR; i++) {
            c0[i] = _mm256_add_ps(c0[i], e0[i]);
            c1[i] = _mm256_add_ps(c1[i], e1[i]);
        }
    }
    for (; k < kc; k++) {
        _mm_prefetch((const char *)(b + k * 16 + CONDENSE_F32_GEMM_PREFETCH), _MM_HINT_T0);
        __m256 b0 = _mm256_load_ps(b + k * 16), b1 = _mm256_load_ps(b + k * 16 + 8);
        _Pragma("clang loop unroll(full)")
        for (int i = 0; i < MR; i++) {
            __m256 ai = _mm256_broadcast_ss(a + i * lda + k);
            c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
        }
    }
    __m256i m0 = tail_mask_256(nv), m1 = tail_mask_256(nv - 8);
    int final = flags & CONDENSE_UK_FINAL;
    __m256 bias0 = _mm256_setzero_ps(), bias1 = _mm256_setzero_ps();
    if (final && bias) {
        bias0 = _mm256_maskload_ps(bias, m0);
        bias1 = _mm256_maskload_ps(bias + 8, m1);
    }
    _Pragma("clang loop unroll(full)")
    for (int i = 0; i < MR; i++) {
        float *ci = c + i * ldc;
        if (flags & CONDENSE_UK_ACCUMULATE) {
            c0[i] = _mm256_add_ps(c0[i], _mm256_maskload_ps(ci, m0));
            c1[i] = _mm256_add_ps(c1[i], _mm256_maskload_ps(ci + 8, m1));
        }
        if (final) {
            c0[i] = act_256(_mm256_add_ps(c0[i], bias0), act);
            c1[i] = act_256(_mm256_add_ps(c1[i], bias1), act);
        }
        _mm256_maskstore_ps(ci, m0, c0[i]);
        _mm256_maskstore_ps(ci + 8, m1, c1[i]);
    }
}

CONDENSE_TARGET_AVX2 void condense_f32_gemm_ukernel_6x16__avx2(int mr, int nv, size_t kc,
                                                               const float *a, size_t lda,
                                                               const float *b, float *c, size_t ldc, int flags,
                                                               const float *bias, int act) {
#define UK_CASE(R) case R: ukernel_256(R, nv, kc, a, lda, b, c, ldc, flags, bias, act); break;
    switch (mr) {
        UK_CASE(1) UK_CASE(2) UK_CASE(3) UK_CASE(4) UK_CASE(5) UK_CASE(6)
        default: break;
    }
#undef UK_CASE
}

CONDENSE_TARGET_AVX2 void condense_f32_activation__avx2(float *y, size_t n, int act) {
    if (act == CONDENSE_ACT_NONE) return;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, act_256(_mm256_loadu_ps(y + i), act));
    if (i < n) {
        __m256i m = tail_mask_256((int)(n - i));
        _mm256_maskstore_ps(y + i, m, act_256(_mm256_maskload_ps(y + i, m), act));
    }
}
#endif
