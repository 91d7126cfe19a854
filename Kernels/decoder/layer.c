/* A decoder's layers as one job of the thread team.
 *
 * Run kernel by kernel, a token of a small model is a few hundred fork/joins of the team (each
 * projection, the attention), with the norms, RoPE, the cache writes and the residuals run on
 * the caller between them while the workers idle. Here every thread walks all the layers and the
 * threads meet at barriers: each projection, attention and activation is the planned share of
 * the kernel it replaces (gguf/gguf-gemm.c, attention/attention.c, glu.c), and the row steps
 * (norms, RoPE, cache writes, residuals) are split by rows. A row step hands its rows to the
 * next projection without a barrier: each thread's rows are the ones that projection's
 * quantization gives it (counted from the last thread, as condense_gguf_share counts them).
 *
 * Every plan is a pure function of its arguments, so each thread computes its own copy and the
 * threads agree without publishing anything; the scratch they share (X quantized, attention's
 * chunk states) is allocated by the caller before the job. A plan that fails fails alike on
 * every thread, which then all leave at the same step. */
#include "decoder-internal.h"
#include "../attention/attention-internal.h"
#include "../gguf/gguf-internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#pragma clang fp contract(off)

/* A row's sequence: its index, and its row within the sequence. */
typedef struct {
    uint32_t seq, i;
} row_at;

typedef struct {
    const condense_decoder_shape *s;
    const condense_decoder_layer *layers;
    size_t n_layers;
    const condense_decoder_sequence *seqs;
    size_t n_seqs;
    const row_at *rowmap;    /* per row */
    const int *kt, *vt;      /* per sequence: KV_* of its key and value caches */
    const condense_decoder_buffers *b;
    size_t rows;
    condense_isa isa;
    uint8_t *gemm_scratch;   /* X quantized, for the largest projection input */
    float *partial;          /* attention's chunk states (one sequence), or NULL when no pass splits */
    _Atomic size_t *next;    /* per layer: the next sequence to attend (several sequences) */
    _Atomic int status;
} layer_run;

static void fail(layer_run *R, int st) {
    int none = CONDENSE_OK;
    atomic_compare_exchange_strong(&R->status, &none, st);
}

/* The threads a planned step runs on: all of the job's when its plan wants more than one (a share
 * with a barrier inside must be run by every thread that meets at the job's barriers). */
static inline int step_threads(int want, int nt) { return want > 1 ? nt : 1; }

/* Thread t's rows for the row steps: the share the projections' quantization gives it. */
static inline void my_rows(size_t rows, int t, int nt, size_t *r0, size_t *r1) {
    const size_t s = (size_t)(nt - 1 - t);
    *r0 = rows * s / (size_t)nt;
    *r1 = rows * (s + 1) / (size_t)nt;
}

/* y = x · Wᵀ (+ bias) for each part, side by side. `fresh`: x was written by a row step without
 * a barrier since; its rows are safe to read only where this thread wrote them. */
static int project(layer_run *R, const condense_decoder_proj *p, const float *x, size_t lda, float *y, size_t ldy, int fresh,
                   int t, int nt) {
    size_t col = 0;
    for (int i = 0; i < p->parts; i++) {
        const condense_decoder_part *pt = &p->part[i];
        gguf_job j;
        const int st = condense_gguf_plan(&j, pt->type, pt->packed, pt->n, p->k, R->rows, x, lda, y + col, ldy, pt->bias, pt->isa,
                                          nt, R->gemm_scratch);
        if (st != CONDENSE_OK) {
            fail(R, st);
            return st;
        }
        const int n = step_threads(j.nt, nt);
        /* One thread quantizing every row reads rows other threads wrote, unless there is one. */
        if (i == 0 && fresh && n != nt && R->rows > 1) condense_team_barrier(nt);
        if (t < n) condense_gguf_share(&j, t, n);
        condense_team_barrier(nt);   /* the output is read next, and the scratch is the next part's */
        col += pt->n;
    }
    return CONDENSE_OK;
}

/* Attention of layer l: one sequence on the whole team; several, each on one thread, taken in
 * turn (they differ in length), as condense_causal_attention_batch_window runs them. */
