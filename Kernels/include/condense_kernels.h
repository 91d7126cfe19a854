/*
 * Condense kernels: the C side of the runtime.
 *
 * Contract (see docs/kernel-contract.md):
 *  - A linear layer computes Y[M,N] = act(X[M,K] · W[N,K]ᵀ + bias[N]), all row-major f32.
 *  - Weights are packed once (condense_f32_pack) for one kernel; condense_f32_gemm then runs
 *    any batch M with them. The packed layout belongs to the kernel it was packed for.
 *  - Kernels never allocate on the hot path except a per-thread scratch buffer grown once.
 *  - NaN and Inf propagate as in IEEE arithmetic (ReLU(NaN) = NaN).
 */
#ifndef CONDENSE_KERNELS_H
#define CONDENSE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- CPU features and ISA dispatch ------------------------------------------------------ */

/** Instruction-set levels. Each architecture has its own ladder above the portable level, lowest
 *  first: scalar < avx2 < avxvnni < avx512 on x86-64, scalar < neon < dotprod < i8mm on AArch64.
 *  A kernel of level L runs on a CPU whose detected level is on L's ladder and >= L
 *  (condense_isa_runs_on); a level of the other architecture never runs. */
typedef enum condense_isa {
    CONDENSE_ISA_SCALAR = 0,  /* portable C, any CPU */
    CONDENSE_ISA_AVX2 = 1,    /* AVX2 + FMA (x86-64-v3) */
    CONDENSE_ISA_AVXVNNI = 2, /* AVX2 + AVX-VNNI (VEX vpdpbusd): Alder Lake and later clients */
    CONDENSE_ISA_AVX512 = 3,  /* AVX-512 F/BW/DQ/VL (x86-64-v4) */
    CONDENSE_ISA_NEON = 4,    /* AArch64 Advanced SIMD (every ARMv8-A CPU) */
    CONDENSE_ISA_DOTPROD = 5, /* + SDOT/UDOT (FEAT_DotProd: Cortex-A76/Neoverse N1, Apple M1 and later) */
    CONDENSE_ISA_I8MM = 6,    /* + SMMLA/USMMLA/USDOT (FEAT_I8MM: Neoverse V1/N2, Graviton 3, Apple M2 and later) */
    CONDENSE_ISA_COUNT = 7
} condense_isa;

/** Whether kernels of level `isa` run on a CPU of detected level `detected`: the same ladder
 *  (x86-64 or AArch64) and not above it; scalar runs everywhere. */
static inline int condense_isa_runs_on(condense_isa isa, condense_isa detected) {
    if (isa == CONDENSE_ISA_SCALAR) return 1;
    const int arm = isa >= CONDENSE_ISA_NEON, arm_cpu = detected >= CONDENSE_ISA_NEON;
    return arm == arm_cpu && detected != CONDENSE_ISA_SCALAR && isa <= detected;
}

/** CPU feature bits, each set only when CPUID reports it and the OS enables its registers (XCR0). */
enum {
    CONDENSE_CPU_SSE42 = 1u << 0,
    CONDENSE_CPU_AVX = 1u << 1,
    CONDENSE_CPU_AVX2 = 1u << 2,
    CONDENSE_CPU_FMA = 1u << 3,
    CONDENSE_CPU_F16C = 1u << 4,
    CONDENSE_CPU_AVX512F = 1u << 5,
    CONDENSE_CPU_AVX512BW = 1u << 6,
    CONDENSE_CPU_AVX512DQ = 1u << 7,
    CONDENSE_CPU_AVX512VL = 1u << 8,
    CONDENSE_CPU_AVX512VNNI = 1u << 9,
    CONDENSE_CPU_AVXVNNI = 1u << 10,
    CONDENSE_CPU_AVX512BF16 = 1u << 11,
    CONDENSE_CPU_NEON = 1u << 12,
    CONDENSE_CPU_AVX512VBMI2 = 1u << 13,
    CONDENSE_CPU_DOTPROD = 1u << 14,  /* AArch64 SDOT/UDOT */
    CONDENSE_CPU_I8MM = 1u << 15,     /* AArch64 SMMLA/UMMLA/USMMLA/USDOT */
    CONDENSE_CPU_ARM_BF16 = 1u << 16, /* AArch64 BFDOT/BFMMLA */
    CONDENSE_CPU_FP16 = 1u << 17,     /* AArch64 half-precision arithmetic (FEAT_FP16) */
};

/** Result of reading CONDENSE_ISA once at start. */
typedef enum condense_dispatch_status {
    CONDENSE_DISPATCH_OK = 0,
    CONDENSE_DISPATCH_INVALID_VALUE = 1,   /* CONDENSE_ISA names no level */
    CONDENSE_DISPATCH_UNAVAILABLE = 2,     /* CONDENSE_ISA names a level this CPU lacks (or another architecture's) */
} condense_dispatch_status;

/** Feature bits of this CPU (CONDENSE_CPU_*). */
uint32_t condense_cpu_features(void);
/** Highest ISA level this CPU and OS support. */
condense_isa condense_isa_detected(void);
/** ISA level the kernels use by default: detected, or lowered by CONDENSE_ISA. */
condense_isa condense_isa_active(void);
/** Whether CONDENSE_ISA was valid; when not, condense_isa_active() falls back to detected. */
condense_dispatch_status condense_dispatch_status_get(void);
/** The CONDENSE_ISA value seen at start, or NULL when unset. */
const char *condense_isa_env_value(void);
/** The rule CONDENSE_ISA follows: `value` (NULL or "" = unset) resolved against `detected`.
 *  On anything but OK, *out is `detected`. */
condense_dispatch_status condense_isa_resolve(const char *value, condense_isa detected,
                                              condense_isa *out);
/** "scalar", "avx2", "avxvnni", "avx512", "neon", "dotprod", "i8mm". */
const char *condense_isa_name(condense_isa isa);
/** CPU brand string from CPUID (empty when unknown). */
const char *condense_cpu_brand(void);

/* ---- Status ------------------------------------------------------------------------------ */

