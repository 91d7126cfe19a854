/*
 * Multi-head self-attention over packed sequences (no padding): for each sequence s (rows
 * seq_start[s]..seq_start[s+1]) and head h (columns h·d..h·d+d of q, k, v):
 *     out_i = Σ_j softmax_j(scale · q_i·k_j) · v_j
 * Parallel over (sequence, head) pairs. The AVX-512 path transposes K once per pair so that the
 * scores of one query are broadcast-FMAs over keys, and uses the shared vector exp; the portable
 * path is the reference loop.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attention-internal.h"


typedef struct {
    const float *q, *k, *v;
    size_t ld;
    float *out;
    size_t ldo;
    const int32_t *seq_start;
    int heads, head_dim;
    float scale;
    int vector;           /* the AVX-512 or NEON pair kernel applies */
    long pairs;
    size_t maxlen;
    int failed;
} attn_ctx;

static void attn_share(void *ctx, int t, int nt) {
    attn_ctx *c = ctx;
    const size_t l16 = (c->maxlen + 15) / 16 * 16;
    float *kt = condense_aligned_alloc(((size_t)c->head_dim * l16 + l16 + 16) * sizeof(float));
    float *sc = kt ? kt + (size_t)c->head_dim * l16 : NULL;
    if (!kt) {
        __atomic_store_n(&c->failed, CONDENSE_ERR_NO_MEMORY, __ATOMIC_RELAXED);
        return;
    }
    const size_t pairs = (size_t)c->pairs, ld = c->ld, ldo = c->ldo;
    for (size_t p = pairs * (size_t)t / (size_t)nt; p < pairs * (size_t)(t + 1) / (size_t)nt; p++) {
        const size_t s = p / (size_t)c->heads, h = p % (size_t)c->heads;
        const size_t r0 = (size_t)c->seq_start[s], rows = (size_t)(c->seq_start[s + 1] - c->seq_start[s]);
        const size_t col = h * (size_t)c->head_dim;
        if (rows == 0) continue;
#if CONDENSE_X86
        if (c->vector) {
            condense_attention_pair_avx512(c->q + r0 * ld + col, c->k + r0 * ld + col, c->v + r0 * ld + col, ld, c->out + r0 * ldo + col,
                                  ldo, rows, c->head_dim, c->scale, kt, sc);
            continue;
        }
#elif CONDENSE_ARM64
        if (c->vector) {
            condense_attention_pair_neon(c->q + r0 * ld + col, c->k + r0 * ld + col, c->v + r0 * ld + col, ld, c->out + r0 * ldo + col,
                                ldo, rows, c->head_dim, c->scale, kt, sc);
            continue;
        }
#endif
        condense_attention_pair_scalar(c->q + r0 * ld + col, c->k + r0 * ld + col, c->v + r0 * ld + col, ld, c->out + r0 * ldo + col, ldo,
                              rows, c->head_dim, c->scale, sc);
    }
    free(kt);
}

int condense_f32_attention(const float *q, const float *k, const float *v, size_t ld, float *out, size_t ldo,
                           const int32_t *seq_start, size_t nseq, int heads, int head_dim, float scale, condense_isa isa,
                           int threads) {
    if (heads < 1 || head_dim < 1 || nseq == 0) return 0;
    size_t maxlen = 0;
    for (size_t s = 0; s < nseq; s++) {
        if (seq_start[s + 1] < seq_start[s]) return CONDENSE_ERR_INVALID;
        const size_t l = (size_t)(seq_start[s + 1] - seq_start[s]);
        maxlen = l > maxlen ? l : maxlen;
    }
    if (isa > condense_isa_detected()) isa = condense_isa_detected();
    /* The vector path of this architecture: AVX-512 with d % 16 == 0, NEON with d % 4 == 0. */
    const int vector = condense_isa_runs_on(isa, condense_isa_detected()) &&
                       ((CONDENSE_X86 && isa >= CONDENSE_ISA_AVX512 && head_dim % 16 == 0) ||
                        (CONDENSE_ARM64 && isa >= CONDENSE_ISA_NEON && head_dim % 4 == 0));
    const long pairs = (long)(nseq * (size_t)heads);
    const int nt = threads > 0 ? threads : condense_get_num_threads();
    attn_ctx c = {q, k, v, ld, out, ldo, seq_start, heads, head_dim, scale, vector, pairs, maxlen, 0};
    condense_team_run(pairs > 1 ? nt : 1, attn_share, &c);
    return c.failed;
}

