/* Machine probes for benchmark reports: measured fp32 FMA throughput and read bandwidth, so
 * "% of peak" and "% of roofline" are computed from this machine in this run, not typed in. */
#include "internal.h"

#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#if CONDENSE_X86
#include <immintrin.h>
/* 16 independent accumulator chains: enough to cover FMA latency × 2 pipes. */
CONDENSE_TARGET_AVX512 static float fma_loop_512(long iters) {
    __m512 acc[16];
    for (int i = 0; i < 16; i++) acc[i] = _mm512_set1_ps((float)i);
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 16; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    __m512 s = acc[0];
    for (int i = 1; i < 16; i++) s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}
CONDENSE_TARGET_AVX2 static float fma_loop_256(long iters) {
    __m256 acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_ps((float)i);
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    float out[8];
    __m256 s = acc[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, acc[i]);
    _mm256_storeu_ps(out, s);
    return out[0] + out[7];
}
CONDENSE_TARGET_AVX512 static double sum_512(const float *p, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_load_ps(p + i));
        s1 = _mm512_add_ps(s1, _mm512_load_ps(p + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_load_ps(p + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_load_ps(p + i + 48));
    }
    double r = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    for (; i < n; i++) r += p[i];
    return r;
}
CONDENSE_TARGET_AVX2 static double sum_256(const float *p, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_load_ps(p + i));
        s1 = _mm256_add_ps(s1, _mm256_load_ps(p + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_load_ps(p + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_load_ps(p + i + 24));
    }
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    double r = 0;
    for (int j = 0; j < 8; j++) r += out[j];
    for (; i < n; i++) r += p[i];
    return r;
}
#endif

#if CONDENSE_ARM64
#include <arm_neon.h>
/* 24 independent chains: 4 FMA pipes × 4 cycles of latency (Apple M-series, Neoverse V) and spare. */
#define NEON_CHAINS 24
static float fma_loop_neon(long iters) {
    float32x4_t acc[NEON_CHAINS];
    for (int i = 0; i < NEON_CHAINS; i++) acc[i] = vdupq_n_f32((float)i);
    const float32x4_t a = vdupq_n_f32(0.999999f), b = vdupq_n_f32(1e-7f);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < NEON_CHAINS; i++) acc[i] = vfmaq_f32(b, acc[i], a);
    float32x4_t s = acc[0];
    for (int i = 1; i < NEON_CHAINS; i++) s = vaddq_f32(s, acc[i]);
    return vaddvq_f32(s);
}
static double sum_neon(const float *p, size_t n) {
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = vaddq_f32(s0, vld1q_f32(p + i));
        s1 = vaddq_f32(s1, vld1q_f32(p + i + 4));
        s2 = vaddq_f32(s2, vld1q_f32(p + i + 8));
        s3 = vaddq_f32(s3, vld1q_f32(p + i + 12));
    }
    double r = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; i++) r += p[i];
    return r;
}
#endif

static double sum_scalar(const float *p, size_t n) {
    double r = 0;
    for (size_t i = 0; i < n; i++) r += p[i];
    return r;
}

volatile float condense_probe_sink;

/* Each thread's result lands in its own slot (threads past 64 only keep the loop alive). */
typedef struct { condense_isa isa; long iters; float part[64]; int ran; } fma_ctx;

static void fma_share(void *ctx, int t, int nt) {
    fma_ctx *c = ctx;
    float sink;
#if CONDENSE_X86
    if (c->isa >= CONDENSE_ISA_AVX512) sink = fma_loop_512(c->iters);
    else if (c->isa >= CONDENSE_ISA_AVX2) sink = fma_loop_256(c->iters);
    else
#elif CONDENSE_ARM64
    if (c->isa >= CONDENSE_ISA_NEON) sink = fma_loop_neon(c->iters);
    else
#endif
    {
        float acc = 1;
        for (long i = 0; i < c->iters; i++) acc = acc * 0.999999f + 1e-7f;
        sink = acc;
    }
    if (t == 0) __atomic_store_n(&c->ran, nt, __ATOMIC_RELAXED);
    if (t < 64) c->part[t] = sink;
    else condense_probe_sink = sink;
}

typedef struct { float *buf; size_t n; condense_isa isa; double part[64]; int init; } read_ctx;

static void read_share(void *ctx, int t, int nt) {
    read_ctx *c = ctx;
    if (c->init) {
        for (size_t i = c->n * (size_t)t / (size_t)nt; i < c->n * (size_t)(t + 1) / (size_t)nt; i++) c->buf[i] = 1.0f;
        return;
    }
    const size_t per = (c->n / (size_t)nt) & ~(size_t)63;
    const size_t b = per * (size_t)t, e = t == nt - 1 ? c->n : b + per;
    double v;
#if CONDENSE_X86
    if (c->isa >= CONDENSE_ISA_AVX512) v = sum_512(c->buf + b, e - b);
    else if (c->isa >= CONDENSE_ISA_AVX2) v = sum_256(c->buf + b, e - b);
    else
#elif CONDENSE_ARM64
    if (c->isa >= CONDENSE_ISA_NEON) v = sum_neon(c->buf + b, e - b);
    else
#endif
        v = sum_scalar(c->buf + b, e - b);
    if (t < 64) c->part[t] = v;
    else condense_probe_sink = (float)v;
}

double condense_probe_fma_gflops(int threads, condense_isa isa) {
    if (threads < 1) threads = condense_get_num_threads();
    if (!condense_isa_runs_on(isa, condense_isa_detected())) isa = condense_isa_detected();
    /* Best of several short runs: the clock drifts and the host is shared, and the peak is the
     * best the machine can do, not a typical figure. */
    const long iters = 4 * 1000 * 1000;
    double best = 0;
    for (int rep = 0; rep < 7; rep++) {
    double t0 = now_s();
    fma_ctx c = {.isa = isa, .iters = iters};
    condense_team_run(threads, fma_share, &c);
    double dt = now_s() - t0;
    for (int i = 0; i < 64; i++) condense_probe_sink += c.part[i];
    double flops_per_iter = isa >= CONDENSE_ISA_NEON ? 0 : isa >= CONDENSE_ISA_AVX512 ? 16 * 32 : isa >= CONDENSE_ISA_AVX2 ? 12 * 16 : 2;
#if CONDENSE_ARM64
    if (isa >= CONDENSE_ISA_NEON) flops_per_iter = NEON_CHAINS * 8;
#endif
    /* The threads that ran (a busy team runs the probe alone). */
    double g = (double)c.ran * (double)iters * flops_per_iter / dt * 1e-9;
    if (g > best) best = g;
    }
    return best;
}

double condense_probe_read_gbps(size_t bytes, int threads, int passes) {
    if (threads < 1) threads = condense_get_num_threads();
    size_t n = bytes / sizeof(float);
    if (n < 1024) n = 1024;
    float *buf = condense_aligned_alloc(n * sizeof(float));
    if (!buf) return 0;
    /* First touch in parallel so pages spread like the kernels' own accesses. */
    read_ctx c = {.buf = buf, .n = n, .isa = condense_isa_active(), .init = 1};
    condense_team_run(threads, read_share, &c);
    c.init = 0;
    double best = 0;
    for (int p = 0; p < passes + 1; p++) {
        double t0 = now_s();
        condense_team_run(threads, read_share, &c);
        double gbps = (double)(n * sizeof(float)) / (now_s() - t0) * 1e-9;
        for (int i = 0; i < 64; i++) condense_probe_sink += (float)c.part[i];
        if (p > 0 && gbps > best) best = gbps; /* pass 0 warms caches / TLB */
    }
    free(buf);
    return best;
}