/** What every driver that can fail returns. On anything but CONDENSE_OK, Y is unspecified and
 *  must not be used: the host reports the error instead of returning stale output. */
typedef enum condense_status {
    CONDENSE_OK = 0,
    CONDENSE_ERR_NO_MEMORY = 1,   /* a scratch buffer could not be allocated */
    CONDENSE_ERR_INVALID = 2,     /* an argument the driver cannot run (e.g. a bad seq_start) */
} condense_status;

/** For tests: the next `count` allocations the kernels make on the calling thread fail (scratch
 *  buffers are allocated anew while armed, so the failure is reached). 0 disarms. Worker
 *  threads are not affected. */
void condense_test_fail_allocations(int count);

/* ---- Threads ----------------------------------------------------------------------------- */

/** Whether the kernels were built with OpenMP (otherwise they always run on one thread). */
int condense_openmp_enabled(void);
/** Largest thread count accepted from CONDENSE_NUM_THREADS or a caller. */
enum { CONDENSE_MAX_THREADS = 1024 };
/** The CONDENSE_NUM_THREADS value when it was rejected (not an integer in 1…CONDENSE_MAX_THREADS;
 *  the default is used instead), else NULL. */
const char *condense_threads_env_rejected(void);
/** Threads the kernels use: CONDENSE_NUM_THREADS, else OpenMP's default. */
int condense_get_num_threads(void);
/** Set the kernels' thread count (>= 1). Returns the previous value. */
int condense_set_num_threads(int n);
/** Number of processors OpenMP sees (1 without OpenMP). */
int condense_num_procs(void);
/** Puts the kernels' idle workers (the thread team, and libomp's if linked) to sleep now instead of after their spin time, so
 *  another thread pool in the process (a plugin's) gets the cores. For fair timing of foreign
 *  backends; the next kernel call wakes the workers again. */
void condense_threads_quiesce(void);
/** Self-check of the kernels' thread team, for tests: one job on nt threads (or, when the team is
 *  busy with another caller's job, on the caller alone) passes `rounds` barriers, checking at each
 *  that every thread arrived, and starts a nested job, which must run alone. Returns the number
 *  of violations (0), or −1 if neither the whole team nor the caller alone ran the job. */
int condense_team_check(int nt, int rounds);
/** Runs fn(ctx, t, nt) for t = 0…nt − 1 on Condense's persistent thread team (the caller is t = 0;
 *  nt <= 0: the default thread count) and returns when every call has returned. A nested or
 *  concurrent call runs fn(ctx, 0, 1) on its caller alone. What Swift backends (CondenseSIMDKit)
 *  use, so their threads cost what the C kernels' do (about a microsecond, not a dispatch queue's). */
void condense_parallel(int nt, void (*fn)(void *ctx, int t, int nt), void *ctx);

/* ---- Epilogues --------------------------------------------------------------------------- */

typedef enum condense_activation {
    CONDENSE_ACT_NONE = 0,
    CONDENSE_ACT_RELU = 1,
    CONDENSE_ACT_GELU = 2,  /* exact form 0.5·x·(1 + erf(x/√2)), |error| < 2e-7·|x| */
} condense_activation;

/* ---- Dense f32 GEMM ---------------------------------------------------------------------- */

/**
 * Micro-kernel contract. Computes an mr×nv tile of C with mr <= MR and nv <= NR:
 *   C[i, j] (= or +=) Σ_k A[i·lda + k] · B[k·NR + j]      for k < kc
 * A is read in place (rows of X, stride lda: no packing, the broadcasts stream each row);
 * B is one packed weight panel (NR columns, zero padded). flags: bit 0 accumulate into C, bit 1 final pass (add bias[j] when bias is not
 * NULL, then the activation). Columns >= nv are neither read nor written.
 */
typedef void (*condense_f32_gemm_ukernel)(int mr, int nv, size_t kc, const float *a,
                                          size_t lda, const float *b, float *c, size_t ldc, int flags,
                                          const float *bias, int act);

enum { CONDENSE_UK_ACCUMULATE = 1, CONDENSE_UK_FINAL = 2 };

/** One f32 GEMM kernel family member: the registration point for tests, info and dispatch. */
typedef struct condense_f32_gemm_kernel {
    const char *name;      /* e.g. "f32_gemm_12x32__avx512": datatype, op, tile, ISA */
    condense_isa isa;
    int mr, nr;            /* register tile */
    int kc, mc;            /* cache blocking: K slice, rows of X per block (kept in L2) */
    condense_f32_gemm_ukernel ukernel;
} condense_f32_gemm_kernel;

/** Number of f32 GEMM kernels compiled in (for this architecture). */
int condense_f32_gemm_kernel_count(void);
/** Kernel i, or NULL when out of range. */
const condense_f32_gemm_kernel *condense_f32_gemm_kernel_at(int i);
/** The best kernel whose ISA is <= isa and which this CPU can run. */
const condense_f32_gemm_kernel *condense_f32_gemm_kernel_for(condense_isa isa);

/** Weights packed for one kernel: panels of NR output rows, each stored k-major [K][NR]. */
typedef struct condense_f32_packed {
    size_t n, k;
    const condense_f32_gemm_kernel *kernel;
    float *data;           /* ceil(n/NR)·K·NR floats, 64-byte aligned */
    float *bias;           /* n floats or NULL */
} condense_f32_packed;

/**
 * Pack W[N,K] (row stride ldw) and an optional bias for `kernel`.
 * Returns NULL when memory is exhausted.
 */
condense_f32_packed *condense_f32_pack(const condense_f32_gemm_kernel *kernel, const float *w,
                                       size_t n, size_t k, size_t ldw, const float *bias);
/**
 * Pack weights given transposed: wt is Wᵀ stored [K][N] (row stride ldwt), no bias. Training
 * uses it for dX = dY·W and dW = dYᵀ·X, whose right-hand operands exist only transposed.
 */
condense_f32_packed *condense_f32_pack_t(const condense_f32_gemm_kernel *kernel, const float *wt,
                                         size_t n, size_t k, size_t ldwt);
void condense_f32_packed_free(condense_f32_packed *p);