typedef struct {
    float *x, *y;
    size_t rows, n, ldx, ldy;
    const float *a, *b;   /* gamma and beta, or the column scales */
    float eps;
} rows_ctx;

static void layernorm_share(void *ctx, int t, int nt) {
    const rows_ctx *c = ctx;
    const size_t n = c->n;
    for (size_t r = c->rows * (size_t)t / (size_t)nt; r < c->rows * (size_t)(t + 1) / (size_t)nt; r++) {
        float *xr = c->x + r * c->ldx;
        double mean = 0, var = 0;
        for (size_t j = 0; j < n; j++) mean += xr[j];
        mean /= (double)n;
        for (size_t j = 0; j < n; j++) { const double d = xr[j] - mean; var += d * d; }
        const float inv = (float)(1.0 / sqrt(var / (double)n + (double)c->eps)), mu = (float)mean;
        for (size_t j = 0; j < n; j++) xr[j] = (xr[j] - mu) * inv * c->a[j] + c->b[j];
    }
}

static void scale_share(void *ctx, int t, int nt) {
    const rows_ctx *c = ctx;
    for (size_t r = c->rows * (size_t)t / (size_t)nt; r < c->rows * (size_t)(t + 1) / (size_t)nt; r++) {
        const float *xr = c->x + r * c->ldx;
        float *yr = c->y + r * c->ldy;
        for (size_t j = 0; j < c->n; j++) yr[j] = xr[j] * c->a[j];
    }
}

void condense_f32_layernorm(float *x, size_t rows, size_t n, size_t ld, const float *gamma, const float *beta,
                            float eps, int threads) {
    const int nt = threads > 0 ? threads : condense_get_num_threads();
    rows_ctx c = {x, NULL, rows, n, ld, 0, gamma, beta, eps};
    condense_team_run(rows * n > 65536 ? nt : 1, layernorm_share, &c);
}

void condense_f32_scale_columns(const float *x, size_t rows, size_t n, size_t ldx, const float *s, float *y, size_t ldy,
                                int threads) {
    const int nt = threads > 0 ? threads : condense_get_num_threads();
    rows_ctx c = {(float *)x, y, rows, n, ldx, ldy, s, NULL, 0};
    condense_team_run(rows * n > 65536 ? nt : 1, scale_share, &c);
}

/* ---- Causal attention over a KV cache (decoders) ------------------------------------------- */

/* One query row and head: scores against n cached keys, softmax, weighted sum of the values. */
/* ---- Causal attention of a decoder over its KV cache ----------------------------------------
 * One work item is (query row, KV head, chunk of positions): the `group` query heads that share
 * the KV head are computed together, so each K and V row is read once for all of them. When rows
 * × KV heads alone cannot keep the threads busy (token generation: one row, a few KV heads),
 * the positions are split into chunks whose partial softmax states (max, sum, unnormalised
 * output) are merged afterwards (flash-decoding). The cache holds floats or IEEE halves. */



