/* Portable CSR kernel: the reference sibling for both sparse formats. */
#include "sparse.h"

void condense_csr_dot__scalar(const csr_view *v, size_t n0, size_t n1, size_t mb, const float *x,
                              size_t lda, float *y, size_t ldy) {
    for (size_t r = n0; r < n1; r++) {
        const size_t a = csr_row_begin(v, r), b = csr_row_end(v, r);
        for (size_t i = 0; i < mb; i++) {
            const float *xi = x + i * lda;
            float s = 0;
            for (size_t p = a; p < b; p++) s += v->values[p] * xi[csr_index(v, p)];
            y[i * ldy + r] = s;
        }
    }
}
