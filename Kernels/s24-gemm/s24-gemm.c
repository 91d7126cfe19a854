/* 2:4 packing and entry point. The compact form (values + 4-bit masks, K padded to 16) feeds
 * the dot kernels; a column-index view of the same values feeds the xt kernels. */
#include "sparse.h"

#include <string.h>

/* Rows per bucket tile: its Y^T block (rows × up to 32 floats) stays in L1, and buckets stay
 * long enough (≈ rows/6) that the 6 loop exits per group cost little. */
#define S24_BUCKET_ROWS 256

/* Pattern number of a 4-bit mask with exactly two bits: (0,1) (0,2) (0,3) (1,2) (1,3) (2,3). */
static int s24_pattern(unsigned mask) {
    switch (mask) {
    case 0x3: return 0; case 0x5: return 1; case 0x9: return 2;
    case 0x6: return 3; case 0xA: return 4; case 0xC: return 5;
    default: return -1;
    }
}

static int pack_buckets(condense_s24_packed *p, const float *values, const uint8_t *meta, size_t meta_stride) {
    /* At least 8 tiles where N allows, so 2–4 threads get balanced shares of whole tiles. */
    const size_t n = p->n;
    size_t nt = (n + 7) / 8;
    nt = nt < 64 ? 64 : nt > S24_BUCKET_ROWS ? S24_BUCKET_ROWS : nt;
    const size_t G = p->groups, tiles = (n + nt - 1) / nt;
    size_t entries, cbytes;
    if (__builtin_mul_overflow(n, G, &entries) || __builtin_mul_overflow(tiles * 6, G, &cbytes)) return 0;
    p->bucket_rows_per_tile = nt;
    p->bucket_count = condense_zalloc(cbytes * sizeof(uint16_t) + 64);
    p->bucket_row = condense_aligned_alloc(entries * sizeof(uint16_t) + 64);
    p->bucket_values = condense_aligned_alloc(entries * 2 * sizeof(float) + 64);
    if (!p->bucket_count || !p->bucket_row || !p->bucket_values) return 0;
    size_t e = 0;
    for (size_t t = 0; t < tiles; t++) {
        const size_t r0 = t * nt, r1 = r0 + nt < n ? r0 + nt : n;
        for (size_t g = 0; g < G; g++) {
            uint16_t *cnt = p->bucket_count + (t * G + g) * 6;
            for (int pat = 0; pat < 6; pat++) {
                for (size_t r = r0; r < r1; r++) {
                    const unsigned mask = (meta[r * meta_stride + g / 2] >> (4 * (g % 2))) & 0xF;
                    if (s24_pattern(mask) != pat) continue;
                    cnt[pat]++;
                    p->bucket_row[e] = (uint16_t)(r - r0);
                    p->bucket_values[2 * e] = values[r * 2 * G + 2 * g];
                    p->bucket_values[2 * e + 1] = values[r * 2 * G + 2 * g + 1];
                    e++;
                }
            }
        }
    }
    return e == entries;
}

