/* The attention kernels' shared definitions: the causal chunk's arguments and each ISA file's
 * kernels (attention-scalar.c, attention-avx2.c, attention-avx512.c, attention-neon.c), chosen
 * by attention.c's drivers. */
#ifndef CONDENSE_ATTENTION_INTERNAL_H
#define CONDENSE_ATTENTION_INTERNAL_H

#include "condense_kernels.h"
#include "internal.h"

/* A cache's element type: floats, IEEE halves, or ggml's Q8_0 / Q4_0 blocks of 32 along the row
 * (a head's hd elements, a multiple of 32, are whole blocks). */
enum { KV_F32 = 0, KV_F16 = 1, KV_Q8_0 = 2, KV_Q4_0 = 3 };

/* Bytes of n elements of type t (n a multiple of 32 for the block types). */
static inline size_t kv_bytes(int t, size_t n) {
    return t == KV_F32 ? 4 * n : t == KV_F16 ? 2 * n : t == KV_Q8_0 ? n / 32 * 34 : n / 32 * 18;
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
