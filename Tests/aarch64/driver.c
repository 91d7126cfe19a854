/* The kernels' reference tests for AArch64, run under user-mode emulation (Tests/aarch64/run.sh):
 * every kernel this CPU (model) runs, at every ISA level on its ladder, against plain double
 * arithmetic or the scalar kernel on odd shapes and tails, at 1 and 2 threads. Prints one line
 * per failure and ends with "N passed, N failed". Plain C: the Swift layers are not cross-built. */
#include "condense_kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

static void check(int ok, const char *what, const char *kernel, size_t m, size_t n, size_t k, int threads) {
    if (ok) { passed++; return; }
    failed++;
    printf("FAIL %s [%s] m=%zu n=%zu k=%zu threads=%d\n", what, kernel, m, n, k, threads);
}

static uint32_t rng = 12345;
static float frand(void) { /* uniform in [-1, 1) */
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xFFFFFF) / 8388608.0f - 1.0f;
}
static float *frandv(size_t n) { float *p = malloc((n ? n : 1) * sizeof *p); for (size_t i = 0; i < n; i++) p[i] = frand(); return p; }

static double gelu_ref(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }
static double act_ref(double v, int act) {
    if (act == CONDENSE_ACT_RELU) return v > 0 ? v : 0;
    if (act == CONDENSE_ACT_GELU) return gelu_ref(v);
    return v;
}

/* max |y − ref| / (1 + |ref|) over the tile. */
static double max_err(const float *y, size_t ldy, const double *ref, size_t m, size_t n) {
    double e = 0;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            const double d = fabs((double)y[i * ldy + j] - ref[i * n + j]) / (1.0 + fabs(ref[i * n + j]));
            if (!(d <= e)) e = d; /* NaN counts as an error */
        }
    return e;
}

/* Y = act(X·Wᵀ + b) in double, W given as a dense function of (row, col). */
static double *ref_gemm(const float *x, size_t lda, const float *w, size_t m, size_t n, size_t k, const float *bias, int act) {
    double *r = malloc((m * n ? m * n : 1) * sizeof *r);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = bias ? bias[j] : 0;
            for (size_t c = 0; c < k; c++) s += (double)x[i * lda + c] * w[j * k + c];
            r[i * n + j] = act_ref(s, act);
        }
    return r;
}

/* Whether a kernel of this level and features runs here at the active level. */
static int runs(condense_isa isa, uint32_t features) {
    return condense_isa_runs_on(isa, condense_isa_active()) && (condense_cpu_features() & features) == features;
}

static const size_t shapes[][3] = { /* m, n, k: odd shapes and tails, K beyond one cache slice */
    {1, 1, 1}, {1, 17, 33}, {3, 31, 65}, {7, 16, 64}, {6, 33, 130}, {13, 47, 97}, {25, 70, 300}, {2, 40, 4200},
};
#define NSHAPES (sizeof shapes / sizeof shapes[0])
static const int thread_counts[] = {1, 2};

static condense_isa levels[CONDENSE_ISA_COUNT];
static int nlevels;

static void test_f32_gemm(void) {
    for (int ki = 0; ki < condense_f32_gemm_kernel_count(); ki++) {
        const condense_f32_gemm_kernel *kr = condense_f32_gemm_kernel_at(ki);
        if (!runs(kr->isa, 0)) continue;
        for (size_t s = 0; s < NSHAPES; s++)
            for (int act = 0; act < 3; act++) {
                const size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2], lda = k + 3, ldy = n + 5;
                float *x = frandv(m * lda), *w = frandv(n * k), *b = frandv(n), *y = frandv(m * ldy);
                double *ref = ref_gemm(x, lda, w, m, n, k, act == 1 ? NULL : b, act);
                condense_f32_packed *p = condense_f32_pack(kr, w, n, k, k, act == 1 ? NULL : b);
                for (int t = 0; t < 2; t++) {
                    const int st = condense_f32_gemm(p, m, x, lda, y, ldy, act, thread_counts[t]);
                    check(st == 0 && max_err(y, ldy, ref, m, n) < 1e-4, "f32_gemm", kr->name, m, n, k, thread_counts[t]);
                }
                condense_f32_packed_free(p);
                free(x); free(w); free(b); free(y); free(ref);
            }
    }
    /* The activations by themselves, with tails, against the reference. */
    for (int l = 0; l < nlevels; l++)
        for (int act = 1; act < 3; act++)
            for (size_t n = 1; n < 40; n += 3) {
                float *y = frandv(n);
                double ref[40];
                for (size_t i = 0; i < n; i++) { y[i] *= 6; ref[i] = act_ref(y[i], act); }
                condense_f32_activation(y, n, act, levels[l]);
                check(max_err(y, n, ref, 1, n) < 1e-6, "activation", condense_isa_name(levels[l]), 1, n, 0, 1);
                free(y);
            }
}

static int8_t *s8randv(size_t n) { int8_t *p = malloc(n ? n : 1); for (size_t i = 0; i < n; i++) p[i] = (int8_t)(frand() * 127.9f); return p; }