static int attend(layer_run *R, size_t l, int t, int nt) {
    const condense_decoder_shape *s = R->s;
    const condense_decoder_buffers *b = R->b;
    const condense_decoder_layer *L = &R->layers[l];
    const size_t hd = s->head_dim, qd = s->heads * hd, kvd = s->kv_heads * hd, wide = qd + 2 * kvd;
    if (R->n_seqs == 1) {
        const condense_decoder_sequence *q = &R->seqs[0];
        causal_ctx cc;
        const int st = condense_causal_plan(&cc, b->qkv, wide, q->keys[l], q->values[l], q->kv_type, kvd, b->att, qd, q->rows, q->p0,
                                            (int)s->heads, (int)s->kv_heads, (int)hd, s->scale, s->softcap, L->window, L->ring, R->isa,
                                            nt, R->partial);
        if (st != CONDENSE_OK) return st;
        const int na = step_threads(cc.nt, nt);
        if (t < na) condense_causal_share(&cc, t, na);
        if (cc.failed) fail(R, cc.failed);
        return CONDENSE_OK;
    }
    for (;;) {
        const size_t j = atomic_fetch_add_explicit(&R->next[l], 1, memory_order_relaxed);
        if (j >= R->n_seqs) return CONDENSE_OK;
        const condense_decoder_sequence *q = &R->seqs[j];
        size_t r0 = 0;
        for (size_t i = 0; i < j; i++) r0 += R->seqs[i].rows;
        /* A long sequence on one thread may still be split into chunks: their states in this
         * thread's own scratch. */
        const size_t pf = condense_causal_partial_floats(q->rows, q->p0, L->window, (int)s->heads, (int)s->kv_heads, (int)hd, 1);
        float *partial = pf ? condense_scratch(CONDENSE_SCRATCH_STATES, pf * sizeof(float)) : NULL;
        if (pf && !partial) {
            fail(R, CONDENSE_ERR_NO_MEMORY);
            continue;
        }
        causal_ctx cc;
        const int st = condense_causal_plan(&cc, b->qkv + r0 * wide, wide, q->keys[l], q->values[l], q->kv_type, kvd, b->att + r0 * qd, qd,
                                            q->rows, q->p0, (int)s->heads, (int)s->kv_heads, (int)hd, s->scale, s->softcap, L->window,
                                            L->ring, R->isa, 1, partial);
        if (st != CONDENSE_OK) {
            fail(R, st);
            continue;
        }
        condense_causal_share(&cc, 0, 1);
        if (cc.failed) fail(R, cc.failed);
    }
}

/* Rows r0…r1 after a block's output projection: o normed when the layer has a post-norm, added
 * to the residual stream x, and x normed into h for the next projection (next: NULL after the
 * last layer). */
static void residual(const layer_run *R, size_t r0, size_t r1, const float *post, const float *next) {
    const condense_decoder_buffers *b = R->b;
    const size_t d = R->s->hidden;
    for (size_t r = r0; r < r1; r++) {
        float *o = b->o + r * d, *x = b->x + r * d;
        if (post) condense_rmsnorm_items(o, d, o, d, 0, 1, 1, d, post, R->s->eps);
        for (size_t j = 0; j < d; j++) x[j] += o[j];
        if (next) condense_rmsnorm_items(x, d, b->h + r * d, d, 0, 1, 1, d, next, R->s->eps);
    }
}

