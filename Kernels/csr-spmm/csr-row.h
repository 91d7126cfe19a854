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

#define CONDENSE_CSR_DOT_DRIVER(NAME, ATTR, ROW16, ROW32)                                         \
    ATTR void NAME(const csr_view *v, size_t n0, size_t n1, size_t mb, const float *x,            \
                   size_t lda, float *y, size_t ldy) {                                            \
        for (size_t i = 0; i < mb; i++) {                                                         \
            const float *xi = x + i * lda;                                                        \
            float *yi = y + i * ldy;                                                              \
            for (size_t r = n0; r < n1; r++) {                                                    \
                const size_t a = csr_row_begin(v, r), b = csr_row_end(v, r);                      \
                yi[r] = v->index_bytes == 2                                                       \
                            ? ROW16((const uint16_t *)v->index, v->values, a, b, xi)              \
                            : ROW32((const uint32_t *)v->index, v->values, a, b, xi);             \
            }                                                                                     \
        }                                                                                         \
    }
#endif