condense_s24_packed *condense_s24_pack(condense_isa isa, const float *values, const uint8_t *meta,
                                       size_t n, size_t k, size_t k4, size_t meta_stride,
                                       const float *bias) {
    condense_s24_packed *p = condense_zalloc(sizeof *p);
    if (!p) return NULL;
    const size_t k16 = (k4 + 15) / 16 * 16;
    const size_t vs = k16 / 2, ms = k16 / 8, groups4 = k4 / 4;
    p->n = n;
    p->k = k;
    p->k16 = k16;
    p->isa = isa;
    p->index_bytes = k16 <= 65536 ? 2 : 4;
    p->values = condense_aligned_alloc(n * vs * sizeof(float) + 64);
    p->meta = condense_aligned_alloc(n * ms + 64);
    p->index = condense_aligned_alloc(n * vs * (size_t)p->index_bytes + 64);
    if (!p->values || !p->meta || !p->index) goto fail;
    for (size_t r = 0; r < n; r++) {
        float *dv = p->values + r * vs;
        uint8_t *dm = p->meta + r * ms;
        memset(dv, 0, vs * sizeof(float));
        memcpy(dv, values + r * (k4 / 2), (k4 / 2) * sizeof(float));
        for (size_t g = 0; g < k16 / 4; g++) {
            /* Padding groups select columns 0 and 1 of the group, with zero values. */
            uint8_t mask = g < groups4 ? (uint8_t)((meta[r * meta_stride + g / 2] >> (4 * (g % 2))) & 0xF) : 0x3;
            if (g % 2 == 0) dm[g / 2] = mask; else dm[g / 2] |= (uint8_t)(mask << 4);
            int slot = 0;
            for (int i = 0; i < 4; i++) {
                if (!((mask >> i) & 1)) continue;
                /* Columns past K hold zeros; clamp so the xt kernels never index past X's row. */
                size_t col = 4 * g + (size_t)i;
                if (k > 0 && col >= k) col = k - 1;
                size_t at = r * vs + 2 * g + (size_t)slot++;
                if (p->index_bytes == 2) ((uint16_t *)p->index)[at] = (uint16_t)col;
                else ((uint32_t *)p->index)[at] = (uint32_t)col;
            }
        }
    }
    if (!condense_copy_bias(&p->bias, bias, n)) goto fail;
    p->groups = groups4;
    if (CONDENSE_X86 && isa >= CONDENSE_ISA_AVX512 && condense_isa_runs_on(isa, condense_isa_detected())) {
        const size_t panels = (n + 15) / 16;
        p->panel_values = condense_aligned_alloc(panels * groups4 * 32 * sizeof(float) + 64);
        p->panel_pos = condense_aligned_alloc(panels * groups4 * sizeof(uint64_t) + 64);
        if (!p->panel_values || !p->panel_pos) goto fail;
        memset(p->panel_values, 0, panels * groups4 * 32 * sizeof(float));
        memset(p->panel_pos, 0, panels * groups4 * sizeof(uint64_t));
        for (size_t r = 0; r < n; r++) {
            const size_t pi = r / 16, j = r % 16;
            for (size_t g = 0; g < groups4; g++) {
                const unsigned mask = (meta[r * meta_stride + g / 2] >> (4 * (g % 2))) & 0xF;
                float *pv = p->panel_values + (pi * groups4 + g) * 32;
                uint64_t *pp = p->panel_pos + pi * groups4 + g;
                int slot = 0;
                for (unsigned i = 0; i < 4; i++) {
                    if (!((mask >> i) & 1)) continue;
                    pv[16 * slot + j] = values[r * (k4 / 2) + 2 * g + (size_t)slot];
                    *pp |= (uint64_t)i << (32 * slot + 2 * j);
                    slot++;
                }
            }
        }
    }
    /* Every vector level has a bucket kernel (x86 from AVX2, AArch64 from NEON). */
    if (CONDENSE_SIMD && isa != CONDENSE_ISA_SCALAR && condense_isa_runs_on(isa, condense_isa_detected()) &&
        !pack_buckets(p, values, meta, meta_stride))
        goto fail;
    return p;
fail:
    condense_s24_packed_free(p);
    return NULL;
}

void condense_s24_packed_free(condense_s24_packed *p) {
    if (!p) return;
    free(p->values);
    free(p->meta);
    free(p->index);
    free(p->bias);
    free(p->panel_values);
    free(p->panel_pos);
    free(p->bucket_count);
    free(p->bucket_row);
    free(p->bucket_values);
    free(p);
}

#if CONDENSE_SIMD
typedef struct {
    const condense_s24_packed *w;
    const sparse_kernel_impl *kr;
    const float *x;
    size_t lda;
    float *y;
    size_t ldy, mv, mp, tiles, k4;
    float *xt;
    int act;
    int *failed;
} bucket_ctx;

static void bucket_share(void *ctx, int t, int tn) {
    const bucket_ctx *c = ctx;
    const condense_s24_packed *w = c->w;
    c->kr->bucket_pack_x(c->x, c->lda, c->mv, c->mp, w->k, c->k4 * (size_t)t / (size_t)tn,
                         c->k4 * (size_t)(t + 1) / (size_t)tn, c->xt);
    condense_team_barrier(tn);
    float *yt = condense_scratch(CONDENSE_SCRATCH_YT, w->bucket_rows_per_tile * c->mp * sizeof(float));
    const size_t t0 = c->tiles * (size_t)t / (size_t)tn, t1 = c->tiles * (size_t)(t + 1) / (size_t)tn;
    if (!yt) {
        __atomic_store_n(c->failed, 1, __ATOMIC_RELAXED);
    } else if (t1 > t0) {
        c->kr->bucket(w, t0, t1, c->xt, c->mv, c->mp, yt, c->y, c->ldy);
        const size_t c0 = t0 * w->bucket_rows_per_tile;
        const size_t c1 = t1 * w->bucket_rows_per_tile < w->n ? t1 * w->bucket_rows_per_tile : w->n;
        condense_bias_activation(c->y, c->ldy, c->mv, c0, c1, w->bias, c->act, c->kr->info.isa);
    }
}