/* Folds the softmax state (m2, l2, o2) of G heads into (m, l, o): both rescaled to the larger max. */
static void merge_state(int G, int hd, float *m, float *l, float *o, const float *m2, const float *l2, const float *o2) {
    for (int g = 0; g < G; g++) {
        if (l2[g] == 0) continue;
        if (l[g] == 0) {
            m[g] = m2[g];
            l[g] = l2[g];
            memcpy(o + (size_t)g * (size_t)hd, o2 + (size_t)g * (size_t)hd, (size_t)hd * sizeof(float));
            continue;
        }
        const float mx = m[g] > m2[g] ? m[g] : m2[g], a = expf(m[g] - mx), b = expf(m2[g] - mx);
        for (int e = 0; e < hd; e++) o[(size_t)g * (size_t)hd + (size_t)e] = a * o[(size_t)g * (size_t)hd + (size_t)e] + b * o2[(size_t)g * (size_t)hd + (size_t)e];
        l[g] = a * l[g] + b * l2[g];
        m[g] = mx;
    }
}

/* Thread t of nt: a static share of the items, then (chunked) a barrier and a share of the merges. */
void condense_causal_share(void *ctx, int tid, int nt) {
    causal_ctx *C = ctx;
    const int G = C->G, hd = C->hd;
    const size_t nch = C->nch, span = C->span, state = C->state, kv_heads = (size_t)C->kv_heads;
    float *partial = C->partial;
    /* Scores of one chunk, its state, and a second state for a chunk that wraps around the ring. */
    float *sc = condense_scratch(CONDENSE_SCRATCH_ATTN, ((size_t)G * span + 2 * state) * sizeof(float));
    if (!sc) __atomic_store_n(&C->failed, CONDENSE_ERR_NO_MEMORY, __ATOMIC_RELAXED);
    /* Items dealt round-robin: row i attends to p0 + i + 1 positions, so contiguous shares of a
     * prompt's rows would give the last thread most of the work (3/4 of it on 2 threads). */
    for (size_t it = (size_t)tid; sc && it < C->items; it += (size_t)nt) {
        const size_t c = it % nch, rest = it / nch;
        const size_t kvh = rest % kv_heads, i = rest / kv_heads;
        const size_t end = C->p0 + i + 1, start = C->window && end > C->window ? end - C->window : 0;
        size_t a = C->lo + c * span;
        const size_t b = a + span < end ? a + span : end;
        if (a < start) a = start;
        float *st = partial ? partial + it * state : sc + (size_t)G * span;
        float *m = st, *l = st + G, *o = st + 2 * G;
        const float *qg = C->q + i * C->ldq + kvh * (size_t)G * (size_t)hd;
        const uint8_t *kh = (const uint8_t *)C->kc + kv_bytes(C->kt, kvh * (size_t)hd);
        const uint8_t *vh = (const uint8_t *)C->vc + kv_bytes(C->vt, kvh * (size_t)hd);
        if (a >= b) {   /* a chunk outside this row's positions */
            for (int g = 0; g < G; g++) { m[g] = -INFINITY; l[g] = 0; }
            memset(o, 0, (size_t)G * (size_t)hd * sizeof(float));
            continue;
        }
        if (!C->ring) {
            C->chunk(&C->args, qg, kh, vh, a, b, sc, m, l, o);
        } else {
            /* Position p lives in row p % ring: at most two contiguous runs of rows. */
            const size_t pa = a % C->ring, n = b - a, first = pa + n <= C->ring ? n : C->ring - pa;
            C->chunk(&C->args, qg, kh, vh, pa, pa + first, sc, m, l, o);
            if (first < n) {
                float *s2 = sc + (size_t)G * span + state;
                C->chunk(&C->args, qg, kh, vh, 0, n - first, sc, s2, s2 + G, s2 + 2 * G);
                merge_state(G, hd, m, l, o, s2, s2 + G, s2 + 2 * G);
            }
        }
        if (partial) continue;
        for (int g = 0; g < G; g++) {
            float *dst = C->out + i * C->ldo + (kvh * (size_t)G + (size_t)g) * (size_t)hd;
            const float inv = 1.0f / l[g];
            for (int e = 0; e < hd; e++) dst[e] = o[(size_t)g * (size_t)hd + (size_t)e] * inv;
        }
    }
    if (!partial) return;
    /* Every chunk must be done before any merge reads it. A thread without its scratch still
     * reaches the barrier (the call reports the failure). */
    condense_team_barrier(nt);
    const size_t heads = (size_t)C->heads, total = C->t * heads;
    for (size_t ih = total * (size_t)tid / (size_t)nt; ih < total * (size_t)(tid + 1) / (size_t)nt; ih++) {
        /* Merge the chunks of each (row, query head): rescale to the largest max. */
        const size_t i = ih / heads, h = ih % heads;
        const size_t kvh = h / (size_t)G, g = h % (size_t)G;
        const float *base = partial + (i * kv_heads + kvh) * nch * state;
        float mx = -INFINITY;
        for (size_t c = 0; c < nch; c++) mx = base[c * state + g] > mx ? base[c * state + g] : mx;
        float *dst = C->out + i * C->ldo + h * (size_t)hd, sum = 0;
        for (int e = 0; e < hd; e++) dst[e] = 0;
        for (size_t c = 0; c < nch; c++) {
            const float *st = base + c * state;
            if (st[G + g] == 0) continue;
            const float w = expf(st[g] - mx);
            sum += w * st[G + g];
            const float *o = st + 2 * G + g * (size_t)hd;
            for (int e = 0; e < hd; e++) dst[e] += w * o[e];
        }
        const float inv = 1.0f / sum;
        for (int e = 0; e < hd; e++) dst[e] *= inv;
    }
}

