/* bf16 / f16 weights: the kernel table, packing and the driver. The driver is the f32 GEMM's
 * (tile plan, K slices kept in L2, contiguous shares of the tiles on the thread team); only the
 * micro-kernels differ: the
 * "widen" kernels turn 16-bit weights into f32 in registers (exact, f32 activations), the bf16
 * "dot" kernel multiplies bf16 pairs with vdpbf16ps on activations rounded to bf16 per call. */
#include "internal.h"

#include <string.h>

#define BOTH ((1u << CONDENSE_HALF_BF16) | (1u << CONDENSE_HALF_F16))
/* Lowest ISA first; for a type, the last runnable entry at or below the ISA wins. kc: the K
 * slice of a panel (kc · NR · 2 bytes ≤ 256 KiB stays in L2 across the row blocks). */
static const condense_half_kernel kernels[] = {
    {"half_widen_4x16__scalar", CONDENSE_ISA_SCALAR, 0, BOTH, 0, 4, 16, 4096, 64, condense_half_widen_4x16__scalar},
#if CONDENSE_X86
    {"half_widen_6x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, BOTH, 0, 6, 16, 8192, 72,
     condense_half_widen_6x16__avx2},
    {"half_widen_12x32__avx512", CONDENSE_ISA_AVX512, CONDENSE_CPU_F16C, BOTH, 0, 12, 32, 4096, 96,
     condense_half_widen_12x32__avx512},
    {"bf16_dot_12x32__avx512bf16", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512BF16, 1u << CONDENSE_HALF_BF16, 1, 12, 32,
     4096, 96, condense_bf16_dot_12x32__avx512bf16},
#endif
#if CONDENSE_ARM64
    {"half_widen_6x16__neon", CONDENSE_ISA_NEON, 0, BOTH, 0, 6, 16, 4096, 72, condense_half_widen_6x16__neon},
    /* FEAT_BF16 arrived with FEAT_I8MM (ARMv8.6: Graviton 3, Apple M2, Neoverse V1/N2): the top
     * rung, so CONDENSE_ISA=neon or dotprod keeps bf16 layers exact. */
    {"bf16_dot_6x16__bf16", CONDENSE_ISA_I8MM, CONDENSE_CPU_ARM_BF16, 1u << CONDENSE_HALF_BF16, 1, 6, 16, 4096, 72,
     condense_bf16_dot_6x16__bf16},
#endif
};
#undef BOTH

int condense_half_kernel_count(void) { return (int)(sizeof kernels / sizeof kernels[0]); }

const condense_half_kernel *condense_half_kernel_at(int i) {
    return i >= 0 && i < condense_half_kernel_count() ? &kernels[i] : NULL;
}

const condense_half_kernel *condense_half_kernel_for(int type, condense_isa isa) {
    if (type != CONDENSE_HALF_BF16 && type != CONDENSE_HALF_F16) return NULL;
    const condense_half_kernel *best = NULL;
    for (int i = 0; i < condense_half_kernel_count(); i++) {
        const condense_half_kernel *k = &kernels[i];
        if (!((k->types >> type) & 1) || k->isa > isa || !condense_kernel_runnable(k->isa, k->features)) continue;
        best = k;
    }
    return best;
}

