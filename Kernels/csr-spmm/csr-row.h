/* One CSR row's dot product with a dense vector, eight independent accumulators so the FMA
 * latency is hidden (one accumulator waits 4 cycles per non-zero). Instantiated per ISA with the
 * index width as a constant: the same C, compiled with FMA where the target has it. For M = 1
 * this beats 16-wide gathers on AMD cores, whose gathers are slow. */
#ifndef CONDENSE_CSR_ROW_H
#define CONDENSE_CSR_ROW_H

#define CONDENSE_CSR_ROW_DOT(NAME, ATTR, IT)                                                      \
    ATTR static float NAME(const IT *ix, const float *val, size_t a, size_t b, const float *x) {  \
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;                    \
        size_t p = a;                                                                             \
        for (; p + 8 <= b; p += 8) {                                                              \
            s0 += val[p] * x[ix[p]];                                                              \
            s1 += val[p + 1] * x[ix[p + 1]];                                                      \
            s2 += val[p + 2] * x[ix[p + 2]];                                                      \
            s3 += val[p + 3] * x[ix[p + 3]];                                                      \
            s4 += val[p + 4] * x[ix[p + 4]];                                                      \
            s5 += val[p + 5] * x[ix[p + 5]];                                                      \
            s6 += val[p + 6] * x[ix[p + 6]];                                                      \
            s7 += val[p + 7] * x[ix[p + 7]];                                                      \
        }                                                                                         \
        for (; p < b; p++) s0 += val[p] * x[ix[p]];                                               \
        return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));                                 \
    }

/* Several rows of X at once (2…8): each non-zero is read once and updates MB accumulators, one
 * per row of X (MB independent FMA chains), instead of MB passes over the weights. */
#define CONDENSE_CSR_ROWS_DOT(NAME, ATTR, IT)                                                     \
    static inline __attribute__((always_inline)) ATTR void NAME(                                  \
        const int MB, const IT *ix, const float *val, size_t a, size_t b, const float *x,         \
        size_t lda, float *y, size_t ldy) {                                                       \
        /* U non-zeros per step into separate accumulators: MB·U >= 8 chains in flight. */        \
        const int U = MB <= 2 ? 4 : MB <= 4 ? 2 : 1;                                              \
        float acc[4][8] = {{0}};                                                                  \
        size_t p = a;                                                                             \
        for (; p + U <= b; p += U) {                                                              \
            _Pragma("clang loop unroll(full)") for (int u = 0; u < U; u++) {                      \
                const float w = val[p + u];                                                       \
                const float *xc = x + ix[p + u];                                                  \
                _Pragma("clang loop unroll(full)") for (int i = 0; i < MB; i++)                   \
                    acc[u][i] += w * xc[i * lda];                                                 \
            }                                                                                     \
        }                                                                                         \
        for (; p < b; p++) {                                                                      \
            const float w = val[p];                                                               \
            const float *xc = x + ix[p];                                                          \
            _Pragma("clang loop unroll(full)") for (int i = 0; i < MB; i++) acc[0][i] += w * xc[i * lda]; \
        }                                                                                         \
        _Pragma("clang loop unroll(full)") for (int i = 0; i < MB; i++)                           \
            y[i * ldy] = (acc[0][i] + acc[1][i]) + (acc[2][i] + acc[3][i]);                       \
    }

#define CONDENSE_CSR_DOT_BLOCK(R, MBC)                                                            \
    case MBC:                                                                                     \
        for (size_t r = n0; r < n1; r++)                                                          \
            R(MBC, ix, v->values, csr_row_begin(v, r), csr_row_end(v, r), xi, lda, yi + r, ldy);  \
        break;

/* The dot driver: one row of X at a time with the 8-accumulator row loop, or blocks of up to 8
 * rows of X with the MB-accumulator loop. */
#define CONDENSE_CSR_DOT_DRIVER_T(NAME, ATTR, IT, ROW, ROWS)                                      \
    static ATTR void NAME(const csr_view *v, size_t n0, size_t n1, size_t mb, const float *x,     \
                          size_t lda, float *y, size_t ldy) {                                     \
        const IT *ix = (const IT *)v->index;                                                      \
        for (size_t i = 0; i < mb; i += 8) {                                                      \
            const size_t bm = mb - i < 8 ? mb - i : 8;                                            \
            const float *xi = x + i * lda;                                                        \
            float *yi = y + i * ldy;                                                              \
            switch (bm) {                                                                         \
            case 1:                                                                               \
                for (size_t r = n0; r < n1; r++)                                                  \
                    yi[r] = ROW(ix, v->values, csr_row_begin(v, r), csr_row_end(v, r), xi);       \
                break;                                                                            \
                CONDENSE_CSR_DOT_BLOCK(ROWS, 2) CONDENSE_CSR_DOT_BLOCK(ROWS, 3)                   \
                CONDENSE_CSR_DOT_BLOCK(ROWS, 4) CONDENSE_CSR_DOT_BLOCK(ROWS, 5)                   \
                CONDENSE_CSR_DOT_BLOCK(ROWS, 6) CONDENSE_CSR_DOT_BLOCK(ROWS, 7)                   \
                CONDENSE_CSR_DOT_BLOCK(ROWS, 8)                                                   \
            default: break;                                                                       \
            }                                                                                     \
        }                                                                                         \
    }

#define CONDENSE_CSR_DOT_DRIVER(NAME, ATTR, SFX)                                                  \
    CONDENSE_CSR_ROW_DOT(row_u16_##SFX, ATTR, uint16_t)                                           \
    CONDENSE_CSR_ROW_DOT(row_u32_##SFX, ATTR, uint32_t)                                           \
    CONDENSE_CSR_ROWS_DOT(rows_u16_##SFX, ATTR, uint16_t)                                         \
    CONDENSE_CSR_ROWS_DOT(rows_u32_##SFX, ATTR, uint32_t)                                         \
    CONDENSE_CSR_DOT_DRIVER_T(dot_u16_##SFX, ATTR, uint16_t, row_u16_##SFX, rows_u16_##SFX)       \
    CONDENSE_CSR_DOT_DRIVER_T(dot_u32_##SFX, ATTR, uint32_t, row_u32_##SFX, rows_u32_##SFX)       \
    ATTR void NAME(const csr_view *v, size_t n0, size_t n1, size_t mb, const float *x,            \
                   size_t lda, float *y, size_t ldy) {                                            \
        if (v->index_bytes == 2) dot_u16_##SFX(v, n0, n1, mb, x, lda, y, ldy);                    \
        else dot_u32_##SFX(v, n0, n1, mb, x, lda, y, ldy);                                        \
    }
#endif