int condense_kv_write_row(uint32_t type, const float *src, void *dst, size_t n, condense_isa isa) {
    const int t = condense_kv_code(type);
    if (t < 0 || !src || !dst || (t >= KV_Q8_0 && n % 32)) return CONDENSE_ERR_INVALID;
    condense_kv_write(t, src, dst, n, isa);
    return CONDENSE_OK;
}

int condense_causal_attention(const float *q, size_t ldq, const void *kc, const void *vc, uint32_t kv_type, size_t ldkv,
                              float *out, size_t ldo, size_t t, size_t p0, int heads, int kv_heads, int hd, float scale,
                              condense_isa isa, int threads) {
    return condense_causal_attention_window(q, ldq, kc, vc, kv_type, ldkv, out, ldo, t, p0, heads, kv_heads, hd, scale, 0, 0, 0,
                                            isa, threads);
}

/* Chunks of each (row, KV head)'s positions, and their span. Only when rows × KV heads cannot
 * feed every thread several items (token generation): chunks of ATTN_CHUNK positions, and with
 * several threads at least two items per thread where chunks of ATTN_MIN_CHUNK allow it — three
 * KV heads on two threads otherwise leave one thread idle a third of the time. */
static size_t chunk_count(size_t t, size_t kv_heads, int nt, size_t live, size_t *span) {
    size_t nch = 1;
    const size_t items = t * kv_heads;
    if (items < 4 * (size_t)nt) {
        if (live > ATTN_CHUNK) nch = (live + ATTN_CHUNK - 1) / ATTN_CHUNK;
        const size_t want = (2 * (size_t)nt + items - 1) / items, most = live / ATTN_MIN_CHUNK;
        if (nt > 1 && nch < want) nch = want < most ? want : most > nch ? most : nch;
    }
    *span = (live + nch - 1) / nch;
    return nch;
}

/* How a pass of t rows at positions p0… splits: the threads worth using (*nt), its first live
 * position (*lo), the chunks of positions (returned) and their span — one place for the plan and
 * for the size of the states it will want. */
