/* Attention on AVX-512: the encoder pair with K transposed once per pair, the causal chunk. */
#include "attention-internal.h"

#if CONDENSE_X86
#include <math.h>
#include "vecmath-avx512.h"

/* d a multiple of 16. kt: d × l16 floats, s: l16 floats (64-byte aligned). */
CONDENSE_TARGET_AVX512 void condense_attention_pair_avx512(const float *q, const float *k, const float *v, size_t ld,
                                                         float *out, size_t ldo, size_t rows, int d, float scale,
                                                         float *kt, float *s) {
    const size_t l16 = (rows + 15) / 16 * 16;
    for (int c = 0; c < d; c++) {
        float *dst = kt + (size_t)c * l16;
        for (size_t j = 0; j < rows; j++) dst[j] = k[j * ld + (size_t)c];
        for (size_t j = rows; j < l16; j++) dst[j] = 0;
    }
    const __mmask16 tail = (__mmask16)((rows % 16) ? (1u << (rows % 16)) - 1 : 0xFFFF);
    for (size_t i = 0; i < rows; i++) {
        const float *qi = q + i * ld;
        __m512 vmax = _mm512_set1_ps(-INFINITY);
        for (size_t j = 0; j < l16; j += 16) {
            __m512 acc = _mm512_setzero_ps();
            for (int c = 0; c < d; c++) acc = _mm512_fmadd_ps(_mm512_set1_ps(qi[c]), _mm512_load_ps(kt + (size_t)c * l16 + j), acc);
            acc = _mm512_mul_ps(acc, _mm512_set1_ps(scale));
            const __mmask16 m = j + 16 <= rows ? 0xFFFF : tail;
            _mm512_store_ps(s + j, acc);
            vmax = _mm512_mask_max_ps(vmax, m, vmax, acc);
        }
        const float mx = _mm512_reduce_max_ps(vmax);
        __m512 vsum = _mm512_setzero_ps();
        for (size_t j = 0; j < l16; j += 16) {
            const __mmask16 m = j + 16 <= rows ? 0xFFFF : tail;
            __m512 e = exp_nonpos_512(_mm512_sub_ps(_mm512_load_ps(s + j), _mm512_set1_ps(mx)));
            e = _mm512_maskz_mov_ps(m, e);
            _mm512_store_ps(s + j, e);
            vsum = _mm512_add_ps(vsum, e);
        }
        const float inv = 1.0f / _mm512_reduce_add_ps(vsum);
        float *o = out + i * ldo;
        for (int c = 0; c < d; c += 16) {
            __m512 acc = _mm512_setzero_ps();
            for (size_t j = 0; j < rows; j++) acc = _mm512_fmadd_ps(_mm512_set1_ps(s[j]), _mm512_loadu_ps(v + j * ld + (size_t)c), acc);
            _mm512_storeu_ps(o + c, _mm512_mul_ps(acc, _mm512_set1_ps(inv)));
        }
    }
}

/* 16 elements e… (e % 16 == 0) of a cache row of type t (KV_*), as floats. */
CONDENSE_INLINE CONDENSE_TARGET_AVX512 __m512 kv_load_512(int t, const uint8_t *row, int e) {
    if (t == KV_F16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(row + 2 * (size_t)e)));
    if (t == KV_F32) return _mm512_loadu_ps((const float *)(const void *)row + e);
    const uint8_t *blk = row + (size_t)(e / 32) * (t == KV_Q8_0 ? 34 : 18);
    const __m512 d = _mm512_set1_ps(_mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(blk[0] | blk[1] << 8))));
    __m512i q;
    if (t == KV_Q8_0) {
        q = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(blk + 2 + e % 32)));
    } else {
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(blk + 2));
        if (e % 32) b = _mm_srli_epi16(b, 4);
        q = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_and_si128(b, _mm_set1_epi8(15))), _mm512_set1_epi32(8));
    }
    return _mm512_mul_ps(_mm512_cvtepi32_ps(q), d);
}

/* r[j] = Σ lanes of a[j], j = 0…15: a transpose-and-add tree, about 3 instructions per vector
 * instead of a full horizontal sum each. */
CONDENSE_INLINE CONDENSE_TARGET_AVX512 __m512 hsum16_512(const __m512 *a) {
    __m512 s2[8], s4[4];
    for (int j = 0; j < 8; j++)   /* per 128-bit block: [a0+a2, b0+b2, a1+a3, b1+b3] of a = a[2j], b = a[2j+1] */
        s2[j] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * j], a[2 * j + 1]), _mm512_unpackhi_ps(a[2 * j], a[2 * j + 1]));
    for (int j = 0; j < 4; j++)   /* per block: the block sums of a[4j…4j+3] */
        s4[j] = _mm512_add_ps(_mm512_shuffle_ps(s2[2 * j], s2[2 * j + 1], 0x44), _mm512_shuffle_ps(s2[2 * j], s2[2 * j + 1], 0xEE));
    const __m512 x01 = _mm512_add_ps(_mm512_shuffle_f32x4(s4[0], s4[1], 0x88), _mm512_shuffle_f32x4(s4[0], s4[1], 0xDD));
    const __m512 x23 = _mm512_add_ps(_mm512_shuffle_f32x4(s4[2], s4[3], 0x88), _mm512_shuffle_f32x4(s4[2], s4[3], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(x01, x23, 0x88), _mm512_shuffle_f32x4(x01, x23, 0xDD));
}

