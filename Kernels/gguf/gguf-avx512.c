/* GGUF block kernels on AVX-512 VNNI. */
#include "gguf-internal.h"

#if CONDENSE_X86
#include <immintrin.h>
#include <string.h>

#define CONDENSE_TARGET_GGUF512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")))

CONDENSE_TARGET_GGUF512 void condense_gguf_quantize_block_avx512(const float *x, int8_t *q, float *d, int32_t *sum) {
    const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
    const __m512 a = _mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1));
    const float amax = _mm512_reduce_max_ps(a);
    const __m512 id = _mm512_set1_ps(amax != 0 ? 127.0f / amax : 0.0f);
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, id)), q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, id));
    _mm_storeu_si128((__m128i *)q, _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtepi32_epi8(q1));
    *d = amax / 127.0f;
    sum[0] = _mm512_reduce_add_epi32(q0);
    sum[1] = _mm512_reduce_add_epi32(q1);
}

/* MR rows of X at once share the unpacked weights of each block; two integer accumulators per
 * row halve the vpdpbusd dependency chain. 8 rows (a continuous-batching decode step of 8
 * streams in one tile) against 4, interleaved runs of bench generate: pp8 880–1015 against
 * 863–876 tok/s, pp512 998–1052 against 894–925. */
#ifndef GGUF_MR
#define GGUF_MR 12
#endif
/* Prefetch every line of the group-block this many blocks ahead. Measured on the SmolLM2 decode
 * (tg128, 2 threads, interleaved runs): prefetching 2 of a Q4_1 group-block's 5 lines gave
 * 18–23 GB/s of weights, all 5 gave 24.4–26.6 GB/s at distances 4, 16 and 48 alike. */