static void test_q8(void) {
    for (int ki = 0; ki < condense_q8_kernel_count(); ki++) {
        const condense_q8_kernel *kr = condense_q8_kernel_at(ki);
        if (!runs(kr->isa, kr->features)) continue;
        for (size_t s = 0; s < NSHAPES; s++) {
            const size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2], k4 = (k + 3) / 4 * 4, ldq = k4 + 8;
            int8_t *w = s8randv(n * k);
            float *sw = frandv(n), *b = frandv(n), *x = frandv(m * k);
            uint8_t *xq = malloc(m * ldq);
            for (size_t i = 0; i < m * ldq; i++) xq[i] = (uint8_t)(frand() * 127.9f + 128);
            for (size_t i = 0; i < m; i++) for (size_t c = k; c < k4; c++) xq[i * ldq + c] = 0;
            condense_q8_packed *p = condense_q8_pack(kr, w, n, k, k, sw, b);
            /* Exact int32 dots against int64 arithmetic. */
            int32_t *acc = malloc(m * n * sizeof *acc);
            for (int t = 0; t < 2; t++) {
                memset(acc, 0x55, m * n * sizeof *acc);
                const int st = condense_q8_gemm_s32(p, m, xq, ldq, acc, n, thread_counts[t]);
                int ok = st == 0;
                for (size_t i = 0; i < m && ok; i++)
                    for (size_t j = 0; j < n && ok; j++) {
                        int64_t r = 0;
                        for (size_t c = 0; c < k; c++) r += (int64_t)xq[i * ldq + c] * w[j * k + c];
                        ok = r == acc[i * n + j];
                    }
                check(ok, "q8_gemm_s32", kr->name, m, n, k, thread_counts[t]);
            }
            /* The whole layer (quantize, dots, dequantize, bias, GELU) against the scalar kernel's. */
            condense_q8_packed *ps = condense_q8_pack(condense_q8_kernel_at(0), w, n, k, k, sw, b);
            float *y = frandv(m * n), *ys = frandv(m * n);
            condense_q8_gemm(ps, m, x, k, ys, n, CONDENSE_ACT_GELU, 1, NULL, NULL);
            for (int t = 0; t < 2; t++) {
                const int st = condense_q8_gemm(p, m, x, k, y, n, CONDENSE_ACT_GELU, thread_counts[t], NULL, NULL);
                double e = 0;
                for (size_t i = 0; i < m * n; i++) { double d = fabs(y[i] - ys[i]) / (1 + fabs(ys[i])); if (!(d <= e)) e = d; }
                check(st == 0 && e < 1e-5, "q8_gemm", kr->name, m, n, k, thread_counts[t]);
            }
            condense_q8_packed_free(p); condense_q8_packed_free(ps);
            free(w); free(sw); free(b); free(x); free(xq); free(acc); free(y); free(ys);
        }
    }
    /* Activation quantization: every level bit-identical to the scalar rule, specials included. */
    for (int l = 0; l < nlevels; l++)
        for (size_t k = 1; k < 70; k += 7) {
            const size_t m = 3, k4 = (k + 3) / 4 * 4;
            float *x = frandv(m * k);
            x[0] = NAN; if (k > 2) { x[1] = INFINITY; x[2] = -INFINITY; }
            if (k > 9) x[k + 9] = 1e30f;
            uint8_t q0[3 * 72], q1[3 * 72];
            float s0[3], s1[3]; int32_t z0[3], z1[3];
            memset(q1, 0xAA, sizeof q1);
            condense_q8_quantize_rows(x, m, k, k, q0, 72, k4, s0, z0, NULL, NULL, CONDENSE_ISA_SCALAR);
            condense_q8_quantize_rows(x, m, k, k, q1, 72, k4, s1, z1, NULL, NULL, levels[l]);
            int ok = memcmp(s0, s1, sizeof s0) == 0 && memcmp(z0, z1, sizeof z0) == 0;
            for (size_t i = 0; i < m; i++) ok = ok && memcmp(q0 + 72 * i, q1 + 72 * i, k4) == 0;
            const float st = 0.05f; const int32_t zp = 100;
            condense_q8_quantize_rows(x, m, k, k, q0, 72, k4, s0, z0, &st, &zp, CONDENSE_ISA_SCALAR);
            condense_q8_quantize_rows(x, m, k, k, q1, 72, k4, s1, z1, &st, &zp, levels[l]);
            for (size_t i = 0; i < m; i++) ok = ok && memcmp(q0 + 72 * i, q1 + 72 * i, k4) == 0;
            check(ok, "q8_quantize_rows", condense_isa_name(levels[l]), m, 0, k, 1);
            free(x);
        }
}

/* int4 group-wise (dequantize path) at every level: W = s·q exactly, against double. */
static void test_q4(void) {
    for (int l = 0; l < nlevels; l++)
        for (size_t s = 0; s < NSHAPES; s++)
            for (size_t group = 16; group <= 32; group += 16) {
                const size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2], rb = (k + 1) / 2;
                const size_t groups = (k + group - 1) / group;
                uint8_t *nib = malloc(n * rb);
                float *sc = frandv(n * groups), *w = malloc(n * k * sizeof *w), *b = frandv(n), *x = frandv(m * k);
                for (size_t i = 0; i < n * rb; i++) nib[i] = (uint8_t)(frand() * 127.9f + 128);
                for (size_t r = 0; r < n; r++)
                    for (size_t c = 0; c < k; c++) {
                        const uint8_t byte = nib[r * rb + c / 2];
                        const int q = c % 2 == 0 ? (int8_t)(uint8_t)(byte << 4) >> 4 : (int8_t)byte >> 4;
                        w[r * k + c] = sc[r * groups + c / group] * (float)q;
                    }
                double *ref = ref_gemm(x, k, w, m, n, k, b, CONDENSE_ACT_RELU);
                condense_q4_packed *p = condense_q4_pack(levels[l], CONDENSE_Q4_DEQUANT, nib, sc, n, k, group, b);
                float *y = frandv(m * n);
                for (int t = 0; t < 2; t++) {
                    const int st = p ? condense_q4_gemm(p, m, x, k, y, n, CONDENSE_ACT_RELU, thread_counts[t]) : -1;
                    check(st == 0 && max_err(y, n, ref, m, n) < 1e-4, "q4_gemm", p ? condense_q4_kernel_name(p) : "pack failed",
                          m, n, k, thread_counts[t]);
                }
                condense_q4_packed_free(p);
                /* The integer path where this level has one: X quantized to u8 per row (the scalar
                 * rule, checked bit-identical above), so the reference is sx·(xq − zx) · W. */
                const condense_q4_kernel *ik = condense_q4_kernel_for(levels[l], CONDENSE_Q4_INTEGER);
                if (ik && ik->path == CONDENSE_Q4_INTEGER) {
                    const size_t k16 = (k + 15) / 16 * 16;
                    uint8_t *xq = malloc(m * k16);
                    float *sx = malloc(m * sizeof *sx), *xd = malloc(m * k * sizeof *xd);
                    int32_t *zx = malloc(m * sizeof *zx);
                    condense_q8_quantize_rows(x, m, k, k, xq, k16, k16, sx, zx, NULL, NULL, CONDENSE_ISA_SCALAR);
                    for (size_t i = 0; i < m; i++)
                        for (size_t c = 0; c < k; c++) xd[i * k + c] = sx[i] * (float)((int)xq[i * k16 + c] - zx[i]);
                    double *iref = ref_gemm(xd, k, w, m, n, k, b, CONDENSE_ACT_GELU);
                    condense_q4_packed *pi = condense_q4_pack(levels[l], CONDENSE_Q4_INTEGER, nib, sc, n, k, group, b);
                    for (int t = 0; t < 2; t++) {
                        const int st = pi ? condense_q4_gemm(pi, m, x, k, y, n, CONDENSE_ACT_GELU, thread_counts[t]) : -1;
                        check(st == 0 && pi && strcmp(condense_q4_kernel_name(pi), ik->name) == 0 && max_err(y, n, iref, m, n) < 1e-4,
                              "q4_gemm integer", ik->name, m, n, k, thread_counts[t]);
                    }
                    condense_q4_packed_free(pi);
                    free(xq); free(sx); free(xd); free(zx); free(iref);
                }
                free(nib); free(sc); free(w); free(b); free(x); free(ref); free(y);
            }
}

static uint16_t f32_to_f16_ref(float f) { /* via the library's exact rounding, checked on x86 */
    uint16_t h;
    condense_f32_to_f16(&f, &h, 1, CONDENSE_ISA_SCALAR);
    return h;
}

