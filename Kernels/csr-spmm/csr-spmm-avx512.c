/* CSR kernels for AVX-512: a gather-based row dot product for few rows of X, and the
 * vectorised-over-M kernel on a transposed block of 32 rows of X. */
#include "sparse.h"

#if CONDENSE_X86
#include <immintrin.h>

CONDENSE_INLINE CONDENSE_TARGET_AVX512 __m512i load_idx_512(const csr_view *v, size_t p, __mmask16 m) {
    if (v->index_bytes == 2)
        return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)v->index + p));
    return _mm512_maskz_loadu_epi32(m, (const uint32_t *)v->index + p);
}

CONDENSE_INLINE CONDENSE_TARGET_AVX512 void dot_512(const int MB, const csr_view *v, size_t n0,
                                                     size_t n1, const float *x, size_t lda,
                                                     float *y, size_t ldy) {
    for (size_t r = n0; r < n1; r++) {
        const size_t a = csr_row_begin(v, r), b = csr_row_end(v, r);
        __m512 acc[4];
        _Pragma("clang loop unroll(full)")
        for (int i = 0; i < MB; i++) acc[i] = _mm512_setzero_ps();
        for (size_t p = a; p < b; p += 16) {
            const __mmask16 m = b - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (b - p)) - 1);
            const __m512i idx = load_idx_512(v, p, m);
            const __m512 w = _mm512_maskz_loadu_ps(m, v->values + p);
            _Pragma("clang loop unroll(full)")
            for (int i = 0; i < MB; i++) {
                __m512 xg = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, x + i * lda, 4);
                acc[i] = _mm512_fmadd_ps(w, xg, acc[i]);
            }
        }
        _Pragma("clang loop unroll(full)")
        for (int i = 0; i < MB; i++) y[i * ldy + r] = _mm512_reduce_add_ps(acc[i]);
    }
}

CONDENSE_TARGET_AVX512 void condense_csr_dot__avx512(const csr_view *v, size_t n0, size_t n1,
                                                     size_t mb, const float *x, size_t lda,
                                                     float *y, size_t ldy) {
    for (size_t i = 0; i < mb; i += 4) {
        size_t b = mb - i < 4 ? mb - i : 4;
        const float *xi = x + i * lda;
        float *yi = y + i * ldy;
        switch (b) {
        case 1: dot_512(1, v, n0, n1, xi, lda, yi, ldy); break;
        case 2: dot_512(2, v, n0, n1, xi, lda, yi, ldy); break;
        case 3: dot_512(3, v, n0, n1, xi, lda, yi, ldy); break;
        default: dot_512(4, v, n0, n1, xi, lda, yi, ldy); break;
        }
    }
}

/* One row's non-zeros in [p, q) against xt: four accumulator pairs so eight FMA chains are in
 * flight (one pair would wait on the FMA latency every non-zero). */
CONDENSE_TARGET_AVX512 void condense_csr_xt__avx512(const csr_view *v, size_t n0, size_t n1,
                                                    const float *xt, size_t kb, size_t ke,
                                                    uint32_t *cursor, float *yt, int first) {
    (void)kb;
    for (size_t r = n0; r < n1; r++) {
        size_t p = first ? csr_row_begin(v, r) : cursor[r - n0];
        const size_t end = csr_row_end(v, r);
        size_t q = p;
        if (v->index_bytes == 2) {
            const uint16_t *ix = (const uint16_t *)v->index;
            while (q < end && ix[q] < ke) q++;
        } else {
            const uint32_t *ix = (const uint32_t *)v->index;
            while (q < end && ix[q] < ke) q++;
        }
        cursor[r - n0] = (uint32_t)q;
        float *out = yt + (r - n0) * XT_LANES_512;
        __m512 a0 = first ? _mm512_setzero_ps() : _mm512_load_ps(out);
        __m512 a1 = first ? _mm512_setzero_ps() : _mm512_load_ps(out + 16);
        __m512 b0 = _mm512_setzero_ps(), b1 = b0, c0 = b0, c1 = b0, d0 = b0, d1 = b0;
        const float *val = v->values;
#define XT_NZ(acc0, acc1, pp)                                                                 \
    do {                                                                                      \
        const float *col = xt + (size_t)csr_index(v, pp) * XT_LANES_512;                      \
        const __m512 wv = _mm512_set1_ps(val[pp]);                                            \
        acc0 = _mm512_fmadd_ps(wv, _mm512_load_ps(col), acc0);                                \
        acc1 = _mm512_fmadd_ps(wv, _mm512_load_ps(col + 16), acc1);                           \
    } while (0)
        for (; p + 4 <= q; p += 4) {
            XT_NZ(a0, a1, p);
            XT_NZ(b0, b1, p + 1);
            XT_NZ(c0, c1, p + 2);
            XT_NZ(d0, d1, p + 3);
        }
        for (; p < q; p++) XT_NZ(a0, a1, p);
#undef XT_NZ
        a0 = _mm512_add_ps(_mm512_add_ps(a0, b0), _mm512_add_ps(c0, d0));
        a1 = _mm512_add_ps(_mm512_add_ps(a1, b1), _mm512_add_ps(c1, d1));
        _mm512_store_ps(out, a0);
        _mm512_store_ps(out + 16, a1);
    }
}
#endif
