/* int4 driver: packing for the dequantize and integer paths, and threads. */
#include "internal.h"

#include <string.h>

/* The one registration point: each kernel's descriptor and code together. */
typedef struct q4_kernel_impl {
    condense_q4_kernel info; /* first: its address is the entry's */
    void (*unpack)(const condense_q4_packed *w, size_t panel, size_t k0, size_t kc, float *buf);
#if CONDENSE_SIMD
    void (*integer)(const condense_q4_packed *w, size_t p0, size_t p1, size_t m, const uint8_t *xq, size_t ldq,
                    const float *sx, const int32_t *zx, float *y, size_t ldy, int act);
#endif
} q4_kernel_impl;

static const q4_kernel_impl kernels[] = {
    /* The dequantize path runs the f32 micro-kernel of its level on panels unpacked per tile. */
    {{"q4_gemm_dequant_4x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_Q4_DEQUANT}, condense_q4_unpack__scalar
#if CONDENSE_X86
     , NULL},
    {{"q4_gemm_dequant_6x16__avx2", CONDENSE_ISA_AVX2, 0, CONDENSE_Q4_DEQUANT}, condense_q4_unpack__avx2, NULL},
    {{"q4_gemm_dequant_12x32__avx512", CONDENSE_ISA_AVX512, 0, CONDENSE_Q4_DEQUANT}, condense_q4_unpack__avx512, NULL},
    {{"q4_gemm_vnni_4x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI, CONDENSE_Q4_INTEGER}, NULL,
     condense_q4_integer__avx512vnni},
#elif CONDENSE_ARM64
     , NULL},
    {{"q4_gemm_dequant_6x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_Q4_DEQUANT}, condense_q4_unpack__neon, NULL},
    {{"q4_gemm_sdot_4x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_Q4_INTEGER}, NULL,
     condense_q4_integer__dotprod},
    {{"q4_gemm_usdot_4x16__i8mm", CONDENSE_ISA_I8MM, CONDENSE_CPU_I8MM, CONDENSE_Q4_INTEGER}, NULL,
     condense_q4_integer__i8mm},
#else
    },
#endif
};

int condense_q4_kernel_count(void) { return (int)(sizeof kernels / sizeof kernels[0]); }

const condense_q4_kernel *condense_q4_kernel_at(int i) {
    return i >= 0 && i < condense_q4_kernel_count() ? &kernels[i].info : NULL;
}

const condense_q4_kernel *condense_q4_kernel_for(condense_isa isa, int path) {
    const condense_q4_kernel *best = NULL;
    for (int i = 0; i < condense_q4_kernel_count(); i++) {
        const condense_q4_kernel *k = &kernels[i].info;
        if (k->path != path || k->isa > isa || !condense_kernel_runnable(k->isa, k->features)) continue;
        if (!best || k->isa > best->isa) best = k;
    }
    if (!best && path == CONDENSE_Q4_INTEGER) return condense_q4_kernel_for(isa, CONDENSE_Q4_DEQUANT);
    return best;
}

static const q4_kernel_impl *impl(const condense_q4_packed *w) { return (const q4_kernel_impl *)w->kernel; }

condense_q4_packed *condense_q4_pack(condense_isa isa, int path, const uint8_t *packed,
                                     const float *scales, size_t n, size_t k, size_t group,
                                     const float *bias) {
    if (group == 0 || group % 16 != 0) return NULL;
    condense_q4_packed *p = condense_zalloc(sizeof *p);
    if (!p) return NULL;
    const size_t k16 = (k + 15) / 16 * 16, groups = k ? (k + group - 1) / group : 0;
    const size_t row_bytes = (k + 1) / 2;
    p->n = n;
    p->k = k;
    p->k16 = k16;
    p->group = group;
    p->groups = groups;
    p->isa = isa > condense_isa_detected() ? condense_isa_detected() : isa;
    p->kernel = condense_q4_kernel_for(p->isa, path);
    if (!p->kernel) goto fail;
    p->path = p->kernel->path;
    if (p->path == CONDENSE_Q4_DEQUANT) {
        p->f32 = condense_f32_gemm_kernel_for(p->kernel->isa);
        p->nr = (size_t)p->f32->nr;
        const size_t nr = p->nr, half = nr / 2, panels = (n + nr - 1) / nr;
        p->nib = condense_zalloc(panels * k16 * half + 64);
        p->pscale = condense_zalloc((panels * groups ? panels * groups : 1) * nr * sizeof(float));
        if (!p->nib || !p->pscale) goto fail;
        for (size_t r = 0; r < n; r++) {
            const size_t pi = r / nr, j = r % nr, byte = j % half, shift = j < half ? 0 : 4;
            for (size_t c = 0; c < k; c++) {
                const uint8_t q = (uint8_t)((packed[r * row_bytes + c / 2] >> (4 * (c % 2))) & 0xF);
                p->nib[(pi * k16 + c) * half + byte] |= (uint8_t)(q << shift);
            }
            for (size_t g = 0; g < groups; g++) p->pscale[(pi * groups + g) * nr + j] = scales[r * groups + g];
        }
    } else {
        const size_t panels = (n + 15) / 16;
        p->blocks = condense_aligned_alloc(panels * (k16 / 8) * 64 + 64);
        p->pscale = condense_aligned_alloc((panels * groups ? panels * groups : 1) * 16 * sizeof(float));
        p->pcomp = condense_aligned_alloc((panels ? panels : 1) * 16 * sizeof(float));
        if (!p->blocks || !p->pscale || !p->pcomp) goto fail;
        memset(p->blocks, 0x88, panels * (k16 / 8) * 64); /* nibble 8 = weight 0 */
        memset(p->pscale, 0, panels * groups * 16 * sizeof(float));
        memset(p->pcomp, 0, panels * 16 * sizeof(float));
        for (size_t r = 0; r < n; r++) {
            const size_t pi = r / 16, j = r % 16;
            int32_t gsum = 0;
            double comp = 0;
            for (size_t c = 0; c < k; c++) {
                const uint8_t byte = packed[r * row_bytes + c / 2];
                const int q = c % 2 == 0 ? (int8_t)(uint8_t)(byte << 4) >> 4 : (int8_t)byte >> 4;
                const size_t qp = c / 8, e = c % 8;
                uint8_t *dst = p->blocks + (pi * (k16 / 8) + qp) * 64 + j * 4 + (e % 4);
                const uint8_t u = (uint8_t)((q + 8) & 0xF);
                *dst = e < 4 ? (uint8_t)((*dst & 0xF0) | u) : (uint8_t)((*dst & 0x0F) | (u << 4));
                gsum += q;
                if (c + 1 == k || (c + 1) % group == 0) { /* a group ends: fold its sum in */
                    comp += (double)scales[r * groups + c / group] * gsum;
                    gsum = 0;
                }
            }
            p->pcomp[pi * 16 + j] = (float)comp;
            for (size_t g = 0; g < groups; g++) p->pscale[(pi * groups + g) * 16 + j] = scales[r * groups + g];
        }
    }
    if (!condense_copy_bias(&p->bias, bias, n)) goto fail;
    return p;
fail:
    condense_q4_packed_free(p);
    return NULL;
}

void condense_q4_packed_free(condense_q4_packed *p) {
    if (!p) return;
    free(p->nib);
    free(p->blocks);
    free(p->pscale);
    free(p->pcomp);
    free(p->bias);
    free(p);
}

const char *condense_q4_kernel_name(const condense_q4_packed *w) { return w->kernel->name; }

#ifndef Q4_DEQUANT_KC
#define Q4_DEQUANT_KC 256
#endif

typedef struct {
    const condense_q4_packed *w;
    const float *x;
    size_t m, lda, ldy;
    float *y;
    int act;
    condense_tile_plan plan;
} q4_job;

/* One tile of the dequantize path: per K slice and panel, unpack once into an L1-resident f32
 * panel and run the f32 micro-kernel over the tile's rows of X (as the f32 GEMM's tile loop). */
static int dequant_tile(const q4_job *job, size_t tile) {
    const condense_q4_packed *w = job->w;
    const condense_f32_gemm_kernel *kr = w->f32;
    const size_t mr_max = (size_t)kr->mr, nr = w->nr, n = w->n, k = w->k;
    /* A short slice keeps the unpacked panel in L1 between the unpack and the micro-kernel that
     * reads it (the f32 GEMM's 4096-column slices made the path 20–25 % slower at M = 32). */
    const size_t kc_max = Q4_DEQUANT_KC;
    float *buf = condense_scratch(CONDENSE_SCRATCH_WROW, kc_max * nr * sizeof(float));
    if (!buf) return CONDENSE_ERR_NO_MEMORY;
    size_t m0, mlen, p0, p1;
    condense_tile_range(&job->plan, tile, job->m, &m0, &mlen, &p0, &p1);
    size_t pc = 0;
    do { /* once with kc = 0 when K = 0: bias and activation still apply */
        const size_t kc = k - pc < kc_max ? k - pc : kc_max;
        const int flags = (pc > 0 ? CONDENSE_UK_ACCUMULATE : 0) | (pc + kc >= k ? CONDENSE_UK_FINAL : 0);
        for (size_t p = p0; p < p1; p++) {
            impl(w)->unpack(w, p, pc, kc, buf);
            const int nv = (int)(n - p * nr < nr ? n - p * nr : nr);
            const float *bias = w->bias ? w->bias + p * nr : NULL;
            for (size_t ir = 0; ir < mlen; ir += mr_max) {
                const int mr = (int)(mlen - ir < mr_max ? mlen - ir : mr_max);
                kr->ukernel(mr, nv, kc, job->x + (m0 + ir) * job->lda + pc, job->lda, buf,
                            job->y + (m0 + ir) * job->ldy + p * nr, job->ldy, flags, bias, job->act);
            }
        }
        pc += kc;
    } while (pc < k);
    return CONDENSE_OK;
}

typedef struct { const q4_job *job; int status; } q4_share_ctx;

static void dequant_share(void *ctx, int t, int nt) {
    q4_share_ctx *c = ctx;
    const size_t tiles = (size_t)c->job->plan.tiles;
    for (size_t i = tiles * (size_t)t / (size_t)nt; i < tiles * (size_t)(t + 1) / (size_t)nt; i++) {
        const int s = dequant_tile(c->job, i);
        if (s != CONDENSE_OK) __atomic_store_n(&c->status, s, __ATOMIC_RELAXED);
    }
}

typedef struct {
    const condense_q4_packed *w;
    size_t panels, m, ldq, ldy;
    const uint8_t *xq;
    const float *sx;
    const int32_t *zx;
    float *y;
    int act;
} q4_int_ctx;

#if CONDENSE_SIMD
static void integer_share(void *ctx, int t, int nt) {
    const q4_int_ctx *c = ctx;
    const size_t p0 = c->panels * (size_t)t / (size_t)nt, p1 = c->panels * (size_t)(t + 1) / (size_t)nt;
    if (p1 > p0) impl(c->w)->integer(c->w, p0, p1, c->m, c->xq, c->ldq, c->sx, c->zx, c->y, c->ldy, c->act);
}
#endif

int condense_q4_gemm(const condense_q4_packed *w, size_t m, const float *x, size_t lda, float *y,
                     size_t ldy, int act, int threads) {
    if (m == 0 || w->n == 0) return CONDENSE_OK;
    int nt = threads > 0 ? threads : condense_get_num_threads();
    if (w->path == CONDENSE_Q4_DEQUANT) {
        const q4_job job = {.w = w, .x = x, .m = m, .lda = lda, .ldy = ldy, .y = y, .act = act,
                            .plan = condense_plan_tiles(m, w->n, (size_t)w->f32->mc, w->nr, nt)};
        q4_share_ctx c = {&job, CONDENSE_OK}; /* any worker's failure fails the call */
        condense_team_run(job.plan.threads, dequant_share, &c);
        return c.status;
    }
#if CONDENSE_SIMD
    const size_t ldq = (w->k16 + 63) / 64 * 64;
    const size_t bytes = m * ldq + m * (sizeof(float) + sizeof(int32_t)) + 64;
    uint8_t *xq = condense_scratch(CONDENSE_SCRATCH_QX, bytes);
    if (!xq) return CONDENSE_ERR_NO_MEMORY;
    float *sx = (float *)(xq + m * ldq);
    int32_t *zx = (int32_t *)(sx + m);
    condense_q8_quantize_rows(x, m, w->k, lda, xq, ldq, w->k16, sx, zx, NULL, NULL, w->isa);
    const size_t panels = (w->n + 15) / 16;
    if ((size_t)nt > panels) nt = (int)panels;
    q4_int_ctx c = {w, panels, m, ldq, ldy, xq, sx, zx, y, act};
    condense_team_run(nt, integer_share, &c);
#endif
    return CONDENSE_OK;
}
