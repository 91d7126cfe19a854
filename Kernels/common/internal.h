/* Declarations shared by the kernel files; not part of the public header. */
#ifndef CONDENSE_INTERNAL_H
#define CONDENSE_INTERNAL_H

#include "condense_kernels.h"
#include <stdlib.h>

#if defined(__x86_64__) || defined(_M_X64)
#define CONDENSE_X86 1
#define CONDENSE_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define CONDENSE_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))
#else
#define CONDENSE_X86 0
#endif
#if defined(__aarch64__)
#define CONDENSE_ARM64 1
/* Baseline AArch64 has Advanced SIMD; the extensions get per-function targets, like x86's. */
#define CONDENSE_TARGET_DOTPROD __attribute__((target("dotprod")))
#define CONDENSE_TARGET_I8MM __attribute__((target("dotprod,i8mm")))
#define CONDENSE_TARGET_BF16 __attribute__((target("bf16")))
#else
#define CONDENSE_ARM64 0
#endif
/* An architecture with hand-written vector kernels (the rest run the portable C). */
#define CONDENSE_SIMD (CONDENSE_X86 || CONDENSE_ARM64)

#define CONDENSE_INLINE static inline __attribute__((always_inline))

/* 64-byte aligned allocation (sizes rounded up as aligned_alloc requires; NULL on overflow), and
 * zeroed allocation. Both honour condense_test_fail_allocations (common/memory.c). */
void *condense_aligned_alloc(size_t bytes);
void *condense_zalloc(size_t bytes);

/* f32 to IEEE half bits, round to nearest even as F16C does (gguf/gguf-dequant.c): the KV cache's
 * scalar path and the f16 scales of quantized activations share it. */
uint16_t condense_f32_to_f16_one(float f);

/* The persistent thread team (common/team.c): fn(ctx, t, nt) on nt threads, the caller as t = 0;
 * returns when all are done. Nested or concurrent calls run fn(ctx, 0, 1) on the caller. */
typedef void (*condense_team_fn)(void *ctx, int t, int nt);
void condense_team_run(int nt, condense_team_fn fn, void *ctx);
/* All nt threads of the running job meet here (no-op for nt = 1). */
void condense_team_barrier(int nt);
/* Idle workers stop spinning and sleep until the next job (another pool is about to run). */
void condense_team_quiesce(void);

/* Grow-only per-thread scratch: one buffer per slot; NULL when it cannot grow. A call chain uses
 * each slot once at a time (the caller's X buffers, the workers' own). */
enum {
    CONDENSE_SCRATCH_QX = 0,      /* caller: quantized rows of X and their parameters (q8, q4, 2:4-int8) */
    CONDENSE_SCRATCH_XT = 1,      /* caller: a transposed block of X shared by the team (sparse xt) */
    CONDENSE_SCRATCH_YT = 2,      /* worker: its transposed block of Y (sparse xt) */
    CONDENSE_SCRATCH_CURSOR = 3,  /* worker: row cursors (sparse xt) */
    CONDENSE_SCRATCH_WROW = 4,    /* worker: one dequantized weight panel slice (int4) */
    CONDENSE_SCRATCH_ATTN = 5,    /* worker: attention scores of one query row (decoders) */
    CONDENSE_SCRATCH_STATES = 6,  /* worker: chunk states of a sequence it attends alone (decoder layer job) */
    CONDENSE_SCRATCH_SLOTS = 7,
};
void *condense_scratch(int slot, size_t bytes);

/* Copies an optional bias into an aligned buffer: *dst = NULL for no bias. Returns 0 when the
 * allocation fails (the caller frees what it packed so far). Every pack function shares it. */
static inline int condense_copy_bias(float **dst, const float *bias, size_t n) {
    *dst = NULL;
    if (!bias) return 1;
    *dst = condense_aligned_alloc((n ? n : 1) * sizeof(float));
    if (!*dst) return 0;
    for (size_t i = 0; i < n; i++) (*dst)[i] = bias[i];
    return 1;
}

/* Software prefetch distance on the packed weight stream, in floats (16 KiB). Panels of one tile
 * are contiguous, so this runs ahead into the next panel too. Measured interleaved A/B on Zen 5,
 * 4096×4096 from DRAM, 2 threads: M = 8 went 240–258 → 489–512 GFLOPS (oneDNN 263–278 in the
 * same rounds); 4 KiB gave 331–344. Weights already in cache are unaffected. */
