/* A decoder layer's RMSNorm (whole rows, or each head of Q and K) and rotary embedding, on the
 * thread team between the projections' kernels.
 *
 * The arithmetic is the Swift loops' that these replace, in the same order and without fused
 * multiply-adds, so every model keeps its logits bit for bit: a sum of squares in float, one
 * element at a time; x · (1/√(ss/n + ε)) · w; x0·c − x1·s and x0·s + x1·c. */
#include "internal.h"
#include "condense_kernels.h"
#include "decoder-internal.h"

#include <math.h>

#pragma clang fp contract(off)

typedef struct {
    const float *x;
    float *y;
    size_t ldx, ldy, rows, segs, n;
    const float *w;
    float eps;
} norm_ctx;

/* Items i0…i1 of rows × segs: one segment of one row each. */
void condense_rmsnorm_items(const float *x, size_t ldx, float *y, size_t ldy, size_t i0, size_t i1, size_t segs, size_t n,
                            const float *w, float eps) {
    for (size_t it = i0; it < i1; it++) {
        const size_t r = it / segs, s = it % segs;
        const float *xr = x + r * ldx + s * n;
        float *yr = y + r * ldy + s * n;
        float ss = 0;
        for (size_t j = 0; j < n; j++) ss += xr[j] * xr[j];
        const float inv = 1.0f / sqrtf(ss / (float)n + eps);
        for (size_t j = 0; j < n; j++) yr[j] = xr[j] * inv * w[j];
    }
}

static void norm_share(void *ctx, int t, int nt) {
    const norm_ctx *c = ctx;
    const size_t items = c->rows * c->segs;
    condense_rmsnorm_items(c->x, c->ldx, c->y, c->ldy, items * (size_t)t / (size_t)nt, items * (size_t)(t + 1) / (size_t)nt,
                           c->segs, c->n, c->w, c->eps);
}

int condense_rmsnorm(const float *x, size_t ldx, float *y, size_t ldy, size_t rows, size_t segs, size_t n, const float *w,
                     float eps, int threads) {
    if (rows == 0 || segs == 0 || n == 0) return CONDENSE_OK;
    if (!x || !y || !w || ldx < segs * n || ldy < segs * n) return CONDENSE_ERR_INVALID;
    int nt = threads > 0 ? threads : condense_get_num_threads();
    if (rows * segs * n < 32768) nt = 1;
    const norm_ctx c = {x, y, ldx, ldy, rows, segs, n, w, eps};
    condense_team_run(nt, norm_share, (void *)&c);
    return CONDENSE_OK;
}

typedef struct {
    float *x;
    size_t ld, rows;
    int heads, hd, neox;
    const float *cs, *sn;
} rope_ctx;

/* Items i0…i1 of rows × heads: one head of one row each; row r's angles at cs/sn + r · hd/2. */
void condense_rope_items(float *x, size_t ld, size_t i0, size_t i1, int heads, int hd, const float *cs_t, const float *sn_t,
                         int neox) {
    const size_t half = (size_t)hd / 2;
    for (size_t it = i0; it < i1; it++) {
        const size_t r = it / (size_t)heads, h = it % (size_t)heads;
        float *row = x + r * ld + h * (size_t)hd;
        const float *cs = cs_t + r * half, *sn = sn_t + r * half;
        for (size_t i = 0; i < half; i++) {
            const size_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            const float x0 = row[a], x1 = row[b];
            row[a] = x0 * cs[i] - x1 * sn[i];
            row[b] = x0 * sn[i] + x1 * cs[i];
        }
    }
}

static void rope_share(void *ctx, int t, int nt) {
    const rope_ctx *c = ctx;
    const size_t items = c->rows * (size_t)c->heads;
    condense_rope_items(c->x, c->ld, items * (size_t)t / (size_t)nt, items * (size_t)(t + 1) / (size_t)nt, c->heads, c->hd, c->cs,
                        c->sn, c->neox);
}

int condense_rope(float *x, size_t ld, size_t rows, int heads, int hd, const float *cos_t, const float *sin_t, int neox,
                  int threads) {
    if (rows == 0 || heads == 0) return CONDENSE_OK;
    if (!x || !cos_t || !sin_t || heads < 0 || hd < 2 || hd % 2 || ld < (size_t)heads * (size_t)hd) return CONDENSE_ERR_INVALID;
    int nt = threads > 0 ? threads : condense_get_num_threads();
    if (rows * (size_t)heads * (size_t)hd < 32768) nt = 1;
    const rope_ctx c = {x, ld, rows, heads, hd, neox != 0, cos_t, sin_t};
    condense_team_run(nt, rope_share, (void *)&c);
    return CONDENSE_OK;
}