#define GGUF_PREFETCH 16
CONDENSE_INLINE CONDENSE_TARGET_GGUF512 void group_rows_avx512(const int MR, const layout *L, const uint8_t *gw,
                                                               const qx_rows *x, size_t i0, float *y, size_t ldy,
                                                               __mmask16 mask) {
    const int q4 = L->chunks == 4, kind = L->kind;
    const size_t span = kind == FLAT ? L->gb : L->kb;   /* prefetch stride (K-quants: the header is skipped over) */
    const __m512i lo4 = _mm512_set1_epi8(0x0F), top2 = _mm512_set1_epi8(0x30);
    __m512 acc[GGUF_MR];
    for (int ii = 0; ii < MR; ii++) acc[ii] = _mm512_setzero_ps();
    __m512 dsb = _mm512_setzero_ps(), msb = _mm512_setzero_ps();   /* K-quants: the super-block's d and dmin */
    for (size_t b = 0; b < x->nb; b++) {
        const uint8_t *blk = block_at(L, gw, b);
        for (size_t off = 0; off < span; off += 64) _mm_prefetch((const char *)(blk + GGUF_PREFETCH * span + off), _MM_HINT_T0);
        __m512i w[8];
        if (q4) {
            for (int ch = 0; ch < 4; ch++) {
                const __m512i v = _mm512_loadu_si512(blk + 64 * ch);
                w[ch] = _mm512_and_si512(v, lo4);
                w[4 + ch] = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
            }
            if (L->hbits) {   /* fifth bits: bit ch of each byte into bit 4 */
                const __m512i h = _mm512_loadu_si512(blk + 256), b4 = _mm512_set1_epi8(0x10);
                w[0] = _mm512_or_si512(w[0], _mm512_and_si512(_mm512_slli_epi16(h, 4), b4));
                w[1] = _mm512_or_si512(w[1], _mm512_and_si512(_mm512_slli_epi16(h, 3), b4));
                w[2] = _mm512_or_si512(w[2], _mm512_and_si512(_mm512_slli_epi16(h, 2), b4));
                w[3] = _mm512_or_si512(w[3], _mm512_and_si512(_mm512_slli_epi16(h, 1), b4));
                w[4] = _mm512_or_si512(w[4], _mm512_and_si512(h, b4));
                w[5] = _mm512_or_si512(w[5], _mm512_and_si512(_mm512_srli_epi16(h, 1), b4));
                w[6] = _mm512_or_si512(w[6], _mm512_and_si512(_mm512_srli_epi16(h, 2), b4));
                w[7] = _mm512_or_si512(w[7], _mm512_and_si512(_mm512_srli_epi16(h, 3), b4));
            }
            if (L->lut) {   /* IQ4_NL: levels + 128 */
                const __m512i t = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)iq4nl_u8));
                for (int j = 0; j < 8; j++) w[j] = _mm512_shuffle_epi8(t, w[j]);
            }
            if (kind == KQ6 && L->h2) {   /* high bits into bits 4–5 (see q6_hshift) */
                const __m512i h0 = _mm512_loadu_si512(blk + 256), h1 = _mm512_loadu_si512(blk + 320);
                w[0] = _mm512_or_si512(w[0], _mm512_and_si512(h0, top2));
                w[1] = _mm512_or_si512(w[1], _mm512_and_si512(_mm512_srli_epi16(h0, 2), top2));
                w[4] = _mm512_or_si512(w[4], _mm512_and_si512(_mm512_slli_epi16(h0, 4), top2));
                w[5] = _mm512_or_si512(w[5], _mm512_and_si512(_mm512_slli_epi16(h0, 2), top2));
                w[2] = _mm512_or_si512(w[2], _mm512_and_si512(h1, top2));
                w[3] = _mm512_or_si512(w[3], _mm512_and_si512(_mm512_srli_epi16(h1, 2), top2));
                w[6] = _mm512_or_si512(w[6], _mm512_and_si512(_mm512_slli_epi16(h1, 4), top2));
                w[7] = _mm512_or_si512(w[7], _mm512_and_si512(_mm512_slli_epi16(h1, 2), top2));
            }
        } else {
            for (int ch = 0; ch < 8; ch++) w[ch] = _mm512_loadu_si512(blk + 64 * ch);
        }
        /* Per-row scales of this block: s0 (elements 0…15, or all), s1 (16…31) and the min. */
        __m512 sc0, sc1 = _mm512_setzero_ps(), mw = _mm512_setzero_ps(), mw1 = _mm512_setzero_ps();
        if (kind == FLAT) {
            const uint8_t *sc = blk + flat_scales(L);
            sc0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)sc));
            if (L->has_min) mw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sc + 32)));
        } else {
            if (b % 8 == 0) {
                const uint8_t *hdr = header_at(L, gw, b);
                dsb = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)hdr));
                if (kind == KQ4 || kind == KQ2) msb = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(hdr + 32)));
            }
            if (kind == KQ4) {
                sc0 = _mm512_mul_ps(dsb, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(blk + L->sc_off)))));
                mw = _mm512_mul_ps(msb, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(blk + L->sc_off + 16)))));
            } else if (kind == KIQ) {
                sc0 = _mm512_mul_ps(dsb, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + L->sc_off)))));
            } else if (kind == KQ2) {
                sc0 = _mm512_mul_ps(dsb, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(blk + L->sc_off)))));
                sc1 = _mm512_mul_ps(dsb, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(blk + L->sc_off + 16)))));
                mw = _mm512_mul_ps(msb, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(blk + L->sc_off + 32)))));
                mw1 = _mm512_mul_ps(msb, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(blk + L->sc_off + 48)))));
            } else {
                sc0 = _mm512_mul_ps(dsb, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + L->sc_off)))));
                sc1 = _mm512_mul_ps(dsb, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + L->sc_off + 16)))));
            }
        }
        for (int ii = 0; ii < MR; ii++) {
            const size_t i = i0 + (size_t)ii, ib = i * x->nb + b;
            const int32_t *xd = (const int32_t *)(const void *)(x->q + i * x->k + b * 32);
            /* w[ch] pairs with x dword ch (Q4: low nibbles are elements 4ch…, high ones 16 + 4ch…;
             * Q8_0: elements 4ch…): s0 sums elements 0…15, s1 16…31. */
            const __m512 dx = _mm512_set1_ps(x->d[ib]);
            if (kind != KQ6 && kind != KQ2) {
                /* One sum of all 32 products, started at −o·Σ qx: no add or subtract after the dots. */
                __m512i s = _mm512_set1_epi32(x->c2[ib]), t = _mm512_setzero_si512();   /* c2 = −c here */
                for (int ch = 0; ch < 4; ch++) {
                    s = _mm512_dpbusd_epi32(s, w[ch], _mm512_set1_epi32(xd[ch]));
                    t = _mm512_dpbusd_epi32(t, w[ch + 4], _mm512_set1_epi32(xd[ch + 4]));
                }
                s = _mm512_add_epi32(s, t);
                acc[ii] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(sc0, dx), acc[ii]);
                if (kind == KQ4) acc[ii] = _mm512_fnmadd_ps(mw, _mm512_set1_ps(x->s[ib]), acc[ii]);
                else if (L->has_min) acc[ii] = _mm512_fmadd_ps(mw, _mm512_set1_ps(x->s[ib]), acc[ii]);
                continue;
            }
            __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
            for (int ch = 0; ch < 4; ch++) {
                s0 = _mm512_dpbusd_epi32(s0, w[ch], _mm512_set1_epi32(xd[ch]));
                s1 = _mm512_dpbusd_epi32(s1, w[ch + 4], _mm512_set1_epi32(xd[ch + 4]));
            }
            if (kind == KQ2) {
                acc[ii] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_mul_ps(sc0, dx), acc[ii]);
                acc[ii] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_mul_ps(sc1, dx), acc[ii]);
                acc[ii] = _mm512_fnmadd_ps(_mm512_mul_ps(mw, dx), _mm512_set1_ps((float)x->c[ib]), acc[ii]);
                acc[ii] = _mm512_fnmadd_ps(_mm512_mul_ps(mw1, dx), _mm512_set1_ps((float)x->c2[ib]), acc[ii]);
                continue;
            }
            if (kind == KQ6) {
                acc[ii] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(s0, _mm512_set1_epi32(x->c[ib]))), _mm512_mul_ps(sc0, dx), acc[ii]);
                acc[ii] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(s1, _mm512_set1_epi32(x->c2[ib]))), _mm512_mul_ps(sc1, dx), acc[ii]);
                continue;
            }
            const __m512i s = _mm512_sub_epi32(_mm512_add_epi32(s0, s1), _mm512_set1_epi32(x->c[ib]));
            acc[ii] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(sc0, dx), acc[ii]);
            if (kind == KQ4) acc[ii] = _mm512_fnmadd_ps(mw, _mm512_set1_ps(x->s[ib]), acc[ii]);
            else if (L->has_min) acc[ii] = _mm512_fmadd_ps(mw, _mm512_set1_ps(x->s[ib]), acc[ii]);
        }
    }
    for (int ii = 0; ii < MR; ii++) _mm512_mask_storeu_ps(y + (i0 + (size_t)ii) * ldy, mask, acc[ii]);
}