#define CONDENSE_F32_GEMM_PREFETCH 4096

/* Per-ISA micro-kernels (defined in f32-gemm/f32-gemm-<isa>.c). */
void condense_f32_gemm_ukernel_4x16__scalar(int mr, int nv, size_t kc, const float *a,
                                            size_t lda, const float *b, float *c, size_t ldc, int flags,
                                            const float *bias, int act);
#if CONDENSE_X86
void condense_f32_gemm_ukernel_6x16__avx2(int mr, int nv, size_t kc, const float *a,
                                          size_t lda, const float *b, float *c, size_t ldc, int flags,
                                          const float *bias, int act);
void condense_f32_gemm_ukernel_12x32__avx512(int mr, int nv, size_t kc, const float *a,
                                             size_t lda, const float *b, float *c, size_t ldc, int flags,
                                             const float *bias, int act);
void condense_f32_activation__avx2(float *y, size_t n, int act);
void condense_f32_activation__avx512(float *y, size_t n, int act);
#endif
void condense_f32_activation__scalar(float *y, size_t n, int act);
#if CONDENSE_ARM64
void condense_f32_gemm_ukernel_6x16__neon(int mr, int nv, size_t kc, const float *a, size_t lda, const float *b,
                                          float *c, size_t ldc, int flags, const float *bias, int act);
void condense_f32_activation__neon(float *y, size_t n, int act);
#endif
/* The scalar micro-kernels' epilogue (f32-gemm-scalar.c): accumulate, bias, activation, store. */
void condense_uk_epilogue_4x16__scalar(int mr, int nv, const float acc[4][16], float *c, size_t ldc, int flags,
                                       const float *bias, int act);

/* Half-precision micro-kernels (half-gemm/half-gemm-<isa>.c), condense_half_ukernel's signature. */
void condense_half_widen_4x16__scalar(int type, int mr, int nv, size_t kc, const void *a, size_t lda,
                                      const uint16_t *b, float *c, size_t ldc, int flags, const float *bias, int act);
#if CONDENSE_X86
void condense_half_widen_6x16__avx2(int type, int mr, int nv, size_t kc, const void *a, size_t lda,
                                    const uint16_t *b, float *c, size_t ldc, int flags, const float *bias, int act);
void condense_half_widen_12x32__avx512(int type, int mr, int nv, size_t kc, const void *a, size_t lda,
                                       const uint16_t *b, float *c, size_t ldc, int flags, const float *bias, int act);
void condense_bf16_dot_12x32__avx512bf16(int type, int mr, int nv, size_t kc, const void *a, size_t lda,
                                         const uint16_t *b, float *c, size_t ldc, int flags, const float *bias, int act);
/* Rows of X to bf16 (round to nearest even), each padded with zeros to kstored. */
void condense_bf16_round_rows__avx512bf16(const float *x, size_t m, size_t k, size_t lda, uint16_t *xb,
                                          size_t kstored);
#endif
#if CONDENSE_ARM64
void condense_half_widen_6x16__neon(int type, int mr, int nv, size_t kc, const void *a, size_t lda,
                                    const uint16_t *b, float *c, size_t ldc, int flags, const float *bias, int act);
void condense_bf16_dot_6x16__bf16(int type, int mr, int nv, size_t kc, const void *a, size_t lda,
                                  const uint16_t *b, float *c, size_t ldc, int flags, const float *bias, int act);
#endif
/* f16 bits to f32 and bf16 bits to f32: exact. */
float condense_f16_to_f32(uint16_t h);
static inline float condense_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

/* int8 micro-kernels (q8-gemm/q8-gemm-<isa>.c). */
void condense_q8_ukernel_4x16__scalar(int mr, int nv, size_t kq, const uint8_t *a, size_t lda,
                                      const void *b, const condense_q8_epilogue *ep);
void condense_q8_quantize_rows__scalar(const float *x, size_t m, size_t k, size_t lda, uint8_t *xq,
                                       size_t ldq, size_t k4, float *sx, int32_t *zx,
                                       const float *static_scale, const int32_t *static_zp);
#if CONDENSE_X86
void condense_q8_ukernel_4x16__avx2(int mr, int nv, size_t kq, const uint8_t *a, size_t lda,
                                    const void *b, const condense_q8_epilogue *ep);
