/* Sparse driver shared by CSR and 2:4: the sparse kernel table, CSR packing, and the run
 * function that picks the "dot" or "xt" kernel by batch size and threads over rows of W. */
#include "sparse.h"

#include <string.h>

#define FMT_S24 CONDENSE_SPARSE_FORMAT_S24
#define FMT_CSR CONDENSE_SPARSE_FORMAT_CSR

/* The 2:4 "dot" kernels read the compact 2:4 form; the table holds every dot kernel behind one
 * signature. */
static void csr_dot_scalar(const csr_view *v, const condense_s24_packed *s24, size_t n0, size_t n1, size_t m,
                           const float *x, size_t lda, float *y, size_t ldy) {
    (void)s24;
    condense_csr_dot__scalar(v, n0, n1, m, x, lda, y, ldy);
}
#if CONDENSE_X86
static void csr_dot_avx2(const csr_view *v, const condense_s24_packed *s24, size_t n0, size_t n1, size_t m,
                         const float *x, size_t lda, float *y, size_t ldy) {
    (void)s24;
    condense_csr_dot__avx2(v, n0, n1, m, x, lda, y, ldy);
}
static void csr_dot_avx512(const csr_view *v, const condense_s24_packed *s24, size_t n0, size_t n1, size_t m,
                           const float *x, size_t lda, float *y, size_t ldy) {
    (void)s24;
    condense_csr_dot__avx512(v, n0, n1, m, x, lda, y, ldy);
}
static void s24_dot_avx2(const csr_view *v, const condense_s24_packed *s24, size_t n0, size_t n1, size_t m,
                         const float *x, size_t lda, float *y, size_t ldy) {
    (void)v;
    condense_s24_dot__avx2(s24, n0, n1, m, x, lda, y, ldy);
}
#endif
#if CONDENSE_ARM64
static void s24_dot_neon(const csr_view *v, const condense_s24_packed *s24, size_t n0, size_t n1, size_t m,
                         const float *x, size_t lda, float *y, size_t ldy) {
    (void)v;
    condense_s24_dot__neon(s24, n0, n1, m, x, lda, y, ldy);
}
#endif

/* min_m: the xt kernels pay a transpose of X and waste lanes below a full block, so they take
 * over from the dot kernels only at larger batches; wider blocks only once they fill. Measured
 * on Zen 5 with `condense bench sparse --m 2,4,8,16`: CSR dot wins at M = 2 and 4, xt16 from 8.
 * 2:4 on AVX2: dot (dense FLOPs, compact reads) up to M = 7, bucket from 8 (at M = 8 it ran
 * 0.59×/0.75× dense on 768×768/3072×768 where the dot kernel ran 0.51×/0.38×); on AVX-512 the
 * panel kernel up to 15 (it beat the expand-based dot kernel 1.5–2× at M = 1), bucket from 16.
 * The bucket kernel replaced the 2:4 xt kernels: with CONDENSE_ISA=avx2, 3072×768 and
 * 4096×4096, it ran 1.34×/1.83× dense at M = 16 and 1.44×/1.60× at M = 32 where xt ran
 * 0.84×/0.42× and 0.92×/0.47×; below 16 rows its 8-row vectors waste lanes (0.4–0.75× dense at
 * M = 4–8 against the panel kernel's 1.0). The one registration point: descriptor and code. */