/**
 * Y[M,N] = act(X[M,K] · Wᵀ + bias) with packed weights, on `threads` threads (<= 0: default).
 * lda, ldy are row strides in elements. M may be 0. Every driver below returns a condense_status.
 */
int condense_f32_gemm(const condense_f32_packed *w, size_t m, const float *x, size_t lda,
                       float *y, size_t ldy, int act, int threads);

/** Apply an activation in place on n floats with the given ISA's code. */
void condense_f32_activation(float *y, size_t n, int act, condense_isa isa);

/* ---- Sparse f32: 2:4 and CSR ------------------------------------------------------------ */

/**
 * Packed 2:4 weights W[N,K]. K is padded with zeros to k16, a multiple of 16. Row n holds
 * k16/2 values (two per group of 4, ascending column) and k16/8 metadata bytes; the 16-bit
 * little-endian word c of a row is the lane mask of columns 16c…16c+15 (bit i: column 16c+i
 * is stored), exactly two bits per nibble. `index` holds each value's column (as CSR column
 * indices, row n starting at n·k16/2) for the kernels that vectorise over M.
 */
typedef struct condense_s24_packed {
    size_t n, k, k16;
    condense_isa isa;
    float *values;         /* n · k16/2 */
    uint8_t *meta;         /* n · k16/8 */
    void *index;           /* n · k16/2 indices, uint16 when k16 <= 65536 else uint32 */
    int index_bytes;
    float *bias;           /* n or NULL */
    /* Panel form for the "panel" kernels (AVX-512), NULL otherwise: panels of 16 rows; per panel
     * and group g (of k4/4): 16 slot-0 values then 16 slot-1 values (panel_values), and one
     * 64-bit word of 2-bit column positions, slot s of row j at bits 32·s + 2·j (panel_pos). */
    float *panel_values;   /* ⌈n/16⌉ · groups · 32 */
    uint64_t *panel_pos;   /* ⌈n/16⌉ · groups */
    size_t groups;         /* k4 / 4 */
    /* Bucket form for the "bucket" kernels (AVX2 and up), NULL otherwise: tiles of
     * bucket_rows_per_tile rows; per tile and group, the tile's rows sorted by which 2 of the 4
     * columns they keep (patterns (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)): bucket_count[6] rows per
     * pattern, then per row its index in the tile (bucket_row) and its 2 values (bucket_values). */
    size_t bucket_rows_per_tile;
    uint16_t *bucket_count; /* ⌈n/tile⌉ · groups · 6 */
    uint16_t *bucket_row;   /* n · groups, tile-major then group-major */
    float *bucket_values;   /* n · groups · 2 */
} condense_s24_packed;

/** Pack from the Swift layout (rows of k4/2 values and meta_stride bytes of nibble masks). */
condense_s24_packed *condense_s24_pack(condense_isa isa, const float *values, const uint8_t *meta,
                                       size_t n, size_t k, size_t k4, size_t meta_stride,
                                       const float *bias);
void condense_s24_packed_free(condense_s24_packed *p);
/** Y[M,N] = act(X · Wᵀ + bias) for 2:4 weights. */
int condense_s24_gemm(const condense_s24_packed *w, size_t m, const float *x, size_t lda,
                       float *y, size_t ldy, int act, int threads);

/** Packed CSR weights W[N,K]: row_ptr (n+1), column indices (uint16 or uint32), values. */
typedef struct condense_csr_packed {
    size_t n, k, nnz;
    condense_isa isa;
    uint32_t *row_ptr;
    void *index;
    int index_bytes;       /* 2 when k <= 65536, else 4 */
    float *values;
    float *bias;
} condense_csr_packed;

condense_csr_packed *condense_csr_pack(condense_isa isa, const uint32_t *row_ptr, const void *index,
                                       int index_bytes, const float *values, size_t n, size_t k,
                                       const float *bias);
void condense_csr_packed_free(condense_csr_packed *p);
/** Y[M,N] = act(X · Wᵀ + bias) for CSR weights. */
int condense_csr_gemm(const condense_csr_packed *w, size_t m, const float *x, size_t lda,
                       float *y, size_t ldy, int act, int threads);

/** Sparse kernel kinds: "dot" (row dot products, few rows of X, reads the compact weight), "xt"
 *  (vectorised over M on a transposed block of X; FLOPs scale with the non-zeros) and, for 2:4,
 *  "panel" (16 weight rows per vector; each group's 4 values of X are permuted per lane to the
 *  two kept columns: half the FMAs of dense and no gathers) and "bucket" (vectorised over M;
 *  rows sorted per group by their 2:4 pattern so the X columns are registers named in code:
 *  half the FMAs and no permutes). */
enum { CONDENSE_SPARSE_DOT = 0, CONDENSE_SPARSE_XT = 1, CONDENSE_SPARSE_PANEL = 2, CONDENSE_SPARSE_BUCKET = 3 };
/** The weight formats of the sparse kernel table. */
typedef enum condense_sparse_format {
    CONDENSE_SPARSE_FORMAT_S24 = 0,   /* 2:4 (condense_s24_packed) */
    CONDENSE_SPARSE_FORMAT_CSR = 1,   /* CSR (condense_csr_packed) */
} condense_sparse_format;
/** One sparse kernel: the registration point for tests, `condense info` and dispatch (the
 *  drivers call the function pointers its table entry holds). */
typedef struct condense_sparse_kernel {
    const char *name;      /* e.g. "f32_s24_dot_4x4__avx512" */
    condense_isa isa;
    int format;            /* condense_sparse_format */
    int min_m;             /* used for batches of at least this many rows */
    int kind;              /* CONDENSE_SPARSE_* */
    int lanes;             /* xt: rows of X per transposed block; panel: rows of X per tile */
} condense_sparse_kernel;

int condense_sparse_kernel_count(void);
const condense_sparse_kernel *condense_sparse_kernel_at(int i);
/** The kernel a packed weight of `format` (condense_sparse_format) at `isa` runs for m rows. */
const condense_sparse_kernel *condense_sparse_kernel_for(int format, condense_isa isa, size_t m);