/* Σ_p w[g][p]·v[p] for NG heads and NV vectors of 16 columns, accumulators in registers. */
CONDENSE_INLINE CONDENSE_TARGET_AVX512 void pv_tile_512(const int NG, const int NV, int vt, const uint8_t *vh,
                                                        size_t row_bytes, size_t a, size_t n, const float *w, int e0,
                                                        float *o, int hd) {
    __m512 acc[4][4];
    for (int g = 0; g < NG; g++)
        for (int j = 0; j < NV; j++) acc[g][j] = _mm512_setzero_ps();
    for (size_t p = 0; p < n; p++) {
        const uint8_t *vr = vh + (a + p) * row_bytes;
        __m512 v[4];
        for (int j = 0; j < NV; j++) v[j] = kv_load_512(vt, vr, e0 + 16 * j);
        for (int g = 0; g < NG; g++) {
            const __m512 wg = _mm512_set1_ps(w[(size_t)g * n + p]);
            for (int j = 0; j < NV; j++) acc[g][j] = _mm512_fmadd_ps(wg, v[j], acc[g][j]);
        }
    }
    for (int g = 0; g < NG; g++)
        for (int j = 0; j < NV; j++) _mm512_storeu_ps(o + (size_t)g * (size_t)hd + e0 + 16 * j, acc[g][j]);
}

/* acc + (qa · block elements 0…15 + qb · 16…31) · the block's scale, for one Q8_0 or Q4_0 block. */
CONDENSE_INLINE CONDENSE_TARGET_AVX512 __m512 kblock_dot_512(int t, __m512 qa, __m512 qb, const uint8_t *blk, __m512 acc) {
    const __m512 d = _mm512_set1_ps(_mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(blk[0] | blk[1] << 8))));
    __m512i k0, k1;
    if (t == KV_Q8_0) {
        k0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(blk + 2)));
        k1 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(blk + 18)));
    } else {
        const __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(blk + 2)), m = _mm_set1_epi8(15);
        k0 = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_and_si128(b, m)), _mm512_set1_epi32(8));
        k1 = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(b, 4), m)), _mm512_set1_epi32(8));
    }
    __m512 part = _mm512_mul_ps(qa, _mm512_cvtepi32_ps(k0));
    part = _mm512_fmadd_ps(qb, _mm512_cvtepi32_ps(k1), part);
    return _mm512_fmadd_ps(part, d, acc);
}

/* q · k for one cache row, the lanes still to be summed. Block types take a block of 32 at a time
 * and apply its scale once to the block's partial dot instead of to every element. */
CONDENSE_INLINE CONDENSE_TARGET_AVX512 __m512 krow_dot_512(int t, const float *qr, const uint8_t *kr, int hd) {
    if (t == KV_F32 || t == KV_F16) {
        __m512 acc = _mm512_mul_ps(_mm512_loadu_ps(qr), kv_load_512(t, kr, 0));
        for (int e = 16; e < hd; e += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(qr + e), kv_load_512(t, kr, e), acc);
        return acc;
    }
    const size_t bb = t == KV_Q8_0 ? 34 : 18;
    __m512 acc = _mm512_setzero_ps();
    for (int e = 0; e < hd; e += 32)
        acc = kblock_dot_512(t, _mm512_loadu_ps(qr + e), _mm512_loadu_ps(qr + e + 16), kr + (size_t)(e / 32) * bb, acc);
    return acc;
}

/* krow_dot_512 of 16 consecutive cache rows (t a constant where inlined): the head dimension
 * outside, so each 16 floats of q are loaded once for the 16 rows and the type test leaves the
 * loop; every row's products are summed in krow_dot_512's order. */
