/* int4 driver: packing for the dequantize and integer paths, and threads. */
#include "internal.h"
#include "omp_shim.h"

#include <string.h>

static int has_vnni(condense_isa isa) {
    return isa >= CONDENSE_ISA_AVX512 && condense_isa_detected() >= CONDENSE_ISA_AVX512 &&
           (condense_cpu_features() & CONDENSE_CPU_AVX512VNNI);
}

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
    p->isa = isa;
    p->path = path == CONDENSE_Q4_INTEGER && has_vnni(isa) ? CONDENSE_Q4_INTEGER : CONDENSE_Q4_DEQUANT;
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

const char *condense_q4_kernel_name(const condense_q4_packed *w) {
    if (w->path == CONDENSE_Q4_INTEGER) return "q4_gemm_vnni_4x16__avx512vnni";
    condense_isa isa = w->isa > condense_isa_detected() ? condense_isa_detected() : w->isa;
    if (isa >= CONDENSE_ISA_AVX512) return "q4_gemm_dequant__avx512";
    if (isa >= CONDENSE_ISA_AVX2) return "q4_gemm_dequant__avx2";
    return "q4_gemm_dequant__scalar";
}

static int dequant_rows(const condense_q4_packed *w, size_t n0, size_t n1, size_t m, const float *x,
                        size_t lda, float *y, size_t ldy, int act) {
    condense_isa isa = w->isa > condense_isa_detected() ? condense_isa_detected() : w->isa;
    int status;
#if CONDENSE_X86
    if (isa >= CONDENSE_ISA_AVX512) status = condense_q4_dequant__avx512(w, n0, n1, m, x, lda, y, ldy);
    else if (isa >= CONDENSE_ISA_AVX2) status = condense_q4_dequant__avx2(w, n0, n1, m, x, lda, y, ldy);
    else
#endif
        status = condense_q4_dequant__scalar(w, n0, n1, m, x, lda, y, ldy);
    if (status != CONDENSE_OK) return status;
    for (size_t i = 0; i < m; i++) {
        float *yi = y + i * ldy;
        if (w->bias) for (size_t r = n0; r < n1; r++) yi[r] += w->bias[r];
        condense_f32_activation(yi + n0, n1 - n0, act, isa);
    }
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
        condense_q4_integer__avx512vnni(w, 0, panels, m, xq, ldq, sx, zx, y, ldy, act);
        return CONDENSE_OK;
    }
#pragma omp parallel num_threads(nt)
    {
        const size_t t = (size_t)omp_get_thread_num(), T = (size_t)omp_get_num_threads();
        condense_q4_integer__avx512vnni(w, panels * t / T, panels * (t + 1) / T, m, xq, ldq, sx, zx, y, ldy, act);
    }
#endif
    return CONDENSE_OK;
}
