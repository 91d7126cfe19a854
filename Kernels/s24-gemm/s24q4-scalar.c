/* The 2:4-int4 (S24Q4) block kernel, portable C: the reference the other paths are bit-identical
 * to. It runs on the GGUF block driver (gguf-gemm.c), registered in its table. */
#include "../gguf/gguf-internal.h"

#include <math.h>
#include <string.h>

/* S24Q4: 16 steps of 4 columns per block of 64; pruned weights read as code 8 (q = 0). */
void condense_s24q4_group_scalar(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y,
                             size_t ldy, int valid) {
    (void)L;
    for (size_t i = m0; i < m1; i++) {
        float acc[GROUP] = {0};
        const int8_t *xq = x->q + i * x->k;
        for (size_t b = 0; b < x->nb / 2; b++) {
            const uint8_t *blk = gw + b * S24_GB;
            for (int h = 0; h < 2; h++) {
                const size_t ib = i * x->nb + 2 * b + (size_t)h;
                const int8_t *xb = xq + 64 * b + 32 * (size_t)h;
                int32_t s[GROUP] = {0};
                for (int st = 8 * h; st < 8 * h + 8; st++) {
                    uint64_t m;
                    memcpy(&m, blk + 256 + 8 * st, 8);
                    const uint8_t *pr = blk + 32 * (st / 2);
                    int j = 0;
                    for (int r = 0; r < GROUP; r++)
                        for (int t = 0; t < 4; t++) {
                            int u = 8;
                            if (m >> (4 * r + t) & 1) u = (pr[j++] >> (4 * (st % 2))) & 15;
                            s[r] += u * xb[4 * (st % 8) + t];
                        }
                }
                const float dx = x->d[ib];
                for (int r = 0; r < GROUP; r++) acc[r] = fmaf((float)(s[r] - x->c[ib]), f16_at(blk + 384 + 2 * r) * dx, acc[r]);
            }
        }
        for (int r = 0; r < valid; r++) y[i * ldy + (size_t)r] = acc[r];
    }
}
