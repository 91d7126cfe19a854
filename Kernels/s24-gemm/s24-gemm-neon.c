/* 2:4 kernels for AArch64 Advanced SIMD.
 *  - dot (few rows of X): per 8 columns, the row's metadata byte picks a TBL index vector that
 *    gathers its 4 kept X values out of the two X registers (no gather instruction exists), then
 *    one FMA with the row's 4 stored values: half the FMAs of dense, the compact weight read once.
 *  - bucket (8 rows and up): s24-bucket.h's method with 4-lane vectors: X transposed into a slab,
 *    rows sorted per group by pattern so each pattern's two X columns are registers named in code. */
#include "sparse.h"

#if CONDENSE_ARM64
#include <arm_neon.h>
#include <pthread.h>

/* byte m (two nibble masks, columns 0-3 and 4-7) → the bytes of the kept columns' floats. */
static uint8_t lut[256][16];
static pthread_once_t lut_once = PTHREAD_ONCE_INIT;
static void build_lut(void) {
    for (int m = 0; m < 256; m++) {
        int slot = 0;
        for (int c = 0; c < 8 && slot < 4; c++)
            if ((m >> c) & 1) {
                for (int b = 0; b < 4; b++) lut[m][4 * slot + b] = (uint8_t)(4 * c + b);
                slot++;
            }
        for (; slot < 4; slot++) /* not a valid 2:4 byte: gather zeros (index past the table) */
            for (int b = 0; b < 4; b++) lut[m][4 * slot + b] = 0xFF;
    }
}

/* MB rows of X against rows [n0, n1) of W. */
CONDENSE_INLINE void s24_dot_rows(const int MB, const condense_s24_packed *w, size_t n0, size_t n1, const float *x,
                                  size_t lda, float *y, size_t ldy) {
    const size_t k = w->k, bytes = w->k16 / 8, full = k / 8;
    /* The last partial 8 columns come from a zero-padded copy: never read X past its row. */
    float tail[4][8];
    for (int i = 0; i < MB; i++)
        for (size_t c = 0; c < 8; c++) tail[i][c] = full * 8 + c < k ? x[(size_t)i * lda + full * 8 + c] : 0.0f;
    for (size_t r = n0; r < n1; r++) {
        const uint8_t *meta = w->meta + r * bytes;
        const float *val = w->values + r * (w->k16 / 2);
        float32x4_t acc[4][2];
        for (int i = 0; i < MB; i++) acc[i][0] = acc[i][1] = vdupq_n_f32(0.0f);
        size_t b = 0;
        for (; b + 2 <= full; b += 2) {
            const uint8x16_t i0 = vld1q_u8(lut[meta[b]]), i1 = vld1q_u8(lut[meta[b + 1]]);
            const float32x4_t v0 = vld1q_f32(val + 4 * b), v1 = vld1q_f32(val + 4 * b + 4);
            for (int i = 0; i < MB; i++) {
                const uint8_t *xi = (const uint8_t *)(x + (size_t)i * lda + 8 * b);
                const uint8x16x2_t t0 = {{vld1q_u8(xi), vld1q_u8(xi + 16)}};
                const uint8x16x2_t t1 = {{vld1q_u8(xi + 32), vld1q_u8(xi + 48)}};
                acc[i][0] = vfmaq_f32(acc[i][0], v0, vreinterpretq_f32_u8(vqtbl2q_u8(t0, i0)));
                acc[i][1] = vfmaq_f32(acc[i][1], v1, vreinterpretq_f32_u8(vqtbl2q_u8(t1, i1)));
            }
        }
        for (; b < bytes && b <= full; b++) { /* bytes past `full` are padding: stored values zero */
            const uint8x16_t ib = vld1q_u8(lut[meta[b]]);
            const float32x4_t vb = vld1q_f32(val + 4 * b);
            for (int i = 0; i < MB; i++) {
                const uint8_t *xi = b < full ? (const uint8_t *)(x + (size_t)i * lda + 8 * b) : (const uint8_t *)tail[i];
                const uint8x16x2_t t = {{vld1q_u8(xi), vld1q_u8(xi + 16)}};
                acc[i][0] = vfmaq_f32(acc[i][0], vb, vreinterpretq_f32_u8(vqtbl2q_u8(t, ib)));
            }
        }
        for (int i = 0; i < MB; i++) y[(size_t)i * ldy + r] = vaddvq_f32(vaddq_f32(acc[i][0], acc[i][1]));
    }
}

void condense_s24_dot__neon(const condense_s24_packed *w, size_t n0, size_t n1, size_t mb, const float *x, size_t lda,
                            float *y, size_t ldy) {
    pthread_once(&lut_once, build_lut);
    for (size_t i = 0; i < mb; i += 4) {
        const float *xi = x + i * lda;
        float *yi = y + i * ldy;
        switch (mb - i < 4 ? mb - i : 4) {
        case 1: s24_dot_rows(1, w, n0, n1, xi, lda, yi, ldy); break;
        case 2: s24_dot_rows(2, w, n0, n1, xi, lda, yi, ldy); break;
        case 3: s24_dot_rows(3, w, n0, n1, xi, lda, yi, ldy); break;
        default: s24_dot_rows(4, w, n0, n1, xi, lda, yi, ldy); break;
        }
    }
}