static void layer_job(void *ctx, int t, int nt) {
    layer_run *R = ctx;
    const condense_decoder_shape *s = R->s;
    const condense_decoder_buffers *b = R->b;
    const size_t d = s->hidden, hd = s->head_dim, heads = s->heads, kvh = s->kv_heads, ff = s->ff;
    const size_t qd = heads * hd, kvd = kvh * hd, wide = qd + 2 * kvd, half = hd / 2;
    const float eps = s->eps;
    size_t r0, r1;
    my_rows(R->rows, t, nt, &r0, &r1);
    condense_rmsnorm_items(b->x, d, b->h, d, r0, r1, 1, d, R->layers[0].attn_norm, eps);
    for (size_t l = 0; l < R->n_layers; l++) {
        const condense_decoder_layer *L = &R->layers[l];
        if (project(R, &L->qkv, b->h, d, b->qkv, wide, 1, t, nt)) return;
        /* QK-norm, RoPE and the cache rows of this thread's rows, each at its sequence's position. */
        for (size_t r = r0; r < r1; r++) {
            const row_at at = R->rowmap[r];
            const condense_decoder_sequence *q = &R->seqs[at.seq];
            float *row = b->qkv + r * wide;
            if (L->q_norm && L->k_norm) {
                condense_rmsnorm_items(row, wide, row, wide, 0, heads, heads, hd, L->q_norm, eps);
                condense_rmsnorm_items(row + qd, wide, row + qd, wide, 0, kvh, kvh, hd, L->k_norm, eps);
            }
            const float *cs = (L->window ? q->cos_sliding : q->cos_t) + (size_t)at.i * half;
            const float *sn = (L->window ? q->sin_sliding : q->sin_t) + (size_t)at.i * half;
            condense_rope_items(row, wide, 0, heads, (int)heads, (int)hd, cs, sn, s->neox);
            condense_rope_items(row + qd, wide, 0, kvh, (int)kvh, (int)hd, cs, sn, s->neox);
            const size_t pos = q->p0 + at.i, cr = L->ring ? pos % L->ring : pos;
            const int kt = R->kt[at.seq], vt = R->vt[at.seq];
            condense_kv_write(kt, row + qd, (uint8_t *)q->keys[l] + cr * kv_bytes(kt, kvd), kvd, R->isa);
            condense_kv_write(vt, row + qd + kvd, (uint8_t *)q->values[l] + cr * kv_bytes(vt, kvd), kvd, R->isa);
        }
        condense_team_barrier(nt);   /* attention reads every row's Q and cache entry */
        const int st = attend(R, l, t, nt);
        if (st != CONDENSE_OK) {   /* a plan that fails, fails on every thread */
            fail(R, st);
            return;
        }
        condense_team_barrier(nt);
        if (project(R, &L->o, b->att, qd, b->o, d, 0, t, nt)) return;
        residual(R, r0, r1, L->post_attn_norm, L->ffn_norm);
        if (project(R, &L->gate_up, b->h, d, b->gu, 2 * ff, 1, t, nt)) return;
        glu_ctx gc;
        const int gs = condense_glu_plan(&gc, b->gu, R->rows, ff, s->act, b->g, R->isa, nt);
        if (gs != CONDENSE_OK) {
            fail(R, gs);
            return;
        }
        const int ng = step_threads(gc.nt, nt);
        if (t < ng) condense_glu_share(&gc, t, ng);
        condense_team_barrier(nt);
        if (project(R, &L->down, b->g, ff, b->o, d, 0, t, nt)) return;
        residual(R, r0, r1, L->post_ffn_norm, l + 1 < R->n_layers ? R->layers[l + 1].attn_norm : NULL);
    }
}

/* Whether a projection's parts fill `width` outputs of `k` inputs. */
static int proj_ok(const condense_decoder_proj *p, size_t k, size_t width) {
    if (p->parts < 1 || p->parts > CONDENSE_DECODER_MAX_PARTS || p->k != k) return 0;
    size_t sum = 0;
    for (int i = 0; i < p->parts; i++) {
        if (!p->part[i].packed || !p->part[i].n || __builtin_add_overflow(sum, p->part[i].n, &sum)) return 0;
        if (!condense_gguf_packed_size(p->part[i].type, p->part[i].n, k)) return 0;
    }
    return sum == width;
}