/* ---- bf16 / f16 weights ------------------------------------------------------------------ */

/** 16-bit float weight types. */
typedef enum condense_half_type {
    CONDENSE_HALF_BF16 = 0,   /* bfloat16: the top 16 bits of an f32 */
    CONDENSE_HALF_F16 = 1,    /* IEEE binary16 */
} condense_half_type;

/** A half-precision micro-kernel: Y tile += X · Wᵀ over kc columns. `a` is f32 X rows (the
 *  "widen" kernels: weights widened exactly to f32, f32 FMAs) or bf16 X rows (the "dot" kernels:
 *  X rounded to bf16 once per call, vdpbf16ps: twice the FMA peak, as llama.cpp and oneDNN run
 *  bf16 weights); flags and epilogue as the f32 micro-kernels. */
typedef void (*condense_half_ukernel)(int type, int mr, int nv, size_t kc, const void *a, size_t lda,
                                      const uint16_t *b, float *c, size_t ldc, int flags,
                                      const float *bias, int act);

/** One half-precision kernel (the registration point for tests, `condense info` and dispatch). */
typedef struct condense_half_kernel {
    const char *name;      /* e.g. "bf16_dot_12x32__avx512bf16" */
    condense_isa isa;
    uint32_t features;     /* CONDENSE_CPU_* bits required beyond the ISA level */
    unsigned types;        /* bit t: runs condense_half_type t */
    int bf16_activations;  /* 1: rounds X to bf16 (dot kernels) */
    int mr, nr, kc, mc;
    condense_half_ukernel ukernel;
} condense_half_kernel;

int condense_half_kernel_count(void);
const condense_half_kernel *condense_half_kernel_at(int i);
/** The best kernel for `type` at or below `isa` that this CPU can run. */
const condense_half_kernel *condense_half_kernel_for(int type, condense_isa isa);

/** Packed 16-bit weights: panels of NR rows; bf16 stored in K pairs [K/2][NR][2] (the layout
 *  vdpbf16ps reads; widening is a shift and a mask), f16 [K][NR] (the layout vcvtph2ps reads). */
typedef struct condense_half_packed {
    size_t n, k, kstored;  /* kstored: k rounded up to even for bf16 */
    int type;
    const condense_half_kernel *kernel;
    uint16_t *data;        /* ceil(n/NR) · kstored · NR */
    float *bias;
} condense_half_packed;

/** Pack W[N,K] of 16-bit values (row stride ldw) for the best kernel at `isa`; NULL when out of
 *  memory or the type is unknown. */
condense_half_packed *condense_half_pack(condense_isa isa, int type, const uint16_t *w, size_t n, size_t k,
                                         size_t ldw, const float *bias);
/** The same for one kernel of the table (tests run every kernel this CPU has); NULL when it
 *  cannot run here or does not take the type. */
condense_half_packed *condense_half_pack_for(const condense_half_kernel *kernel, int type, const uint16_t *w,
                                             size_t n, size_t k, size_t ldw, const float *bias);
void condense_half_packed_free(condense_half_packed *p);
/** Y[M,N] = act(X · Wᵀ + bias). */
int condense_half_gemm(const condense_half_packed *w, size_t m, const float *x, size_t lda, float *y,
                       size_t ldy, int act, int threads);
/** f32 to bfloat16, round to nearest even (NaN stays NaN); the same bits on every path. */
uint16_t condense_f32_to_bf16(float f);

/* ---- int8 GEMM ------------------------------------------------------------------------- */

/**
 * int8 kernels: activations u8 (asymmetric, per row: scale s_x[m], zero point z_x[m]), weights s8
 * (symmetric per output channel: scale s_w[n]), int32 accumulation, then
 *   Y[m,n] = act(s_x[m]·s_w[n]·(Σ_k x_q[m,k]·w_q[n,k] − z_x[m]·Σ_k w_q[n,k]) + bias[n]).
 * K is padded to k4 (a multiple of 4) with zero weights. x_q rows are k4 bytes.
 */
/** What a q8 micro-kernel does with its int32 tile: store it raw (c != NULL, for tests), or
 *  dequantize into y: y[i,j] = act(sx[i]·sw[j]·(acc − zx[i]·wsum[j]) + bias[j]). Pointers start at
 *  the tile's first row / column. */
typedef struct condense_q8_epilogue {
    int32_t *c;
    size_t ldc;
    float *y;
    size_t ldy;
    const float *sx;
    const int32_t *zx;
    const int32_t *wsum;
    const float *sw;
    const float *bias;
    int act;
} condense_q8_epilogue;

typedef void (*condense_q8_ukernel)(int mr, int nv, size_t kq, const uint8_t *a, size_t lda,
                                    const void *b, const condense_q8_epilogue *ep);

typedef struct condense_q8_kernel {
    const char *name;      /* e.g. "q8_gemm_12x32__avx512vnni" */
    condense_isa isa;
    uint32_t features;     /* CONDENSE_CPU_* bits required beyond the ISA level */
    int mr, nr;
    int kstep;             /* K elements per packed step: 4 (VNNI, s8 quads) or 2 (int16 pairs) */
    condense_q8_ukernel ukernel;
} condense_q8_kernel;

int condense_q8_kernel_count(void);
const condense_q8_kernel *condense_q8_kernel_at(int i);
/** The best int8 kernel at or below `isa` whose features this CPU has. */
const condense_q8_kernel *condense_q8_kernel_for(condense_isa isa);

typedef struct condense_q8_packed {
    size_t n, k, k4;
    const condense_q8_kernel *kernel;
    void *data;            /* kernel layout: panels of NR channels, k4/kstep steps */
    int32_t *wsum;         /* Σ_k w_q[n,k] */
    float *scale;          /* s_w[n] */
    float *bias;           /* n or NULL */
} condense_q8_packed;

/** Pack s8 weights W[N,K] (row stride ldw) with per-channel scales. NULL when out of memory. */
condense_q8_packed *condense_q8_pack(const condense_q8_kernel *kernel, const int8_t *w, size_t n,
                                     size_t k, size_t ldw, const float *scale, const float *bias);
void condense_q8_packed_free(condense_q8_packed *p);

