/* CSR kernel for AArch64 Advanced SIMD vectorised over M: each non-zero's weight multiplies a
 * contiguous column of a transposed block of 8 or 16 rows of X (2 or 4 q registers), so no
 * gather is needed. Below 8 rows of X the scalar row dot (eight FMA chains) stays the kernel. */
#include "sparse.h"

#if CONDENSE_ARM64
#include <arm_neon.h>

#define XT_ROWS_NEON(NAME, IT)                                                                    \
    CONDENSE_INLINE void NAME(const int L, const csr_view *v, size_t n0, size_t n1, const float *xt, size_t ke, \
                              uint32_t *cursor, float *yt, int first) {                          \
        const float *val = v->values;                                                             \
        const IT *ix = (const IT *)v->index;                                                      \
        const int NV = L / 4;                                                                     \
        for (size_t r = n0; r < n1; r++) {                                                        \
            size_t p = first ? csr_row_begin(v, r) : cursor[r - n0];                              \
            const size_t end = csr_row_end(v, r);                                                 \
            XT_SLICE_END(IT)                                                                      \
            cursor[r - n0] = (uint32_t)q;                                                         \
            float *out = yt + (r - n0) * (size_t)L;                                               \
            float32x4_t acc[2][4];                                                                \
            for (int u = 0; u < 2; u++)                                                           \
                for (int j = 0; j < NV; j++) acc[u][j] = vdupq_n_f32(0.0f);                       \
            if (!first)                                                                           \
                for (int j = 0; j < NV; j++) acc[0][j] = vld1q_f32(out + 4 * j);                  \
            for (; p + 2 <= q; p += 2)                                                            \
                for (int u = 0; u < 2; u++) {                                                     \
                    const float *col = xt + (size_t)ix[p + u] * L;                                \
                    for (int j = 0; j < NV; j++)                                                  \
                        acc[u][j] = vfmaq_n_f32(acc[u][j], vld1q_f32(col + 4 * j), val[p + u]);   \
                }                                                                                 \
            for (; p < q; p++) {                                                                  \
                const float *col = xt + (size_t)ix[p] * L;                                        \
                for (int j = 0; j < NV; j++) acc[0][j] = vfmaq_n_f32(acc[0][j], vld1q_f32(col + 4 * j), val[p]); \
            }                                                                                     \
            for (int j = 0; j < NV; j++) vst1q_f32(out + 4 * j, vaddq_f32(acc[0][j], acc[1][j])); \
        }                                                                                         \
    }

XT_ROWS_NEON(xt_rows_u16_neon, uint16_t)
XT_ROWS_NEON(xt_rows_u32_neon, uint32_t)

void condense_csr_xt__neon(int lanes, const csr_view *v, size_t n0, size_t n1, const float *xt, size_t ke,
                           uint32_t *cursor, float *yt, int first) {
    if (lanes == 16) {
        if (v->index_bytes == 2) xt_rows_u16_neon(16, v, n0, n1, xt, ke, cursor, yt, first);
        else xt_rows_u32_neon(16, v, n0, n1, xt, ke, cursor, yt, first);
    } else {
        if (v->index_bytes == 2) xt_rows_u16_neon(8, v, n0, n1, xt, ke, cursor, yt, first);
        else xt_rows_u32_neon(8, v, n0, n1, xt, ke, cursor, yt, first);
    }
}
#endif
