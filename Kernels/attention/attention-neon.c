/* Attention on AArch64 NEON: the encoder pair and the causal chunk. */
#include "attention-internal.h"

#if CONDENSE_ARM64
#include <math.h>
#include "vecmath-neon.h"

/* The AVX-512 pair's method in 4 lanes, d a multiple of 4: K transposed once per pair, scores of
 * one query as FMAs over keys, the shared vector exp. kt: d × l16 floats, s: l16 floats. */
void condense_attention_pair_neon(const float *q, const float *k, const float *v, size_t ld, float *out, size_t ldo,
                                size_t rows, int d, float scale, float *kt, float *s) {
    const size_t l4 = (rows + 3) / 4 * 4;
    for (int c = 0; c < d; c++) {
        float *dst = kt + (size_t)c * l4;
        for (size_t j = 0; j < rows; j++) dst[j] = k[j * ld + (size_t)c];
        for (size_t j = rows; j < l4; j++) dst[j] = 0;
    }
    for (size_t i = 0; i < rows; i++) {
        const float *qi = q + i * ld;
        float mx = -INFINITY;
        for (size_t j = 0; j < l4; j += 4) {
            float32x4_t acc = vdupq_n_f32(0.0f);
            for (int c = 0; c < d; c++) acc = vfmaq_n_f32(acc, vld1q_f32(kt + (size_t)c * l4 + j), qi[c]);
            vst1q_f32(s + j, vmulq_n_f32(acc, scale));
        }
        for (size_t j = 0; j < rows; j++) mx = s[j] > mx ? s[j] : mx;
        float32x4_t vsum = vdupq_n_f32(0.0f);
        size_t j = 0;
        for (; j + 4 <= rows; j += 4) {
            const float32x4_t e = exp_nonpos_neon(vsubq_f32(vld1q_f32(s + j), vdupq_n_f32(mx)));
            vst1q_f32(s + j, e);
            vsum = vaddq_f32(vsum, e);
        }
        float sum = vaddvq_f32(vsum);
        for (; j < rows; j++) { s[j] = expf(s[j] - mx); sum += s[j]; }
        const float inv = 1.0f / sum;
        float *o = out + i * ldo;
        for (int c = 0; c < d; c += 4) {
            float32x4_t acc = vdupq_n_f32(0.0f);
            for (size_t r = 0; r < rows; r++) acc = vfmaq_n_f32(acc, vld1q_f32(v + r * ld + (size_t)c), s[r]);
            vst1q_f32(o + c, vmulq_n_f32(acc, inv));
        }
    }
}

/* 4 elements e… (e % 4 == 0) of a cache row of type t (KV_*), as floats. */
CONDENSE_INLINE float32x4_t kv_load_neon(int t, const uint8_t *row, int e) {
    if (t == KV_F16) return vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(row + 2 * (size_t)e)));
    if (t == KV_F32) return vld1q_f32((const float *)(const void *)row + e);
    const uint8_t *blk = row + (size_t)(e / 32) * (t == KV_Q8_0 ? 34 : 18);
    const float d = condense_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
    int32_t v[4];
    for (int j = 0; j < 4; j++) {
        const int c = e % 32 + j;
        v[j] = t == KV_Q8_0 ? (int8_t)blk[2 + c] : (c < 16 ? blk[2 + c] & 15 : blk[2 + c - 16] >> 4) - 8;
    }
    return vmulq_n_f32(vcvtq_f32_s32(vld1q_s32(v)), d);
}

CONDENSE_INLINE void pv_tile_neon(const int NG, const int NV, int vt, const uint8_t *vh, size_t row_bytes, size_t a,
                                  size_t n, const float *w, int e0, float *o, int hd) {
    float32x4_t acc[2][8];
    for (int g = 0; g < NG; g++)
        for (int j = 0; j < NV; j++) acc[g][j] = vdupq_n_f32(0.0f);
    for (size_t p = 0; p < n; p++) {
        const uint8_t *vr = vh + (a + p) * row_bytes;
        float32x4_t v[8];
        for (int j = 0; j < NV; j++) v[j] = kv_load_neon(vt, vr, e0 + 4 * j);
        for (int g = 0; g < NG; g++) {
            const float wg = w[(size_t)g * n + p];
            for (int j = 0; j < NV; j++) acc[g][j] = vfmaq_n_f32(acc[g][j], v[j], wg);
        }
    }
    for (int g = 0; g < NG; g++)
        for (int j = 0; j < NV; j++) vst1q_f32(o + (size_t)g * (size_t)hd + e0 + 4 * j, acc[g][j]);
}

/* The AVX2 chunk in 4 lanes (hd % 4 == 0): scores by FMAs over the head dimension, the shared
 * vector exp, V accumulated for 2 heads × 32 columns in registers per pass over the positions. */
void condense_causal_chunk_neon(const causal_args *A, const float *qg, const uint8_t *kh, const uint8_t *vh, size_t a,
                              size_t b, float *sc, float *m, float *l, float *o) {
    const size_t n = b - a;
    const int hd = A->hd, G = A->group, kt = A->kt, vt = A->vt;
    for (int g = 0; g < G; g++) {
        const float *qr = qg + (size_t)g * (size_t)hd;
        float *s = sc + (size_t)g * n, mx = -INFINITY;
        for (size_t p = 0; p < n; p++) {
            const uint8_t *kr = kh + (a + p) * A->k_row_bytes;
            float32x4_t acc = vmulq_f32(vld1q_f32(qr), kv_load_neon(kt, kr, 0));
            for (int e = 4; e < hd; e += 4) acc = vfmaq_f32(acc, vld1q_f32(qr + e), kv_load_neon(kt, kr, e));
            s[p] = vaddvq_f32(acc) * A->scale;
            mx = s[p] > mx ? s[p] : mx;
        }
        const float32x4_t vm = vdupq_n_f32(mx);
        float32x4_t vsum = vdupq_n_f32(0.0f);
        size_t p = 0;
        for (; p + 4 <= n; p += 4) {
            const float32x4_t e = exp_nonpos_neon(vsubq_f32(vld1q_f32(s + p), vm));
            vst1q_f32(s + p, e);
            vsum = vaddq_f32(vsum, e);
        }
        float sum = vaddvq_f32(vsum);
        for (; p < n; p++) { s[p] = expf(s[p] - mx); sum += s[p]; }
        m[g] = mx;
        l[g] = sum;
    }
    for (int e0 = 0; e0 < hd; e0 += 32) {
        const int nv = hd - e0 >= 32 ? 8 : (hd - e0) / 4;
        for (int g0 = 0; g0 < G; g0 += 2) {
            const int ng = G - g0 >= 2 ? 2 : 1;
            const float *w = sc + (size_t)g0 * n;
            float *og = o + (size_t)g0 * (size_t)hd;
            if (ng == 2) pv_tile_neon(2, nv, vt, vh, A->v_row_bytes, a, n, w, e0, og, hd);
            else pv_tile_neon(1, nv, vt, vh, A->v_row_bytes, a, n, w, e0, og, hd);
        }
    }
}
#endif
