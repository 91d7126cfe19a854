/* The 2:4-int4 (S24Q4) block kernel on AVX-512: VBMI2's vpexpandb puts each step's 32 kept
 * values at their mask's bits, then VNNI dots as Q4_0's (layout: gguf-internal.h). It runs on
 * the GGUF block driver (gguf-gemm.c), registered in its table. */
#include "../gguf/gguf-internal.h"

#if CONDENSE_X86
#include <immintrin.h>

/* Rows of X per tile, as the GGUF AVX-512 kernels. */
#define GGUF_MR 8

#define CONDENSE_TARGET_S24Q4 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx512vbmi2,avx2,fma,f16c")))
/* MR rows of X share each step's expanded weights: per 64 weights of 16 rows, one 32-byte
 * nibble pair serves two steps, one vpexpandb per step, then one vpdpbusd per row of X. */
CONDENSE_INLINE CONDENSE_TARGET_S24Q4 void s24_rows_avx512(const int MR, const uint8_t *gw, const qx_rows *x, size_t i0,
                                                           float *y, size_t ldy, __mmask16 mask) {
    const __m512i eights = _mm512_set1_epi8(8);
    const __m256i lo4 = _mm256_set1_epi8(0x0F);
    __m512 acc[GGUF_MR];
    for (int ii = 0; ii < MR; ii++) acc[ii] = _mm512_setzero_ps();
    for (size_t b = 0; b < x->nb / 2; b++) {
        const uint8_t *blk = gw + b * S24_GB;
        for (int off = 0; off < S24_GB; off += 64) _mm_prefetch((const char *)(blk + S24_PREFETCH * S24_GB + off), _MM_HINT_T0);
        const __m512 sc = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + 384)));
        for (int h = 0; h < 2; h++) {
            /* Two integer accumulators per row (even and odd steps): two vpdpbusd chains. */
            __m512i s[GGUF_MR][2];
            for (int ii = 0; ii < MR; ii++) s[ii][0] = s[ii][1] = _mm512_setzero_si512();
            for (int p = 4 * h; p < 4 * h + 4; p++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(blk + 32 * p));
                const __m256i half[2] = {_mm256_and_si256(v, lo4), _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4)};
                for (int e = 0; e < 2; e++) {
                    const int st = 2 * p + e;
                    const __mmask64 k = _cvtu64_mask64(*(const uint64_t *)(const void *)(blk + 256 + 8 * st));
                    const __m512i w = _mm512_mask_expand_epi8(eights, k, _mm512_castsi256_si512(half[e]));
                    for (int ii = 0; ii < MR; ii++) {
                        const int32_t *xd = (const int32_t *)(const void *)(x->q + (i0 + (size_t)ii) * x->k + 64 * b + 32 * (size_t)h);
                        s[ii][e] = _mm512_dpbusd_epi32(s[ii][e], w, _mm512_set1_epi32(xd[st % 8]));
                    }
                }
            }
            for (int ii = 0; ii < MR; ii++) {
                const size_t ib = (i0 + (size_t)ii) * x->nb + 2 * b + (size_t)h;
                const __m512i t = _mm512_sub_epi32(_mm512_add_epi32(s[ii][0], s[ii][1]), _mm512_set1_epi32(x->c[ib]));
                acc[ii] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_mul_ps(sc, _mm512_set1_ps(x->d[ib])), acc[ii]);
            }
        }
    }
    for (int ii = 0; ii < MR; ii++) _mm512_mask_storeu_ps(y + (i0 + (size_t)ii) * ldy, mask, acc[ii]);
}

CONDENSE_TARGET_S24Q4 void condense_s24q4_group_avx512(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0,
                                                   size_t m1, float *y, size_t ldy, int valid) {
    (void)L;
    const __mmask16 mask = (__mmask16)(valid >= GROUP ? 0xFFFF : (1u << valid) - 1);
    size_t i = m0;
    for (; i + GGUF_MR <= m1; i += GGUF_MR) s24_rows_avx512(GGUF_MR, gw, x, i, y, ldy, mask);
    switch (m1 - i) {
    case 7: s24_rows_avx512(7, gw, x, i, y, ldy, mask); break;
    case 6: s24_rows_avx512(6, gw, x, i, y, ldy, mask); break;
    case 5: s24_rows_avx512(5, gw, x, i, y, ldy, mask); break;
    case 4: s24_rows_avx512(4, gw, x, i, y, ldy, mask); break;
    case 3: s24_rows_avx512(3, gw, x, i, y, ldy, mask); break;
    case 2: s24_rows_avx512(2, gw, x, i, y, ldy, mask); break;
    case 1: s24_rows_avx512(1, gw, x, i, y, ldy, mask); break;
    default: break;
    }
}
#endif