uint16_t condense_f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = {f};
    if ((v.u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((v.u >> 16) | 0x40); /* quiet NaN */
    return (uint16_t)((v.u + 0x7FFFu + ((v.u >> 16) & 1u)) >> 16);
}

condense_half_packed *condense_half_pack(condense_isa isa, int type, const uint16_t *w, size_t n, size_t k,
                                         size_t ldw, const float *bias) {
    return condense_half_pack_for(condense_half_kernel_for(type, isa), type, w, n, k, ldw, bias);
}

condense_half_packed *condense_half_pack_for(const condense_half_kernel *kr, int type, const uint16_t *w, size_t n,
                                             size_t k, size_t ldw, const float *bias) {
    if (!kr || (type != CONDENSE_HALF_BF16 && type != CONDENSE_HALF_F16) || !((kr->types >> type) & 1) ||
        !condense_kernel_runnable(kr->isa, kr->features))
        return NULL;
    condense_half_packed *p = condense_zalloc(sizeof *p);
    if (!p) return NULL;
    const size_t nr = (size_t)kr->nr, panels = (n + nr - 1) / nr;
    p->n = n;
    p->k = k;
    p->type = type;
    p->kernel = kr;
    p->kstored = type == CONDENSE_HALF_BF16 ? (k + 1) / 2 * 2 : k;
    size_t elems;
    if (__builtin_mul_overflow(panels * nr, p->kstored, &elems) || elems > SIZE_MAX / 2) goto fail;
    p->data = condense_aligned_alloc((elems ? elems : 1) * sizeof(uint16_t));
    if (!p->data) goto fail;
    for (size_t pi = 0; pi < panels; pi++) {
        uint16_t *dst = p->data + pi * p->kstored * nr;
        for (size_t j = 0; j < nr; j++) {
            const size_t r = pi * nr + j;
            for (size_t kk = 0; kk < p->kstored; kk++) {
                const uint16_t v = r < n && kk < k ? w[r * ldw + kk] : 0;
                /* bf16: pair kk/2 of row j at [kk/2][j][kk%2]; f16: [kk][j]. */
                if (type == CONDENSE_HALF_BF16) dst[(kk / 2) * nr * 2 + j * 2 + kk % 2] = v;
                else dst[kk * nr + j] = v;
            }
        }
    }
    if (!condense_copy_bias(&p->bias, bias, n)) goto fail;
    return p;
fail:
    condense_half_packed_free(p);
    return NULL;
}

void condense_half_packed_free(condense_half_packed *p) {
    if (!p) return;
    free(p->data);
    free(p->bias);
    free(p);
}

typedef struct {
    const condense_half_packed *w;
    const void *x;          /* f32 rows, or bf16 rows for the dot kernel */
    size_t m, lda, ldy, xbytes;
    float *y;
    int act;
    condense_tile_plan plan;
} half_job;

static void run_tile(const half_job *job, size_t tile) {
    const condense_half_kernel *kr = job->w->kernel;
    const size_t mr_max = (size_t)kr->mr, nr = (size_t)kr->nr, kc_max = (size_t)kr->kc;
    const size_t n = job->w->n, ks = job->w->kstored, k = job->w->k;
    size_t m0, mlen, p0, p1;
    condense_tile_range(&job->plan, tile, job->m, &m0, &mlen, &p0, &p1);
    size_t pc = 0;
    do { /* once with kc = 0 when K = 0: bias and activation still apply */
        const size_t kc = k - pc < kc_max ? k - pc : kc_max; /* kc_max is even: slices keep pairs whole */
        const int flags = (pc > 0 ? CONDENSE_UK_ACCUMULATE : 0) | (pc + kc >= k ? CONDENSE_UK_FINAL : 0);
        for (size_t p = p0; p < p1; p++) {
            const uint16_t *bp = job->w->data + p * ks * nr + pc * nr;
            const int nv = (int)(n - p * nr < nr ? n - p * nr : nr);
            const float *bias = job->w->bias ? job->w->bias + p * nr : NULL;
            for (size_t ir = 0; ir < mlen; ir += mr_max) {
                const int mr = (int)(mlen - ir < mr_max ? mlen - ir : mr_max);
                const char *a = (const char *)job->x + ((m0 + ir) * job->lda + pc) * job->xbytes;
                kr->ukernel(job->w->type, mr, nv, kc, a, job->lda, bp, job->y + (m0 + ir) * job->ldy + p * nr,
                            job->ldy, flags, bias, job->act);
            }
        }
        pc += kc;
    } while (pc < k);
}

static void half_share(void *ctx, int t, int nt) {
    const half_job *job = ctx;
    const size_t tiles = (size_t)job->plan.tiles;
    for (size_t i = tiles * (size_t)t / (size_t)nt; i < tiles * (size_t)(t + 1) / (size_t)nt; i++) run_tile(job, i);
}

int condense_half_gemm(const condense_half_packed *w, size_t m, const float *x, size_t lda, float *y,
                       size_t ldy, int act, int threads) {
    if (m == 0 || w->n == 0) return CONDENSE_OK;
    const condense_half_kernel *kr = w->kernel;
    const int nt = threads > 0 ? threads : condense_get_num_threads();
    half_job job = {.w = w, .x = x, .m = m, .lda = lda, .ldy = ldy, .xbytes = sizeof(float), .y = y, .act = act,
                    .plan = condense_plan_tiles(m, w->n, (size_t)kr->mc, (size_t)kr->nr, nt)};
    if (kr->bf16_activations) {
        size_t bytes;
        if (__builtin_mul_overflow(m, w->kstored * sizeof(uint16_t), &bytes)) return CONDENSE_ERR_INVALID;
        uint16_t *xb = condense_scratch(CONDENSE_SCRATCH_QX, bytes + 64);
        if (!xb) return CONDENSE_ERR_NO_MEMORY;
#if CONDENSE_X86
        condense_bf16_round_rows__avx512bf16(x, m, w->k, lda, xb, w->kstored);
#else
        /* The scalar rounding (the same bits as x86's vcvtneps2bf16): M·K conversions beside
         * M·N·K multiply-adds. */
        for (size_t i = 0; i < m; i++) {
            for (size_t c = 0; c < w->k; c++) xb[i * w->kstored + c] = condense_f32_to_bf16(x[i * lda + c]);
            for (size_t c = w->k; c < w->kstored; c++) xb[i * w->kstored + c] = 0;
        }
#endif
        job.x = xb;
        job.lda = w->kstored;
        job.xbytes = sizeof(uint16_t);
    }
    condense_team_run(job.plan.threads, half_share, &job);
    return CONDENSE_OK;
}
