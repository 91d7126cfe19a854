/* A decoder layer's RMSNorm (whole rows, or each head of Q and K) and rotary embedding, on the
 * thread team between the projections' kernels.
 *
 * The arithmetic is the Swift loops' that these replace, in the same order and without fused
 * multiply-adds, so every model keeps its logits bit for bit: a sum of squares in float, one
 * element at a time; x · (1/√(ss/n + ε)) · w; x0·c − x1·s and x0·s + x1·c. */
#include "internal.h"
#include "condense_kernels.h"

#include <math.h>

#pragma clang fp contract(off)

typedef struct {
    const float *x;
    float *y;
    size_t ldx, ldy, rows, segs, n;
    const float *w;
    float eps;
} norm_ctx;

static void norm_share(void *ctx, int t, int nt) {
    const norm_ctx *c = ctx;
    const size_t items = c->rows * c->segs;
    for (size_t it = items * (size_t)t / (size_t)nt; it < items * (size_t)(t + 1) / (size_t)nt; it++) {
        const size_t r = it / c->segs, s = it % c->segs;
        const float *x = c->x + r * c->ldx + s * c->n;
        float *y = c->y + r * c->ldy + s * c->n;
        float ss = 0;
        for (size_t j = 0; j < c->n; j++) ss += x[j] * x[j];
        const float inv = 1.0f / sqrtf(ss / (float)c->n + c->eps);
        for (size_t j = 0; j < c->n; j++) y[j] = x[j] * inv * c->w[j];
    }
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

static void rope_share(void *ctx, int t, int nt) {
    const rope_ctx *c = ctx;
    const size_t half = (size_t)c->hd / 2, items = c->rows * (size_t)c->heads;
    for (size_t it = items * (size_t)t / (size_t)nt; it < items * (size_t)(t + 1) / (size_t)nt; it++) {
        const size_t r = it / (size_t)c->heads, h = it % (size_t)c->heads;
        float *row = c->x + r * c->ld + h * (size_t)c->hd;
        const float *cs = c->cs + r * half, *sn = c->sn + r * half;
        for (size_t i = 0; i < half; i++) {
            const size_t a = c->neox ? i : 2 * i, b = c->neox ? i + half : 2 * i + 1;
            const float x0 = row[a], x1 = row[b];
            row[a] = x0 * cs[i] - x1 * sn[i];
            row[b] = x0 * sn[i] + x1 * cs[i];
        }
    }
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
