/* CSR kernels for AVX2: the row dot product (M = 1) and the kernel vectorised over M on a
 * transposed block of 8 or 16 rows of X. */
#include "sparse.h"

#if CONDENSE_X86
#include <immintrin.h>
#include "csr-row.h"

CONDENSE_CSR_DOT_DRIVER(condense_csr_dot__avx2, CONDENSE_TARGET_AVX2, 256)

/* As the AVX-512 version, with L = 8 or 16 lanes in one or two ymm registers. */
#define XT_ROWS_256(NAME, IT)                                                                     \
    CONDENSE_INLINE CONDENSE_TARGET_AVX2 void NAME(const int L, const csr_view *v, size_t n0,    \
                                                   size_t n1, const float *xt, size_t ke,        \
                                                   uint32_t *cursor, float *yt, int first) {     \
        const float *val = v->values;                                                             \
        const IT *ix = (const IT *)v->index;                                                      \
        for (size_t r = n0; r < n1; r++) {                                                        \
            size_t p = first ? csr_row_begin(v, r) : cursor[r - n0];                              \
            const size_t end = csr_row_end(v, r);                                                 \
            XT_SLICE_END(IT)                                                                      \
            cursor[r - n0] = (uint32_t)q;                                                         \
            float *out = yt + (r - n0) * (size_t)L;                                               \
            __m256 acc[4][2];                                                                     \
            _Pragma("clang loop unroll(full)") for (int u = 0; u < 4; u++) {                      \
                acc[u][0] = _mm256_setzero_ps();                                                  \
                acc[u][1] = _mm256_setzero_ps();                                                  \
            }                                                                                     \
            if (!first) {                                                                         \
                acc[0][0] = _mm256_load_ps(out);                                                  \
                if (L == 16) acc[0][1] = _mm256_load_ps(out + 8);                                 \
            }                                                                                     \
            for (; p + 4 <= q; p += 4) {                                                          \
                _Pragma("clang loop unroll(full)") for (int u = 0; u < 4; u++) {                  \
                    const float *col = xt + (size_t)ix[p + u] * L;                                \
                    const __m256 wv = _mm256_broadcast_ss(val + p + u);                           \
                    acc[u][0] = _mm256_fmadd_ps(wv, _mm256_load_ps(col), acc[u][0]);              \
                    if (L == 16)                                                                  \
                        acc[u][1] = _mm256_fmadd_ps(wv, _mm256_load_ps(col + 8), acc[u][1]);      \
                }                                                                                 \
            }                                                                                     \
            for (; p < q; p++) {                                                                  \
                const float *col = xt + (size_t)ix[p] * L;                                        \
                const __m256 wv = _mm256_broadcast_ss(val + p);                                   \
                acc[0][0] = _mm256_fmadd_ps(wv, _mm256_load_ps(col), acc[0][0]);                  \
                if (L == 16) acc[0][1] = _mm256_fmadd_ps(wv, _mm256_load_ps(col + 8), acc[0][1]); \
            }                                                                                     \
            _mm256_store_ps(out, _mm256_add_ps(_mm256_add_ps(acc[0][0], acc[1][0]),               \
                                               _mm256_add_ps(acc[2][0], acc[3][0])));             \
            if (L == 16)                                                                          \
                _mm256_store_ps(out + 8, _mm256_add_ps(_mm256_add_ps(acc[0][1], acc[1][1]),       \
                                                       _mm256_add_ps(acc[2][1], acc[3][1])));     \
        }                                                                                         \
    }

XT_ROWS_256(xt_rows_u16_256, uint16_t)
XT_ROWS_256(xt_rows_u32_256, uint32_t)

CONDENSE_TARGET_AVX2 void condense_csr_xt__avx2(int lanes, const csr_view *v, size_t n0, size_t n1,
                                                const float *xt, size_t ke, uint32_t *cursor,
                                                float *yt, int first) {
    if (lanes == 16) {
        if (v->index_bytes == 2) xt_rows_u16_256(16, v, n0, n1, xt, ke, cursor, yt, first);
        else xt_rows_u32_256(16, v, n0, n1, xt, ke, cursor, yt, first);
    } else {
        if (v->index_bytes == 2) xt_rows_u16_256(8, v, n0, n1, xt, ke, cursor, yt, first);
        else xt_rows_u32_256(8, v, n0, n1, xt, ke, cursor, yt, first);
    }
}
#endif
