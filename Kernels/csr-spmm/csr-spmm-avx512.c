/* CSR kernels for AVX-512: the row dot product (M = 1) and the kernel vectorised over M on a
 * transposed block of 16 or 32 rows of X, whose FLOPs scale with the non-zeros. */
#include "sparse.h"
#include "csr-row.h"

#if CONDENSE_X86
#include <immintrin.h>

CONDENSE_CSR_DOT_DRIVER(condense_csr_dot__avx512, CONDENSE_TARGET_AVX512, 512)

/* The rows of one thread for one K slice; L (lanes: 16 or 32) and the index type are
 * compile-time constants in each instantiation, so the loop has no branches per non-zero. Four
 * accumulator sets keep eight FMA chains in flight. */
#define XT_ROWS_512(NAME, IT)                                                                     \
    CONDENSE_INLINE CONDENSE_TARGET_AVX512 void NAME(const int L, const csr_view *v, size_t n0,  \
                                                     size_t n1, const float *xt, size_t ke,      \
                                                     uint32_t *cursor, float *yt, int first) {   \
        const float *val = v->values;                                                             \
        const IT *ix = (const IT *)v->index;                                                      \
        for (size_t r = n0; r < n1; r++) {                                                        \
            size_t p = first ? csr_row_begin(v, r) : cursor[r - n0];                              \
            const size_t end = csr_row_end(v, r);                                                 \
            XT_SLICE_END(IT)                                                                      \
            cursor[r - n0] = (uint32_t)q;                                                         \
            float *out = yt + (r - n0) * (size_t)L;                                               \
            __m512 acc[4][2];                                                                     \
            _Pragma("clang loop unroll(full)") for (int u = 0; u < 4; u++) {                      \
                acc[u][0] = _mm512_setzero_ps();                                                  \
                acc[u][1] = _mm512_setzero_ps();                                                  \
            }                                                                                     \
            if (!first) {                                                                         \
                acc[0][0] = _mm512_load_ps(out);                                                  \
                if (L == 32) acc[0][1] = _mm512_load_ps(out + 16);                                \
            }                                                                                     \
            for (; p + 4 <= q; p += 4) {                                                          \
                _Pragma("clang loop unroll(full)") for (int u = 0; u < 4; u++) {                  \
                    const float *col = xt + (size_t)ix[p + u] * L;                                \
                    const __m512 wv = _mm512_set1_ps(val[p + u]);                                 \
                    acc[u][0] = _mm512_fmadd_ps(wv, _mm512_load_ps(col), acc[u][0]);              \
                    if (L == 32)                                                                  \
                        acc[u][1] = _mm512_fmadd_ps(wv, _mm512_load_ps(col + 16), acc[u][1]);     \
                }                                                                                 \
            }                                                                                     \
            for (; p < q; p++) {                                                                  \
                const float *col = xt + (size_t)ix[p] * L;                                        \
                const __m512 wv = _mm512_set1_ps(val[p]);                                         \
                acc[0][0] = _mm512_fmadd_ps(wv, _mm512_load_ps(col), acc[0][0]);                  \
                if (L == 32) acc[0][1] = _mm512_fmadd_ps(wv, _mm512_load_ps(col + 16), acc[0][1]); \
            }                                                                                     \
            _mm512_store_ps(out, _mm512_add_ps(_mm512_add_ps(acc[0][0], acc[1][0]),               \
                                               _mm512_add_ps(acc[2][0], acc[3][0])));             \
            if (L == 32)                                                                          \
                _mm512_store_ps(out + 16, _mm512_add_ps(_mm512_add_ps(acc[0][1], acc[1][1]),      \
                                                        _mm512_add_ps(acc[2][1], acc[3][1])));    \
        }                                                                                         \
    }

XT_ROWS_512(xt_rows_u16_512, uint16_t)
XT_ROWS_512(xt_rows_u32_512, uint32_t)

CONDENSE_TARGET_AVX512 void condense_csr_xt__avx512(int lanes, const csr_view *v, size_t n0,
                                                    size_t n1, const float *xt, size_t ke,
                                                    uint32_t *cursor, float *yt, int first) {
    if (lanes == 32) {
        if (v->index_bytes == 2) xt_rows_u16_512(32, v, n0, n1, xt, ke, cursor, yt, first);
        else xt_rows_u32_512(32, v, n0, n1, xt, ke, cursor, yt, first);
    } else {
        if (v->index_bytes == 2) xt_rows_u16_512(16, v, n0, n1, xt, ke, cursor, yt, first);
        else xt_rows_u32_512(16, v, n0, n1, xt, ke, cursor, yt, first);
    }
}
#endif