CONDENSE_INLINE CONDENSE_TARGET_AVX512 void rows16_dot_512(const int t, const float *qr, const uint8_t *k0, size_t row_bytes,
                                                           int hd, __m512 *acc) {
    if (t == KV_Q8_0 || t == KV_Q4_0) {   /* per block of 32: krow_dot_512's steps, row by row */
        const size_t bb = t == KV_Q8_0 ? 34 : 18;
        for (int j = 0; j < 16; j++) acc[j] = _mm512_setzero_ps();
        for (int e = 0; e < hd; e += 32) {
            const __m512 qa = _mm512_loadu_ps(qr + e), qb = _mm512_loadu_ps(qr + e + 16);
            for (int j = 0; j < 16; j++) acc[j] = kblock_dot_512(t, qa, qb, k0 + (size_t)j * row_bytes + (size_t)(e / 32) * bb, acc[j]);
        }
        return;
    }
    const __m512 q0 = _mm512_loadu_ps(qr);
    for (int j = 0; j < 16; j++) acc[j] = _mm512_mul_ps(q0, kv_load_512(t, k0 + (size_t)j * row_bytes, 0));
    for (int e = 16; e < hd; e += 16) {
        const __m512 q = _mm512_loadu_ps(qr + e);
        for (int j = 0; j < 16; j++) acc[j] = _mm512_fmadd_ps(q, kv_load_512(t, k0 + (size_t)j * row_bytes, e), acc[j]);
    }
}

/* The same with hd % 16 == 0: scores 16 positions at a time (FMAs over the head dimension, one
 * transpose-and-add for the 16 sums), the shared vector exp, and V accumulated for up to 4 heads
 * × 64 columns in registers per pass over the rows. */
CONDENSE_TARGET_AVX512 void condense_causal_chunk_avx512(const causal_args *A, const float *qg, const uint8_t *kh,
                                                       const uint8_t *vh, size_t a, size_t b, float *sc, float *m,
                                                       float *l, float *o) {
    const size_t n = b - a;
    const int hd = A->hd, G = A->group, kt = A->kt, vt = A->vt;
    const __m512 vscale = _mm512_set1_ps(A->scale);
    for (int g = 0; g < G; g++) {
        const float *qr = qg + (size_t)g * (size_t)hd;
        float *s = sc + (size_t)g * n;
        size_t p = 0;
        for (; p + 16 <= n; p += 16) {
            __m512 acc[16];
            const uint8_t *k0 = kh + (a + p) * A->k_row_bytes;
            if (kt == KV_F16) rows16_dot_512(KV_F16, qr, k0, A->k_row_bytes, hd, acc);
            else if (kt == KV_F32) rows16_dot_512(KV_F32, qr, k0, A->k_row_bytes, hd, acc);
            else if (kt == KV_Q8_0) rows16_dot_512(KV_Q8_0, qr, k0, A->k_row_bytes, hd, acc);
            else rows16_dot_512(KV_Q4_0, qr, k0, A->k_row_bytes, hd, acc);
            _mm512_storeu_ps(s + p, _mm512_mul_ps(hsum16_512(acc), vscale));
        }
        for (; p < n; p++) {
            s[p] = _mm512_reduce_add_ps(krow_dot_512(kt, qr, kh + (a + p) * A->k_row_bytes, hd)) * A->scale;
        }
        __m512 vmx = _mm512_set1_ps(-INFINITY);
        for (p = 0; p < n; p += 16) {
            const __mmask16 k = n - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - p)) - 1);
            vmx = _mm512_mask_max_ps(vmx, k, vmx, _mm512_maskz_loadu_ps(k, s + p));
        }
        const float mx = _mm512_reduce_max_ps(vmx);
        const __m512 vm = _mm512_set1_ps(mx);
        __m512 vsum = _mm512_setzero_ps();
        for (p = 0; p < n; p += 16) {
            const __mmask16 k = n - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - p)) - 1);
            const __m512 e = _mm512_maskz_mov_ps(k, exp_nonpos_512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + p), vm)));
            _mm512_mask_storeu_ps(s + p, k, e);
            vsum = _mm512_add_ps(vsum, e);
        }
        m[g] = mx;
        l[g] = _mm512_reduce_add_ps(vsum);
    }
    for (int e0 = 0; e0 < hd; e0 += 64) {
        const int nv = hd - e0 >= 64 ? 4 : (hd - e0) / 16;
        for (int g0 = 0; g0 < G; g0 += 4) {
            const int ng = G - g0 >= 4 ? 4 : G - g0;
            const float *w = sc + (size_t)g0 * n;
            float *og = o + (size_t)g0 * (size_t)hd;
#define CONDENSE_PV(NG, NV) case (NG) * 8 + (NV): pv_tile_512(NG, NV, vt, vh, A->v_row_bytes, a, n, w, e0, og, hd); break;
            switch (ng * 8 + nv) {
                CONDENSE_PV(1, 1) CONDENSE_PV(1, 2) CONDENSE_PV(1, 3) CONDENSE_PV(1, 4)
                CONDENSE_PV(2, 1) CONDENSE_PV(2, 2) CONDENSE_PV(2, 3) CONDENSE_PV(2, 4)
                CONDENSE_PV(3, 1) CONDENSE_PV(3, 2) CONDENSE_PV(3, 3) CONDENSE_PV(3, 4)
                CONDENSE_PV(4, 1) CONDENSE_PV(4, 2) CONDENSE_PV(4, 3) CONDENSE_PV(4, 4)
            default: break;
            }
#undef CONDENSE_PV
        }
    }
}
#endif