/* Patterns in the packer's order: (0,1) (0,2) (0,3) (1,2) (1,3) (2,3). */
#define PA(p) ((p) < 3 ? 0 : (p) < 5 ? 1 : 2)
#define PB(p) ((p) == 0 ? 1 : (p) == 1 || (p) == 3 ? 2 : 3)

/* One tile against V vectors of 4 X rows (mp = 4V); yt receives rows × mp floats. */
CONDENSE_INLINE void bucket_tile(const int V, const condense_s24_packed *w, size_t t, const float *xt,
                                 float *restrict yt) {
    const size_t mp = 4 * (size_t)V, nt = w->bucket_rows_per_tile, r0 = t * nt;
    const size_t rows = w->n - r0 < nt ? w->n - r0 : nt, G = w->groups;
    for (size_t i = 0; i < rows * mp; i += 4) vst1q_f32(yt + i, vdupq_n_f32(0.0f));
    const uint16_t *restrict cnt = w->bucket_count + t * G * 6;
    const uint16_t *restrict rw = w->bucket_row + r0 * G;
    const float *restrict vl = w->bucket_values + 2 * r0 * G;
    for (size_t g = 0; g < G; g++) {
        float32x4_t xv[4][8];
        for (int i = 0; i < 4; i++)
            for (int v = 0; v < V; v++) xv[i][v] = vld1q_f32(xt + (4 * g + (size_t)i) * mp + 4 * (size_t)v);
        for (int p = 0; p < 6; p++) {
            const size_t c = cnt[g * 6 + (size_t)p];
            for (size_t i = 0; i < c; i++) {
                float *restrict yr = yt + (size_t)rw[i] * mp;
                const float w0 = vl[2 * i], w1 = vl[2 * i + 1];
                for (int v = 0; v < V; v++) {
                    float32x4_t acc = vld1q_f32(yr + 4 * v);
                    acc = vfmaq_n_f32(acc, xv[PA(p)][v], w0);
                    acc = vfmaq_n_f32(acc, xv[PB(p)][v], w1);
                    vst1q_f32(yr + 4 * v, acc);
                }
            }
            rw += c;
            vl += 2 * c;
        }
    }
}

/* X rows [0, mv), columns [k0, k1) into xt[k][mp]; rows past mv and columns past k are zero. */
void condense_s24_bucket_pack_x__neon(const float *x, size_t lda, size_t mv, size_t mp, size_t k, size_t k0,
                                      size_t k1, float *xt) {
    size_t kk = k0;
    if (mv == mp) /* 4×4 transposes while whole blocks of columns remain */
        for (; kk + 4 <= k1 && kk + 4 <= k; kk += 4)
            for (size_t i = 0; i < mp; i += 4) {
                const float32x4_t r0 = vld1q_f32(x + i * lda + kk), r1 = vld1q_f32(x + (i + 1) * lda + kk);
                const float32x4_t r2 = vld1q_f32(x + (i + 2) * lda + kk), r3 = vld1q_f32(x + (i + 3) * lda + kk);
                const float32x4_t t0 = vtrn1q_f32(r0, r1), t1 = vtrn2q_f32(r0, r1);
                const float32x4_t t2 = vtrn1q_f32(r2, r3), t3 = vtrn2q_f32(r2, r3);
                float *d = xt + kk * mp + i;
                vst1q_f32(d, vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2))));
                vst1q_f32(d + mp, vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3))));
                vst1q_f32(d + 2 * mp, vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2))));
                vst1q_f32(d + 3 * mp, vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3))));
            }
    for (; kk < k1; kk++)
        for (size_t i = 0; i < mp; i++) xt[kk * mp + i] = i < mv && kk < k ? x[i * lda + kk] : 0.0f;
}

void condense_s24_bucket__neon(const condense_s24_packed *w, size_t t0, size_t t1, const float *xt, size_t mv,
                               size_t mp, float *yt, float *y, size_t ldy) {
    for (size_t t = t0; t < t1; t++) {
        switch (mp / 4) {
        case 2: bucket_tile(2, w, t, xt, yt); break;
        case 4: bucket_tile(4, w, t, xt, yt); break;
        case 6: bucket_tile(6, w, t, xt, yt); break;
        default: bucket_tile(8, w, t, xt, yt); break;
        }
        const size_t r0 = t * w->bucket_rows_per_tile;
        const size_t rows = w->n - r0 < w->bucket_rows_per_tile ? w->n - r0 : w->bucket_rows_per_tile;
        for (size_t i = 0; i < mv; i++) /* Y^T back into rows of Y (row-major writes) */
            for (size_t r = 0; r < rows; r++) y[i * ldy + r0 + r] = yt[r * mp + i];
    }
}
#endif
