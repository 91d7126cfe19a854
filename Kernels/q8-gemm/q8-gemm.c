/* int8 GEMM driver: kernel table, weight packing per kernel layout, per-row activation
 * quantization, tiling and threads, and the dequantize + bias + activation epilogue. */
#include "internal.h"

#include <math.h>
#include <string.h>

static const condense_q8_kernel kernels[] = {
    {"q8_gemm_4x16__scalar", CONDENSE_ISA_SCALAR, 0, 4, 16, 4, condense_q8_ukernel_4x16__scalar},
#if CONDENSE_X86
    {"q8_gemm_4x16__avx2", CONDENSE_ISA_AVX2, 0, 4, 16, 2, condense_q8_ukernel_4x16__avx2},
    {"q8_gemm_6x16__avxvnni", CONDENSE_ISA_AVXVNNI, CONDENSE_CPU_AVXVNNI, 6, 16, 4, condense_q8_ukernel_6x16__avxvnni},
    /* The same kernel in EVEX encoding: never dispatched (the 12x32 kernel below wins at its
     * level); it lets AVX-512 machines without AVX-VNNI test the AVX-VNNI kernel's code. */
    {"q8_gemm_6x16__avx512vnni_ymm", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI, 6, 16, 4,
     condense_q8_ukernel_6x16__avx512vnni_ymm},
    {"q8_gemm_12x32__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI, 12, 32, 4,
     condense_q8_ukernel_12x32__avx512vnni},
#endif
#if CONDENSE_ARM64
    {"q8_gemm_4x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, 4, 16, 4, condense_q8_ukernel_4x16__dotprod},
    {"q8_gemm_4x16__i8mm", CONDENSE_ISA_I8MM, CONDENSE_CPU_I8MM, 4, 16, 4, condense_q8_ukernel_4x16__i8mm},
#endif
};

int condense_q8_kernel_count(void) { return (int)(sizeof kernels / sizeof kernels[0]); }

const condense_q8_kernel *condense_q8_kernel_at(int i) {
    return i >= 0 && i < condense_q8_kernel_count() ? &kernels[i] : NULL;
}

const condense_q8_kernel *condense_q8_kernel_for(condense_isa isa) {
    if (isa > condense_isa_detected()) isa = condense_isa_detected();
    const uint32_t have = condense_cpu_features();
    const condense_q8_kernel *best = &kernels[0];
    for (int i = 0; i < condense_q8_kernel_count(); i++)
        if (kernels[i].isa <= isa && (kernels[i].features & have) == kernels[i].features) best = &kernels[i];
    return best;
}

condense_q8_packed *condense_q8_pack(const condense_q8_kernel *kernel, const int8_t *w, size_t n,
                                     size_t k, size_t ldw, const float *scale, const float *bias) {
    condense_q8_packed *p = condense_zalloc(sizeof *p);
    if (!p) return NULL;
    const size_t nr = (size_t)kernel->nr, k4 = (k + 3) / 4 * 4, panels = (n + nr - 1) / nr;
    p->n = n;
    p->k = k;
    p->k4 = k4;
    p->kernel = kernel;
    const size_t bytes = kernel->kstep == 2 ? panels * k4 * nr * 2 : panels * k4 * nr;
    p->data = condense_aligned_alloc(bytes + 64);
    p->wsum = condense_aligned_alloc((n ? n : 1) * sizeof(int32_t));
    p->scale = condense_aligned_alloc((n ? n : 1) * sizeof(float));
    if (!p->data || !p->wsum || !p->scale) goto fail;
    memset(p->data, 0, bytes);
    for (size_t r = 0; r < n; r++) {
        int32_t sum = 0;
        for (size_t c = 0; c < k; c++) sum += w[r * ldw + c];
        p->wsum[r] = sum;
        p->scale[r] = scale[r];
        const size_t pi = r / nr, j = r % nr;
        for (size_t c = 0; c < k; c++) {
            const size_t q = c / 4, e = c % 4;
            if (kernel->kstep == 4) {
                ((int8_t *)p->data)[pi * k4 * nr + q * nr * 4 + j * 4 + e] = w[r * ldw + c];
            } else { /* int16 pairs: per quad, pair-step e/2, channel j, element e%2 */
                ((int16_t *)p->data)[pi * k4 * nr + q * nr * 4 + (e / 2) * nr * 2 + j * 2 + e % 2] = w[r * ldw + c];
            }
        }
    }
    if (!condense_copy_bias(&p->bias, bias, n)) goto fail;
    return p;
fail:
    condense_q8_packed_free(p);
    return NULL;
}

void condense_q8_packed_free(condense_q8_packed *p) {
    if (!p) return;
    free(p->data);
    free(p->wsum);
    free(p->scale);
    free(p->bias);
    free(p);
}

/* u8 asymmetric per row; the range always contains 0 so zero is exact. NaN quantizes to the
 * zero point (int8 cannot carry it), ±Inf to the ends of the range. */
void condense_q8_quantize_rows__scalar(const float *x, size_t m, size_t k, size_t lda, uint8_t *xq,
                                       size_t ldq, size_t k4, float *sx, int32_t *zx,
                                       const float *static_scale, const int32_t *static_zp) {
    for (size_t i = 0; i < m; i++) {
        const float *xi = x + i * lda;
        uint8_t *qi = xq + i * ldq;
        float s;
        int32_t z;
        if (static_scale) {
            s = *static_scale;
            z = *static_zp;
        } else {
            float lo = 0, hi = 0;
            for (size_t c = 0; c < k; c++) condense_q8_range_add(xi[c], &lo, &hi);
            condense_q8_range_params(lo, hi, &s, &z);
        }
        const float inv = 1.0f / s, zf = (float)z;
        for (size_t c = 0; c < k; c++) qi[c] = condense_q8_quantize_one(xi[c], inv, zf);
        for (size_t c = k; c < k4; c++) qi[c] = 0;
        sx[i] = s;
        zx[i] = z;
    }
}

void condense_q8_quantize_rows(const float *x, size_t m, size_t k, size_t lda, uint8_t *xq,
                               size_t ldq, size_t k4, float *sx, int32_t *zx,
                               const float *static_scale, const int32_t *static_zp, condense_isa isa) {
#if CONDENSE_X86
    if (isa > condense_isa_detected()) isa = condense_isa_detected();
    if (isa >= CONDENSE_ISA_AVX512) {
        condense_q8_quantize_rows__avx512(x, m, k, lda, xq, ldq, k4, sx, zx, static_scale, static_zp);
        return;
    }
#elif CONDENSE_ARM64
    if (condense_isa_arm_simd(isa)) {
        condense_q8_quantize_rows__neon(x, m, k, lda, xq, ldq, k4, sx, zx, static_scale, static_zp);
        return;
    }
#endif
    condense_q8_quantize_rows__scalar(x, m, k, lda, xq, ldq, k4, sx, zx, static_scale, static_zp);
}

typedef struct {
    const condense_q8_packed *w;
    const uint8_t *xq;
    size_t m, ldq;
    int32_t *acc;          /* raw mode */
    size_t ldacc;
    float *y;              /* dequantize mode */
    size_t ldy;
    const float *sx;
    const int32_t *zx;
    int act;
    condense_tile_plan plan;
} q8_job;

static void q8_tile(const q8_job *job, size_t tile) {
    const condense_q8_kernel *kr = job->w->kernel;
    const size_t nr = (size_t)kr->nr, mr_max = (size_t)kr->mr, n = job->w->n, kq = job->w->k4 / 4;
    size_t m0, mlen, p0, p1;
    condense_tile_range(&job->plan, tile, job->m, &m0, &mlen, &p0, &p1);
    const size_t panel_bytes = job->w->k4 * nr * (kr->kstep == 2 ? 2 : 1);
    for (size_t p = p0; p < p1; p++) {
        const void *bp = (const char *)job->w->data + p * panel_bytes;
        const int nv = (int)(n - p * nr < nr ? n - p * nr : nr);
        for (size_t ir = 0; ir < mlen; ir += mr_max) {
            const int mr = (int)(mlen - ir < mr_max ? mlen - ir : mr_max);
            const size_t row = m0 + ir;
            condense_q8_epilogue ep = {0};
            ep.wsum = job->w->wsum + p * nr; /* also raw: the dotprod kernel's x − 128 takes it */
            if (job->acc) {
                ep.c = job->acc + row * job->ldacc + p * nr;
                ep.ldc = job->ldacc;
            } else {
                ep.y = job->y + row * job->ldy + p * nr;
                ep.ldy = job->ldy;
                ep.sx = job->sx + row;
                ep.zx = job->zx + row;
                ep.sw = job->w->scale + p * nr;
                ep.bias = job->w->bias ? job->w->bias + p * nr : NULL;
                ep.act = job->act;
            }
            kr->ukernel(mr, nv, kq, job->xq + row * job->ldq, job->ldq, bp, &ep);
        }
    }
}

static void q8_share(void *ctx, int t, int nt) {
    const q8_job *job = ctx;
    const size_t tiles = (size_t)job->plan.tiles;
    for (size_t i = tiles * (size_t)t / (size_t)nt; i < tiles * (size_t)(t + 1) / (size_t)nt; i++) q8_tile(job, i);
}

typedef struct {
    const float *x;
    size_t m, k, lda, ldq, k4;
    uint8_t *xq;
    float *sx;
    int32_t *zx;
    const float *static_scale;
    const int32_t *static_zp;
    condense_isa isa;
} q8_quant_ctx;

static void q8_quant_share(void *ctx, int t, int nt) {
    const q8_quant_ctx *c = ctx;
    const size_t r0 = c->m * (size_t)t / (size_t)nt, r1 = c->m * (size_t)(t + 1) / (size_t)nt;
    if (r1 > r0)
        condense_q8_quantize_rows(c->x + r0 * c->lda, r1 - r0, c->k, c->lda, c->xq + r0 * c->ldq, c->ldq, c->k4, c->sx + r0,
                                  c->zx + r0, c->static_scale, c->static_zp, c->isa);
}

typedef struct {
    q8_quant_ctx quant;
    const q8_job *job;
} q8_fused_ctx;

static void q8_fused_share(void *ctx, int t, int nt) {
    const q8_fused_ctx *c = ctx;
    q8_quant_share((void *)&c->quant, t, nt);
    condense_team_barrier(nt);
    q8_share((void *)c->job, t, nt);
}

static void q8_plan(q8_job *job, int threads) {
    const condense_q8_kernel *kr = job->w->kernel;
    const int nt = threads > 0 ? threads : condense_get_num_threads();
    job->plan = condense_plan_tiles(job->m, job->w->n, (size_t)kr->mr * 8, (size_t)kr->nr, nt);
}

int condense_q8_gemm_s32(const condense_q8_packed *w, size_t m, const uint8_t *xq, size_t ldq,
                         int32_t *acc, size_t ldacc, int threads) {
    if (m == 0 || w->n == 0) return CONDENSE_OK;
    q8_job job = {.w = w, .xq = xq, .m = m, .ldq = ldq, .acc = acc, .ldacc = ldacc};
    q8_plan(&job, threads);
    condense_team_run(job.plan.threads, q8_share, &job);
    return CONDENSE_OK;
}

int condense_q8_gemm(const condense_q8_packed *w, size_t m, const float *x, size_t lda, float *y,
                     size_t ldy, int act, int threads, const float *static_scale,
                     const int32_t *static_zp) {
    if (m == 0 || w->n == 0) return CONDENSE_OK;
    const size_t k4 = w->k4, ldq = (k4 + 63) / 64 * 64;
    const size_t bytes = m * ldq + m * (sizeof(float) + sizeof(int32_t)) + 64;
    uint8_t *xq = condense_scratch(CONDENSE_SCRATCH_QX, bytes);
    if (!xq) return CONDENSE_ERR_NO_MEMORY;
    const condense_isa isa = w->kernel->isa;
    float *sx = (float *)(xq + m * ldq);
    int32_t *zx = (int32_t *)(sx + m);
    q8_job job = {.w = w, .xq = xq, .m = m, .ldq = ldq, .y = y, .ldy = ldy, .sx = sx, .zx = zx, .act = act};
    q8_plan(&job, threads);
    /* One team job: each thread quantizes its share of the rows of X, the team meets, then the
     * tiles (before, X below 65 536 elements was quantized by one thread while the other waited). */
    q8_fused_ctx c = {{x, m, w->k, lda, ldq, k4, xq, sx, zx, static_scale, static_zp, isa}, &job};
    condense_team_run(job.plan.threads, q8_fused_share, &c);
    return CONDENSE_OK;
}
