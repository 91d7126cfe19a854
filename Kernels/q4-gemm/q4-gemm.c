/* int4 driver: packing for the dequantize and integer paths, and threads. */
#include "internal.h"
#include "omp_shim.h"

#include <string.h>

/* The one registration point: each kernel's descriptor and code together. */
typedef struct q4_kernel_impl {
    condense_q4_kernel info; /* first: its address is the entry's */
    int (*dequant)(const condense_q4_packed *w, size_t n0, size_t n1, size_t m, const float *x, size_t lda,
                   float *y, size_t ldy);
#if CONDENSE_X86
    void (*integer)(const condense_q4_packed *w, size_t p0, size_t p1, size_t m, const uint8_t *xq, size_t ldq,
                    const float *sx, const int32_t *zx, float *y, size_t ldy, int act);
#endif
} q4_kernel_impl;

static const q4_kernel_impl kernels[] = {
    {{"q4_gemm_dequant__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_Q4_DEQUANT}, condense_q4_dequant__scalar
#if CONDENSE_X86
     , NULL},
    {{"q4_gemm_dequant__avx2", CONDENSE_ISA_AVX2, 0, CONDENSE_Q4_DEQUANT}, condense_q4_dequant__avx2, NULL},
    {{"q4_gemm_dequant__avx512", CONDENSE_ISA_AVX512, 0, CONDENSE_Q4_DEQUANT}, condense_q4_dequant__avx512, NULL},
    {{"q4_gemm_vnni_4x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI, CONDENSE_Q4_INTEGER}, NULL,
     condense_q4_integer__avx512vnni},
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
        p->nib = condense_aligned_alloc(n * (k16 / 2) + 64);
        p->scale = condense_aligned_alloc((n * groups ? n * groups : 1) * sizeof(float));
        if (!p->nib || !p->scale) goto fail;
        for (size_t r = 0; r < n; r++) {
            memset(p->nib + r * (k16 / 2), 0, k16 / 2);
            memcpy(p->nib + r * (k16 / 2), packed + r * row_bytes, row_bytes);
        }
        memcpy(p->scale, scales, n * groups * sizeof(float));
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
    free(p->scale);
    free(p->blocks);
    free(p->pscale);
    free(p->pcomp);
    free(p->bias);
    free(p);
}

const char *condense_q4_kernel_name(const condense_q4_packed *w) { return w->kernel->name; }

static int dequant_rows(const condense_q4_packed *w, size_t n0, size_t n1, size_t m, const float *x,
                        size_t lda, float *y, size_t ldy, int act) {
    const int status = impl(w)->dequant(w, n0, n1, m, x, lda, y, ldy);
    if (status != CONDENSE_OK) return status;
    condense_bias_activation(y, ldy, m, n0, n1, w->bias, act, w->isa);
    return CONDENSE_OK;
}

int condense_q4_gemm(const condense_q4_packed *w, size_t m, const float *x, size_t lda, float *y,
                     size_t ldy, int act, int threads) {
    if (m == 0 || w->n == 0) return CONDENSE_OK;
    int nt = threads > 0 ? threads : condense_get_num_threads();
    if (w->path == CONDENSE_Q4_DEQUANT) {
        if ((size_t)nt > w->n) nt = (int)w->n;
        if (nt <= 1) return dequant_rows(w, 0, w->n, m, x, lda, y, ldy, act);
        int status = CONDENSE_OK; /* any worker's failure fails the call */
#pragma omp parallel num_threads(nt)
        {
            const size_t t = (size_t)omp_get_thread_num(), T = (size_t)omp_get_num_threads();
            const int s = dequant_rows(w, w->n * t / T, w->n * (t + 1) / T, m, x, lda, y, ldy, act);
            if (s != CONDENSE_OK) __atomic_store_n(&status, s, __ATOMIC_RELAXED);
        }
        return status;
    }
#if CONDENSE_X86
    const size_t ldq = (w->k16 + 63) / 64 * 64;
    const size_t bytes = m * ldq + m * (sizeof(float) + sizeof(int32_t)) + 64;
    uint8_t *xq = condense_scratch(CONDENSE_SCRATCH_QX, bytes);
    if (!xq) return CONDENSE_ERR_NO_MEMORY;
    float *sx = (float *)(xq + m * ldq);
    int32_t *zx = (int32_t *)(sx + m);
    condense_q8_quantize_rows(x, m, w->k, lda, xq, ldq, w->k16, sx, zx, NULL, NULL, w->isa);
    const size_t panels = (w->n + 15) / 16;
    if ((size_t)nt > panels) nt = (int)panels;
    if (nt <= 1) {
        impl(w)->integer(w, 0, panels, m, xq, ldq, sx, zx, y, ldy, act);
        return CONDENSE_OK;
    }
#pragma omp parallel num_threads(nt)
    {
        const size_t t = (size_t)omp_get_thread_num(), T = (size_t)omp_get_num_threads();
        impl(w)->integer(w, panels * t / T, panels * (t + 1) / T, m, xq, ldq, sx, zx, y, ldy, act);
    }
#endif
    return CONDENSE_OK;
}
