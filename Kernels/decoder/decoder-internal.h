/* The decoder's row operations as steps a running job can take (decoder/layer.c runs a whole
 * layer as one job of the thread team): the same arithmetic as condense_rmsnorm, condense_rope
 * and condense_glu, which run them as jobs of their own. */
#ifndef CONDENSE_DECODER_INTERNAL_H
#define CONDENSE_DECODER_INTERNAL_H

#include "condense_kernels.h"
#include "internal.h"

/* RMSNorm of items i0…i1 of rows × segs (one segment of n floats of one row each). */
void condense_rmsnorm_items(const float *x, size_t ldx, float *y, size_t ldy, size_t i0, size_t i1, size_t segs, size_t n,
                            const float *w, float eps);
/* Rotary embedding of items i0…i1 of rows × heads; row r's angles at cs/sn + r · hd/2. */
void condense_rope_items(float *x, size_t ld, size_t i0, size_t i1, int heads, int hd, const float *cs, const float *sn, int neox);

typedef struct glu_ctx {
    const float *gu;
    size_t rows, ff;
    int act;
    float *out;
    condense_isa isa;
    int nt;   /* threads worth using: 1 for small work */
} glu_ctx;

int condense_glu_plan(glu_ctx *c, const float *gu, size_t rows, size_t ff, int act, float *out, condense_isa isa, int threads);
void condense_glu_share(void *ctx, int t, int nt);

#endif