/** Quantize rows of X to u8: dynamic per-row range (static_scale NULL), or the given static
 *  scale and zero point for every row. xq rows are ldq bytes, columns k…k4 set to 0. `isa`: the
 *  code path (the packed layer's own, clamped to the detected level), so a pinned ISA is obeyed. */
void condense_q8_quantize_rows(const float *x, size_t m, size_t k, size_t lda, uint8_t *xq,
                               size_t ldq, size_t k4, float *sx, int32_t *zx,
                               const float *static_scale, const int32_t *static_zp, condense_isa isa);

/** Raw int32 accumulators acc[m,n] = Σ_k x_q[m,k]·w_q[n,k] (for tests: exact). */
int condense_q8_gemm_s32(const condense_q8_packed *w, size_t m, const uint8_t *xq, size_t ldq,
                          int32_t *acc, size_t ldacc, int threads);

/** The full layer: quantize X (dynamic, or static when static_scale is not NULL), int8 GEMM,
 *  dequantize + bias + activation. */
int condense_q8_gemm(const condense_q8_packed *w, size_t m, const float *x, size_t lda, float *y,
                      size_t ldy, int act, int threads, const float *static_scale,
                      const int32_t *static_zp);

/* ---- int4 group-wise ------------------------------------------------------------------- */

/**
 * int4 weights: symmetric signed nibbles (−8…7), one f32 scale per (row, group of `group`
 * columns along K); the last group of a row may be partial. Two paths:
 *  - CONDENSE_Q4_DEQUANT: weights dequantized exactly to f32 (s·q), f32 activations;
 *  - CONDENSE_Q4_INTEGER: u8 activations per row (as int8) and VNNI int32 dots per group,
 *    dequantized per group (AVX-512 VNNI only; elsewhere the dequantize path runs).
 */
enum { CONDENSE_Q4_DEQUANT = 0, CONDENSE_Q4_INTEGER = 1 };

/** One int4 kernel: the registration point for tests, `condense info` and dispatch. */
typedef struct condense_q4_kernel {
    const char *name;      /* e.g. "q4_gemm_vnni_4x16__avx512vnni" */
    condense_isa isa;
    uint32_t features;     /* CONDENSE_CPU_* bits required beyond the ISA level */
    int path;              /* CONDENSE_Q4_DEQUANT or CONDENSE_Q4_INTEGER */
} condense_q4_kernel;

int condense_q4_kernel_count(void);
const condense_q4_kernel *condense_q4_kernel_at(int i);
/** The best kernel of `path` at or below `isa` that this CPU runs; the integer path falls back
 *  to the dequantize path where no integer kernel runs. */
const condense_q4_kernel *condense_q4_kernel_for(condense_isa isa, int path);

typedef struct condense_q4_packed {
    size_t n, k, k16, group, groups;
    condense_isa isa;
    int path;              /* the path packed: kernel->path */
    const condense_q4_kernel *kernel;
    /* dequant: panels of nr rows (the f32 micro-kernel's width), [panel][k16][nr/2] bytes; byte j
     * holds row j (low nibble) and row j + nr/2 (high nibble), two's complement. A tile
     * dequantizes a panel's K slice once into the f32 kernel's packed layout and runs that kernel
     * over all its rows of X. */
    uint8_t *nib;
    size_t nr;
    const condense_f32_gemm_kernel *f32;
    uint8_t *blocks;       /* integer: panels of 16 rows, 64-byte blocks per 8 columns */
    float *pscale;         /* [panel][group][16] (integer) or [panel][group][nr] (dequant) */
    float *pcomp;          /* integer: [panel][16] Σ_g scale_g · Σ_{k∈g} w_q: zero-point compensation */
    float *bias;
} condense_q4_packed;

/** Pack from rows of ⌈k/2⌉ bytes (low nibble = even column, two's complement) and n·groups
 *  scales. `group` must be a multiple of 16. Returns NULL when out of memory. */
condense_q4_packed *condense_q4_pack(condense_isa isa, int path, const uint8_t *packed,
                                     const float *scales, size_t n, size_t k, size_t group,
                                     const float *bias);
void condense_q4_packed_free(condense_q4_packed *p);
/** Y = act(X · Wᵀ + bias). */
int condense_q4_gemm(const condense_q4_packed *w, size_t m, const float *x, size_t lda, float *y,
                      size_t ldy, int act, int threads);
/** The kernel name a packed weight runs. */
const char *condense_q4_kernel_name(const condense_q4_packed *w);

/* ---- 2:4 sparse int8 -------------------------------------------------------------------- */

/**
 * 2:4 weights with int8 values: per row k4/2 s8 values (two per group of 4, symmetric, scale per
 * row) and the 4-bit position masks of Sparse24Matrix. Activations u8 per row, as for int8.
 * Packed with K padded to k64 (zero values, masks 0b0011), so a 64-bit word of masks expands
 * exactly 32 values into 64 columns (AVX-512 VBMI2 vpexpandb), then vpdpbusd.
 */
/** One 2:4-int8 kernel: the registration point for tests, `condense info` and dispatch. */
typedef struct condense_s24q8_kernel {
    const char *name;      /* e.g. "s24q8_dot_4x4__avx512vbmi2" */
    condense_isa isa;
    uint32_t features;     /* CONDENSE_CPU_* bits required beyond the ISA level */
} condense_s24q8_kernel;

int condense_s24q8_kernel_count(void);
const condense_s24q8_kernel *condense_s24q8_kernel_at(int i);
/** The best kernel at or below `isa` that this CPU runs. */
const condense_s24q8_kernel *condense_s24q8_kernel_for(condense_isa isa);

typedef struct condense_s24q8_packed {
    size_t n, k, k64;
    condense_isa isa;
    const condense_s24q8_kernel *kernel;
    int8_t *values;        /* n · k64/2 */
    uint64_t *masks;       /* n · k64/64 */
    int32_t *wsum;         /* Σ_k q per row */
    float *scale;          /* per row */
    float *bias;
} condense_s24q8_packed;

