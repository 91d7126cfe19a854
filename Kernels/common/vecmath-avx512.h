/* Vector math for the AVX-512 kernels: exp on non-positive inputs, exact GELU, epilogue activations.
 * Shared by every kernel family so the epilogue is the same everywhere. */
#ifndef CONDENSE_VECMATH_AVX512_H
#define CONDENSE_VECMATH_AVX512_H
#include "internal.h"
#if CONDENSE_X86
#include <immintrin.h>

/* exp(v) for v <= 0 (the only use here, inside erf): range reduction to 2^n · e^r, |r| <= ln2/2,
 * degree-6 Taylor polynomial (relative error < 2e-7 on that range). */
CONDENSE_INLINE CONDENSE_TARGET_AVX512 __m512 exp_nonpos_512(__m512 v) {
    v = _mm512_max_ps(v, _mm512_set1_ps(-87.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), v);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* GELU(x) = 0.5·x·(1 + erf(x/√2)) with Abramowitz–Stegun 7.1.26 for erf (|error| < 1.5e-7).
 * For x < 0, 1 + erf(x/√2) = P(t)·e^(−z²) exactly in this form, so there is no cancellation. */
CONDENSE_INLINE CONDENSE_TARGET_AVX512 __m512 gelu_512(__m512 x) {
    __m512 z = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(0.70710678118654752f));
    __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f),
                             _mm512_fmadd_ps(z, _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.0f)));
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    p = _mm512_mul_ps(p, t);
    __m512 pe = _mm512_mul_ps(p, exp_nonpos_512(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), z), z)));
    __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);
    __m512 onep = _mm512_mask_sub_ps(pe, pos, _mm512_set1_ps(2.0f), pe);
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), onep);
}

CONDENSE_INLINE CONDENSE_TARGET_AVX512 __m512 act_512(__m512 v, int act) {
    /* max(0, v) returns its second operand for NaN, so NaN propagates. */
    if (act == CONDENSE_ACT_RELU) return _mm512_max_ps(_mm512_setzero_ps(), v);
    if (act == CONDENSE_ACT_GELU) return gelu_512(v);
    return v;
}

#endif
#endif