/* bf16 and f16 weights: every half kernel this CPU runs, against the widened weights in double. */
static void test_half(void) {
    for (int ki = 0; ki < condense_half_kernel_count(); ki++) {
        const condense_half_kernel *kr = condense_half_kernel_at(ki);
        if (!runs(kr->isa, kr->features)) continue;
        for (int type = 0; type < 2; type++) {
            if (!((kr->types >> type) & 1)) continue;
            for (size_t s = 0; s < NSHAPES; s++) {
                const size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
                uint16_t *wh = malloc(n * k * sizeof *wh);
                float *w = malloc(n * k * sizeof *w), *b = frandv(n), *x = frandv(m * k), *y = frandv(m * n);
                for (size_t i = 0; i < n * k; i++) {
                    const float v = frand();
                    wh[i] = type == CONDENSE_HALF_BF16 ? condense_f32_to_bf16(v) : f32_to_f16_ref(v);
                    w[i] = type == CONDENSE_HALF_BF16 ? condense_gguf_dequantize(CONDENSE_GGUF_BF16, &wh[i], 1, &w[i]), w[i]
                                                      : condense_f16_to_f32(wh[i]);
                }
                /* A dot kernel promises X rounded to bf16 (then exact products, f32 sums). */
                float *xr = malloc(m * k * sizeof *xr);
                for (size_t i = 0; i < m * k; i++) {
                    const uint16_t h = condense_f32_to_bf16(x[i]);
                    const uint32_t u = (uint32_t)h << 16;
                    memcpy(&xr[i], &u, 4);
                    if (!kr->bf16_activations) xr[i] = x[i];
                }
                double *ref = ref_gemm(xr, k, w, m, n, k, b, CONDENSE_ACT_GELU);
                free(xr);
                condense_half_packed *p = condense_half_pack_for(kr, type, wh, n, k, k, b);
                for (int t = 0; t < 2; t++) {
                    const int st = p ? condense_half_gemm(p, m, x, k, y, n, CONDENSE_ACT_GELU, thread_counts[t]) : -1;
                    check(st == 0 && max_err(y, n, ref, m, n) < 1e-4, type ? "f16_gemm" : "bf16_gemm", kr->name, m, n, k,
                          thread_counts[t]);
                }
                condense_half_packed_free(p);
                free(wh); free(w); free(b); free(x); free(y); free(ref);
            }
        }
    }
}

/* 2:4 and CSR at every level, for batches that take each kernel kind (dot below 8 rows, then
 * xt or bucket, slabs past 32 rows), against the dense reference. */
static void test_sparse(void) {
    static const size_t sm[] = {1, 3, 5, 8, 13, 33};
    static const size_t snk[][2] = {{7, 5}, {40, 64}, {33, 130}, {70, 300}};
    const int patterns[6] = {0x3, 0x5, 0x9, 0x6, 0xA, 0xC};
    for (int l = 0; l < nlevels; l++)
        for (size_t a = 0; a < sizeof sm / sizeof sm[0]; a++)
            for (size_t b = 0; b < sizeof snk / sizeof snk[0]; b++) {
                const size_t m = sm[a], n = snk[b][0], k = snk[b][1], k4 = (k + 3) / 4 * 4, ms = k4 / 8 + 1;
                float *w = calloc(n * k4, sizeof *w), *vals = malloc(n * k4 / 2 * sizeof *vals), *bias = frandv(n);
                uint8_t *meta = calloc(n * ms, 1);
                for (size_t r = 0; r < n; r++)
                    for (size_t g = 0; g < k4 / 4; g++) {
                        const int pat = patterns[(r * 7 + g * 3 + (size_t)(rng >> 20)) % 6];
                        rng = rng * 1664525u + 1013904223u;
                        meta[r * ms + g / 2] |= (uint8_t)(pat << (4 * (g % 2)));
                        int slot = 0;
                        for (int i = 0; i < 4; i++)
                            if ((pat >> i) & 1) {
                                const float v = 4 * g + (size_t)i < k ? frand() : 0.0f;
                                vals[r * (k4 / 2) + 2 * g + (size_t)slot++] = v;
                                w[r * k4 + 4 * g + (size_t)i] = v;
                            }
                    }
                float *wd = malloc(n * k * sizeof *wd); /* W[N,K] dense for the reference */
                for (size_t r = 0; r < n; r++) for (size_t c = 0; c < k; c++) wd[r * k + c] = w[r * k4 + c];
                const size_t lda = k + 1;
                float *x = frandv(m * lda), *y = frandv(m * n);
                double *ref = ref_gemm(x, lda, wd, m, n, k, bias, CONDENSE_ACT_RELU);
                condense_s24_packed *p = condense_s24_pack(levels[l], vals, meta, n, k, k4, ms, bias);
                const condense_sparse_kernel *sk = condense_sparse_kernel_for(CONDENSE_SPARSE_FORMAT_S24, levels[l], m);
                for (int t = 0; t < 2; t++) {
                    const int st = p ? condense_s24_gemm(p, m, x, lda, y, n, CONDENSE_ACT_RELU, thread_counts[t]) : -1;
                    check(st == 0 && max_err(y, n, ref, m, n) < 1e-5, "s24_gemm", sk ? sk->name : "?", m, n, k, thread_counts[t]);
                }
                condense_s24_packed_free(p);
                /* CSR of the same matrix with a third of its non-zeros dropped. */
                uint32_t *rp = malloc((n + 1) * sizeof *rp);
                uint16_t *ix = malloc(n * k * sizeof *ix);
                float *cv = malloc(n * k * sizeof *cv);
                size_t nnz = 0;
                for (size_t r = 0; r < n; r++) {
                    rp[r] = (uint32_t)nnz;
                    for (size_t c = 0; c < k; c++) {
                        if (wd[r * k + c] != 0 && (r + c) % 3 == 0) wd[r * k + c] = 0;
                        if (wd[r * k + c] != 0) { ix[nnz] = (uint16_t)c; cv[nnz++] = wd[r * k + c]; }
                    }
                }
                rp[n] = (uint32_t)nnz;
                free(ref);
                ref = ref_gemm(x, lda, wd, m, n, k, NULL, CONDENSE_ACT_GELU);
                condense_csr_packed *pc = condense_csr_pack(levels[l], rp, ix, 2, cv, n, k, NULL);
                const condense_sparse_kernel *ck = condense_sparse_kernel_for(CONDENSE_SPARSE_FORMAT_CSR, levels[l], m);
                for (int t = 0; t < 2; t++) {
                    const int st = pc ? condense_csr_gemm(pc, m, x, lda, y, n, CONDENSE_ACT_GELU, thread_counts[t]) : -1;
                    check(st == 0 && max_err(y, n, ref, m, n) < 1e-5, "csr_gemm", ck ? ck->name : "?", m, n, k, thread_counts[t]);
                }
                condense_csr_packed_free(pc);
                free(w); free(vals); free(bias); free(meta); free(wd); free(x); free(y); free(ref); free(rp); free(ix); free(cv);
            }
}

/* 2:4-int8: the int32 dots are exact and X's quantization is bit-identical across levels, so every
 * level's layer output must equal the scalar kernel's; the scalar one is checked against the
 * dequantized weights in double (within the quantization of X). */
