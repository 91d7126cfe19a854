/* The attention kernels' shared definitions: the causal chunk's arguments and each ISA file's
 * kernels (attention-scalar.c, attention-avx2.c, attention-avx512.c, attention-neon.c), chosen
 * by attention.c's drivers. */
#ifndef CONDENSE_ATTENTION_INTERNAL_H
#define CONDENSE_ATTENTION_INTERNAL_H

#include "condense_kernels.h"
#include "internal.h"

#include <string.h>

/* A cache's element type: floats, IEEE halves, or ggml's Q8_0 / Q4_0 blocks of 32 along the row
 * (a head's hd elements, a multiple of 32, are whole blocks). */
enum { KV_F32 = 0, KV_F16 = 1, KV_Q8_0 = 2, KV_Q4_0 = 3 };

/* Bytes of n elements of type t (n a multiple of 32 for the block types). */
static inline size_t kv_bytes(int t, size_t n) {
    return t == KV_F32 ? 4 * n : t == KV_F16 ? 2 * n : t == KV_Q8_0 ? n / 32 * 34 : n / 32 * 18;
}

/* KV_* of a ggml type, or −1 for one the caches do not hold. */
static inline int condense_kv_code(uint32_t g) {
    switch (g) {
    case CONDENSE_GGUF_F32: return KV_F32;
    case CONDENSE_GGUF_F16: return KV_F16;
    case CONDENSE_GGUF_Q8_0: return KV_Q8_0;
    case CONDENSE_GGUF_Q4_0: return KV_Q4_0;
    default: return -1;
    }
}

/* Writes n floats as one cache row of type t (KV_*), rounded as ggml rounds them. */
static inline void condense_kv_write(int t, const float *src, uint8_t *dst, size_t n, condense_isa isa) {
    switch (t) {
    case KV_F32: memcpy(dst, src, n * sizeof(float)); break;
    case KV_F16: condense_f32_to_f16(src, (uint16_t *)(void *)dst, n, isa); break;
    case KV_Q8_0: condense_quantize_row_q8_0(src, dst, n); break;
    default: condense_quantize_row_q4_0(src, dst, n); break;
    }
}

typedef struct causal_args {
    const float *q;
    size_t ldq;
    const uint8_t *kc, *vc;
    size_t k_row_bytes, v_row_bytes;   /* bytes per cache row (ldkv elements) */
    int kt, vt;                        /* KV_* of the key and the value cache */
    int group, hd;
    float scale;
    float softcap;        /* > 0: scores become softcap·tanh(score/softcap) (Gemma 2); scalar path only */
} causal_args;

/* Element e of a cache row of type t, as ggml dequantizes it. */
static inline float kv_at(int t, const uint8_t *row, int e) {
    if (t == KV_F32) return ((const float *)(const void *)row)[e];
    if (t == KV_F16) return condense_f16_to_f32(((const uint16_t *)(const void *)row)[e]);
    const uint8_t *blk = row + (size_t)(e / 32) * (t == KV_Q8_0 ? 34 : 18);
    const float d = condense_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
    if (t == KV_Q8_0) return (float)(int8_t)blk[2 + e % 32] * d;
    const uint8_t b = blk[2 + e % 16];
    return (float)((e % 32 < 16 ? b & 15 : b >> 4) - 8) * d;
}

/* Positions [a, b) of one KV head for the group's query heads; see causal_chunk_scalar. */
typedef void (*causal_chunk_fn)(const causal_args *, const float *, const uint8_t *, const uint8_t *, size_t, size_t,
                                float *, float *, float *, float *);

/* Positions per chunk of a decode step's split attention (flash-decoding). */
#define ATTN_CHUNK 256
/* The fewest positions a chunk is split down to for the threads' balance. */
#define ATTN_MIN_CHUNK 64

/* One causal attention planned by its caller: what condense_causal_attention_window runs on the
 * team, and what a running job (the decoder layer, decoder/layer.c) runs as one of its steps. */
typedef struct causal_ctx {
    causal_args args;
    causal_chunk_fn chunk;
    const float *q;
    size_t ldq;
    const void *kc, *vc;
    int kt, vt;
    float *out;
    size_t ldo, t, p0;
    int heads, kv_heads, hd, G;
    size_t nch, span, items, state;
    size_t window, ring, lo;   /* sliding window (0: none), ring rows (0: position p in row p), first live position */
    float *partial;            /* chunks' softmax states (nch > 1), shared by the team */
    int failed;                /* set by a thread whose scratch could not grow */
    int nt;                    /* threads worth using: 1 for short work */
} causal_ctx;

/* Floats of shared scratch a plan needs for its chunks' states (0: none). */
size_t condense_causal_partial_floats(size_t t, size_t p0, size_t window, int heads, int kv_heads, int hd, int threads);
int condense_causal_plan(causal_ctx *cc, const float *q, size_t ldq, const void *kc, const void *vc, uint32_t kv_type, size_t ldkv,
                         float *out, size_t ldo, size_t t, size_t p0, int heads, int kv_heads, int hd, float scale, float softcap,
                         size_t window, size_t ring, condense_isa isa, int threads, float *partial);
/* Thread t of nt: its items, and (chunked) a barrier of the nt and its merges. */
void condense_causal_share(void *ctx, int t, int nt);

/* One (sequence, head) pair of encoder attention; s (and kt) are scratch of the pair's length. */
void condense_attention_pair_scalar(const float *q, const float *k, const float *v, size_t ld, float *out, size_t ldo,
                                    size_t rows, int d, float scale, float *s);
void condense_causal_chunk_scalar(const causal_args *A, const float *qg, const uint8_t *kh, const uint8_t *vh, size_t a,
                                  size_t b, float *sc, float *m, float *l, float *o);
#if CONDENSE_X86
void condense_attention_pair_avx512(const float *q, const float *k, const float *v, size_t ld, float *out, size_t ldo,
                                    size_t rows, int d, float scale, float *kt, float *s);
void condense_causal_chunk_avx512(const causal_args *A, const float *qg, const uint8_t *kh, const uint8_t *vh, size_t a,
                                  size_t b, float *sc, float *m, float *l, float *o);
void condense_causal_chunk_avx2(const causal_args *A, const float *qg, const uint8_t *kh, const uint8_t *vh, size_t a,
                                size_t b, float *sc, float *m, float *l, float *o);
#endif
#if CONDENSE_ARM64
void condense_attention_pair_neon(const float *q, const float *k, const float *v, size_t ld, float *out, size_t ldo,
                                  size_t rows, int d, float scale, float *kt, float *s);
void condense_causal_chunk_neon(const causal_args *A, const float *qg, const uint8_t *kh, const uint8_t *vh, size_t a,
                                size_t b, float *sc, float *m, float *l, float *o);
#endif

#endif