void condense_q8_ukernel_6x16__avxvnni(int mr, int nv, size_t kq, const uint8_t *a, size_t lda,
                                       const void *b, const condense_q8_epilogue *ep);
void condense_q8_ukernel_6x16__avx512vnni_ymm(int mr, int nv, size_t kq, const uint8_t *a, size_t lda,
                                            const void *b, const condense_q8_epilogue *ep);
void condense_q8_ukernel_12x32__avx512vnni(int mr, int nv, size_t kq, const uint8_t *a, size_t lda,
                                           const void *b, const condense_q8_epilogue *ep);
void condense_q8_quantize_rows__avx512(const float *x, size_t m, size_t k, size_t lda, uint8_t *xq,
                                       size_t ldq, size_t k4, float *sx, int32_t *zx,
                                       const float *static_scale, const int32_t *static_zp);
#endif

#if CONDENSE_ARM64
void condense_q8_ukernel_4x16__dotprod(int mr, int nv, size_t kq, const uint8_t *a, size_t lda,
                                       const void *b, const condense_q8_epilogue *ep);
void condense_q8_ukernel_4x16__i8mm(int mr, int nv, size_t kq, const uint8_t *a, size_t lda,
                                    const void *b, const condense_q8_epilogue *ep);
void condense_q8_quantize_rows__neon(const float *x, size_t m, size_t k, size_t lda, uint8_t *xq,
                                     size_t ldq, size_t k4, float *sx, int32_t *zx,
                                     const float *static_scale, const int32_t *static_zp);
#endif

/* int4 dequantize path (q4-gemm/): panel `panel`'s columns [k0, k0 + kc) as f32 (s·q, exact)
 * into buf[kc][nr], the f32 micro-kernel's packed layout. */
void condense_q4_unpack__scalar(const condense_q4_packed *w, size_t panel, size_t k0, size_t kc, float *buf);
#if CONDENSE_X86
void condense_q4_unpack__avx2(const condense_q4_packed *w, size_t panel, size_t k0, size_t kc, float *buf);
void condense_q4_unpack__avx512(const condense_q4_packed *w, size_t panel, size_t k0, size_t kc, float *buf);
#endif
#if CONDENSE_ARM64
void condense_q4_unpack__neon(const condense_q4_packed *w, size_t panel, size_t k0, size_t kc, float *buf);
void condense_q4_integer__dotprod(const condense_q4_packed *w, size_t p0, size_t p1, size_t m, const uint8_t *xq,
                                  size_t ldq, const float *sx, const int32_t *zx, float *y, size_t ldy, int act);
void condense_q4_integer__i8mm(const condense_q4_packed *w, size_t p0, size_t p1, size_t m, const uint8_t *xq,
                               size_t ldq, const float *sx, const int32_t *zx, float *y, size_t ldy, int act);
#endif
#if CONDENSE_X86
/* Panels [p0, p1) of 16 rows, all m rows of quantized X, with the full epilogue. */
void condense_q4_integer__avx512vnni(const condense_q4_packed *w, size_t p0, size_t p1, size_t m,
                                     const uint8_t *xq, size_t ldq, const float *sx,
                                     const int32_t *zx, float *y, size_t ldy, int act);
#endif

/* 2:4-int8 kernels (s24q8-gemm/): rows [n0, n1) of W against m rows of quantized X, raw int32
 * dots into acc[i · ldacc + r]. */
void condense_s24q8_dot__scalar(const condense_s24q8_packed *w, size_t n0, size_t n1, size_t m,
                                const uint8_t *xq, size_t ldq, int32_t *acc, size_t ldacc);
#if CONDENSE_X86
void condense_s24q8_dot__avx2(const condense_s24q8_packed *w, size_t n0, size_t n1, size_t m,
                              const uint8_t *xq, size_t ldq, int32_t *acc, size_t ldacc);
void condense_s24q8_dot__avx512vbmi2(const condense_s24q8_packed *w, size_t n0, size_t n1, size_t m,
                                     const uint8_t *xq, size_t ldq, int32_t *acc, size_t ldacc);
#endif

#if CONDENSE_ARM64
void condense_s24q8_dot__neon(const condense_s24q8_packed *w, size_t n0, size_t n1, size_t m,
                              const uint8_t *xq, size_t ldq, int32_t *acc, size_t ldacc);