#define DOT(name, isa, fmt, fn) {{name, isa, fmt, 0, CONDENSE_SPARSE_DOT, 0}, fn, NULL, NULL, NULL, NULL}
#define XT(name, isa, fmt, min_m, lanes, fn) {{name, isa, fmt, min_m, CONDENSE_SPARSE_XT, lanes}, NULL, fn, NULL, NULL, NULL}
#define BUCKET(name, isa, min_m, fn, pack) {{name, isa, FMT_S24, min_m, CONDENSE_SPARSE_BUCKET, 32}, NULL, NULL, NULL, fn, pack}
static const sparse_kernel_impl kernels[] = {
    DOT("f32_s24_dot_1x1__scalar", CONDENSE_ISA_SCALAR, FMT_S24, csr_dot_scalar),
    DOT("f32_csr_dot_1x8__scalar", CONDENSE_ISA_SCALAR, FMT_CSR, csr_dot_scalar),
#if CONDENSE_X86
    DOT("f32_s24_dot_4x2__avx2", CONDENSE_ISA_AVX2, FMT_S24, s24_dot_avx2),
    DOT("f32_csr_dot_1x8__avx2", CONDENSE_ISA_AVX2, FMT_CSR, csr_dot_avx2),
    XT("f32_csr_xt_8__avx2", CONDENSE_ISA_AVX2, FMT_CSR, 8, 8, condense_csr_xt__avx2),
    XT("f32_csr_xt_16__avx2", CONDENSE_ISA_AVX2, FMT_CSR, 16, 16, condense_csr_xt__avx2),
    BUCKET("f32_s24_bucket_32x2__avx2", CONDENSE_ISA_AVX2, 8, condense_s24_bucket__avx2,
           condense_s24_bucket_pack_x__avx2),
    {{"f32_s24_panel_4x32__avx512", CONDENSE_ISA_AVX512, FMT_S24, 0, CONDENSE_SPARSE_PANEL, 4}, NULL, NULL,
     condense_s24_panel__avx512, NULL, NULL},
    BUCKET("f32_s24_bucket_32x2__avx512", CONDENSE_ISA_AVX512, 16, condense_s24_bucket__avx512,
           condense_s24_bucket_pack_x__avx512),
    DOT("f32_csr_dot_1x8__avx512", CONDENSE_ISA_AVX512, FMT_CSR, csr_dot_avx512),
    XT("f32_csr_xt_16__avx512", CONDENSE_ISA_AVX512, FMT_CSR, 8, 16, condense_csr_xt__avx512),
    XT("f32_csr_xt_32__avx512", CONDENSE_ISA_AVX512, FMT_CSR, 32, 32, condense_csr_xt__avx512),
#endif
#if CONDENSE_ARM64
    /* Not measured on ARM hardware yet: the AVX2 thresholds, whose vectors (8 rows) match. */
    DOT("f32_s24_dot_4x2__neon", CONDENSE_ISA_NEON, FMT_S24, s24_dot_neon),
    XT("f32_csr_xt_8__neon", CONDENSE_ISA_NEON, FMT_CSR, 8, 8, condense_csr_xt__neon),
    XT("f32_csr_xt_16__neon", CONDENSE_ISA_NEON, FMT_CSR, 16, 16, condense_csr_xt__neon),
    BUCKET("f32_s24_bucket_32x2__neon", CONDENSE_ISA_NEON, 8, condense_s24_bucket__neon,
           condense_s24_bucket_pack_x__neon),
#endif
};
#undef DOT
#undef XT
#undef BUCKET

int condense_sparse_kernel_count(void) { return (int)(sizeof kernels / sizeof kernels[0]); }

const condense_sparse_kernel *condense_sparse_kernel_at(int i) {
    return i >= 0 && i < condense_sparse_kernel_count() ? &kernels[i].info : NULL;
}

const sparse_kernel_impl *condense_sparse_impl_for(int format, condense_isa isa, size_t m) {
    if (isa > condense_isa_detected()) isa = condense_isa_detected();
    const sparse_kernel_impl *best = NULL;
    for (int i = 0; i < condense_sparse_kernel_count(); i++) {
        const condense_sparse_kernel *k = &kernels[i].info;
        if (k->format != format || k->isa > isa || (size_t)k->min_m > m) continue;
        if (!best || k->isa > best->info.isa || (k->isa == best->info.isa && k->min_m >= best->info.min_m)) best = &kernels[i];
    }
    return best;
}

const condense_sparse_kernel *condense_sparse_kernel_for(int format, condense_isa isa, size_t m) {
    const sparse_kernel_impl *k = condense_sparse_impl_for(format, isa, m);
    return k ? &k->info : NULL;
}

/* Thread t's rows, balanced by non-zeros (rows of a pruned matrix differ a lot in density). */
static void split_rows(const csr_view *v, int nt, int t, size_t *n0, size_t *n1) {
    if (!v->row_ptr) {
        *n0 = v->n * (size_t)t / (size_t)nt;
        *n1 = v->n * (size_t)(t + 1) / (size_t)nt;
        return;
    }
    const size_t nnz = v->row_ptr[v->n];
    size_t bounds[2];
    for (int e = 0; e < 2; e++) {
        const size_t target = nnz * (size_t)(t + e) / (size_t)nt;
        size_t lo = 0, hi = v->n; /* first row whose start is >= target */
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (v->row_ptr[mid] < target) lo = mid + 1; else hi = mid;
        }
        bounds[e] = t + e == nt ? v->n : lo;
    }
    *n0 = bounds[0];
    *n1 = bounds[1];
}

