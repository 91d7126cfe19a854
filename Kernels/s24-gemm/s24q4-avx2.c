/* The 2:4-int4 (S24Q4) block kernel on AVX2, without vpexpandb: a vpshufb per step places the
 * kept values (their layout: gguf-internal.h). It runs on the GGUF block driver (gguf-gemm.c),
 * registered in its table. */
#include "../gguf/gguf-avx2.h"

#if CONDENSE_X86
#include <string.h>

static const int32_t s24_ctl[16] = {
    /* nibble → 4 bytes: byte t = slot of column t (0 or 1) or 0x80 if pruned; only the 6
     * two-bit nibbles occur (the packer checks), the others read as all pruned. */
    (int32_t)0x80808080, (int32_t)0x80808080, (int32_t)0x80808080, (int32_t)0x80800100,
    (int32_t)0x80808080, (int32_t)0x80018000, (int32_t)0x80010080, (int32_t)0x80808080,
    (int32_t)0x80808080, (int32_t)0x01808000, (int32_t)0x01800080, (int32_t)0x80808080,
    (int32_t)0x01008080, (int32_t)0x80808080, (int32_t)0x80808080, (int32_t)0x80808080,
};
CONDENSE_INLINE CONDENSE_TARGET_GGUF256 void s24_half_avx2(const int MR, const uint8_t *gw, const qx_rows *x,
                                                          size_t i0, int rh, float *y, size_t ldy, int valid) {
    const __m256i lo_tab = _mm256_loadu_si256((const __m256i *)s24_ctl), hi_tab = _mm256_loadu_si256((const __m256i *)(s24_ctl + 8));
    const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    /* Row r's slot base 2r (r within its 128-bit lane's 4 rows reads bytes 2r…2r+1 of the broadcast codes). */
    const __m256i base = _mm256_setr_epi32(0x00000000, 0x02020202, 0x04040404, 0x06060606,
                                           0x08080808, 0x0A0A0A0A, 0x0C0C0C0C, 0x0E0E0E0E);
    const __m256i f15 = _mm256_set1_epi32(15), eight_i = _mm256_set1_epi32(8);
    const __m128i lo4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    __m256 acc[4];
    for (int ii = 0; ii < MR; ii++) acc[ii] = _mm256_setzero_ps();
    for (size_t b = 0; b < x->nb / 2; b++) {
        const uint8_t *blk = gw + b * S24_GB;
        _mm_prefetch((const char *)(blk + S24_PREFETCH * S24_GB), _MM_HINT_T0);
        const __m256 sc = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 384 + 16 * rh)));
        for (int h = 0; h < 2; h++) {
            __m256i s[4];
            for (int ii = 0; ii < MR; ii++) s[ii] = _mm256_setzero_si256();
            for (int st = 8 * h; st < 8 * h + 8; st++) {
                uint64_t m64;
                memcpy(&m64, blk + 256 + 8 * st, 8);
                const __m256i nib = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)(uint32_t)(m64 >> (32 * rh))), shifts), f15);
                const __m256i hi_sel = _mm256_cmpgt_epi32(nib, _mm256_set1_epi32(7));
                const __m256i ctl = _mm256_add_epi8(_mm256_blendv_epi8(_mm256_permutevar8x32_epi32(lo_tab, nib),
                                                                       _mm256_permutevar8x32_epi32(hi_tab, _mm256_sub_epi32(nib, eight_i)), hi_sel),
                                                    base);
                __m128i codes = _mm_loadu_si128((const __m128i *)(blk + 32 * (st / 2) + 16 * rh));
                if (st % 2) codes = _mm_srli_epi16(codes, 4);
                const __m128i q = _mm_sub_epi8(_mm_and_si128(codes, lo4), eight);
                const __m256i w = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(q), ctl);
                const __m256i aw = _mm256_abs_epi8(w);
                for (int ii = 0; ii < MR; ii++) {
                    const int32_t *xd = (const int32_t *)(const void *)(x->q + (i0 + (size_t)ii) * x->k + 64 * b + 32 * (size_t)h);
                    const __m256i xv = _mm256_set1_epi32(xd[st % 8]);
                    s[ii] = _mm256_add_epi32(s[ii], dot4_u8s8(aw, _mm256_sign_epi8(xv, w)));
                }
            }
            for (int ii = 0; ii < MR; ii++) {
                const size_t ib = (i0 + (size_t)ii) * x->nb + 2 * b + (size_t)h;
                acc[ii] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[ii]), _mm256_mul_ps(sc, _mm256_set1_ps(x->d[ib])), acc[ii]);
            }
        }
    }
    store_half_avx2(MR, acc, y, ldy, i0, rh, valid);
}

CONDENSE_TARGET_GGUF256 void condense_s24q4_group_avx2(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0,
                                                   size_t m1, float *y, size_t ldy, int valid) {
    (void)L;
    for (int rh = 0; rh < 2 && 8 * rh < valid; rh++) {
        size_t i = m0;
        for (; i + 4 <= m1; i += 4) s24_half_avx2(4, gw, x, i, rh, y, ldy, valid);
        switch (m1 - i) {
        case 3: s24_half_avx2(3, gw, x, i, rh, y, ldy, valid); break;
        case 2: s24_half_avx2(2, gw, x, i, rh, y, ldy, valid); break;
        case 1: s24_half_avx2(1, gw, x, i, rh, y, ldy, valid); break;
        default: break;
        }
    }
}
#endif
