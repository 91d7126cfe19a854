/* The GGUF block kernels' shared definitions: the packed layout of each block type (described in
 * gguf-gemm.c, which packs and drives), X's quantized rows, and the group kernels each ISA file
 * provides (gguf-scalar.c, gguf-avx2.c, gguf-avx512.c, gguf-neon.c), listed in gguf-gemm.c's
 * one kernel table. */
#ifndef CONDENSE_GGUF_INTERNAL_H
#define CONDENSE_GGUF_INTERNAL_H

#include "internal.h"

#define GROUP 16

typedef struct layout {
    int kind;           /* FLAT (blocks of 32), KQ4 (Q4_K, Q5_K), KQ6 (Q6_K, Q3_K), KIQ (IQ4_XS) or KQ2 (Q2_K) */
    int chunks;         /* 64-byte chunks of quants per group-block */
    int has_min;        /* Q4_1 */
    int offset;         /* o: the unsigned code of a zero weight */
    size_t src_block;   /* stored bytes per block of 32 */
    size_t qs_off;      /* offset of the quants in a stored block */
    size_t gb;          /* packed bytes per group-block (FLAT) */
    size_t hdr, kb;     /* K-quants: header bytes per group-super-block, bytes per group-block */
    int hbits;          /* Q5_0/Q5_1: a vector of fifth bits after the nibbles */
    size_t qh_off;      /* offset of the 32 fifth bits in a stored block */
    int lut;            /* IQ4_NL: codes index iq4nl_levels (stored +128) */
    size_t sc_off;      /* K-quants: offset of the per-block scales (then mins) in a group-block */
    int h2;             /* KQ6: two 64-byte vectors of high bits (bits 4–5) after the nibbles (Q6_K) */
} layout;

/* IQ4_NL's 16 levels + 128 (unsigned, as vpdpbusd wants), for every lane of a table lookup. */
static const uint8_t iq4nl_u8[16] = {1, 24, 45, 63, 79, 93, 106, 118, 129, 141, 153, 166, 181, 197, 217, 241};

enum { FLAT = 0, KQ4 = 1, KQ6 = 2, S24 = 3, KIQ = 4, KQ2 = 5 };

/* S24Q4 (Condense's own block, not ggml's): per 64 columns of a row, 2 kept of every 4, each a
 * signed 4-bit value with one f16 scale, 3.25 bits per weight. Stored row block (26 bytes):
 *     f16 d · u64 keep-mask (bit c: column c kept) · 16 bytes: kept value j (q + 8) in byte j/2,
 *     low nibble for even j.
 * Packed per group of 16 rows and 64 columns (416 bytes):
 *     8 × 32 bytes of nibbles: pair p's byte j holds value j of step 2p (low) and of 2p+1 (high),
 *         step s being columns 4s…4s+3 of the 16 rows, its 32 kept values in row order;
 *     16 × u64 masks: step s's bit 4r+t is row r's column 4s+t;  16 f16 scales.
 * vpexpandb puts a step's 32 values at their mask's bits over a vector of 8s (q = 0 for the
 * pruned weights), so the integer dot and the o = 8 correction are Q4_0's. */
#define S24_GB 416

/* Offset of the f16 scales (then mins) in a FLAT group-block. */
static inline size_t flat_scales(const layout *L) { return (size_t)L->chunks * 64 + (L->hbits ? 64 : 0); }

/* Block b of a group: its quants, and (K-quants) its super-block's header. */
static inline const uint8_t *block_at(const layout *L, const uint8_t *gw, size_t b) {
    return L->kind == FLAT ? gw + b * L->gb : gw + b / 8 * (L->hdr + 8 * L->kb) + L->hdr + b % 8 * L->kb;
}
static inline const uint8_t *header_at(const layout *L, const uint8_t *gw, size_t b) {
    return gw + b / 8 * (L->hdr + 8 * L->kb);
}
/* Where Q6_K's high bits of chunk k (elements 4k…4k+3) live: vector k/2 % 2, shifted left by
 * this many bits (bits 4–5 after the kernel's shift and mask). */
