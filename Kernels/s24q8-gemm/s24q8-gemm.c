/* 2:4-int8 driver: packing (K to 64, masks as 64-bit words), row quantization of X, threads,
 * and the dequantize + bias + activation epilogue. */
#include "internal.h"

#include <string.h>

/* The one registration point: each kernel's descriptor and code together. */
typedef struct s24q8_kernel_impl {
    condense_s24q8_kernel info; /* first: its address is the entry's */
    void (*dot)(const condense_s24q8_packed *w, size_t n0, size_t n1, size_t m, const uint8_t *xq, size_t ldq,
                int32_t *acc, size_t ldacc);
} s24q8_kernel_impl;

static const s24q8_kernel_impl kernels[] = {
    {{"s24q8_dot_1x1__scalar", CONDENSE_ISA_SCALAR, 0}, condense_s24q8_dot__scalar},
#if CONDENSE_X86
    {{"s24q8_dot_4x1__avx2", CONDENSE_ISA_AVX2, 0}, condense_s24q8_dot__avx2},
    {{"s24q8_dot_4x4__avx512vbmi2", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_AVX512VBMI2},
     condense_s24q8_dot__avx512vbmi2},
#endif
#if CONDENSE_ARM64
    {{"s24q8_dot_4x1__neon", CONDENSE_ISA_NEON, 0}, condense_s24q8_dot__neon},
    {{"s24q8_dot_4x1__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD}, condense_s24q8_dot__dotprod},
#endif
};

int condense_s24q8_kernel_count(void) { return (int)(sizeof kernels / sizeof kernels[0]); }

const condense_s24q8_kernel *condense_s24q8_kernel_at(int i) {
    return i >= 0 && i < condense_s24q8_kernel_count() ? &kernels[i].info : NULL;
}

const condense_s24q8_kernel *condense_s24q8_kernel_for(condense_isa isa) {
    const condense_s24q8_kernel *best = NULL;
    for (int i = 0; i < condense_s24q8_kernel_count(); i++) {
        const condense_s24q8_kernel *k = &kernels[i].info;
        if (k->isa > isa || !condense_kernel_runnable(k->isa, k->features)) continue;
        if (!best || k->isa > best->isa) best = k;
    }
    return best;
}

condense_s24q8_packed *condense_s24q8_pack(condense_isa isa, const int8_t *values, const uint8_t *meta,
                                           size_t n, size_t k, size_t k4, size_t meta_stride,
                                           const float *scale, const float *bias) {
    condense_s24q8_packed *p = condense_zalloc(sizeof *p);
    if (!p) return NULL;
    const size_t k64 = (k4 + 63) / 64 * 64, words = k64 / 64;
    p->n = n;
    p->k = k;
    p->k64 = k64;
    p->isa = isa > condense_isa_detected() ? condense_isa_detected() : isa;
    p->kernel = condense_s24q8_kernel_for(p->isa);
    p->values = condense_aligned_alloc(n * k64 / 2 + 64);
    p->masks = condense_aligned_alloc((n * words ? n * words : 1) * sizeof(uint64_t));
    p->wsum = condense_aligned_alloc((n ? n : 1) * sizeof(int32_t));
    p->scale = condense_aligned_alloc((n ? n : 1) * sizeof(float));
    if (!p->values || !p->masks || !p->wsum || !p->scale) goto fail;
    for (size_t r = 0; r < n; r++) {
        int8_t *dv = p->values + r * (k64 / 2);
        memset(dv, 0, k64 / 2);
        memcpy(dv, values + r * (k4 / 2), k4 / 2);
        int32_t sum = 0;
        for (size_t i = 0; i < k4 / 2; i++) sum += values[r * (k4 / 2) + i];
        p->wsum[r] = sum;
        p->scale[r] = scale[r];
        for (size_t c = 0; c < words; c++) {
            uint64_t word = 0;
            for (size_t g = 0; g < 16; g++) {
                const size_t gi = 16 * c + g;
                const uint64_t mask = gi < k4 / 4 ? (meta[r * meta_stride + gi / 2] >> (4 * (gi % 2))) & 0xF : 0x3;
                word |= mask << (4 * g);
            }
            p->masks[r * words + c] = word;
        }
    }
    if (!condense_copy_bias(&p->bias, bias, n)) goto fail;
    return p;
fail:
    condense_s24q8_packed_free(p);
    return NULL;
}

void condense_s24q8_packed_free(condense_s24q8_packed *p) {
    if (!p) return;
    free(p->values);
    free(p->masks);
    free(p->wsum);
    free(p->scale);
    free(p->bias);
    free(p);
}

const char *condense_s24q8_kernel_name(const condense_s24q8_packed *w) {
    return w->kernel->name;
}

static void rows(const condense_s24q8_packed *w, size_t n0, size_t n1, size_t m, const uint8_t *xq,
                 size_t ldq, const float *sx, const int32_t *zx, int32_t *acc, float *y, size_t ldy,
                 int act) {
    ((const s24q8_kernel_impl *)w->kernel)->dot(w, n0, n1, m, xq, ldq, acc, w->n);
    for (size_t i = 0; i < m; i++) {
        float *yi = y + i * ldy;
        for (size_t r = n0; r < n1; r++) yi[r] = sx[i] * w->scale[r] * (float)(acc[i * w->n + r] - zx[i] * w->wsum[r]);
    }
    condense_bias_activation(y, ldy, m, n0, n1, w->bias, act, w->isa);
}

typedef struct {
    const condense_s24q8_packed *w;
    size_t m;
    const uint8_t *xq;
    size_t ldq;
    const float *sx;
    const int32_t *zx;
    int32_t *acc;
    float *y;
    size_t ldy;
    int act;
} s24q8_ctx;

static void rows_share(void *ctx, int t, int nt) {
    const s24q8_ctx *c = ctx;
    const size_t n0 = c->w->n * (size_t)t / (size_t)nt, n1 = c->w->n * (size_t)(t + 1) / (size_t)nt;
    if (n1 > n0) rows(c->w, n0, n1, c->m, c->xq, c->ldq, c->sx, c->zx, c->acc, c->y, c->ldy, c->act);
}

int condense_s24q8_gemm(const condense_s24q8_packed *w, size_t m, const float *x, size_t lda,
                        float *y, size_t ldy, int act, int threads) {
    if (m == 0 || w->n == 0) return CONDENSE_OK;
    const size_t ldq = w->k64 ? w->k64 : 64;
    const size_t bytes = m * ldq + m * (sizeof(float) + sizeof(int32_t)) + m * w->n * sizeof(int32_t) + 128;
    uint8_t *xq = condense_scratch(CONDENSE_SCRATCH_QX, bytes);
    if (!xq) return CONDENSE_ERR_NO_MEMORY;
    float *sx = (float *)(xq + m * ldq);
    int32_t *zx = (int32_t *)(sx + m);
    int32_t *acc = (int32_t *)(((uintptr_t)(zx + m) + 63) & ~(uintptr_t)63);
    condense_q8_quantize_rows(x, m, w->k, lda, xq, ldq, w->k64, sx, zx, NULL, NULL, w->isa);
    int nt = threads > 0 ? threads : condense_get_num_threads();
    if ((size_t)nt > w->n) nt = (int)w->n;
    if (w->n * w->k64 * m < 65536) nt = 1;
    s24q8_ctx c = {w, m, xq, ldq, sx, zx, acc, y, ldy, act};
    condense_team_run(nt, rows_share, &c);
    return CONDENSE_OK;
}
