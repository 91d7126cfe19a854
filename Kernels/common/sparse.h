/* Shared by the sparse kernel families: a CSR view of the weights (2:4 is CSR with exactly
 * k16/2 entries per row) and the per-ISA kernels over it. */
#ifndef CONDENSE_SPARSE_H
#define CONDENSE_SPARSE_H
#include "internal.h"

typedef struct csr_view {
    size_t n, k;
    const uint32_t *row_ptr;   /* NULL: row r starts at r·per_row */
    size_t per_row;
    const void *index;
    int index_bytes;
    const float *values;
} csr_view;

static inline size_t csr_row_begin(const csr_view *v, size_t r) {
    return v->row_ptr ? v->row_ptr[r] : r * v->per_row;
}
static inline size_t csr_row_end(const csr_view *v, size_t r) {
    return v->row_ptr ? v->row_ptr[r + 1] : (r + 1) * v->per_row;
}
static inline uint32_t csr_index(const csr_view *v, size_t p) {
    return v->index_bytes == 2 ? ((const uint16_t *)v->index)[p] : ((const uint32_t *)v->index)[p];
}

/* The K slice that keeps a transposed block of `lanes` rows of X in L1: slice · lanes · 4 bytes
 * = 32 KiB. A multiple of 4, so 2:4 slices hold whole groups. */
static inline size_t xt_slice(size_t lanes) { return 8192 / lanes; }

/* "dot" kernels: Y[i, n] = Σ W[n,k]·X[i,k] for rows n in [n0, n1) and the mb rows of X given;
 * no bias or activation (the driver adds them). */
void condense_csr_dot__scalar(const csr_view *v, size_t n0, size_t n1, size_t mb, const float *x,
                              size_t lda, float *y, size_t ldy);

/* "xt" kernels: for rows [n0, n1), accumulate the non-zeros from each row's cursor up to column
 * ke against the transposed block xt[k][lanes] into yt[(r − n0)·lanes + i]; cursor[r − n0]
 * tracks each row's position (non-zeros are sorted by column); first != 0 starts a row from its
 * beginning and yt from zero. 2:4 views (row_ptr NULL) find the slice end arithmetically. */
#if CONDENSE_X86
void condense_csr_dot__avx2(const csr_view *v, size_t n0, size_t n1, size_t mb, const float *x,
                            size_t lda, float *y, size_t ldy);
void condense_csr_dot__avx512(const csr_view *v, size_t n0, size_t n1, size_t mb, const float *x,
                              size_t lda, float *y, size_t ldy);
void condense_csr_xt__avx2(int lanes, const csr_view *v, size_t n0, size_t n1, const float *xt,
                           size_t ke, uint32_t *cursor, float *yt, int first);
void condense_csr_xt__avx512(int lanes, const csr_view *v, size_t n0, size_t n1, const float *xt,
                             size_t ke, uint32_t *cursor, float *yt, int first);
void condense_s24_dot__avx2(const condense_s24_packed *w, size_t n0, size_t n1, size_t mb,
                            const float *x, size_t lda, float *y, size_t ldy);
/* 2:4 panel kernel: panels [p_begin, p_end) of 16 weight rows, all m rows of X, with bias and
 * activation applied. */
void condense_s24_panel__avx512(const condense_s24_packed *w, size_t p_begin, size_t p_end,
                                size_t m, const float *x, size_t lda, float *y, size_t ldy, int act);
/* 2:4 bucket kernels (s24-bucket.h): tiles [t0, t1) against a transposed slab of mv ≤ mp ≤ 32
 * rows of X (xt[k][mp], from the pack_x function), raw dots into rows [0, mv) of Y. */
void condense_s24_bucket__avx2(const condense_s24_packed *w, size_t t0, size_t t1, const float *xt,
                               size_t mv, size_t mp, float *yt, float *y, size_t ldy);
void condense_s24_bucket_pack_x__avx2(const float *x, size_t lda, size_t mv, size_t mp, size_t k,
                                      size_t k0, size_t k1, float *xt);
void condense_s24_bucket__avx512(const condense_s24_packed *w, size_t t0, size_t t1, const float *xt,
                                 size_t mv, size_t mp, float *yt, float *y, size_t ldy);
void condense_s24_bucket_pack_x__avx512(const float *x, size_t lda, size_t mv, size_t mp, size_t k,
                                        size_t k0, size_t k1, float *xt);
#endif
#if CONDENSE_ARM64
void condense_csr_xt__neon(int lanes, const csr_view *v, size_t n0, size_t n1, const float *xt,
                           size_t ke, uint32_t *cursor, float *yt, int first);
void condense_s24_dot__neon(const condense_s24_packed *w, size_t n0, size_t n1, size_t mb,
                            const float *x, size_t lda, float *y, size_t ldy);
void condense_s24_bucket__neon(const condense_s24_packed *w, size_t t0, size_t t1, const float *xt,
                               size_t mv, size_t mp, float *yt, float *y, size_t ldy);
void condense_s24_bucket_pack_x__neon(const float *x, size_t lda, size_t mv, size_t mp, size_t k,
                                      size_t k0, size_t k1, float *xt);
#endif

/* Where a row's entries up to column ke end. 2:4 views hold exactly two entries per group and
 * slices end on group boundaries, so no scan is needed; the last slice takes the padding too. */
#define XT_SLICE_END(IT)                                                                          \
    size_t q;                                                                                     \
    if (!v->row_ptr) {                                                                            \
        q = ke >= v->k ? end : csr_row_begin(v, r) + ke / 2;                                      \
    } else {                                                                                      \
        const IT *ixs = (const IT *)v->index;                                                     \
        q = p;                                                                                    \
        while (q < end && ixs[q] < ke) q++;                                                       \
    }

/* A sparse kernel table entry: the public descriptor first (so its address is the entry's),
 * then the code of its kind. */
typedef struct sparse_kernel_impl {
    condense_sparse_kernel info;
    void (*dot)(const csr_view *v, const condense_s24_packed *s24, size_t n0, size_t n1, size_t m,
                const float *x, size_t lda, float *y, size_t ldy);
    void (*xt)(int lanes, const csr_view *v, size_t n0, size_t n1, const float *xt, size_t ke,
               uint32_t *cursor, float *yt, int first);
    void (*panel)(const condense_s24_packed *w, size_t p_begin, size_t p_end, size_t m, const float *x,
                  size_t lda, float *y, size_t ldy, int act);
    void (*bucket)(const condense_s24_packed *w, size_t t0, size_t t1, const float *xt, size_t mv,
                   size_t mp, float *yt, float *y, size_t ldy);
    void (*bucket_pack_x)(const float *x, size_t lda, size_t mv, size_t mp, size_t k, size_t k0,
                          size_t k1, float *xt);
} sparse_kernel_impl;

/* The table entry for `format` at `isa` and a batch of m rows (csr-spmm.c). */
const sparse_kernel_impl *condense_sparse_impl_for(int format, condense_isa isa, size_t m);

/* The driver for both formats: picks dot or xt by m, threads over rows of W, adds bias and
 * applies the activation. `s24` is non-NULL for 2:4 weights (its dot kernel reads the compact
 * form). */
int condense_sparse_run(const csr_view *v, const condense_s24_packed *s24, condense_isa isa,
                         int format, const float *bias, size_t m, const float *x, size_t lda,
                         float *y, size_t ldy, int act, int threads);
#endif