static size_t split_of(size_t t, size_t p0, size_t window, int heads, int kv_heads, int hd, int threads, int *nt, size_t *lo,
                       size_t *span) {
    *nt = threads > 0 ? threads : condense_get_num_threads();
    *lo = window && p0 + 1 > window ? p0 + 1 - window : 0;
    const size_t live = p0 + t - *lo;
    if (live * (size_t)hd * t * (size_t)heads < 65536) *nt = 1;
    return chunk_count(t, (size_t)kv_heads, *nt, live, span);
}

size_t condense_causal_partial_floats(size_t t, size_t p0, size_t window, int heads, int kv_heads, int hd, int threads) {
    if (heads < 1 || kv_heads < 1 || heads % kv_heads || hd < 1) return 0;
    int nt;
    size_t lo, span;
    const size_t nch = split_of(t, p0, window, heads, kv_heads, hd, threads, &nt, &lo, &span);
    if (nch < 2) return 0;
    return t * (size_t)kv_heads * nch * (size_t)(heads / kv_heads) * ((size_t)hd + 2);
}

int condense_causal_plan(causal_ctx *cc, const float *q, size_t ldq, const void *kc, const void *vc, uint32_t kv_type, size_t ldkv,
                         float *out, size_t ldo, size_t t, size_t p0, int heads, int kv_heads, int hd, float scale, float softcap,
                         size_t window, size_t ring, condense_isa isa, int threads, float *partial) {
    if (heads < 1 || kv_heads < 1 || heads % kv_heads || hd < 1) return CONDENSE_ERR_INVALID;
    /* A ring must hold every position the pass reads: the window of its first row through its last row. */
    if (ring && (!window || ring < window + t - 1)) return CONDENSE_ERR_INVALID;
    /* kv_type: the key cache's ggml type, and in the high 16 bits the value cache's + 1 (0: the same). */
    const uint32_t kg = kv_type & 0xFFFF, vg = kv_type >> 16 ? (kv_type >> 16) - 1 : kg;
    const int kt = condense_kv_code(kg), vt = condense_kv_code(vg);
    if (kt < 0 || vt < 0) return CONDENSE_ERR_INVALID;
    /* Blocks of 32 along a row: every head must be whole blocks. */
    if ((kt >= KV_Q8_0 || vt >= KV_Q8_0) && (hd % 32 || ldkv % 32)) return CONDENSE_ERR_INVALID;
    if (isa > condense_isa_detected()) isa = condense_isa_detected();
    if (!(softcap >= 0)) return CONDENSE_ERR_INVALID;   /* NaN fails this too */
    causal_chunk_fn chunk = condense_causal_chunk_scalar;
    /* Soft-capped scores (Gemma 2) take the portable path: the SIMD chunks have no tanh. */
    if (softcap == 0) {
#if CONDENSE_X86
        if (isa >= CONDENSE_ISA_AVX512 && hd % 16 == 0) chunk = condense_causal_chunk_avx512;
        else if (isa >= CONDENSE_ISA_AVX2 && hd % 8 == 0 && (condense_cpu_features() & CONDENSE_CPU_F16C)) chunk = condense_causal_chunk_avx2;
#elif CONDENSE_ARM64
        if (condense_isa_arm_simd(isa) && hd % 4 == 0) chunk = condense_causal_chunk_neon;
#endif
    }
    const int G = heads / kv_heads;
    int nt;
    size_t lo, span;
    const size_t nch = split_of(t, p0, window, heads, kv_heads, hd, threads, &nt, &lo, &span);
    const size_t items = t * (size_t)kv_heads * nch, state = (size_t)G * ((size_t)hd + 2);
    if (nch > 1 && !partial) return CONDENSE_ERR_NO_MEMORY;
    *cc = (causal_ctx){{q, ldq, kc, vc, kv_bytes(kt, ldkv), kv_bytes(vt, ldkv), kt, vt, G, hd, scale, softcap}, chunk, q, ldq, kc, vc,
                       kt, vt, out, ldo, t, p0, heads, kv_heads, hd, G, nch, span, items, state, window, ring, lo,
                       nch > 1 ? partial : NULL, 0, nt};
    return CONDENSE_OK;
}