#if CONDENSE_SIMD
/* The xt path of one thread: for each block of `lanes` rows of X, transpose it (shared, every
 * thread packs a share of K), then run this thread's rows of W over K in slices that keep the
 * block's slice in L1 when rows are dense enough to amortise resuming every row per slice (about
 * 32 non-zeros per row and slice); sparser rows walk K whole, with the block read from L2. */
static int run_xt_thread(const csr_view *v, const sparse_kernel_impl *kr, condense_isa isa, size_t lanes, const float *bias,
                         size_t m, const float *x, size_t lda, float *y, size_t ldy, int act,
                         float *xt, int nt, int t) {
    const size_t k = v->k;
    const size_t nnz = v->row_ptr ? v->row_ptr[v->n] : v->n * v->per_row;
    const size_t per_row = v->n ? nnz / v->n : 0;
    size_t slice = xt_slice(lanes);
    if (per_row * slice < 32 * k) slice = k ? k : 1;
    size_t n0, n1;
    split_rows(v, nt, t, &n0, &n1);
    const size_t rows = n1 - n0;
    float *yt = condense_scratch(CONDENSE_SCRATCH_YT, (rows ? rows : 1) * lanes * sizeof(float));
    uint32_t *cursor = condense_scratch(CONDENSE_SCRATCH_CURSOR, (rows ? rows : 1) * sizeof(uint32_t));
    /* A thread without its buffers still reaches every barrier (the others wait there), and the
     * call reports the failure. */
    const int ok = yt && cursor;
    const size_t k0 = k * (size_t)t / (size_t)nt, k1 = k * (size_t)(t + 1) / (size_t)nt;
    for (size_t mb0 = 0; mb0 < m; mb0 += lanes) {
        const size_t mbv = m - mb0 < lanes ? m - mb0 : lanes;
        for (size_t i = 0; i < lanes; i++) {
            if (i < mbv) {
                const float *src = x + (mb0 + i) * lda;
                for (size_t kk = k0; kk < k1; kk++) xt[kk * lanes + i] = src[kk];
            } else {
                for (size_t kk = k0; kk < k1; kk++) xt[kk * lanes + i] = 0.0f;
            }
        }
        condense_team_barrier(nt);
        if (ok && rows) {
            size_t kb = 0;
            do {
                const size_t ke = k - kb < slice ? k : kb + slice;
                kr->xt((int)lanes, v, n0, n1, xt, ke, cursor, yt, kb == 0);
                kb = ke;
            } while (kb < k);
            /* Row by row of Y: writing it column-wise (r inner) touches `mbv` lines ldy apart,
             * which all alias to one L1 set when ldy is a multiple of 4 KiB (N = 1536, 3072,
             * 6144...) and cost 2× the whole kernel there. YT's rows do not alias. */
            for (size_t i = 0; i < mbv; i++) {
                float *dst = y + (mb0 + i) * ldy;
                for (size_t r = n0; r < n1; r++) dst[r] = yt[(r - n0) * lanes + i];
            }
            condense_bias_activation(y + mb0 * ldy, ldy, mbv, n0, n1, bias, act, isa);
        }
        /* The next block overwrites xt: wait until every thread is done reading this one. */
        if (mb0 + lanes < m) condense_team_barrier(nt);
    }
    return ok ? CONDENSE_OK : CONDENSE_ERR_NO_MEMORY;
}
#endif

typedef struct {
    const csr_view *v;
    const condense_s24_packed *s24;
    const sparse_kernel_impl *kr;
    condense_isa isa;
    size_t lanes;
    const float *bias;
    size_t m;
    const float *x;
    size_t lda;
    float *y;
    size_t ldy;
    int act;
    float *xt;
    int status;
} sparse_ctx;

#if CONDENSE_SIMD
static void xt_share(void *ctx, int t, int nt) {
    sparse_ctx *c = ctx;
    const int s = run_xt_thread(c->v, c->kr, c->isa, c->lanes, c->bias, c->m, c->x, c->lda, c->y, c->ldy, c->act, c->xt, nt, t);
    if (s != CONDENSE_OK) __atomic_store_n(&c->status, s, __ATOMIC_RELAXED);
}
#endif

