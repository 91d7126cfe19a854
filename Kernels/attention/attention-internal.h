/* The attention kernels' shared definitions: the causal chunk's arguments and each ISA file's
 * kernels (attention-scalar.c, attention-avx2.c, attention-avx512.c, attention-neon.c), chosen
 * by attention.c's drivers. */
#ifndef CONDENSE_ATTENTION_INTERNAL_H
#define CONDENSE_ATTENTION_INTERNAL_H

#include "condense_kernels.h"
#include "internal.h"

typedef struct causal_args {
    const float *q;
    size_t ldq;
    const uint8_t *kc, *vc;
    size_t row_bytes;     /* bytes per cache row (ldkv elements) */
    int f16;
    int group, hd;
    float scale;
    float softcap;        /* > 0: scores become softcap·tanh(score/softcap) (Gemma 2); scalar path only */
} causal_args;

static inline float kv_at(const causal_args *A, const uint8_t *row, int e) {
    return A->f16 ? condense_f16_to_f32(((const uint16_t *)(const void *)row)[e]) : ((const float *)(const void *)row)[e];
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