static void test_s24q8(void) {
    static const size_t sm[] = {1, 2, 5, 9};
    static const size_t snk[][2] = {{3, 5}, {17, 64}, {33, 200}};
    const int patterns[6] = {0x3, 0x5, 0x9, 0x6, 0xA, 0xC};
    for (size_t a = 0; a < sizeof sm / sizeof sm[0]; a++)
        for (size_t b = 0; b < sizeof snk / sizeof snk[0]; b++) {
            const size_t m = sm[a], n = snk[b][0], k = snk[b][1], k4 = (k + 3) / 4 * 4, ms = k4 / 8 + 1;
            int8_t *vals = malloc(n * k4 / 2);
            uint8_t *meta = calloc(n * ms, 1);
            float *wd = calloc(n * k, sizeof *wd), *sc = frandv(n), *bias = frandv(n), *x = frandv(m * k);
            for (size_t r = 0; r < n; r++) {
                sc[r] = fabsf(sc[r]) * 0.01f + 0.001f;
                for (size_t g = 0; g < k4 / 4; g++) {
                    rng = rng * 1664525u + 1013904223u;
                    const int pat = patterns[(rng >> 16) % 6];
                    meta[r * ms + g / 2] |= (uint8_t)(pat << (4 * (g % 2)));
                    int slot = 0;
                    for (int i = 0; i < 4; i++)
                        if ((pat >> i) & 1) {
                            const int8_t q = 4 * g + (size_t)i < k ? (int8_t)(frand() * 127.9f) : 0;
                            vals[r * (k4 / 2) + 2 * g + (size_t)slot++] = q;
                            if (4 * g + (size_t)i < k) wd[r * k + 4 * g + (size_t)i] = sc[r] * q;
                        }
                }
            }
            double *ref = ref_gemm(x, k, wd, m, n, k, bias, CONDENSE_ACT_NONE);
            condense_s24q8_packed *ps = condense_s24q8_pack(CONDENSE_ISA_SCALAR, vals, meta, n, k, k4, ms, sc, bias);
            float *ys = frandv(m * n), *y = frandv(m * n);
            condense_s24q8_gemm(ps, m, x, k, ys, n, CONDENSE_ACT_NONE, 1);
            check(max_err(ys, n, ref, m, n) < 0.05, "s24q8_gemm vs double", condense_s24q8_kernel_name(ps), m, n, k, 1);
            for (int l = 0; l < nlevels; l++) {
                condense_s24q8_packed *p = condense_s24q8_pack(levels[l], vals, meta, n, k, k4, ms, sc, bias);
                for (int t = 0; t < 2; t++) {
                    const int st = condense_s24q8_gemm(p, m, x, k, y, n, CONDENSE_ACT_NONE, thread_counts[t]);
                    check(st == 0 && memcmp(y, ys, m * n * sizeof *y) == 0, "s24q8_gemm vs scalar",
                          condense_s24q8_kernel_name(p), m, n, k, thread_counts[t]);
                }
                condense_s24q8_packed_free(p);
            }
            condense_s24q8_packed_free(ps);
            free(vals); free(meta); free(wd); free(sc); free(bias); free(x); free(ref); free(ys); free(y);
        }
}

/* GGUF block types: random blocks with sane f16 scales, packed, against the dequantized weights in
 * double (within X's int8 quantization), and every level bit-identical to the scalar kernel. */
static void put_f16(uint8_t *p) { /* ±[2^-6, 2^-2): well inside f16's normal range */
    const uint16_t h = (uint16_t)(0x2400 + (rng >> 9) % 0x0C00) | (uint16_t)((rng >> 3) & 1 ? 0x8000 : 0);
    rng = rng * 1664525u + 1013904223u;
    p[0] = (uint8_t)h; p[1] = (uint8_t)(h >> 8);
}
static void test_gguf(void) {
    static const struct { uint32_t type; size_t bytes, epb; int f16at[2]; } types[] = {
        {CONDENSE_GGUF_Q8_0, 34, 32, {0, -1}}, {CONDENSE_GGUF_Q4_0, 18, 32, {0, -1}}, {CONDENSE_GGUF_Q4_1, 20, 32, {0, 2}},
        {CONDENSE_GGUF_Q5_0, 22, 32, {0, -1}}, {CONDENSE_GGUF_Q5_1, 24, 32, {0, 2}}, {CONDENSE_GGUF_Q4_K, 144, 256, {0, 2}},
        {CONDENSE_GGUF_Q6_K, 210, 256, {208, -1}}, {CONDENSE_BLOCK_S24Q4, 26, 64, {0, -1}},
        {CONDENSE_GGUF_Q5_K, 176, 256, {0, 2}}, {CONDENSE_GGUF_IQ4_NL, 18, 32, {0, -1}},
        {CONDENSE_GGUF_Q3_K, 110, 256, {108, -1}}, {CONDENSE_GGUF_IQ4_XS, 136, 256, {0, -1}},
        {CONDENSE_GGUF_Q2_K, 84, 256, {80, 82}},
    };
    static const size_t gm[] = {1, 2, 3, 5};
    static const size_t gn[] = {1, 16, 37};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (size_t a = 0; a < sizeof gm / sizeof gm[0]; a++)
            for (size_t c = 0; c < sizeof gn / sizeof gn[0]; c++) {
                const size_t m = gm[a], n = gn[c], k = types[ti].epb == 32 ? 96 : types[ti].epb == 64 ? 192 : 512, nb = k / types[ti].epb;
                const size_t rowb = nb * types[ti].bytes;
                uint8_t *w = malloc(n * rowb);
                for (size_t i = 0; i < n * rowb; i++) { rng = rng * 1664525u + 1013904223u; w[i] = (uint8_t)(rng >> 24); }
                for (size_t blk = 0; blk < n * nb; blk++)
                    for (int f = 0; f < 2; f++)
                        if (types[ti].f16at[f] >= 0) put_f16(w + blk * types[ti].bytes + types[ti].f16at[f]);
                float *wd = malloc(n * k * sizeof *wd), *x = frandv(m * k), *ys = frandv(m * n), *y = frandv(m * n);
                int ok = 1;
                if (types[ti].type == CONDENSE_BLOCK_S24Q4) {
                    /* Condense's own block (no ggml dequantizer): f16 d, a 2-of-4 keep-mask, 32 codes. */
                    static const int pats[6] = {0x3, 0x5, 0x9, 0x6, 0xA, 0xC};
                    for (size_t blk = 0; blk < n * nb; blk++) {
                        uint8_t *bp = w + blk * 26;
                        uint64_t mask = 0;
                        for (int g = 0; g < 16; g++) {
                            rng = rng * 1664525u + 1013904223u;
                            mask |= (uint64_t)pats[(rng >> 16) % 6] << (4 * g);
                        }
                        memcpy(bp + 2, &mask, 8);
                        const float d = condense_f16_to_f32((uint16_t)(bp[0] | bp[1] << 8));
                        int j = 0;
                        for (int c = 0; c < 64; c++) {
                            const size_t r = blk / nb, col = (blk % nb) * 64 + (size_t)c;
                            if (!((mask >> c) & 1)) { wd[r * k + col] = 0; continue; }
                            const int code = (bp[10 + j / 2] >> (4 * (j % 2))) & 15;
                            wd[r * k + col] = d * (float)(code - 8);
                            j++;
                        }
                    }
                } else {
                    for (size_t r = 0; r < n; r++) ok = ok && condense_gguf_dequantize(types[ti].type, w + r * rowb, k, wd + r * k) == 0;
                }
                const size_t psz = condense_gguf_packed_size(types[ti].type, n, k);
                void *pk = NULL;
                ok = ok && psz && posix_memalign(&pk, 64, psz) == 0 && condense_gguf_pack(types[ti].type, w, n, k, pk) == 0;
                double *ref = ref_gemm(x, k, wd, m, n, k, NULL, CONDENSE_ACT_NONE);
                ok = ok && condense_gguf_gemm(types[ti].type, pk, n, k, m, x, k, ys, n, CONDENSE_ISA_SCALAR, 1) == 0;
                /* X's int8 rounding moves each term by up to 1/254 of the row's largest |x|:
                 * measured against Σ|x||w| per output, the error stays below 1 %. */
                double e = 0;
                for (size_t i = 0; ok && i < m; i++)
                    for (size_t j = 0; j < n; j++) {
                        double mag = 1e-9;
                        for (size_t q = 0; q < k; q++) mag += fabs((double)x[i * k + q] * wd[j * k + q]);
                        e = fmax(e, fabs(ys[i * n + j] - ref[i * n + j]) / mag);
                    }
                check(ok && e < 0.01, "gguf_gemm vs double", condense_gguf_gemm_kernel_name(types[ti].type, CONDENSE_ISA_SCALAR),
                      m, n, k, 1);
                for (int l = 0; ok && l < nlevels; l++)
                    for (int t = 0; t < 2; t++) {
                        const int st = condense_gguf_gemm(types[ti].type, pk, n, k, m, x, k, y, n, levels[l], thread_counts[t]);
                        check(st == 0 && memcmp(y, ys, m * n * sizeof *y) == 0, "gguf_gemm vs scalar",
                              condense_gguf_gemm_kernel_name(types[ti].type, levels[l]), m, n, k, thread_counts[t]);
                    }
                free(pk); free(w); free(wd); free(x); free(ys); free(y); free(ref);
            }
}

