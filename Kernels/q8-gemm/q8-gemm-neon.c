/* int8 micro-kernels for AArch64, on the VNNI layout the x86 kernels share (per K quad, 16
 * channels × 4 bytes: one q register holds 4 channels' quads).
 *  - dotprod (SDOT by element): X is u8, SDOT is s8·s8, so X goes in as x − 128 and
 *    128·Σ_k w adds back exactly in the epilogue.
 *  - i8mm (USMMLA): two K quads of a channel pair zip into the 2×8 matrix USMMLA reads, two rows
 *    of X into the other; one instruction does 32 multiply-adds (SDOT by element: 16). */
#include "internal.h"

#if CONDENSE_ARM64
#include <math.h>
#include "vecmath-neon.h"

/* Raw int32 (tests) or y = act(sx·sw·(acc − zx·wsum) + bias) for one row of 16 columns. */
CONDENSE_INLINE void q8_row_out(int i, int nv, int32x4_t acc[4], const condense_q8_epilogue *ep) {
    if (ep->c) {
        int32_t tmp[16];
        for (int j = 0; j < 4; j++) vst1q_s32(tmp + 4 * j, acc[j]);
        for (int j = 0; j < nv; j++) ep->c[(size_t)i * ep->ldc + (size_t)j] = tmp[j];
        return;
    }
    float32x4_t v[4];
    if (nv == 16) {
        const int32x4_t zx = vdupq_n_s32(ep->zx[i]);
        const float32x4_t sx = vdupq_n_f32(ep->sx[i]);
        for (int j = 0; j < 4; j++) {
            const int32x4_t a = vmlsq_s32(acc[j], zx, vld1q_s32(ep->wsum + 4 * j));
            v[j] = vmulq_f32(vmulq_f32(sx, vld1q_f32(ep->sw + 4 * j)), vcvtq_f32_s32(a));
        }
        store_row_neon(4, v, 16, ep->y + (size_t)i * ep->ldy, CONDENSE_UK_FINAL, ep->bias, ep->act);
        return;
    }
    int32_t tmp[16];
    float f[16] = {0};
    for (int j = 0; j < 4; j++) vst1q_s32(tmp + 4 * j, acc[j]);
    for (int j = 0; j < nv; j++) f[j] = ep->sx[i] * ep->sw[j] * (float)(tmp[j] - ep->zx[i] * ep->wsum[j]);
    for (int j = 0; j < 4; j++) v[j] = vld1q_f32(f + 4 * j);
    store_row_neon(4, v, nv, ep->y + (size_t)i * ep->ldy, CONDENSE_UK_FINAL, ep->bias, ep->act);
}

/* Σ_k w of the tile's channels × 128: what x − 128 took away. */
CONDENSE_INLINE void add_128_wsum(int nv, int32x4_t acc[4], const int32_t *wsum) {
    int32_t t[16] = {0};
    for (int j = 0; j < nv; j++) t[j] = 128 * wsum[j];
    for (int j = 0; j < 4; j++) acc[j] = vaddq_s32(acc[j], vld1q_s32(t + 4 * j));
}

CONDENSE_INLINE CONDENSE_TARGET_DOTPROD void ukernel_sdot(const int MR, int nv, size_t kq, const uint8_t *a,
                                                          size_t lda, const int8_t *b, const condense_q8_epilogue *ep) {
    int32x4_t acc[4][4];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = vdupq_n_s32(0);
    const uint8x16_t bias128 = vdupq_n_u8(0x80);
    size_t q = 0;
    for (; q + 4 <= kq; q += 4) { /* four quads: one 16-byte load per row */
        int8x16_t ai[4];
        for (int i = 0; i < MR; i++) ai[i] = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(a + (size_t)i * lda + 4 * q), bias128));
        const int8_t *bq = b + q * 64;
#define STEP(L)                                                                   \
        {                                                                         \
            const int8x16_t b0 = vld1q_s8(bq + 64 * L), b1 = vld1q_s8(bq + 64 * L + 16); \
            const int8x16_t b2 = vld1q_s8(bq + 64 * L + 32), b3 = vld1q_s8(bq + 64 * L + 48); \
            for (int i = 0; i < MR; i++) {                                        \
                acc[i][0] = vdotq_laneq_s32(acc[i][0], b0, ai[i], L);             \
                acc[i][1] = vdotq_laneq_s32(acc[i][1], b1, ai[i], L);             \
                acc[i][2] = vdotq_laneq_s32(acc[i][2], b2, ai[i], L);             \
                acc[i][3] = vdotq_laneq_s32(acc[i][3], b3, ai[i], L);             \
            }                                                                     \
        }
        STEP(0) STEP(1) STEP(2) STEP(3)