/* The bucket path: slabs of up to 32 rows of X; per slab the team transposes X (each thread a
 * share of K), then each thread runs whole tiles of W and writes its columns of Y. */
static int run_bucket(const condense_s24_packed *w, const sparse_kernel_impl *kr, size_t m, const float *x,
                      size_t lda, float *y, size_t ldy, int act, int threads) {
    const size_t tiles = (w->n + w->bucket_rows_per_tile - 1) / w->bucket_rows_per_tile;
    const size_t k4 = w->groups * 4;
    int nt = threads > 0 ? threads : condense_get_num_threads();
    if ((size_t)nt > tiles) nt = (int)tiles;
    if (nt < 1) nt = 1;
    float *xt = condense_scratch(CONDENSE_SCRATCH_XT, k4 * 32 * sizeof(float));
    if (!xt) return CONDENSE_ERR_NO_MEMORY;
    int failed = 0;
    for (size_t m0 = 0; m0 < m; m0 += 32) {
        const size_t mv = m - m0 < 32 ? m - m0 : 32, mp = (mv + 7) / 8 * 8;
        bucket_ctx c = {w, kr, x + m0 * lda, lda, y + m0 * ldy, ldy, mv, mp, tiles, k4, xt, act, &failed};
        condense_team_run(nt, bucket_share, &c);
    }
    return failed ? CONDENSE_ERR_NO_MEMORY : CONDENSE_OK;
}
#endif

#if CONDENSE_X86
typedef struct {
    const condense_s24_packed *w;
    const sparse_kernel_impl *kr;
    size_t pairs, panels, m;
    const float *x;
    size_t lda;
    float *y;
    size_t ldy;
    int act;
} panel_ctx;

static void panel_share(void *ctx, int t, int nt) {
    const panel_ctx *c = ctx;
    const size_t q0 = c->pairs * (size_t)t / (size_t)nt, q1 = c->pairs * (size_t)(t + 1) / (size_t)nt;
    if (q1 > q0) c->kr->panel(c->w, 2 * q0, 2 * q1 < c->panels ? 2 * q1 : c->panels, c->m, c->x, c->lda, c->y, c->ldy, c->act);
}
#endif

int condense_s24_gemm(const condense_s24_packed *w, size_t m, const float *x, size_t lda,
                      float *y, size_t ldy, int act, int threads) {
#if CONDENSE_SIMD
    const sparse_kernel_impl *kr = condense_sparse_impl_for(CONDENSE_SPARSE_FORMAT_S24, w->isa, m);
    if (kr && kr->bucket) {
        if (m == 0 || w->n == 0) return CONDENSE_OK;
        if (!w->bucket_row) return CONDENSE_ERR_INVALID;
        return run_bucket(w, kr, m, x, lda, y, ldy, act, threads);
    }
#endif
#if CONDENSE_X86
    if (m > 0 && w->n > 0 && kr && kr->panel && w->panel_values) {
        const long pairs = (long)((w->n + 31) / 32);
        int nt = threads > 0 ? threads : condense_get_num_threads();
        if (nt > pairs) nt = (int)pairs;
        const size_t panels = (w->n + 15) / 16;
        panel_ctx c = {w, kr, (size_t)pairs, panels, m, x, lda, y, ldy, act};
        condense_team_run(nt, panel_share, &c);
        return CONDENSE_OK;
    }
#endif
    csr_view v = {w->n, w->k, NULL, w->k16 / 2, w->index, w->index_bytes, w->values};
    return condense_sparse_run(&v, w, w->isa, CONDENSE_SPARSE_FORMAT_S24, w->bias, m, x, lda, y, ldy, act, threads);
}