/* Softmax attention of one query over n keys, in double. */
static void attend_ref(const float *q, const float *k, size_t ldk, const float *v, size_t ldv, size_t n, int d, double scale,
                       double *out) {
    double *sc = malloc(n * sizeof *sc), mx = -INFINITY, sum = 0;
    for (size_t j = 0; j < n; j++) {
        double dot = 0;
        for (int c = 0; c < d; c++) dot += (double)q[c] * k[j * ldk + (size_t)c];
        sc[j] = dot * scale;
        mx = fmax(mx, sc[j]);
    }
    for (size_t j = 0; j < n; j++) { sc[j] = exp(sc[j] - mx); sum += sc[j]; }
    for (int c = 0; c < d; c++) {
        double o = 0;
        for (size_t j = 0; j < n; j++) o += sc[j] * v[j * ldv + (size_t)c];
        out[c] = o / sum;
    }
    free(sc);
}

static void test_attention(void) {
    static const int dims[] = {4, 6, 12, 16, 64};
    for (int l = 0; l < nlevels; l++)
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
            const int d = dims[di], heads = 2;
            /* Encoder self-attention over two packed sequences. */
            const int32_t seq[3] = {0, 5, 22};
            const size_t rows = 22, ld = 3 * (size_t)heads * (size_t)d, H = (size_t)heads * (size_t)d;
            float *qkv = frandv(rows * ld), *out = frandv(rows * H);
            double *ref = malloc(rows * H * sizeof *ref);
            for (int sI = 0; sI < 2; sI++)
                for (int h = 0; h < heads; h++)
                    for (int32_t i = seq[sI]; i < seq[sI + 1]; i++)
                        attend_ref(qkv + (size_t)i * ld + (size_t)h * d, qkv + (size_t)seq[sI] * ld + H + (size_t)h * d, ld,
                                   qkv + (size_t)seq[sI] * ld + 2 * H + (size_t)h * d, ld, (size_t)(seq[sI + 1] - seq[sI]), d,
                                   0.3, ref + (size_t)i * H + (size_t)h * d);
            for (int t = 0; t < 2; t++) {
                const int st = condense_f32_attention(qkv, qkv + H, qkv + 2 * H, ld, out, H, seq, 2, heads, d, 0.3f, levels[l],
                                                      thread_counts[t]);
                check(st == 0 && max_err(out, H, ref, rows, H) < 1e-5, "f32_attention", condense_isa_name(levels[l]), rows, H,
                      (size_t)d, thread_counts[t]);
            }
            free(qkv); free(out); free(ref);
            /* Decoder causal attention over an f32 and an f16 cache, grouped-query (6 heads, 2 KV:
             * groups of 3, so both the 2-head and the 1-head V tiles run). */
            const int hq = 6, hk = 2;
            const size_t p0 = 37, tq = 3, nmax = p0 + tq, ldq = (size_t)hq * d, ldkv = (size_t)hk * d + 2;
            float *q = frandv(tq * ldq), *kc = frandv(nmax * ldkv), *vc = frandv(nmax * ldkv), *o = frandv(tq * ldq);
            uint16_t *kh = malloc(nmax * ldkv * 2), *vh = malloc(nmax * ldkv * 2);
            condense_f32_to_f16(kc, kh, nmax * ldkv, CONDENSE_ISA_SCALAR);
            condense_f32_to_f16(vc, vh, nmax * ldkv, CONDENSE_ISA_SCALAR);
            for (int f16 = 0; f16 < 2; f16++) {
                if (f16) /* the reference reads what the f16 cache holds */
                    for (size_t i = 0; i < nmax * ldkv; i++) { kc[i] = condense_f16_to_f32(kh[i]); vc[i] = condense_f16_to_f32(vh[i]); }
                double *cr = malloc(tq * ldq * sizeof *cr);
                for (size_t i = 0; i < tq; i++)
                    for (int h = 0; h < hq; h++)
                        attend_ref(q + i * ldq + (size_t)h * d, kc + (size_t)(h / (hq / hk)) * d, ldkv, vc + (size_t)(h / (hq / hk)) * d,
                                   ldkv, p0 + i + 1, d, 0.25, cr + i * ldq + (size_t)h * d);
                for (int t = 0; t < 2; t++) {
                    const int st = condense_causal_attention(q, ldq, f16 ? (const void *)kh : kc, f16 ? (const void *)vh : vc,
                                                             f16 ? CONDENSE_GGUF_F16 : CONDENSE_GGUF_F32, ldkv, o, ldq, tq, p0, hq,
                                                             hk, d, 0.25f, levels[l], thread_counts[t]);
                    check(st == 0 && max_err(o, ldq, cr, tq, ldq) < 1e-5, f16 ? "causal_attention_f16" : "causal_attention_f32",
                          condense_isa_name(levels[l]), tq, ldq, (size_t)d, thread_counts[t]);
                }
                free(cr);
            }
            /* Q8_0 / Q4_0 caches (heads of a multiple of 32): a Q8_0 key cache with a Q4_0 value
             * cache, the reference reading the rows dequantized as ggml does. */
            if (d % 32 == 0) {
                const size_t ld2 = (size_t)hk * d, kb = ld2 / 32 * 34, vb = ld2 / 32 * 18;
                uint8_t *kq = malloc(nmax * kb), *vq = malloc(nmax * vb);
                float *kd = malloc(nmax * ld2 * sizeof *kd), *vd = malloc(nmax * ld2 * sizeof *vd);
                for (size_t p = 0; p < nmax; p++) {
                    condense_quantize_row_q8_0(kc + p * ldkv, kq + p * kb, ld2);
                    condense_quantize_row_q4_0(vc + p * ldkv, vq + p * vb, ld2);
                    condense_gguf_dequantize(CONDENSE_GGUF_Q8_0, kq + p * kb, ld2, kd + p * ld2);
                    condense_gguf_dequantize(CONDENSE_GGUF_Q4_0, vq + p * vb, ld2, vd + p * ld2);
                }
                double *cr = malloc(tq * ldq * sizeof *cr);
                for (size_t i = 0; i < tq; i++)
                    for (int h = 0; h < hq; h++)
                        attend_ref(q + i * ldq + (size_t)h * d, kd + (size_t)(h / (hq / hk)) * d, ld2, vd + (size_t)(h / (hq / hk)) * d,
                                   ld2, p0 + i + 1, d, 0.25, cr + i * ldq + (size_t)h * d);
                for (int t = 0; t < 2; t++) {
                    const int st = condense_causal_attention(q, ldq, kq, vq, CONDENSE_KV_TYPES(CONDENSE_GGUF_Q8_0, CONDENSE_GGUF_Q4_0), ld2,
                                                             o, ldq, tq, p0, hq, hk, d, 0.25f, levels[l], thread_counts[t]);
                    check(st == 0 && max_err(o, ldq, cr, tq, ldq) < 1e-5, "causal_attention_q8_0_q4_0", condense_isa_name(levels[l]), tq,
                          ldq, (size_t)d, thread_counts[t]);
                }
                free(kq); free(vq); free(kd); free(vd); free(cr);
            }
            /* A sliding window of 9 over a ring of 12 rows (position p in row p % 12): the pass
             * wraps around the ring; the reference reads the plain cache's window. */
            {
                const size_t win = 9, ring = win + tq, ldr = ldkv;
                float *kr = malloc(ring * ldr * sizeof *kr), *vr = malloc(ring * ldr * sizeof *vr);
                for (size_t p = nmax - ring; p < nmax; p++)
                    for (size_t e = 0; e < ldr; e++) { kr[(p % ring) * ldr + e] = kc[p * ldkv + e]; vr[(p % ring) * ldr + e] = vc[p * ldkv + e]; }
                double *cr = malloc(tq * ldq * sizeof *cr);
                for (size_t i = 0; i < tq; i++) {
                    const size_t end = p0 + i + 1, start = end - win;
                    for (int h = 0; h < hq; h++)
                        attend_ref(q + i * ldq + (size_t)h * d, kc + start * ldkv + (size_t)(h / (hq / hk)) * d, ldkv,
                                   vc + start * ldkv + (size_t)(h / (hq / hk)) * d, ldkv, win, d, 0.25, cr + i * ldq + (size_t)h * d);
                }
                for (int t = 0; t < 2; t++) {
                    const int st = condense_causal_attention_window(q, ldq, kr, vr, CONDENSE_GGUF_F32, ldr, o, ldq,
                                                                    tq, p0, hq, hk, d, 0.25f, 0, win, ring, levels[l], thread_counts[t]);
                    check(st == 0 && max_err(o, ldq, cr, tq, ldq) < 1e-5, "causal_attention_window_ring", condense_isa_name(levels[l]), tq,
                          ldq, (size_t)d, thread_counts[t]);
                }
                free(cr); free(kr); free(vr);
            }
            free(q); free(kc); free(vc); free(o); free(kh); free(vh);
        }
    /* The gated activations: SiLU against the formula (the scalar path bit for bit, the vector
     * paths' exp within 2e-7 relative), GELU-tanh against its table rule. */
    for (int l = 0; l < nlevels; l++) {
            const size_t rows = 3, ff = 300;
            float *gu = frandv(rows * 2 * ff), *o = frandv(rows * ff);
            for (size_t i = 0; i < rows * 2 * ff; i++) gu[i] *= 12.0f;   /* past ±10 too */
            for (int act = 0; act < 2; act++)
                for (int t = 0; t < 2; t++) {
                    const int st = condense_glu(gu, rows, ff, act, o, levels[l], thread_counts[t]);
                    int same = st == 0;
                    for (size_t r = 0; r < rows; r++)
                        for (size_t j = 0; j < ff; j++) {
                            const float x = gu[r * 2 * ff + j], u = gu[r * 2 * ff + ff + j];
                            const float want = (act == 0 ? x / (1.0f + expf(-x)) : condense_gelu_tanh_f16(x)) * u;
                            if (act == 0 && levels[l] != CONDENSE_ISA_SCALAR)
                                same &= fabsf(o[r * ff + j] - want) <= 1e-6f * fabsf(want) + 1e-30f;
                            else
                                same &= o[r * ff + j] == want;
                        }
                    check(same, act == 0 ? "glu_silu" : "glu_gelu_tanh", condense_isa_name(levels[l]), rows, ff, 0, thread_counts[t]);
                }
            free(gu); free(o);
        }
    /* f32 → f16: every level the scalar rule's bits, specials and tails included. */
    for (int l = 0; l < nlevels; l++) {
        float x[37];
        for (int i = 0; i < 37; i++) x[i] = frand() * 70000.0f;
        x[3] = NAN; x[4] = -NAN; x[8] = -INFINITY; x[9] = 1e-8f; x[10] = -0.0f; x[21] = 65519.0f; x[22] = 65520.0f;
        const uint32_t payload = 0x7FA12345u; /* a signalling NaN with a payload: quieted, top bits kept */
        memcpy(&x[5], &payload, 4);
        uint16_t a[37], b[37];
        condense_f32_to_f16(x, a, 37, CONDENSE_ISA_SCALAR);
        condense_f32_to_f16(x, b, 37, levels[l]);
        check(memcmp(a, b, sizeof a) == 0, "f32_to_f16", condense_isa_name(levels[l]), 1, 37, 0, 1);
    }
}

