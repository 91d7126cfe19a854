/* GGUF block kernels on AVX2 (vpmaddubsw). */
#include "gguf-internal.h"

#if CONDENSE_X86
#include <immintrin.h>
#include <string.h>

/* AVX2 (no VNNI): one half of a group (8 rows, one ymm of dwords per chunk) per pass, MR ≤ 4
 * rows of X. u8 codes × s8 X with vpmaddubsw then vpmaddwd against ones: the int16 pair sums
 * cannot saturate for 4-, 5- and 6-bit codes (63·127·2 < 32767). Q8_0's stored codes are
 * q + 128, which would: they are flipped back to s8 and multiplied as |q| × sign(x, q) (at most
 * 128·127·2), and the dot is then Σ q·qx itself, so its o·Σqx term is not subtracted. The float
 * steps are the scalar kernel's, in its order: the results are bit-identical. */
#include "gguf-avx2.h"
CONDENSE_INLINE CONDENSE_TARGET_GGUF256 void group_half_avx2(const int MR, const layout *L, const uint8_t *gw,
                                                            const qx_rows *x, size_t i0, int half, float *y,
                                                            size_t ldy, int valid) {
    const int q4 = L->chunks == 4, kind = L->kind, q8 = !q4 || L->lut;   /* q8: signed codes, |q| × sign(x, q) */
    const __m256i lo4 = _mm256_set1_epi8(0x0F), top2 = _mm256_set1_epi8(0x30), b4 = _mm256_set1_epi8(0x10);
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)iq4nl_u8));
    __m256 acc[4];
    for (int ii = 0; ii < MR; ii++) acc[ii] = _mm256_setzero_ps();
    __m256 dsb = _mm256_setzero_ps(), msb = _mm256_setzero_ps();
    for (size_t b = 0; b < x->nb; b++) {
        const uint8_t *blk = block_at(L, gw, b);
        __m256i s0[4], s1[4];
        for (int ii = 0; ii < MR; ii++) s0[ii] = s1[ii] = _mm256_setzero_si256();
        __m256i h0 = _mm256_setzero_si256(), h1 = _mm256_setzero_si256();
        const int h2 = kind == KQ6 && L->h2;
        if (q4 && (L->hbits || h2)) h0 = _mm256_loadu_si256((const __m256i *)(blk + 256 + 32 * half));
        if (h2) h1 = _mm256_loadu_si256((const __m256i *)(blk + 320 + 32 * half));
        for (int ch = 0; ch < 4; ch++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(blk + 64 * ch + 32 * half));
            __m256i lo, hi;
            if (q4) {
                lo = _mm256_and_si256(v, lo4);
                hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
                if (L->lut) {   /* IQ4_NL: the levels themselves (s8), as Q8_0's flipped codes */
                    lo = _mm256_xor_si256(_mm256_shuffle_epi8(lut, lo), flip);
                    hi = _mm256_xor_si256(_mm256_shuffle_epi8(lut, hi), flip);
                }
                if (L->hbits) {   /* fifth bits: bit ch of each byte for the low nibbles, ch + 4 for the high */
                    const __m128i sl = _mm_cvtsi32_si128(4 - ch), sr = _mm_cvtsi32_si128(ch);
                    lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_sll_epi16(h0, sl), b4));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_srl_epi16(h0, sr), b4));
                }
                if (h2) {   /* high bits into bits 4–5 (see q6_hshift) */
                    const __m256i h = ch < 2 ? h0 : h1;
                    if (ch % 2 == 0) {
                        lo = _mm256_or_si256(lo, _mm256_and_si256(h, top2));
                        hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(h, 4), top2));
                    } else {
                        lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_srli_epi16(h, 2), top2));
                        hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(h, 2), top2));
                    }
                }
            } else {
                lo = _mm256_xor_si256(v, flip);
                hi = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk + 64 * (ch + 4) + 32 * half)), flip);
            }
            for (int ii = 0; ii < MR; ii++) {
                const int32_t *xd = (const int32_t *)(const void *)(x->q + (i0 + (size_t)ii) * x->k + b * 32);
                const __m256i xa = _mm256_set1_epi32(xd[ch]), xb = _mm256_set1_epi32(xd[ch + 4]);
                if (q8) {
                    s0[ii] = _mm256_add_epi32(s0[ii], dot4_u8s8(_mm256_abs_epi8(lo), _mm256_sign_epi8(xa, lo)));
                    s1[ii] = _mm256_add_epi32(s1[ii], dot4_u8s8(_mm256_abs_epi8(hi), _mm256_sign_epi8(xb, hi)));
                } else {
                    s0[ii] = _mm256_add_epi32(s0[ii], dot4_u8s8(lo, xa));
                    s1[ii] = _mm256_add_epi32(s1[ii], dot4_u8s8(hi, xb));
                }
            }
        }
        __m256 sc0, sc1 = _mm256_setzero_ps(), mw = _mm256_setzero_ps(), mw1 = _mm256_setzero_ps();
        if (kind == FLAT) {
            const uint8_t *sc = blk + flat_scales(L);
            sc0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sc + 16 * half)));
            if (L->has_min) mw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sc + 32 + 16 * half)));
        } else {
            if (b % 8 == 0) {
                const uint8_t *hdr = header_at(L, gw, b);
                dsb = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(hdr + 16 * half)));
                if (kind == KQ4 || kind == KQ2) msb = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(hdr + 32 + 16 * half)));
            }
            if (kind == KQ4) {
                sc0 = _mm256_mul_ps(dsb, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(blk + L->sc_off + 8 * half)))));
                mw = _mm256_mul_ps(msb, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(blk + L->sc_off + 16 + 8 * half)))));
            } else if (kind == KIQ) {
                sc0 = _mm256_mul_ps(dsb, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(blk + L->sc_off + 8 * half)))));
            } else if (kind == KQ2) {
                const uint8_t *sp = blk + L->sc_off + 8 * half;
                sc0 = _mm256_mul_ps(dsb, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)sp))));
                sc1 = _mm256_mul_ps(dsb, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sp + 16)))));
                mw = _mm256_mul_ps(msb, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sp + 32)))));
                mw1 = _mm256_mul_ps(msb, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sp + 48)))));
            } else {
                sc0 = _mm256_mul_ps(dsb, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(blk + L->sc_off + 8 * half)))));
                sc1 = _mm256_mul_ps(dsb, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(blk + L->sc_off + 16 + 8 * half)))));
            }
        }
        for (int ii = 0; ii < MR; ii++) {
            const size_t ib = (i0 + (size_t)ii) * x->nb + b;
            const __m256 dx = _mm256_set1_ps(x->d[ib]);
            if (kind == KQ2) {
                acc[ii] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0[ii]), _mm256_mul_ps(sc0, dx), acc[ii]);
                acc[ii] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1[ii]), _mm256_mul_ps(sc1, dx), acc[ii]);
                acc[ii] = _mm256_fnmadd_ps(_mm256_mul_ps(mw, dx), _mm256_set1_ps((float)x->c[ib]), acc[ii]);
                acc[ii] = _mm256_fnmadd_ps(_mm256_mul_ps(mw1, dx), _mm256_set1_ps((float)x->c2[ib]), acc[ii]);
                continue;
            }
            if (kind == KQ6) {
                acc[ii] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s0[ii], _mm256_set1_epi32(x->c[ib]))), _mm256_mul_ps(sc0, dx), acc[ii]);
                acc[ii] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s1[ii], _mm256_set1_epi32(x->c2[ib]))), _mm256_mul_ps(sc1, dx), acc[ii]);
                continue;
            }
            __m256i t = _mm256_add_epi32(s0[ii], s1[ii]);
            if (!q8) t = _mm256_sub_epi32(t, _mm256_set1_epi32(x->c[ib]));
            acc[ii] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_mul_ps(sc0, dx), acc[ii]);
            if (kind == KQ4) acc[ii] = _mm256_fnmadd_ps(mw, _mm256_set1_ps(x->s[ib]), acc[ii]);
            else if (L->has_min) acc[ii] = _mm256_fmadd_ps(mw, _mm256_set1_ps(x->s[ib]), acc[ii]);
        }
    }
    store_half_avx2(MR, acc, y, ldy, i0, half, valid);
}