void condense_s24q8_dot__dotprod(const condense_s24q8_packed *w, size_t n0, size_t n1, size_t m,
                                 const uint8_t *xq, size_t ldq, int32_t *acc, size_t ldacc);
#endif

/* The tile plan the GEMM drivers (f32, int8) share: Y[M, N] cut into row blocks of mc rows and
 * chunks of `ppc` weight panels of nr columns; about four tiles per thread for balance, at most
 * 512 columns a chunk so a tile's slice of Y stays in L2 across K. Tiles are numbered
 * chunk-major, so a static schedule gives each thread its own share of W. */
typedef struct condense_tile_plan {
    size_t mc, mblocks, panels, ppc, chunks;
    long tiles;
    int threads; /* threads worth forking: at most one per tile */
} condense_tile_plan;

static inline condense_tile_plan condense_plan_tiles(size_t m, size_t n, size_t mc, size_t nr, int threads) {
    condense_tile_plan p;
    p.mc = mc;
    p.mblocks = (m + mc - 1) / mc;
    p.panels = (n + nr - 1) / nr;
    const size_t want = (4 * (size_t)threads + p.mblocks - 1) / p.mblocks;
    size_t ppc = (p.panels + want - 1) / want;
    if (ppc > 512 / nr) ppc = 512 / nr;
    p.ppc = ppc < 1 ? 1 : ppc;
    p.chunks = (p.panels + p.ppc - 1) / p.ppc;
    p.tiles = (long)(p.chunks * p.mblocks);
    p.threads = threads > p.tiles ? (int)p.tiles : threads;
    return p;
}

/* Tile `tile`'s rows [*m0, *m0 + *mlen) and panels [*p0, *p1). */
static inline void condense_tile_range(const condense_tile_plan *p, size_t tile, size_t m, size_t *m0, size_t *mlen,
                                       size_t *p0, size_t *p1) {
    const size_t chunk = tile / p->mblocks, mb = tile % p->mblocks;
    *m0 = mb * p->mc;
    *mlen = m - *m0 < p->mc ? m - *m0 : p->mc;
    *p0 = chunk * p->ppc;
    *p1 = *p0 + p->ppc < p->panels ? *p0 + p->ppc : p->panels;
}

/* Whether `isa` picks an AArch64 vector path here: an ARM level this CPU runs. */
static inline int condense_isa_arm_simd(condense_isa isa) {
    return isa >= CONDENSE_ISA_NEON && condense_isa_runs_on(isa, condense_isa_detected());
}

/* The u8 activation rule every quantization path shares, so all give the same bytes: the finite
 * range [lo, hi] (0 included, ±Inf and NaN skipped) gives the scale and the zero point; a value
 * quantizes to rint(v / s) + z saturated to 0…255, NaN to z. */
static inline void condense_q8_range_add(float v, float *lo, float *hi) {
    *lo = v < *lo && v > -__builtin_inff() ? v : *lo;
    *hi = v > *hi && v < __builtin_inff() ? v : *hi;
}
static inline void condense_q8_range_params(float lo, float hi, float *s, int32_t *z) {
    *s = hi > lo ? (hi - lo) / 255.0f : 1.0f;
    const float zf = __builtin_rintf(-lo / *s);
    *z = zf < 0 ? 0 : zf > 255 ? 255 : (int32_t)zf;
}
static inline uint8_t condense_q8_quantize_one(float v, float inv, float zf) {
    float q = __builtin_rintf(v * inv) + zf;
    q = q != q ? zf : q; /* NaN → zero point */
    return (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
}

/* Whether this CPU runs a kernel of level `isa` needing `features` (beyond the level). */
static inline int condense_kernel_runnable(condense_isa isa, uint32_t features) {
    return condense_isa_runs_on(isa, condense_isa_detected()) && (condense_cpu_features() & features) == features;
}

/* The epilogue every family shares: rows of Y, columns [n0, n1): + bias[j], then the activation
 * with `isa`'s code. */
void condense_bias_activation(float *y, size_t ldy, size_t rows, size_t n0, size_t n1, const float *bias,
                              int act, condense_isa isa);

/* Scalar GELU, the reference for the vector versions. */
float condense_gelu_scalar(float x);

#endif
