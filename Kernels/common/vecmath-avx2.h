/* Vector math for the AVX2 kernels: exp on non-positive inputs, exact GELU, epilogue activations.
 * Shared by every kernel family so the epilogue is the same everywhere. */
#ifndef CONDENSE_VECMATH_AVX2_H
#define CONDENSE_VECMATH_AVX2_H
#include "internal.h"
#if CONDENSE_X86
#include <immintrin.h>

/* exp(v) for v <= 0; see the AVX-512 file for the method. 2^n is built in the exponent field. */
CONDENSE_INLINE CONDENSE_TARGET_AVX2 __m256 exp_nonpos_256(__m256 v) {
    v = _mm256_max_ps(v, _mm256_set1_ps(-87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(v, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), v);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

CONDENSE_INLINE CONDENSE_TARGET_AVX2 __m256 gelu_256(__m256 x) {
    __m256 absx = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    __m256 z = _mm256_mul_ps(absx, _mm256_set1_ps(0.70710678118654752f));
    __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f),
                             _mm256_fmadd_ps(z, _mm256_set1_ps(0.3275911f), _mm256_set1_ps(1.0f)));
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    p = _mm256_mul_ps(p, t);
    __m256 pe = _mm256_mul_ps(p, exp_nonpos_256(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), z), z)));
    __m256 pos = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ);
    __m256 onep = _mm256_blendv_ps(pe, _mm256_sub_ps(_mm256_set1_ps(2.0f), pe), pos);
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), onep);
}

CONDENSE_INLINE CONDENSE_TARGET_AVX2 __m256 act_256(__m256 v, int act) {
    if (act == CONDENSE_ACT_RELU) return _mm256_max_ps(_mm256_setzero_ps(), v);
    if (act == CONDENSE_ACT_GELU) return gelu_256(v);
    return v;
}

CONDENSE_INLINE CONDENSE_TARGET_AVX2 __m256i tail_mask_256(int count) {
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), idx);
}

#endif
#endif