/* ---- The decoder's layers as one job (condense_decoder_forward) ------------------------------
 * Two layers (the second with QK-norm, post-norms and a sliding window), projections in Q4_0 and
 * Q8_0 side by side with biases, an f16 cache: the job's residual stream must equal the same
 * kernels called one by one, bit for bit, on every level and 1, 2 and 3 threads, for a prompt
 * in two passes and a decode step. */
typedef struct { uint32_t type; size_t n; void *packed; float *bias; } dec_part;

static void dec_make_part(dec_part *p, uint32_t type, size_t n, size_t k, int bias) {
    const size_t bb = type == CONDENSE_GGUF_Q8_0 ? 34 : 18, nb = k / 32;
    uint8_t *blocks = malloc(n * nb * bb);
    float *w = frandv(k);
    for (size_t r = 0; r < n; r++) {
        for (size_t j = 0; j < k; j++) w[j] = frand() * 0.3f;
        if (type == CONDENSE_GGUF_Q8_0) condense_quantize_row_q8_0(w, blocks + r * nb * bb, k);
        else condense_quantize_row_q4_0(w, blocks + r * nb * bb, k);
    }
    p->type = type;
    p->n = n;
    p->packed = malloc(condense_gguf_packed_size(type, n, k));
    condense_gguf_pack(type, blocks, n, k, p->packed);
    p->bias = bias ? frandv(n) : NULL;
    free(blocks);
    free(w);
}