condense_s24q8_packed *condense_s24q8_pack(condense_isa isa, const int8_t *values, const uint8_t *meta,
                                           size_t n, size_t k, size_t k4, size_t meta_stride,
                                           const float *scale, const float *bias);
void condense_s24q8_packed_free(condense_s24q8_packed *p);
int condense_s24q8_gemm(const condense_s24q8_packed *w, size_t m, const float *x, size_t lda,
                         float *y, size_t ldy, int act, int threads);
const char *condense_s24q8_kernel_name(const condense_s24q8_packed *w);

/* ---- GGUF block types ---------------------------------------------------------------------- */

/** The ggml tensor types this library dequantizes (ggml's numbering). */
enum {
    CONDENSE_GGUF_F32 = 0, CONDENSE_GGUF_F16 = 1, CONDENSE_GGUF_Q4_0 = 2, CONDENSE_GGUF_Q4_1 = 3,
    CONDENSE_GGUF_Q5_0 = 6, CONDENSE_GGUF_Q5_1 = 7,
    CONDENSE_GGUF_Q8_0 = 8, CONDENSE_GGUF_Q2_K = 10, CONDENSE_GGUF_Q3_K = 11, CONDENSE_GGUF_Q4_K = 12,
    CONDENSE_GGUF_Q5_K = 13, CONDENSE_GGUF_Q6_K = 14, CONDENSE_GGUF_IQ4_NL = 20, CONDENSE_GGUF_IQ4_XS = 23,
    CONDENSE_GGUF_BF16 = 30, CONDENSE_GGUF_MXFP4 = 39,
    /* Condense's own block, outside ggml's numbering: 2:4 with signed 4-bit values and one f16
     * scale per 64 columns (3.25 bits per weight). A row is K/64 blocks of 26 bytes:
     * f16 d · u64 keep-mask (bit c: column c kept, exactly 2 of every 4) · 16 bytes holding kept
     * value j (q + 8, q in −8…7) in byte j/2, low nibble first. W[n][c] = d·q or 0. */
    CONDENSE_BLOCK_S24Q4 = 4096,
};
/** n elements of `type` at src (whole blocks) to f32, bit-exact to ggml's dequantize_row_*.
 *  CONDENSE_ERR_INVALID for another type or n not a multiple of the block size. */
int condense_gguf_dequantize(uint32_t type, const void *src, size_t n, float *dst);
/** IEEE half to single precision, exact (subnormals, Inf and NaN included). */
float condense_f16_to_f32(uint16_t h);
/** Bytes of W[N,K] (ggml blocks Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K or Q6_K, or S24Q4) repacked for condense_gguf_gemm:
 *  about the stored size with N rounded up to 16 (Q4_K: 4.625 bits per weight for 4.5). 0 for
 *  another type, K not a multiple of the block size (32; 256 for the K-quants), or overflow. */
size_t condense_gguf_packed_size(uint32_t type, size_t n, size_t k);
/** Repacks W[N,K] (rows of K/32 stored blocks; S24Q4: K/64, INVALID when a mask does not keep
 *  exactly 2 of 4) into `dst` (condense_gguf_packed_size bytes, 64-byte
 *  aligned): groups of 16 rows, block by block. The packed forms of two matrices whose N are
 *  multiples of 16 concatenate into the packed form of their rows stacked. */
int condense_gguf_pack(uint32_t type, const void *w, size_t n, size_t k, void *dst);
/** Y[M,N] = X[M,K] · Wᵀ, W packed by condense_gguf_pack, computed as ggml's CPU backend does: X
 *  quantized per block of 32 to int8 with an f16 scale, exact integer dots per block (per 16 for
 *  Q6_K's scales), scaled once. INVALID for another type or a K the type cannot hold. Threads
 *  over groups of 16 rows. */
int condense_gguf_gemm(uint32_t type, const void *packed, size_t n, size_t k, size_t m, const float *x, size_t lda,
                       float *y, size_t ldy, condense_isa isa, int threads);
/** condense_gguf_gemm with bias[j] (N floats, or NULL) added to every row of Y, each thread
 *  adding it to the columns it computed. */
int condense_gguf_gemm_bias(uint32_t type, const void *packed, size_t n, size_t k, size_t m, const float *x, size_t lda,
                            const float *bias, float *y, size_t ldy, condense_isa isa, int threads);
/** One GGUF block kernel: the registration point for tests, `condense info` and dispatch. */
typedef struct condense_gguf_kernel {
    const char *name;      /* e.g. "gguf_q4_1_x16__avx512vnni" */
    condense_isa isa;
    uint32_t features;     /* CONDENSE_CPU_* bits required beyond the ISA level */
    uint32_t type;         /* CONDENSE_GGUF_* */
} condense_gguf_kernel;
int condense_gguf_kernel_count(void);
const condense_gguf_kernel *condense_gguf_kernel_at(int i);
/** The kernel condense_gguf_gemm runs for `type` at `isa` on this CPU. */
const char *condense_gguf_gemm_kernel_name(uint32_t type, condense_isa isa);

/* ---- The kernel catalog ------------------------------------------------------------------ */

/** One kernel of any family, one descriptor type: what `condense info`, the tests and dispatch
 *  reports read. Each family keeps one table (its driver file's `kernels[]`, the registration
 *  point with the code); the catalog lists them all in family order. The name ends in
 *  `__<level>` (its ISA and features, e.g. `__avx512vnni`), which a test checks. */
typedef struct condense_kernel_desc {
    const char *name;      /* e.g. "gguf_q4_0_x16__avx512vnni" */
    const char *family;    /* "f32_gemm", "half", "sparse", "q8", "q4", "s24q8" or "gguf" */
    condense_isa isa;
    uint32_t features;     /* CONDENSE_CPU_* bits required beyond the ISA level */
} condense_kernel_desc;
/** Kernels compiled in (for this architecture), every family. */
int condense_kernel_count(void);
/** Kernel i of the catalog, or NULL when out of range. */
const condense_kernel_desc *condense_kernel_at(int i);
/** Whether this CPU runs it: its level on the detected ladder and its feature bits present. */
int condense_kernel_desc_runnable(const condense_kernel_desc *k);