CONDENSE_TARGET_GGUF512 void condense_gguf_group_avx512(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0,
                                                 size_t m1, float *y, size_t ldy, int valid) {
    const __mmask16 mask = (__mmask16)(valid >= GROUP ? 0xFFFF : (1u << valid) - 1);
    size_t i = m0;
    for (; i + GGUF_MR <= m1; i += GGUF_MR) group_rows_avx512(GGUF_MR, L, gw, x, i, y, ldy, mask);
    switch (m1 - i) {
    case 11: group_rows_avx512(11, L, gw, x, i, y, ldy, mask); break;
    case 10: group_rows_avx512(10, L, gw, x, i, y, ldy, mask); break;
    case 9: group_rows_avx512(9, L, gw, x, i, y, ldy, mask); break;
    case 8: group_rows_avx512(8, L, gw, x, i, y, ldy, mask); break;
    case 7: group_rows_avx512(7, L, gw, x, i, y, ldy, mask); break;
    case 6: group_rows_avx512(6, L, gw, x, i, y, ldy, mask); break;
    case 5: group_rows_avx512(5, L, gw, x, i, y, ldy, mask); break;
    case 4: group_rows_avx512(4, L, gw, x, i, y, ldy, mask); break;
    case 3: group_rows_avx512(3, L, gw, x, i, y, ldy, mask); break;
    case 2: group_rows_avx512(2, L, gw, x, i, y, ldy, mask); break;
    case 1: group_rows_avx512(1, L, gw, x, i, y, ldy, mask); break;
    default: break;
    }
}

#endif