/* y (ldy) = x · [parts]ᵀ + bias, part by part into its columns, as the Swift side-by-side layer. */
static int dec_apply(const condense_decoder_proj *pr, const float *x, size_t rows, float *y, size_t ldy, condense_isa isa, int thr) {
    size_t col = 0;
    for (int i = 0; i < pr->parts; i++) {
        const condense_decoder_part *p = &pr->part[i];
        float *tmp = malloc(rows * p->n * sizeof *tmp);
        if (condense_gguf_gemm(p->type, p->packed, p->n, pr->k, rows, x, pr->k, tmp, p->n, isa, thr)) return 1;
        for (size_t r = 0; r < rows; r++)
            for (size_t j = 0; j < p->n; j++) y[r * ldy + col + j] = tmp[r * p->n + j] + (p->bias ? p->bias[j] : 0.0f);
        free(tmp);
        col += p->n;
    }
    return 0;
}

static int dec_reference(const condense_decoder_shape *s, const condense_decoder_layer *L, size_t nl, const condense_decoder_sequence *q,
                         float *x, condense_isa isa, int thr) {
    const size_t rows = q->rows, p0 = q->p0;
    const size_t d = s->hidden, hd = s->head_dim, qd = s->heads * hd, kvd = s->kv_heads * hd, wide = qd + 2 * kvd, ff = s->ff;
    float *h = malloc(rows * d * 4), *qkv = malloc(rows * wide * 4), *att = malloc(rows * qd * 4), *o = malloc(rows * d * 4);
    float *gu = malloc(rows * 2 * ff * 4), *g = malloc(rows * ff * 4);
    int bad = 0;
    for (size_t l = 0; l < nl && !bad; l++) {
        const condense_decoder_layer *y = &L[l];
        bad |= condense_rmsnorm(x, d, h, d, rows, 1, d, y->attn_norm, s->eps, thr);
        bad |= dec_apply(&y->qkv, h, rows, qkv, wide, isa, thr);
        if (y->q_norm) {
            bad |= condense_rmsnorm(qkv, wide, qkv, wide, rows, s->heads, hd, y->q_norm, s->eps, thr);
            bad |= condense_rmsnorm(qkv + qd, wide, qkv + qd, wide, rows, s->kv_heads, hd, y->k_norm, s->eps, thr);
        }
        bad |= condense_rope(qkv, wide, rows, (int)s->heads, (int)hd, q->cos_t, q->sin_t, s->neox, thr);
        bad |= condense_rope(qkv + qd, wide, rows, (int)s->kv_heads, (int)hd, q->cos_t, q->sin_t, s->neox, thr);
        for (size_t r = 0; r < rows; r++) {
            condense_f32_to_f16(qkv + r * wide + qd, (uint16_t *)q->keys[l] + (p0 + r) * kvd, kvd, isa);
            condense_f32_to_f16(qkv + r * wide + qd + kvd, (uint16_t *)q->values[l] + (p0 + r) * kvd, kvd, isa);
        }
        bad |= condense_causal_attention_window(qkv, wide, q->keys[l], q->values[l], q->kv_type, kvd, att, qd, rows, p0, (int)s->heads,
                                                (int)s->kv_heads, (int)hd, s->scale, s->softcap, y->window, y->ring, isa, thr);
        bad |= dec_apply(&y->o, att, rows, o, d, isa, thr);
        if (y->post_attn_norm) bad |= condense_rmsnorm(o, d, o, d, rows, 1, d, y->post_attn_norm, s->eps, thr);
        for (size_t i = 0; i < rows * d; i++) x[i] += o[i];
        bad |= condense_rmsnorm(x, d, h, d, rows, 1, d, y->ffn_norm, s->eps, thr);
        bad |= dec_apply(&y->gate_up, h, rows, gu, 2 * ff, isa, thr);
        bad |= condense_glu(gu, rows, ff, s->act, g, isa, thr);
        bad |= dec_apply(&y->down, g, rows, o, d, isa, thr);
        if (y->post_ffn_norm) bad |= condense_rmsnorm(o, d, o, d, rows, 1, d, y->post_ffn_norm, s->eps, thr);
        for (size_t i = 0; i < rows * d; i++) x[i] += o[i];
    }
    free(h); free(qkv); free(att); free(o); free(gu); free(g);
    return bad;
}

static void dec_proj(condense_decoder_proj *pr, const dec_part *parts, int n, size_t k) {
    memset(pr, 0, sizeof *pr);
    pr->parts = n;
    pr->k = k;
    for (int i = 0; i < n; i++)
        pr->part[i] = (condense_decoder_part){parts[i].type, parts[i].packed, parts[i].n, parts[i].bias, CONDENSE_ISA_SCALAR};
}

