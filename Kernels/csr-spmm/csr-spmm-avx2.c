/* CSR kernels for AVX2: gathers for few rows of X, and the vectorised-over-M kernel on a
 * transposed block of 16 rows of X. */
#include "sparse.h"

#if CONDENSE_X86
#include <immintrin.h>
#include "vecmath-avx2.h"

CONDENSE_INLINE CONDENSE_TARGET_AVX2 __m256i load_idx_256(const csr_view *v, size_t p, size_t count) {
    if (count >= 8) {
        if (v->index_bytes == 2)
            return _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)v->index + p)));
        return _mm256_loadu_si256((const __m256i *)((const uint32_t *)v->index + p));
    }
    uint32_t tmp[8] = {0};
    for (size_t j = 0; j < count; j++) tmp[j] = csr_index(v, p + j);
    return _mm256_loadu_si256((const __m256i *)tmp);
}

CONDENSE_INLINE CONDENSE_TARGET_AVX2 float hsum_256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

CONDENSE_INLINE CONDENSE_TARGET_AVX2 void dot_256(const int MB, const csr_view *v, size_t n0,
                                                   size_t n1, const float *x, size_t lda,
                                                   float *y, size_t ldy) {
    for (size_t r = n0; r < n1; r++) {
        const size_t a = csr_row_begin(v, r), b = csr_row_end(v, r);
        __m256 acc[2];
        _Pragma("clang loop unroll(full)")
        for (int i = 0; i < MB; i++) acc[i] = _mm256_setzero_ps();
        for (size_t p = a; p < b; p += 8) {
            const size_t cnt = b - p < 8 ? b - p : 8;
            const __m256i m = tail_mask_256((int)cnt);
            const __m256i idx = load_idx_256(v, p, cnt);
            const __m256 w = _mm256_maskload_ps(v->values + p, m);
            _Pragma("clang loop unroll(full)")
            for (int i = 0; i < MB; i++) {
                __m256 xg = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), x + i * lda, idx,
                                                     _mm256_castsi256_ps(m), 4);
                acc[i] = _mm256_fmadd_ps(w, xg, acc[i]);
            }
        }
        _Pragma("clang loop unroll(full)")
        for (int i = 0; i < MB; i++) y[i * ldy + r] = hsum_256(acc[i]);
    }
}

CONDENSE_TARGET_AVX2 void condense_csr_dot__avx2(const csr_view *v, size_t n0, size_t n1, size_t mb,
                                                 const float *x, size_t lda, float *y, size_t ldy) {
    for (size_t i = 0; i < mb; i += 2) {
        if (mb - i >= 2) dot_256(2, v, n0, n1, x + i * lda, lda, y + i * ldy, ldy);
        else dot_256(1, v, n0, n1, x + i * lda, lda, y + i * ldy, ldy);
    }
}

CONDENSE_TARGET_AVX2 void condense_csr_xt__avx2(const csr_view *v, size_t n0, size_t n1,
                                                const float *xt, size_t kb, size_t ke,
                                                uint32_t *cursor, float *yt, int first) {
    (void)kb;
    for (size_t r = n0; r < n1; r++) {
        size_t p = first ? csr_row_begin(v, r) : cursor[r - n0];
        const size_t end = csr_row_end(v, r);
        size_t q = p;
        while (q < end && csr_index(v, q) < ke) q++;
        cursor[r - n0] = (uint32_t)q;
        float *out = yt + (r - n0) * XT_LANES_256;
        __m256 a0 = first ? _mm256_setzero_ps() : _mm256_load_ps(out);
        __m256 a1 = first ? _mm256_setzero_ps() : _mm256_load_ps(out + 8);
        __m256 b0 = _mm256_setzero_ps(), b1 = b0;
        const float *val = v->values;
#define XT_NZ(acc0, acc1, pp)                                                                 \
    do {                                                                                      \
        const float *col = xt + (size_t)csr_index(v, pp) * XT_LANES_256;                      \
        const __m256 wv = _mm256_broadcast_ss(val + (pp));                                    \
        acc0 = _mm256_fmadd_ps(wv, _mm256_load_ps(col), acc0);                                \
        acc1 = _mm256_fmadd_ps(wv, _mm256_load_ps(col + 8), acc1);                            \
    } while (0)
        for (; p + 2 <= q; p += 2) {
            XT_NZ(a0, a1, p);
            XT_NZ(b0, b1, p + 1);
        }
        for (; p < q; p++) XT_NZ(a0, a1, p);
#undef XT_NZ
        _mm256_store_ps(out, _mm256_add_ps(a0, b0));
        _mm256_store_ps(out + 8, _mm256_add_ps(a1, b1));
    }
}
#endif