/* ---- Machine probes (for benchmark reports) ---------------------------------------------- */

/** Measured fp32 FMA throughput in GFLOPS on `threads` threads with the given ISA's vectors. */
double condense_probe_fma_gflops(int threads, condense_isa isa);
/** Measured read bandwidth in GB/s over a buffer of `bytes` (best of `passes` after a warm-up). */
double condense_probe_read_gbps(size_t bytes, int threads, int passes);

/* ---- Transformer pieces ------------------------------------------------------------------ */

/**
 * Multi-head self-attention over packed sequences (no padding): sequence s is rows
 * seq_start[s] ≤ r < seq_start[s+1] of q, k, v (row stride ld; for a fused QKV projection pass
 * q = qkv, k = qkv + H, v = qkv + 2H, ld = 3H). Head h reads and writes columns
 * h·head_dim…h·head_dim + head_dim − 1; out (row stride ldo) = softmax(scale·q·kᵀ)·v per head.
 * Parallel over (sequence, head) pairs; `isa` picks the code path (at most the detected level;
 * the AVX-512 path needs head_dim % 16 == 0). Returns a condense_status: INVALID for a bad seq_start.
 */
int condense_f32_attention(const float *q, const float *k, const float *v, size_t ld, float *out, size_t ldo,
                           const int32_t *seq_start, size_t nseq, int heads, int head_dim, float scale,
                           condense_isa isa, int threads);

/**
 * Causal attention of a decoder over its KV cache: query row i (position p0 + i) of head h attends
 * to cache rows 0…p0 + i of KV head h / (heads / kv_heads) (grouped-query attention). q rows hold
 * heads·hd floats (stride ldq); the caches hold kv_heads·hd elements per row (stride ldkv) of
 * kv_type: CONDENSE_GGUF_F32 (floats), CONDENSE_GGUF_F16 (IEEE halves), CONDENSE_GGUF_Q8_0 or
 * CONDENSE_GGUF_Q4_0 (ggml's blocks of 32 along the row; hd and ldkv multiples of 32) for both
 * caches, or CONDENSE_KV_TYPES(k, v) for different key and value types; out is like q (stride
 * ldo). Parallel over (row, KV head) with the heads of a group together, and over chunks of
 * positions when there are few rows; the AVX-512 path needs hd % 16 == 0. Returns a condense_status.
 */
#define CONDENSE_KV_TYPES(k, v) ((uint32_t)(k) | ((uint32_t)(v) + 1u) << 16)
/** Rows of n floats into ggml's Q8_0 / Q4_0 blocks (n a multiple of 32), as ggml's reference
 *  quantizers round (quantize_row_q8_0_ref, quantize_row_q4_0_ref): for quantized KV caches. */
void condense_quantize_row_q8_0(const float *x, void *y, size_t n);
void condense_quantize_row_q4_0(const float *x, void *y, size_t n);
int condense_causal_attention(const float *q, size_t ldq, const void *kc, const void *vc, uint32_t kv_type, size_t ldkv,
                              float *out, size_t ldo, size_t t, size_t p0, int heads, int kv_heads, int hd, float scale,
                              condense_isa isa, int threads);
/**
 * condense_causal_attention with logit soft-capping, a sliding window and a ring cache.
 * softcap > 0: each scaled score s becomes softcap·tanh(s/softcap) before the softmax (Gemma 2;
 * computed on the portable path); 0: off. window > 0: query row i
 * attends only to positions p0 + i + 1 − window … p0 + i (llama.cpp's standard SWA: a query sees
 * itself and the window − 1 positions before it); 0: every earlier position. ring > 0: position p
 * is cache row p % ring (a sliding layer's cache holds only the rows its window can read), which
 * needs window > 0 and ring ≥ window + t − 1; 0: position p is row p. Returns a condense_status.
 */
int condense_causal_attention_window(const float *q, size_t ldq, const void *kc, const void *vc, uint32_t kv_type, size_t ldkv,
                                     float *out, size_t ldo, size_t t, size_t p0, int heads, int kv_heads, int hd, float scale,
                                     float softcap, size_t window, size_t ring, condense_isa isa, int threads);
/** One sequence of a batched attention call: its rows of Q and of the output, its KV cache, its
 *  query rows t and the positions p0 already in its cache. */
typedef struct condense_attention_sequence {
    const float *q;
    const void *kc, *vc;
    float *out;
    size_t t, p0;
} condense_attention_sequence;
/** Writes n floats as one KV-cache row of ggml type `type` (F32, F16, Q8_0 or Q4_0, n a multiple
 *  of 32 for the blocks), rounded as ggml rounds them. Returns a condense_status. */
int condense_kv_write_row(uint32_t type, const float *src, void *dst, size_t n, condense_isa isa);
/** condense_causal_attention for n sequences with their own caches (continuous batching's decode
 *  steps: one row each), the sequences spread over the threads. Returns a condense_status. */
int condense_causal_attention_batch(const condense_attention_sequence *seqs, size_t n, size_t ldq, uint32_t kv_type, size_t ldkv,
                                    size_t ldo, int heads, int kv_heads, int hd, float scale, condense_isa isa, int threads);
/** condense_causal_attention_batch with condense_causal_attention_window's softcap, window and
 *  ring, the same for every sequence. */
int condense_causal_attention_batch_window(const condense_attention_sequence *seqs, size_t n, size_t ldq, uint32_t kv_type,
                                           size_t ldkv, size_t ldo, int heads, int kv_heads, int hd, float scale, float softcap,
                                           size_t window, size_t ring, condense_isa isa, int threads);
/** The activations of a gated feed-forward block (condense_glu). */
enum { CONDENSE_GLU_SILU = 0, CONDENSE_GLU_GELU_TANH = 1 };
/** out[r][j] = act(gu[r][j]) · gu[r][ff + j] for `rows` rows of [gate | up] (2·ff floats each; out:
 *  ff floats each), on the thread team. SiLU: x / (1 + e^−x). GELU-tanh: as ggml's CPU backend,
 *  through its f16 table (the input rounded to f16, the result an f16 value; 0 at or below −10,
 *  x at or above 10). Returns a condense_status (INVALID for an unknown act). */
