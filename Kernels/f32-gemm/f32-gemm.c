/* f32 GEMM driver: the kernel table (one registration point), weight packing, cache blocking
 * and OpenMP tiling. X is not packed: the micro-kernels broadcast straight from its rows (as
 * oneDNN's brgemm does); packing it cost about 10 % at large M. The micro-kernels live in f32-gemm-<isa>.c. */
#include "internal.h"

#include <string.h>

/* Lowest ISA first. kc: the K slice of one weight panel (kc·NR·4 bytes, at most 512 KiB, so it
 * stays in a 1 MiB L2 while the row loop reuses it). Measured on Zen 5: slicing K any finer
 * than this only cost time (a sliced panel is no longer one sequential stream, and C is reloaded
 * per slice), e.g. 436 → 500 GFLOPS at M = 512 on 4096×4096. mc: rows of X per tile. */
static const condense_f32_gemm_kernel kernels[] = {
    {"f32_gemm_4x16__scalar", CONDENSE_ISA_SCALAR, 4, 16, 4096, 64,
     condense_f32_gemm_ukernel_4x16__scalar},
#if CONDENSE_X86
    {"f32_gemm_6x16__avx2", CONDENSE_ISA_AVX2, 6, 16, 8192, 72,
     condense_f32_gemm_ukernel_6x16__avx2},
    {"f32_gemm_12x32__avx512", CONDENSE_ISA_AVX512, 12, 32, 4096, 96,
     condense_f32_gemm_ukernel_12x32__avx512},
#endif
#if CONDENSE_ARM64
    {"f32_gemm_6x16__neon", CONDENSE_ISA_NEON, 6, 16, 4096, 72, condense_f32_gemm_ukernel_6x16__neon},
#endif
};

int condense_f32_gemm_kernel_count(void) { return (int)(sizeof kernels / sizeof kernels[0]); }

const condense_f32_gemm_kernel *condense_f32_gemm_kernel_at(int i) {
    if (i < 0 || i >= condense_f32_gemm_kernel_count()) return NULL;
    return &kernels[i];
}

const condense_f32_gemm_kernel *condense_f32_gemm_kernel_for(condense_isa isa) {
    condense_isa limit = condense_isa_detected();
    if (isa > limit) isa = limit;
    const condense_f32_gemm_kernel *best = &kernels[0];
    for (int i = 0; i < condense_f32_gemm_kernel_count(); i++)
        if (kernels[i].isa <= isa) best = &kernels[i];
    return best;
}

/* A packed weight of n × k for this kernel with its panel storage allocated (NULL if out of
 * memory); both pack functions fill it. */
static condense_f32_packed *packed_alloc(const condense_f32_gemm_kernel *kernel, size_t n, size_t k) {
    condense_f32_packed *p = condense_zalloc(sizeof *p);
    if (!p) return NULL;
    const size_t nr = (size_t)kernel->nr;
    p->n = n;
    p->k = k;
    p->kernel = kernel;
    p->data = condense_aligned_alloc((n + nr - 1) / nr * k * nr * sizeof(float));
    if (!p->data) {
        free(p);
        return NULL;
    }
    return p;
}

condense_f32_packed *condense_f32_pack(const condense_f32_gemm_kernel *kernel, const float *w,
                                       size_t n, size_t k, size_t ldw, const float *bias) {
    condense_f32_packed *p = packed_alloc(kernel, n, k);
    if (!p) return NULL;
    const size_t nr = (size_t)kernel->nr;
    const size_t panels = (n + nr - 1) / nr;
    for (size_t pi = 0; pi < panels; pi++) {
        float *dst = p->data + pi * k * nr;
        size_t nv = n - pi * nr < nr ? n - pi * nr : nr;
        for (size_t kk = 0; kk < k; kk++) {
            for (size_t j = 0; j < nv; j++) dst[kk * nr + j] = w[(pi * nr + j) * ldw + kk];
            for (size_t j = nv; j < nr; j++) dst[kk * nr + j] = 0.0f;
        }
    }
    if (!condense_copy_bias(&p->bias, bias, n)) {
        condense_f32_packed_free(p);
        return NULL;
    }
    return p;
}

condense_f32_packed *condense_f32_pack_t(const condense_f32_gemm_kernel *kernel, const float *wt,
                                         size_t n, size_t k, size_t ldwt) {
    condense_f32_packed *p = packed_alloc(kernel, n, k);
    if (!p) return NULL;
    const size_t nr = (size_t)kernel->nr;
    const size_t panels = (n + nr - 1) / nr;
    /* Wᵀ is stored [K][N]: each panel row is a contiguous run of the source (the cheap direction). */
    for (size_t pi = 0; pi < panels; pi++) {
        float *dst = p->data + pi * k * nr;
        const size_t nv = n - pi * nr < nr ? n - pi * nr : nr;
        for (size_t kk = 0; kk < k; kk++) {
            const float *src = wt + kk * ldwt + pi * nr;
            for (size_t j = 0; j < nv; j++) dst[kk * nr + j] = src[j];
            for (size_t j = nv; j < nr; j++) dst[kk * nr + j] = 0.0f;
        }
    }
    return p;
}