#undef STEP
    }
    for (; q < kq; q++) {
        const int8_t *bq = b + q * 64;
        const int8x16_t b0 = vld1q_s8(bq), b1 = vld1q_s8(bq + 16), b2 = vld1q_s8(bq + 32), b3 = vld1q_s8(bq + 48);
        for (int i = 0; i < MR; i++) {
            uint32_t quad;
            __builtin_memcpy(&quad, a + (size_t)i * lda + 4 * q, 4);
            const int8x16_t ai = vreinterpretq_s8_u8(veorq_u8(vreinterpretq_u8_u32(vdupq_n_u32(quad)), bias128));
            acc[i][0] = vdotq_laneq_s32(acc[i][0], b0, ai, 0);
            acc[i][1] = vdotq_laneq_s32(acc[i][1], b1, ai, 0);
            acc[i][2] = vdotq_laneq_s32(acc[i][2], b2, ai, 0);
            acc[i][3] = vdotq_laneq_s32(acc[i][3], b3, ai, 0);
        }
    }
    for (int i = 0; i < MR; i++) {
        add_128_wsum(nv, acc[i], ep->wsum);
        q8_row_out(i, nv, acc[i], ep);
    }
}

CONDENSE_TARGET_DOTPROD void condense_q8_ukernel_4x16__dotprod(int mr, int nv, size_t kq, const uint8_t *a, size_t lda,
                                                               const void *b, const condense_q8_epilogue *ep) {
    switch (mr) {
    case 1: ukernel_sdot(1, nv, kq, a, lda, b, ep); break;
    case 2: ukernel_sdot(2, nv, kq, a, lda, b, ep); break;
    case 3: ukernel_sdot(3, nv, kq, a, lda, b, ep); break;
    case 4: ukernel_sdot(4, nv, kq, a, lda, b, ep); break;
    default: break;
    }
}

/* Eight bytes of a row of X at quad q (the second quad zero when it is past kq). */
CONDENSE_INLINE uint8x8_t load_x8(const uint8_t *row, size_t q, size_t kq) {
    if (q + 2 <= kq) return vld1_u8(row + 4 * q);
    uint8_t t[8] = {0};
    __builtin_memcpy(t, row + 4 * q, 4);
    return vld1_u8(t);
}

/* Rows (2p, 2p + 1) of the tile against 16 channels: acc[p][c] holds, for channels
 * (4⌊c/2⌋ + 2(c%2), +1), [row 2p·ch, row 2p·ch+1, row 2p+1·ch, row 2p+1·ch+1]. */
CONDENSE_INLINE CONDENSE_TARGET_I8MM void ukernel_mmla(const int MR, int nv, size_t kq, const uint8_t *a, size_t lda,
                                                       const int8_t *b, const condense_q8_epilogue *ep) {
    enum { P = 2 };
    const int pairs = (MR + 1) / 2;
    int32x4_t acc[P][8];
    for (int p = 0; p < pairs; p++)
        for (int c = 0; c < 8; c++) acc[p][c] = vdupq_n_s32(0);
    /* A missing odd row reads row 0 again; its results are dropped. */
    const uint8_t *rows[4];
    for (int i = 0; i < 4; i++) rows[i] = a + (size_t)(i < MR ? i : 0) * lda;
    for (size_t q = 0; q < kq; q += 2) {
        const int8_t *b0 = b + q * 64, *b1 = b0 + 64;
        int8x16_t bz[8];
        for (int c = 0; c < 4; c++) {
            const int32x4_t lo = vreinterpretq_s32_s8(vld1q_s8(b0 + 16 * c));
            const int32x4_t hi = q + 1 < kq ? vreinterpretq_s32_s8(vld1q_s8(b1 + 16 * c)) : vdupq_n_s32(0);
            bz[2 * c] = vreinterpretq_s8_s32(vzip1q_s32(lo, hi));
            bz[2 * c + 1] = vreinterpretq_s8_s32(vzip2q_s32(lo, hi));
        }
        for (int p = 0; p < pairs; p++) {
            const uint8x16_t ap = vcombine_u8(load_x8(rows[2 * p], q, kq), load_x8(rows[2 * p + 1], q, kq));
            for (int c = 0; c < 8; c++) acc[p][c] = vusmmlaq_s32(acc[p][c], ap, bz[c]);
        }
    }
    for (int p = 0; p < pairs; p++) {
        int32x4_t r0[4], r1[4];
        for (int c = 0; c < 4; c++) {
            const int64x2_t x = vreinterpretq_s64_s32(acc[p][2 * c]), y = vreinterpretq_s64_s32(acc[p][2 * c + 1]);
            r0[c] = vreinterpretq_s32_s64(vzip1q_s64(x, y));
            r1[c] = vreinterpretq_s32_s64(vzip2q_s64(x, y));
        }
        q8_row_out(2 * p, nv, r0, ep);
        if (2 * p + 1 < MR) q8_row_out(2 * p + 1, nv, r1, ep);
    }
}