static void test_decoder_layers(void) {
    const size_t d = 64, heads = 4, kvh = 2, hd = 32, ff = 96, qd = heads * hd, kvd = kvh * hd, ctx = 16, nl = 2;
    condense_decoder_shape s = {d, heads, kvh, hd, ff, 1e-6f, 0.17f, 0.0f, CONDENSE_GLU_SILU, 0};
    dec_part qk, v, o, gu, dn;
    float *norms[2][6];
    condense_decoder_layer L[2];
    dec_part keep[2][5];
    for (size_t l = 0; l < nl; l++) {
        dec_make_part(&qk, CONDENSE_GGUF_Q4_0, qd + kvd, d, 1);
        dec_make_part(&v, CONDENSE_GGUF_Q8_0, kvd, d, 1);
        dec_make_part(&o, CONDENSE_GGUF_Q4_0, d, qd, 0);
        dec_make_part(&gu, CONDENSE_GGUF_Q4_0, 2 * ff, d, 0);
        dec_make_part(&dn, CONDENSE_GGUF_Q8_0, d, ff, 0);
        keep[l][0] = qk; keep[l][1] = v; keep[l][2] = o; keep[l][3] = gu; keep[l][4] = dn;
        for (int i = 0; i < 6; i++) {
            norms[l][i] = frandv(d);
            for (size_t j = 0; j < d; j++) norms[l][i][j] = 1.0f + 0.2f * norms[l][i][j];
        }
        memset(&L[l], 0, sizeof L[l]);
        const dec_part qkv[2] = {qk, v};
        dec_proj(&L[l].qkv, qkv, 2, d);
        dec_proj(&L[l].o, &o, 1, qd);
        dec_proj(&L[l].gate_up, &gu, 1, d);
        dec_proj(&L[l].down, &dn, 1, ff);
        L[l].attn_norm = norms[l][0];
        L[l].ffn_norm = norms[l][1];
        if (l == 1) {
            L[l].q_norm = norms[l][2];
            L[l].k_norm = norms[l][3];
            L[l].post_attn_norm = norms[l][4];
            L[l].post_ffn_norm = norms[l][5];
            L[l].window = 4;
        }
    }
    /* Angles of positions 0…ctx−1; each pass points at its first row. */
    float *cs = malloc(ctx * hd / 2 * 4), *sn = malloc(ctx * hd / 2 * 4);
    for (size_t p = 0; p < ctx; p++)
        for (size_t i = 0; i < hd / 2; i++) {
            const float th = (float)p * powf(10000.0f, -2.0f * (float)i / (float)hd);
            cs[p * hd / 2 + i] = cosf(th);
            sn[p * hd / 2 + i] = sinf(th);
        }
    const size_t passes[3][2] = {{5, 0}, {1, 5}, {3, 6}};   /* rows, p0 */
    float *x0 = frandv(ctx * d);
    for (int lv = 0; lv < nlevels; lv++)
        for (int thr = 1; thr <= 3; thr++) {
            for (size_t l = 0; l < nl; l++)
                for (int pi = 0; pi < 4; pi++) {
                    condense_decoder_proj *pr = pi == 0 ? &L[l].qkv : pi == 1 ? &L[l].o : pi == 2 ? &L[l].gate_up : &L[l].down;
                    for (int i = 0; i < pr->parts; i++) pr->part[i].isa = levels[lv];
                }
            uint16_t *kc[2][2], *vc[2][2];   /* [job/reference][layer] */
            for (int w = 0; w < 2; w++)
                for (size_t l = 0; l < nl; l++) {
                    kc[w][l] = calloc(ctx * kvd, 2);
                    vc[w][l] = calloc(ctx * kvd, 2);
                }
            int same = 1;
            for (int pi = 0; pi < 3; pi++) {
                const size_t rows = passes[pi][0], p0 = passes[pi][1];
                float *xa = malloc(rows * d * 4), *xb = malloc(rows * d * 4);
                memcpy(xa, x0 + p0 * d, rows * d * 4);
                memcpy(xb, xa, rows * d * 4);
                void *jk[2] = {kc[0][0], kc[0][1]}, *jv[2] = {vc[0][0], vc[0][1]};
                void *rk[2] = {kc[1][0], kc[1][1]}, *rv[2] = {vc[1][0], vc[1][1]};
                const float *c0 = cs + p0 * hd / 2, *s0 = sn + p0 * hd / 2;
                const condense_decoder_sequence job = {rows, p0, CONDENSE_GGUF_F16, jk, jv, c0, s0, c0, s0};
                const condense_decoder_sequence ref = {rows, p0, CONDENSE_GGUF_F16, rk, rv, c0, s0, c0, s0};
                float *h = malloc(rows * d * 4), *qkv = malloc(rows * (qd + 2 * kvd) * 4), *att = malloc(rows * qd * 4);
                float *ob = malloc(rows * d * 4), *gub = malloc(rows * 2 * ff * 4), *g = malloc(rows * ff * 4);
                const condense_decoder_buffers b = {xa, h, qkv, att, ob, gub, g};
                const int st = condense_decoder_forward(&s, L, nl, &job, 1, &b, levels[lv], thr);
                const int rs = dec_reference(&s, L, nl, &ref, xb, levels[lv], thr);
                same &= st == 0 && rs == 0 && memcmp(xa, xb, rows * d * 4) == 0;
                for (size_t l = 0; l < nl; l++)
                    same &= memcmp(kc[0][l], kc[1][l], ctx * kvd * 2) == 0 && memcmp(vc[0][l], vc[1][l], ctx * kvd * 2) == 0;
                free(xa); free(xb); free(h); free(qkv); free(att); free(ob); free(gub); free(g);
            }
            check(same, "decoder_forward", condense_isa_name(levels[lv]), 9, d, d, thr);
            for (int w = 0; w < 2; w++)
                for (size_t l = 0; l < nl; l++) { free(kc[w][l]); free(vc[w][l]); }
        }
    /* A projection whose parts do not fill its width is refused, nothing run. */
    condense_decoder_layer bad = L[0];
    bad.qkv.parts = 1;
    float xb[64] = {0}, hb[64], qb[256], ab[128], obb[64], gb[192], g2[96];
    const condense_decoder_buffers bb = {xb, hb, qb, ab, obb, gb, g2};
    void *one[1] = {qb};
    const condense_decoder_sequence q1 = {1, 0, CONDENSE_GGUF_F16, one, one, cs, sn, cs, sn};
    check(condense_decoder_forward(&s, &bad, 1, &q1, 1, &bb, CONDENSE_ISA_SCALAR, 1) == CONDENSE_ERR_INVALID, "decoder_forward refuses",
          "scalar", 1, d, d, 1);
    for (size_t l = 0; l < nl; l++) {
        for (int i = 0; i < 5; i++) { free(keep[l][i].packed); free(keep[l][i].bias); }
        for (int i = 0; i < 6; i++) free(norms[l][i]);
    }
    free(x0); free(cs); free(sn);
}

int main(int argc, char **argv) {
    (void)argc; (void)argv;
    if (condense_dispatch_status_get() != CONDENSE_DISPATCH_OK) {
        /* run.sh expects this for a level above the CPU model's: the same rule as on x86. */
        printf("unavailable: CONDENSE_ISA=%s refused on a CPU of level %s\n", condense_isa_env_value(),
               condense_isa_name(condense_isa_detected()));
        return condense_dispatch_status_get() == CONDENSE_DISPATCH_UNAVAILABLE ? 0 : 1;
    }
    /* Every level up to the active one: CONDENSE_ISA lowers what runs, as it does for users. */
    for (int l = 0; l < CONDENSE_ISA_COUNT; l++)
        if (condense_isa_runs_on((condense_isa)l, condense_isa_active())) levels[nlevels++] = (condense_isa)l;
    printf("cpu: detected %s, active %s, levels", condense_isa_name(condense_isa_detected()),
           condense_isa_name(condense_isa_active()));
    for (int l = 0; l < nlevels; l++) printf(" %s", condense_isa_name(levels[l]));
    printf(", features 0x%x\n", condense_cpu_features());
    test_f32_gemm();
    test_q8();
    test_q4();
    test_half();
    test_sparse();
    test_s24q8();
    test_gguf();
    test_attention();
    test_decoder_layers();
    /* The probes run (their figures mean nothing under emulation, but must be positive). The FMA
     * probe's 28 M vector FMAs take emulated seconds: run.sh asks for it once. */
    check(condense_probe_read_gbps(1 << 16, 2, 1) > 0, "read probe", condense_isa_name(condense_isa_active()), 0, 0, 0, 2);
    const char *fp = getenv("CONDENSE_DRIVER_FMA_PROBE");
    if (fp && *fp)
        check(condense_probe_fma_gflops(1, condense_isa_active()) > 0, "fma probe", condense_isa_name(condense_isa_active()), 0, 0,
              0, 1);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
