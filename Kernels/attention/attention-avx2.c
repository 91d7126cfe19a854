/* Attention on AVX2 + F16C: the causal chunk. */
#include "attention-internal.h"

#if CONDENSE_X86
#include <math.h>
#include "vecmath-avx2.h"

/* AVX2 + F16C, hd % 8 == 0: the AVX-512 kernel's plan on 8 lanes. Scores: FMAs over the head
 * dimension and one horizontal sum per position; the vector exp; V accumulated for up to 2 heads
 * × 32 columns in the 16 ymm registers per pass over the rows. */
/* 8 elements e… (e % 8 == 0) of a cache row of type t (KV_*), as floats. */
CONDENSE_INLINE CONDENSE_TARGET_AVX2 __m256 kv_load_256(int t, const uint8_t *row, int e) {
    if (t == KV_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(row + 2 * (size_t)e)));
    if (t == KV_F32) return _mm256_loadu_ps((const float *)(const void *)row + e);
    const uint8_t *blk = row + (size_t)(e / 32) * (t == KV_Q8_0 ? 34 : 18);
    const __m256 d = _mm256_set1_ps(_mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(blk[0] | blk[1] << 8))));
    __m256i q;
    if (t == KV_Q8_0) {
        q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(blk + 2 + e % 32)));
    } else {
        __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)(blk + 2 + e % 16));
        if (e % 32 >= 16) b = _mm_srli_epi16(b, 4);
        q = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_and_si128(b, _mm_set1_epi8(15))), _mm256_set1_epi32(8));
    }
    return _mm256_mul_ps(_mm256_cvtepi32_ps(q), d);
}

/* q · k for one cache row, the lanes still to be summed; block types a block of 32 at a time,
 * their scale applied once to the block's partial dot (as the AVX-512 kernel does). */
CONDENSE_INLINE CONDENSE_TARGET_AVX2 __m256 krow_dot_256(int t, const float *qr, const uint8_t *kr, int hd) {
    if (t == KV_F32 || t == KV_F16) {
        __m256 acc = _mm256_mul_ps(_mm256_loadu_ps(qr), kv_load_256(t, kr, 0));
        for (int e = 8; e < hd; e += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(qr + e), kv_load_256(t, kr, e), acc);
        return acc;
    }
    const size_t bb = t == KV_Q8_0 ? 34 : 18;
    __m256 acc = _mm256_setzero_ps();
    for (int e = 0; e < hd; e += 32) {
        const uint8_t *blk = kr + (size_t)(e / 32) * bb;
        const __m256 d = _mm256_set1_ps(_mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(blk[0] | blk[1] << 8))));
        __m256 part = _mm256_setzero_ps();
        for (int j = 0; j < 4; j++) {
            __m256i k;
            if (t == KV_Q8_0) {
                k = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(blk + 2 + 8 * j)));
            } else {
                __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)(blk + 2 + 8 * (j % 2)));
                if (j >= 2) b = _mm_srli_epi16(b, 4);
                k = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_and_si128(b, _mm_set1_epi8(15))), _mm256_set1_epi32(8));
            }
            part = _mm256_fmadd_ps(_mm256_loadu_ps(qr + e + 8 * j), _mm256_cvtepi32_ps(k), part);
        }
        acc = _mm256_fmadd_ps(part, d, acc);
    }
    return acc;
}

CONDENSE_INLINE CONDENSE_TARGET_AVX2 float hsum_256(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

CONDENSE_INLINE CONDENSE_TARGET_AVX2 void pv_tile_256(const int NG, const int NV, int vt, const uint8_t *vh,
                                                      size_t row_bytes, size_t a, size_t n, const float *w, int e0,
                                                      float *o, int hd) {
    __m256 acc[2][4];
    for (int g = 0; g < NG; g++)
        for (int j = 0; j < NV; j++) acc[g][j] = _mm256_setzero_ps();
    for (size_t p = 0; p < n; p++) {
        const uint8_t *vr = vh + (a + p) * row_bytes;
        __m256 v[4];
        for (int j = 0; j < NV; j++) v[j] = kv_load_256(vt, vr, e0 + 8 * j);
        for (int g = 0; g < NG; g++) {
            const __m256 wg = _mm256_broadcast_ss(w + (size_t)g * n + p);
            for (int j = 0; j < NV; j++) acc[g][j] = _mm256_fmadd_ps(wg, v[j], acc[g][j]);
        }
    }
    for (int g = 0; g < NG; g++)
        for (int j = 0; j < NV; j++) _mm256_storeu_ps(o + (size_t)g * (size_t)hd + e0 + 8 * j, acc[g][j]);
}

CONDENSE_TARGET_AVX2 void condense_causal_chunk_avx2(const causal_args *A, const float *qg, const uint8_t *kh,
                                                   const uint8_t *vh, size_t a, size_t b, float *sc, float *m,
                                                   float *l, float *o) {
    const size_t n = b - a;
    const int hd = A->hd, G = A->group, kt = A->kt, vt = A->vt;
    for (int g = 0; g < G; g++) {
        const float *qr = qg + (size_t)g * (size_t)hd;
        float *s = sc + (size_t)g * n, mx = -INFINITY;
        for (size_t p = 0; p < n; p++) {
            s[p] = hsum_256(krow_dot_256(kt, qr, kh + (a + p) * A->k_row_bytes, hd)) * A->scale;
            mx = s[p] > mx ? s[p] : mx;
        }
        const __m256 vm = _mm256_set1_ps(mx);
        __m256 vsum = _mm256_setzero_ps();
        size_t p = 0;
        for (; p + 8 <= n; p += 8) {
            const __m256 e = exp_nonpos_256(_mm256_sub_ps(_mm256_loadu_ps(s + p), vm));
            _mm256_storeu_ps(s + p, e);
            vsum = _mm256_add_ps(vsum, e);
        }
        float sum = hsum_256(vsum);
        for (; p < n; p++) { s[p] = expf(s[p] - mx); sum += s[p]; }
        m[g] = mx;
        l[g] = sum;
    }
    for (int e0 = 0; e0 < hd; e0 += 32) {
        const int nv = hd - e0 >= 32 ? 4 : (hd - e0) / 8;
        for (int g0 = 0; g0 < G; g0 += 2) {
            const int ng = G - g0 >= 2 ? 2 : 1;
            const float *w = sc + (size_t)g0 * n;
            float *og = o + (size_t)g0 * (size_t)hd;
#define CONDENSE_PV(NG, NV) case (NG) * 8 + (NV): pv_tile_256(NG, NV, vt, vh, A->v_row_bytes, a, n, w, e0, og, hd); break;
            switch (ng * 8 + nv) {
                CONDENSE_PV(1, 1) CONDENSE_PV(1, 2) CONDENSE_PV(1, 3) CONDENSE_PV(1, 4)
                CONDENSE_PV(2, 1) CONDENSE_PV(2, 2) CONDENSE_PV(2, 3) CONDENSE_PV(2, 4)
            default: break;
            }
#undef CONDENSE_PV
        }
    }
}
#endif