int condense_decoder_forward(const condense_decoder_shape *s, const condense_decoder_layer *layers, size_t n_layers,
                             const condense_decoder_sequence *seqs, size_t n_seqs, const condense_decoder_buffers *b,
                             condense_isa isa, int threads) {
    if (!s || !b || (n_layers && !layers) || (n_seqs && !seqs)) return CONDENSE_ERR_INVALID;
    const size_t d = s->hidden, hd = s->head_dim, ff = s->ff;
    if (!d || !ff || hd < 2 || hd % 2 || !s->heads || !s->kv_heads || s->heads % s->kv_heads) return CONDENSE_ERR_INVALID;
    if (!b->x || !b->h || !b->qkv || !b->att || !b->o || !b->gu || !b->g) return CONDENSE_ERR_INVALID;
    size_t qd, kvd, wide;
    if (__builtin_mul_overflow(s->heads, hd, &qd) || __builtin_mul_overflow(s->kv_heads, hd, &kvd) ||
        __builtin_add_overflow(qd, 2 * kvd, &wide))
        return CONDENSE_ERR_INVALID;
    for (size_t l = 0; l < n_layers; l++) {
        const condense_decoder_layer *L = &layers[l];
        if (!proj_ok(&L->qkv, d, wide) || !proj_ok(&L->o, qd, d) || !proj_ok(&L->gate_up, d, 2 * ff) || !proj_ok(&L->down, ff, d))
            return CONDENSE_ERR_INVALID;
        if (!L->attn_norm || !L->ffn_norm) return CONDENSE_ERR_INVALID;
    }
    size_t rows = 0;
    for (size_t i = 0; i < n_seqs; i++) {
        const condense_decoder_sequence *q = &seqs[i];
        if (!q->keys || !q->values || !q->cos_t || !q->sin_t || !q->cos_sliding || !q->sin_sliding) return CONDENSE_ERR_INVALID;
        if (__builtin_add_overflow(rows, q->rows, &rows) || rows > UINT32_MAX) return CONDENSE_ERR_INVALID;
        const uint32_t kg = q->kv_type & 0xFFFF, vg = q->kv_type >> 16 ? (q->kv_type >> 16) - 1 : kg;
        const int kt = condense_kv_code(kg), vt = condense_kv_code(vg);
        if (kt < 0 || vt < 0 || ((kt >= KV_Q8_0 || vt >= KV_Q8_0) && hd % 32)) return CONDENSE_ERR_INVALID;
        for (size_t l = 0; l < n_layers; l++)
            if (!q->keys[l] || !q->values[l]) return CONDENSE_ERR_INVALID;
    }
    if (rows == 0 || n_layers == 0) return CONDENSE_OK;
    int nt = threads > 0 ? threads : condense_get_num_threads();
    if (nt > CONDENSE_MAX_THREADS) nt = CONDENSE_MAX_THREADS;
    /* Shared scratch: X quantized for the widest input, then (64-byte aligned) attention's states. */
    size_t gemm = 0;
    const size_t ks[3] = {d, qd, ff};
    for (int i = 0; i < 3; i++) {
        const size_t need = condense_gguf_scratch_bytes(rows, ks[i]);
        if (!need) return CONDENSE_ERR_INVALID;
        if (need > gemm) gemm = need;
    }
    gemm = (gemm + 63) / 64 * 64;
    size_t partial = 0;
    if (n_seqs == 1)
        for (size_t l = 0; l < n_layers; l++) {
            const size_t f = condense_causal_partial_floats(rows, seqs[0].p0, layers[l].window, (int)s->heads, (int)s->kv_heads, (int)hd, nt);
            if (f > partial) partial = f;
        }
    size_t total;
    if (__builtin_mul_overflow(partial, sizeof(float), &total) || __builtin_add_overflow(total, gemm, &total))
        return CONDENSE_ERR_INVALID;
    uint8_t *scratch = condense_scratch(CONDENSE_SCRATCH_QX, total);
    /* The row map, each sequence's cache types and the per-layer counters: one allocation. */
    const size_t map_bytes = rows * sizeof(row_at), type_bytes = n_seqs * 2 * sizeof(int), next_bytes = n_layers * sizeof(_Atomic size_t);
    uint8_t *meta = scratch ? malloc(map_bytes + type_bytes + next_bytes + 16) : NULL;
    if (!meta) return CONDENSE_ERR_NO_MEMORY;
    _Atomic size_t *next = (_Atomic size_t *)(void *)meta;
    row_at *rowmap = (row_at *)(void *)(meta + next_bytes);
    int *kt = (int *)(void *)(meta + next_bytes + map_bytes), *vt = kt + n_seqs;
    for (size_t l = 0; l < n_layers; l++) atomic_init(&next[l], 0);
    for (size_t i = 0, r = 0; i < n_seqs; i++) {
        const uint32_t kg = seqs[i].kv_type & 0xFFFF, vg = seqs[i].kv_type >> 16 ? (seqs[i].kv_type >> 16) - 1 : kg;
        kt[i] = condense_kv_code(kg);
        vt[i] = condense_kv_code(vg);
        for (size_t j = 0; j < seqs[i].rows; j++, r++) rowmap[r] = (row_at){(uint32_t)i, (uint32_t)j};
    }
    if (isa > condense_isa_detected()) isa = condense_isa_detected();
    layer_run R = {s, layers, n_layers, seqs, n_seqs, rowmap, kt, vt, b, rows, isa, scratch,
                   partial ? (float *)(void *)(scratch + gemm) : NULL, next, CONDENSE_OK};
    condense_team_run(nt, layer_job, &R);
    free(meta);
    return atomic_load(&R.status);
}