static const int q6_hshift[8] = {4, 6, 4, 6, 0, 2, 0, 2};

/* ---- X quantized per block of 32 (ggml's q8_0 / q8_1) ------------------------------------- */

typedef struct qx_rows {
    const int8_t *q;     /* m × k */
    const float *d;      /* m × nb: the f16-rounded scale */
    const int32_t *c;    /* m × nb: o·Σ q (Q6_K: o·Σ of the first 16) */
    const int32_t *c2;   /* m × nb: Q6_K, Q3_K, Q2_K: o·Σ of the last 16; the other types −c */
    const float *s;      /* m × nb: f16(d·Σ q), Q4_1 only */
    size_t k, nb;
} qx_rows;

static inline float f16_at(const uint8_t *p) { return condense_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* One block of 32 of X: scale, codes (nearest even), Σ codes of each half. */
typedef void (*quantize_block_fn)(const float *, int8_t *, float *, int32_t *);
/* One group of 16 packed rows against rows m0…m1 of X; `valid` of the 16 rows are real. */
typedef void (*group_fn)(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y,
                         size_t ldy, int valid);

/* One GEMM planned by its caller: what condense_gguf_gemm runs on the team, and what a job
 * already running (the decoder layer, decoder/layer.c) runs as one of its steps. Every thread of
 * such a job plans the same GEMM into its own copy; the scratch is shared. */
typedef struct gguf_job {
    layout L;
    qx_rows xr;                  /* X's quantized rows, in the scratch */
    quantize_block_fn quantize;
    group_fn run;
    const float *x;
    size_t lda, m, k, nb;
    const uint8_t *wb;
    size_t gbytes, groups, n;
    float *y;
    size_t ldy;
    const float *bias;           /* NULL, or n floats added after the groups */
    int nt;                      /* threads worth using: 1 for small products */
} gguf_job;

/* Bytes of scratch a plan of m rows of K needs (0 when it overflows). */
size_t condense_gguf_scratch_bytes(size_t m, size_t k);
int condense_gguf_plan(gguf_job *j, uint32_t type, const void *packed, size_t n, size_t k, size_t m, const float *x, size_t lda,
                       float *y, size_t ldy, const float *bias, condense_isa isa, int threads, uint8_t *scratch);
/* Thread t of nt: its share of X's quantization, a barrier of the nt, its groups. */
void condense_gguf_share(void *job, int t, int nt);

/* Prefetch distance of the 2:4-int4 kernels, in blocks of 64 columns. */
#define S24_PREFETCH 8

void condense_gguf_quantize_block_scalar(const float *x, int8_t *q, float *d, int32_t *sum);
void condense_gguf_group_scalar(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y, size_t ldy, int valid);
void condense_s24q4_group_scalar(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y, size_t ldy, int valid);
#if CONDENSE_X86
void condense_gguf_quantize_block_avx512(const float *x, int8_t *q, float *d, int32_t *sum);
void condense_gguf_group_avx2(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y, size_t ldy, int valid);
void condense_s24q4_group_avx2(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y, size_t ldy, int valid);
void condense_gguf_group_avx512(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y, size_t ldy, int valid);
void condense_s24q4_group_avx512(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y, size_t ldy, int valid);
#endif
#if CONDENSE_ARM64
void condense_gguf_quantize_block_neon(const float *x, int8_t *q, float *d, int32_t *sum);
void condense_gguf_group_neon(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y, size_t ldy, int valid);
void condense_gguf_group_dotprod(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y, size_t ldy, int valid);
void condense_s24q4_group_neon(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y, size_t ldy, int valid);
void condense_s24q4_group_dotprod(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y, size_t ldy, int valid);
#endif

#endif