int condense_glu(const float *gu, size_t rows, size_t ff, int act, float *out, condense_isa isa, int threads);
/** RMSNorm of rows × segs segments of n floats (segment (r, s) at x + r·ldx + s·n; y likewise with
 *  ldy; y may be x): whole rows with segs = 1, each head of Q or K (QK-norm) with segs = heads.
 *  The sum of squares in float, in order, no fused multiply-add. Returns a condense_status. */
int condense_rmsnorm(const float *x, size_t ldx, float *y, size_t ldy, size_t rows, size_t segs, size_t n, const float *w,
                     float eps, int threads);
/** Rotary embedding in place of rows × heads heads of hd floats (row stride ld): pairs (i, i + hd/2)
 *  with neox, else (2i, 2i + 1), rotated by cos_t/sin_t[row][i] (rows × hd/2). Returns a condense_status. */
int condense_rope(float *x, size_t ld, size_t rows, int heads, int hd, const float *cos_t, const float *sin_t, int neox,
                  int threads);
/** One matrix of a decoder projection (condense_decoder_forward): n rows of the projection's k
 *  inputs in GGUF blocks of `type`, packed by condense_gguf_pack; an optional bias of n floats;
 *  the ISA its kernel runs at. */
typedef struct condense_decoder_part {
    uint32_t type;
    const void *packed;
    size_t n;
    const float *bias;
    condense_isa isa;
} condense_decoder_part;
/** Most matrices one projection stacks side by side. */
#define CONDENSE_DECODER_MAX_PARTS 4
/** A projection of k inputs: its parts' outputs side by side, in order ([Q | K | V] may mix
 *  block types: Q4_K_M files keep V in Q6_K). */
typedef struct condense_decoder_proj {
    condense_decoder_part part[CONDENSE_DECODER_MAX_PARTS];
    int parts;
    size_t k;
} condense_decoder_proj;
/** One pre-norm decoder layer (Llama, Qwen, Gemma, Phi-3, Mistral): its projections and norms. */
typedef struct condense_decoder_layer {
    condense_decoder_proj qkv, o, gate_up, down;  /* [Q | K | V], O, [gate | up], down */
    const float *attn_norm, *ffn_norm;            /* hidden floats each */
    const float *q_norm, *k_norm;                 /* head_dim floats each (QK-norm), or NULL */
    const float *post_attn_norm, *post_ffn_norm;  /* hidden floats each (Gemma), or NULL */
    size_t window, ring;                          /* as condense_causal_attention_window; window > 0: a sliding layer */
} condense_decoder_layer;
/** One sequence of a pass: its rows (consecutive in the buffers, sequences in order), the
 *  positions they take, its KV cache. */
typedef struct condense_decoder_sequence {
    size_t rows, p0;
    uint32_t kv_type;                    /* as condense_causal_attention's */
    void *const *keys, *const *values;   /* per layer: that layer's cache, row 0 */
    const float *cos_t, *sin_t;          /* rows × head_dim/2: the angles of its positions (global layers) */
    const float *cos_sliding, *sin_sliding;   /* the same for sliding layers (may be the global ones) */
} condense_decoder_sequence;
/** The shape every layer shares. */
typedef struct condense_decoder_shape {
    size_t hidden, heads, kv_heads, head_dim, ff;
    float eps;       /* RMSNorm's ε */
    float scale;     /* attention's score scale */
    float softcap;   /* attention logit soft-cap, 0 for none */
    int act;         /* CONDENSE_GLU_* */
    int neox;        /* RoPE pairs (i, i + hd/2) */
} condense_decoder_shape;
/** A pass's activations, rows of each (the caller owns them; reused across passes). */
typedef struct condense_decoder_buffers {
    float *x;     /* rows × hidden: the residual stream, read and written */
    float *h;     /* rows × hidden */
    float *qkv;   /* rows × (heads + 2·kv_heads)·head_dim */
    float *att;   /* rows × heads·head_dim */
    float *o;     /* rows × hidden */
    float *gu;    /* rows × 2·ff */
    float *g;     /* rows × ff */
} condense_decoder_buffers;
/** Runs `n_layers` layers over the rows of `n_seqs` sequences (each its own positions and cache;
 *  rows Σ seqs[i].rows) as one job of the thread team: RMSNorm, the projections, QK-norm, RoPE,
 *  the cache writes, causal attention, the residuals and the gated activation, the threads
 *  meeting at barriers between steps instead of a fork and join per kernel. Every step is the
 *  arithmetic of the kernel it replaces (condense_rmsnorm, condense_gguf_gemm, condense_rope,
 *  condense_causal_attention_window — one sequence on the whole team, several spread one per
 *  thread as condense_causal_attention_batch_window does — and condense_glu), so the result
 *  equals those calls' bit for bit. Returns a condense_status. */
int condense_decoder_forward(const condense_decoder_shape *s, const condense_decoder_layer *layers, size_t n_layers,
                             const condense_decoder_sequence *seqs, size_t n_seqs, const condense_decoder_buffers *b,
                             condense_isa isa, int threads);
/** One value of condense_glu's GELU-tanh (for references and tests). */
float condense_gelu_tanh_f16(float x);
/** f32 to IEEE half, round to nearest even (the KV cache's f16 rows); the same bits on every path. */
void condense_f32_to_f16(const float *x, uint16_t *y, size_t n, condense_isa isa);

/** y[r][c] = x[r][c] · s[c] (SmoothQuant's per-column input scaling); y may be x. */
void condense_f32_scale_columns(const float *x, size_t rows, size_t n, size_t ldx, const float *s, float *y, size_t ldy,
                                int threads);

/** In-place LayerNorm of `rows` rows of n floats (row stride ld): (x − mean)/√(var + eps)·γ + β,
 *  statistics in double. */
void condense_f32_layernorm(float *x, size_t rows, size_t n, size_t ld, const float *gamma, const float *beta,
                            float eps, int threads);

#ifdef __cplusplus
}
#endif

#endif /* CONDENSE_KERNELS_H */