void condense_f32_packed_free(condense_f32_packed *p) {
    if (!p) return;
    free(p->data);
    free(p->bias);
    free(p);
}

typedef struct {
    const condense_f32_packed *w;
    const float *x;
    size_t m, lda, ldy;
    float *y;
    int act;
    condense_tile_plan plan;
} gemm_job;

static void run_tile(const gemm_job *job, size_t tile) {
    const condense_f32_gemm_kernel *kr = job->w->kernel;
    const size_t mr_max = (size_t)kr->mr, nr = (size_t)kr->nr, kc_max = (size_t)kr->kc;
    const size_t n = job->w->n, k = job->w->k;
    size_t m0, mlen, p0, p1;
    condense_tile_range(&job->plan, tile, job->m, &m0, &mlen, &p0, &p1);
    size_t pc = 0;
    do { /* runs once with kc = 0 when K = 0, so bias and activation still apply */
        const size_t kc = k - pc < kc_max ? k - pc : kc_max;
        const int flags = (pc > 0 ? CONDENSE_UK_ACCUMULATE : 0) | (pc + kc >= k ? CONDENSE_UK_FINAL : 0);
        for (size_t p = p0; p < p1; p++) {
            const float *bp = job->w->data + p * k * nr + pc * nr;
            const int nv = (int)(n - p * nr < nr ? n - p * nr : nr);
            const float *bias = job->w->bias ? job->w->bias + p * nr : NULL;
            for (size_t ir = 0; ir < mlen; ir += mr_max) {
                const int mr = (int)(mlen - ir < mr_max ? mlen - ir : mr_max);
                kr->ukernel(mr, nv, kc, job->x + (m0 + ir) * job->lda + pc, job->lda, bp, job->y + (m0 + ir) * job->ldy + p * nr,
                            job->ldy, flags, bias, job->act);
            }
        }
        pc += kc;
    } while (pc < k);
}

/* Thread t of nt: a contiguous share of the tiles (as a static schedule). */
static void gemm_share(void *ctx, int t, int nt) {
    const gemm_job *job = ctx;
    const size_t tiles = (size_t)job->plan.tiles;
    for (size_t i = tiles * (size_t)t / (size_t)nt; i < tiles * (size_t)(t + 1) / (size_t)nt; i++) run_tile(job, i);
}

int condense_f32_gemm(const condense_f32_packed *w, size_t m, const float *x, size_t lda,
                      float *y, size_t ldy, int act, int threads) {
    if (m == 0 || w->n == 0) return CONDENSE_OK;
    const condense_f32_gemm_kernel *kr = w->kernel;
    const int nt = threads > 0 ? threads : condense_get_num_threads();
    const gemm_job job = {.w = w, .x = x, .m = m, .lda = lda, .ldy = ldy, .y = y, .act = act,
                          .plan = condense_plan_tiles(m, w->n, (size_t)kr->mc, (size_t)kr->nr, nt)};
    condense_team_run(job.plan.threads, gemm_share, (void *)&job);
    return CONDENSE_OK; /* reads X in place: nothing to allocate */
}

void condense_bias_activation(float *y, size_t ldy, size_t rows, size_t n0, size_t n1, const float *bias,
                              int act, condense_isa isa) {
    for (size_t i = 0; i < rows; i++) {
        float *yi = y + i * ldy;
        if (bias) for (size_t r = n0; r < n1; r++) yi[r] += bias[r];
        condense_f32_activation(yi + n0, n1 - n0, act, isa);
    }
}

void condense_f32_activation(float *y, size_t n, int act, condense_isa isa) {
#if CONDENSE_X86
    if (isa > condense_isa_detected()) isa = condense_isa_detected();
    if (isa >= CONDENSE_ISA_AVX512) { condense_f32_activation__avx512(y, n, act); return; }
    if (isa >= CONDENSE_ISA_AVX2) { condense_f32_activation__avx2(y, n, act); return; }
#elif CONDENSE_ARM64
    if (condense_isa_arm_simd(isa)) {
        condense_f32_activation__neon(y, n, act);
        return;
    }
#else
    (void)isa;
#endif
    condense_f32_activation__scalar(y, n, act);
}