static void dot_share(void *ctx, int t, int nt) {
    const sparse_ctx *c = ctx;
    size_t n0, n1;
    split_rows(c->v, nt, t, &n0, &n1);
    if (n1 > n0) {
        c->kr->dot(c->v, c->s24, n0, n1, c->m, c->x, c->lda, c->y, c->ldy);
        condense_bias_activation(c->y, c->ldy, c->m, n0, n1, c->bias, c->act, c->isa);
    }
}

int condense_sparse_run(const csr_view *v, const condense_s24_packed *s24, condense_isa isa,
                        int format, const float *bias, size_t m, const float *x, size_t lda,
                        float *y, size_t ldy, int act, int threads) {
    if (m == 0 || v->n == 0) return CONDENSE_OK;
    if (isa > condense_isa_detected()) isa = condense_isa_detected();
    int nt = threads > 0 ? threads : condense_get_num_threads();
    if ((size_t)nt > v->n) nt = (int)v->n;
    /* Below about 16 K multiply-adds, forking threads costs more than it saves. */
    const size_t nnz = v->row_ptr ? v->row_ptr[v->n] : v->n * v->per_row;
    if (nnz * m < 16384) nt = 1;
    const sparse_kernel_impl *kr = condense_sparse_impl_for(format, isa, m);
    if (!kr || !(kr->dot || kr->xt)) return CONDENSE_ERR_INVALID;
    const size_t lanes = kr->info.kind == CONDENSE_SPARSE_XT ? (size_t)kr->info.lanes : 0;
#if CONDENSE_SIMD
    if (lanes > 0) {
        /* The calling thread's scratch, shared by the team for this call. */
        float *xt = condense_scratch(CONDENSE_SCRATCH_XT, (v->k ? v->k : 1) * lanes * sizeof(float));
        if (!xt) return CONDENSE_ERR_NO_MEMORY;
        sparse_ctx c = {v, s24, kr, isa, lanes, bias, m, x, lda, y, ldy, act, xt, CONDENSE_OK};
        condense_team_run(nt, xt_share, &c);
        return c.status;
    }
#else
    (void)lanes;
#endif
    sparse_ctx c = {v, s24, kr, isa, 0, bias, m, x, lda, y, ldy, act, NULL, CONDENSE_OK};
    condense_team_run(nt, dot_share, &c);
    return CONDENSE_OK;
}

condense_csr_packed *condense_csr_pack(condense_isa isa, const uint32_t *row_ptr, const void *index,
                                       int index_bytes, const float *values, size_t n, size_t k,
                                       const float *bias) {
    condense_csr_packed *p = condense_zalloc(sizeof *p);
    if (!p) return NULL;
    p->n = n;
    p->k = k;
    p->isa = isa;
    p->nnz = row_ptr[n];
    p->index_bytes = index_bytes;
    p->row_ptr = condense_aligned_alloc((n + 1) * sizeof(uint32_t));
    p->index = condense_aligned_alloc(p->nnz * (size_t)index_bytes);
    p->values = condense_aligned_alloc(p->nnz * sizeof(float));
    if (!p->row_ptr || !p->index || !p->values) goto fail;
    memcpy(p->row_ptr, row_ptr, (n + 1) * sizeof(uint32_t));
    memcpy(p->index, index, p->nnz * (size_t)index_bytes);
    memcpy(p->values, values, p->nnz * sizeof(float));
    if (!condense_copy_bias(&p->bias, bias, n)) goto fail;
    return p;
fail:
    condense_csr_packed_free(p);
    return NULL;
}

void condense_csr_packed_free(condense_csr_packed *p) {
    if (!p) return;
    free(p->row_ptr);
    free(p->index);
    free(p->values);
    free(p->bias);
    free(p);
}

int condense_csr_gemm(const condense_csr_packed *w, size_t m, const float *x, size_t lda,
                      float *y, size_t ldy, int act, int threads) {
    csr_view v = {w->n, w->k, w->row_ptr, 0, w->index, w->index_bytes, w->values};
    return condense_sparse_run(&v, NULL, w->isa, FMT_CSR, w->bias, m, x, lda, y, ldy, act, threads);
}