CONDENSE_TARGET_GGUF256 void condense_gguf_group_avx2(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0,
                                               size_t m1, float *y, size_t ldy, int valid) {
    for (int half = 0; half < 2 && 8 * half < valid; half++) {
        size_t i = m0;
        for (; i + 4 <= m1; i += 4) group_half_avx2(4, L, gw, x, i, half, y, ldy, valid);
        switch (m1 - i) {
        case 3: group_half_avx2(3, L, gw, x, i, half, y, ldy, valid); break;
        case 2: group_half_avx2(2, L, gw, x, i, half, y, ldy, valid); break;
        case 1: group_half_avx2(1, L, gw, x, i, half, y, ldy, valid); break;
        default: break;
        }
    }
}

/* S24Q4 on AVX2 (no vpexpandb): per step and half group (8 rows × 4 columns), the 16 kept codes
 * become signed q = code − 8 and one pshufb places them; its control comes from the rows' 4-bit
 * masks through two 8-entry vpermd tables (one per high bit of the nibble) plus each row's slot
 * base 2r, and a pruned column's index has bit 7 set, so it reads 0. The dot is Σ q·qx itself
 * (sign trick, |q| ≤ 8), which is Σ code·qx − 8·Σ qx exactly: bit-identical to the other paths. */
#endif