CONDENSE_TARGET_I8MM void condense_q8_ukernel_4x16__i8mm(int mr, int nv, size_t kq, const uint8_t *a, size_t lda,
                                                         const void *b, const condense_q8_epilogue *ep) {
    switch (mr) {
    case 1: ukernel_mmla(1, nv, kq, a, lda, b, ep); break;
    case 2: ukernel_mmla(2, nv, kq, a, lda, b, ep); break;
    case 3: ukernel_mmla(3, nv, kq, a, lda, b, ep); break;
    case 4: ukernel_mmla(4, nv, kq, a, lda, b, ep); break;
    default: break;
    }
}

/* Per-row u8 quantization, the scalar rule vectorised: range over finite values (0 included),
 * round to nearest even, NaN to the zero point, saturate to 0…255. */
void condense_q8_quantize_rows__neon(const float *x, size_t m, size_t k, size_t lda, uint8_t *xq, size_t ldq,
                                     size_t k4, float *sx, int32_t *zx, const float *static_scale,
                                     const int32_t *static_zp) {
    for (size_t i = 0; i < m; i++) {
        const float *xi = x + i * lda;
        uint8_t *qi = xq + i * ldq;
        float s;
        int32_t z;
        if (static_scale) {
            s = *static_scale;
            z = *static_zp;
        } else {
            float32x4_t lo = vdupq_n_f32(0), hi = vdupq_n_f32(0);
            const float32x4_t inf = vdupq_n_f32(INFINITY);
            size_t c = 0;
            for (; c + 4 <= k; c += 4) {
                const float32x4_t v = vld1q_f32(xi + c);
                const uint32x4_t finite = vcltq_f32(vabsq_f32(v), inf); /* false for NaN too */
                lo = vbslq_f32(vandq_u32(finite, vcltq_f32(v, lo)), v, lo);
                hi = vbslq_f32(vandq_u32(finite, vcgtq_f32(v, hi)), v, hi);
            }
            float l = vminvq_f32(lo), h = vmaxvq_f32(hi);
            for (; c < k; c++) condense_q8_range_add(xi[c], &l, &h);
            condense_q8_range_params(l, h, &s, &z);
        }
        const float inv = 1.0f / s, zf = (float)z;
        const float32x4_t vinv = vdupq_n_f32(inv), vz = vdupq_n_f32(zf);
        const float32x4_t v0 = vdupq_n_f32(0), v255 = vdupq_n_f32(255);
        size_t c = 0;
        for (; c + 8 <= k; c += 8) {
            uint32x4_t u[2];
            for (int h = 0; h < 2; h++) {
                float32x4_t q = vaddq_f32(vrndnq_f32(vmulq_f32(vld1q_f32(xi + c + 4 * h), vinv)), vz);
                q = vbslq_f32(vceqq_f32(q, q), q, vz);         /* NaN → zero point */
                q = vminq_f32(vmaxq_f32(q, v0), v255);
                u[h] = vcvtq_u32_f32(q);
            }
            const uint16x8_t h16 = vcombine_u16(vmovn_u32(u[0]), vmovn_u32(u[1]));
            vst1_u8(qi + c, vmovn_u16(h16));
        }
        for (; c < k; c++) qi[c] = condense_q8_quantize_one(xi[c], inv, zf);
        for (c = k; c < k4; c++) qi[c] = 0;
        sx[i] = s;
        zx[i] = z;
    }
}
#endif
