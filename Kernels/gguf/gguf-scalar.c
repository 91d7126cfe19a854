/* GGUF block kernels, portable C: the reference every other path is bit-identical to. */
#include "gguf-internal.h"

#include <math.h>
#include <string.h>

/* One block: scale, codes (nearest even), Σ codes of each half. The same arithmetic on every path. */
void condense_gguf_quantize_block_scalar(const float *x, int8_t *q, float *d, int32_t *sum) {
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float id = amax != 0 ? 127.0f / amax : 0.0f;
    sum[0] = sum[1] = 0;
    for (int j = 0; j < 32; j++) {
        const float f = nearbyintf(x[j] * id);
        const int v = f >= -127 && f <= 127 ? (int)f : 0;   /* NaN: 0, as the vector path's vpmovdb gives */
        q[j] = (int8_t)v;
        sum[j / 16] += v;
    }
    *d = amax / 127.0f;
}

void condense_gguf_group_scalar(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y,
                         size_t ldy, int valid) {
    const int q4 = L->chunks == 4;
    for (size_t i = m0; i < m1; i++) {
        float acc[GROUP] = {0};
        const int8_t *xq = x->q + i * x->k;
        for (size_t b = 0; b < x->nb; b++, xq += 32) {
            const uint8_t *blk = block_at(L, gw, b), *hdr = header_at(L, gw, b), *sc = blk + flat_scales(L);
            const size_t ib = i * x->nb + b;
            const float dx = x->d[ib];
            for (int r = 0; r < GROUP; r++) {
                int32_t half[2] = {0, 0};   /* Σ q·qx over elements 0…15 and 16…31 */
                for (int ch = 0; ch < L->chunks; ch++)
                    for (int t = 0; t < 4; t++) {
                        const uint8_t v = blk[ch * 64 + r * 4 + t];
                        if (!q4) { half[ch / 4] += v * xq[4 * ch + t]; continue; }
                        int lo = v & 15, hi = v >> 4;
                        if (L->lut) lo = iq4nl_u8[lo], hi = iq4nl_u8[hi];
                        if (L->kind == KQ6 && L->h2) {
                            lo |= (blk[256 + (ch / 2 % 2) * 64 + r * 4 + t] >> q6_hshift[ch] & 3) << 4;
                            hi |= (blk[256 + ((ch + 4) / 2 % 2) * 64 + r * 4 + t] >> q6_hshift[ch + 4] & 3) << 4;
                        } else if (L->hbits) {
                            lo |= (blk[256 + r * 4 + t] >> ch & 1) << 4;
                            hi |= (blk[256 + r * 4 + t] >> (ch + 4) & 1) << 4;
                        }
                        half[0] += lo * xq[4 * ch + t];
                        half[1] += hi * xq[16 + 4 * ch + t];
                    }
                if (L->kind == FLAT) {
                    acc[r] = fmaf((float)(half[0] + half[1] - x->c[ib]), f16_at(sc + 2 * r) * dx, acc[r]);
                    if (L->has_min) acc[r] = fmaf(f16_at(sc + 32 + 2 * r), x->s[ib], acc[r]);
                } else if (L->kind == KQ2) {
                    const float d = f16_at(hdr + 2 * r), dm = f16_at(hdr + 32 + 2 * r);
                    const uint8_t *sc = blk + L->sc_off;
                    acc[r] = fmaf((float)half[0], d * (float)sc[r] * dx, acc[r]);
                    acc[r] = fmaf((float)half[1], d * (float)sc[16 + r] * dx, acc[r]);
                    acc[r] = fmaf(-(dm * (float)sc[32 + r] * dx), (float)x->c[ib], acc[r]);
                    acc[r] = fmaf(-(dm * (float)sc[48 + r] * dx), (float)x->c2[ib], acc[r]);
                } else if (L->kind == KIQ) {
                    acc[r] = fmaf((float)(half[0] + half[1] - x->c[ib]), f16_at(hdr + 2 * r) * (float)(int8_t)blk[L->sc_off + r] * dx, acc[r]);
                } else if (L->kind == KQ4) {
                    acc[r] = fmaf((float)(half[0] + half[1]), f16_at(hdr + 2 * r) * (float)blk[L->sc_off + r] * dx, acc[r]);
                    acc[r] = fmaf(-(f16_at(hdr + 32 + 2 * r) * (float)blk[L->sc_off + 16 + r]), x->s[ib], acc[r]);
                } else {
                    const float d = f16_at(hdr + 2 * r);
                    acc[r] = fmaf((float)(half[0] - x->c[ib]), d * (float)(int8_t)blk[L->sc_off + r] * dx, acc[r]);
                    acc[r] = fmaf((float)(half[1] - x->c2[ib]), d * (float)(int8_t)blk[L->sc_off + 16 + r] * dx, acc[r]);
                }
            }
        }
        for (int r = 0; r < valid; r++) y[i * ldy + (size_t)r] = acc[r];
    }
}
