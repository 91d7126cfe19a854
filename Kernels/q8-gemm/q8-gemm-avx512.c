/* int8 micro-kernel 12×32 with AVX-512 VNNI: vpdpbusd multiplies 4 u8 activations by 4 s8 weights
 * and adds the 4 products into each int32 lane, 64 multiply-adds per instruction. */
#include "internal.h"

#if CONDENSE_X86
#include <immintrin.h>
#include <string.h>
#include "vecmath-avx512.h"

#define CONDENSE_TARGET_VNNI512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")))

CONDENSE_INLINE CONDENSE_TARGET_VNNI512 void q8_512(const int MR, int nv, size_t kq, const uint8_t *a,
                                                     size_t lda, const int8_t *b,
                                                     const condense_q8_epilogue *ep) {
    __m512i c0[12], c1[12];
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm512_setzero_si512();
    for (size_t q = 0; q < kq; q++) {
        _mm_prefetch((const char *)(b + q * 128 + 16384), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + q * 128 + 16384 + 64), _MM_HINT_T0);
        const __m512i b0 = _mm512_load_si512(b + q * 128), b1 = _mm512_load_si512(b + q * 128 + 64);
        _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
            int32_t quad;
            memcpy(&quad, a + (size_t)i * lda + 4 * q, 4);
            const __m512i av = _mm512_set1_epi32(quad);
            c0[i] = _mm512_dpbusd_epi32(c0[i], av, b0);
            c1[i] = _mm512_dpbusd_epi32(c1[i], av, b1);
        }
    }
    const __mmask16 m0 = nv >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nv) - 1);
    const __mmask16 m1 = nv >= 32 ? (__mmask16)0xFFFF : nv <= 16 ? 0 : (__mmask16)((1u << (nv - 16)) - 1);
    if (ep->c) {
        _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
            _mm512_mask_storeu_epi32(ep->c + (size_t)i * ep->ldc, m0, c0[i]);
            _mm512_mask_storeu_epi32(ep->c + (size_t)i * ep->ldc + 16, m1, c1[i]);
        }
        return;
    }
    /* Dequantize in registers: (acc − zx·wsum) → f32, × sx·sw, + bias, activation. */
    const __m512i ws0 = _mm512_maskz_loadu_epi32(m0, ep->wsum), ws1 = _mm512_maskz_loadu_epi32(m1, ep->wsum + 16);
    const __m512 sw0 = _mm512_maskz_loadu_ps(m0, ep->sw), sw1 = _mm512_maskz_loadu_ps(m1, ep->sw + 16);
    const __m512 bz0 = ep->bias ? _mm512_maskz_loadu_ps(m0, ep->bias) : _mm512_setzero_ps();
    const __m512 bz1 = ep->bias ? _mm512_maskz_loadu_ps(m1, ep->bias + 16) : _mm512_setzero_ps();
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
        const __m512i z = _mm512_set1_epi32(ep->zx[i]);
        const __m512 sx = _mm512_set1_ps(ep->sx[i]);
        __m512 f0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(c0[i], _mm512_mullo_epi32(z, ws0)));
        __m512 f1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(c1[i], _mm512_mullo_epi32(z, ws1)));
        f0 = act_512(_mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(sx, sw0), f0), bz0), ep->act);
        f1 = act_512(_mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(sx, sw1), f1), bz1), ep->act);
        _mm512_mask_storeu_ps(ep->y + (size_t)i * ep->ldy, m0, f0);
        _mm512_mask_storeu_ps(ep->y + (size_t)i * ep->ldy + 16, m1, f1);
    }
}

CONDENSE_TARGET_VNNI512 void condense_q8_ukernel_12x32__avx512vnni(int mr, int nv, size_t kq,
                                                                   const uint8_t *a, size_t lda,
                                                                   const void *b,
                                                                   const condense_q8_epilogue *ep) {
#define Q8_CASE(R) case R: q8_512(R, nv, kq, a, lda, (const int8_t *)b, ep); break;
    switch (mr) {
        Q8_CASE(1) Q8_CASE(2) Q8_CASE(3) Q8_CASE(4) Q8_CASE(5) Q8_CASE(6)
        Q8_CASE(7) Q8_CASE(8) Q8_CASE(9) Q8_CASE(10) Q8_CASE(11) Q8_CASE(12)
        default: break;
    }
#undef Q8_CASE
}

/* Per-row u8 quantization, vectorised: the same rules as the scalar version (range from the
 * finite values and 0; q = rint(x · (1/s)) + z clamped to 0…255; NaN → z), so every ISA gives
 * the same bytes. */
CONDENSE_TARGET_AVX512 static void quantize_row_512(const float *xi, size_t k, uint8_t *qi, size_t k4,
                                                    float *sxo, int32_t *zxo, const float *ss,
                                                    const int32_t *sz) {
    float s;
    int32_t z;
    if (ss) {
        s = *ss;
        z = *sz;
    } else {
        __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
        for (size_t c = 0; c < k; c += 16) {
            const __mmask16 m = k - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - c)) - 1);
            const __m512 v = _mm512_maskz_loadu_ps(m, xi + c);
            const __mmask16 finite = m & (__mmask16)~_mm512_fpclass_ps_mask(v, 0x99); /* not NaN, not ±Inf */
            lo = _mm512_mask_min_ps(lo, finite, lo, v);
            hi = _mm512_mask_max_ps(hi, finite, hi, v);
        }
        condense_q8_range_params(_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi), &s, &z);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / s), zv = _mm512_set1_ps((float)z);
    const __m512 lo255 = _mm512_setzero_ps(), hi255 = _mm512_set1_ps(255.0f);
    for (size_t c = 0; c < k; c += 16) {
        const __mmask16 m = k - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - c)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(m, xi + c);
        __m512 q = _mm512_add_ps(_mm512_roundscale_ps(_mm512_mul_ps(v, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), zv);
        q = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), q, zv);
        q = _mm512_min_ps(_mm512_max_ps(q, lo255), hi255);
        _mm_mask_storeu_epi8(qi + c, m, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(q)));
    }
    for (size_t c = k; c < k4; c++) qi[c] = 0;
    *sxo = s;
    *zxo = z;
}

CONDENSE_TARGET_AVX512 void condense_q8_quantize_rows__avx512(const float *x, size_t m, size_t k,
                                                              size_t lda, uint8_t *xq, size_t ldq,
                                                              size_t k4, float *sx, int32_t *zx,
                                                              const float *static_scale,
                                                              const int32_t *static_zp) {
    for (size_t i = 0; i < m; i++)
        quantize_row_512(x + i * lda, k, xq + i * ldq, k4, sx + i, zx + i, static_scale, static_zp);
}
#endif