int condense_causal_attention_window(const float *q, size_t ldq, const void *kc, const void *vc, uint32_t kv_type, size_t ldkv,
                                     float *out, size_t ldo, size_t t, size_t p0, int heads, int kv_heads, int hd, float scale,
                                     float softcap, size_t window, size_t ring, condense_isa isa, int threads) {
    const size_t pf = condense_causal_partial_floats(t, p0, window, heads, kv_heads, hd, threads);
    float *partial = NULL;
    if (pf) {
        size_t bytes;
        if (__builtin_mul_overflow(pf, sizeof(float), &bytes)) return CONDENSE_ERR_INVALID;
        partial = condense_scratch(CONDENSE_SCRATCH_QX, bytes);
        if (!partial) return CONDENSE_ERR_NO_MEMORY;
    }
    causal_ctx cc;
    const int st = condense_causal_plan(&cc, q, ldq, kc, vc, kv_type, ldkv, out, ldo, t, p0, heads, kv_heads, hd, scale, softcap,
                                        window, ring, isa, threads, partial);
    if (st != CONDENSE_OK || t == 0) return st;
    condense_team_run(cc.nt, condense_causal_share, &cc);
    const int failed = cc.failed;
    return failed;
}

typedef struct {
    const condense_attention_sequence *seqs;
    size_t n, ldq;
    uint32_t kv_type;
    size_t ldkv, ldo;
    int heads, kv_heads, hd;
    float scale, softcap;
    size_t window, ring;
    condense_isa isa;
    int threads;
    size_t next;
    int status;
} batch_ctx;

static void batch_share(void *ctx, int t, int nt) {
    (void)t;
    (void)nt;
    batch_ctx *b = ctx;
    for (;;) {
        const size_t i = __atomic_fetch_add(&b->next, 1, __ATOMIC_RELAXED);
        if (i >= b->n) return;
        const condense_attention_sequence *s = &b->seqs[i];
        const int r = condense_causal_attention_window(s->q, b->ldq, s->kc, s->vc, b->kv_type, b->ldkv, s->out, b->ldo, s->t,
                                                       s->p0, b->heads, b->kv_heads, b->hd, b->scale, b->softcap, b->window, b->ring,
                                                       b->isa, b->threads);
        if (r != CONDENSE_OK) __atomic_store_n(&b->status, r, __ATOMIC_RELAXED);
    }
}

int condense_causal_attention_batch(const condense_attention_sequence *seqs, size_t n, size_t ldq, uint32_t kv_type, size_t ldkv,
                                    size_t ldo, int heads, int kv_heads, int hd, float scale, condense_isa isa, int threads) {
    return condense_causal_attention_batch_window(seqs, n, ldq, kv_type, ldkv, ldo, heads, kv_heads, hd, scale, 0, 0, 0, isa, threads);
}

int condense_causal_attention_batch_window(const condense_attention_sequence *seqs, size_t n, size_t ldq, uint32_t kv_type,
                                           size_t ldkv, size_t ldo, int heads, int kv_heads, int hd, float scale, float softcap,
                                           size_t window, size_t ring, condense_isa isa, int threads) {
    if (n == 0) return CONDENSE_OK;
    if (!seqs) return CONDENSE_ERR_INVALID;
    int nt = threads > 0 ? threads : condense_get_num_threads();
    if (n < 2) nt = 1;
    /* One sequence per thread at a time, each run single-threaded (its own scratch), taken from a
     * shared counter: sequences differ in length. */
    batch_ctx bc = {seqs, n, ldq, kv_type, ldkv, ldo, heads, kv_heads, hd, scale, softcap, window, ring, isa, nt > 1 ? 1 : threads, 0,
                    CONDENSE_OK};
    condense_team_run(nt, batch_share, &bc);
    const int status = bc.status;
    return status;
}
