/* int4 for AVX-512: the exact-dequantize kernel, and the integer VNNI kernel. */
#include "q4-dequant.h"

#if CONDENSE_X86
#include <immintrin.h>
#include <string.h>
#include "vecmath-avx512.h"

/* Exact dequantize, by hand: the compiler does not vectorise the interleaved nibble unpack (the
 * generic C version ran at 20–70 GOPS here). 16 nibbles → 16 s8 (low/high interleaved, sign-
 * extended by xor/sub 8) → f32 × group scale into an L1 row buffer, then up to 4 rows of X per
 * pass are dotted with it. */
CONDENSE_INLINE CONDENSE_TARGET_AVX512 void q4_dot_rows(const int MB, const float *wr, size_t k,
                                                         const float *x, size_t lda, float *y,
                                                         size_t ldy) {
    __m512 acc[4][2];
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MB; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    size_t c = 0;
    for (; c + 32 <= k; c += 32) {
        const __m512 w0 = _mm512_load_ps(wr + c), w1 = _mm512_load_ps(wr + c + 16);
        _Pragma("clang loop unroll(full)") for (int i = 0; i < MB; i++) {
            acc[i][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + (size_t)i * lda + c), acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + (size_t)i * lda + c + 16), acc[i][1]);
        }
    }
    for (; c < k; c += 16) {
        const __mmask16 m = k - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - c)) - 1);
        const __m512 w0 = _mm512_maskz_load_ps(m, wr + c);
        _Pragma("clang loop unroll(full)") for (int i = 0; i < MB; i++)
            acc[i][0] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, x + (size_t)i * lda + c), acc[i][0]);
    }
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MB; i++)
        y[(size_t)i * ldy] = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]));
}

CONDENSE_TARGET_AVX512 int condense_q4_dequant__avx512(const condense_q4_packed *w, size_t n0,
                                                       size_t n1, size_t m, const float *x,
                                                       size_t lda, float *y, size_t ldy) {
    const size_t k = w->k, k16 = w->k16, G = w->group;
    float *wr = condense_scratch(CONDENSE_SCRATCH_WROW, k16 * sizeof(float));
    if (!wr) return CONDENSE_ERR_NO_MEMORY;
    const __m128i lo4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    for (size_t r = n0; r < n1; r++) {
        const uint8_t *nb = w->nib + r * (k16 / 2);
        const float *sc = w->scale + r * w->groups;
        _mm_prefetch((const char *)(nb + k16 / 2), _MM_HINT_T0);
        for (size_t g = 0; g < w->groups; g++) {
            const __m512 s = _mm512_set1_ps(sc[g]);
            const size_t c1 = (g + 1) * G < k16 ? (g + 1) * G : k16;
            for (size_t c = g * G; c < c1; c += 16) {
                const __m128i b = _mm_loadl_epi64((const __m128i *)(nb + c / 2));
                __m128i v = _mm_unpacklo_epi8(_mm_and_si128(b, lo4), _mm_and_si128(_mm_srli_epi16(b, 4), lo4));
                v = _mm_sub_epi8(_mm_xor_si128(v, eight), eight);
                _mm512_store_ps(wr + c, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)), s));
            }
        }
        for (size_t i = 0; i < m; i += 4) {
            const size_t mb = m - i < 4 ? m - i : 4;
            const float *xi = x + i * lda;
            float *yi = y + i * ldy + r;
            switch (mb) {
            case 1: q4_dot_rows(1, wr, k, xi, lda, yi, ldy); break;
            case 2: q4_dot_rows(2, wr, k, xi, lda, yi, ldy); break;
            case 3: q4_dot_rows(3, wr, k, xi, lda, yi, ldy); break;
            default: q4_dot_rows(4, wr, k, xi, lda, yi, ldy); break;
            }
        }
    }
    return CONDENSE_OK;
}

#define CONDENSE_TARGET_VNNI512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")))

/* MR rows of X × 1 panel of 16 weight rows. Per 8 columns, one 64-byte block: low nibbles are
 * the s8 quad of columns 8q…8q+3 (+8), high nibbles 8q+4…8q+7; (v & 0xF) − 8 restores s8 for
 * vpdpbusd. Each group's int32 dot is dequantized into f32 accumulators with its scales,
 * acc += s_w[g] · dot_g, and the zero point is corrected once at the end with the precomputed
 * Σ_g s_w[g] · Σ_{k∈g} w (no per-group multiply). */
CONDENSE_INLINE CONDENSE_TARGET_VNNI512 void q4_vnni(const int MR, const condense_q4_packed *w,
                                                      size_t p, const uint8_t *xq, size_t ldq,
                                                      const float *sx, const int32_t *zx, float *y,
                                                      size_t ldy, int act) {
    const size_t G = w->group, groups = w->groups, k16 = w->k16;
    const uint8_t *blk = w->blocks + p * (k16 / 8) * 64;
    const float *ps = w->pscale + p * groups * 16;
    const __m512i lo4 = _mm512_set1_epi8(0x0F), eight = _mm512_set1_epi8(8);
    __m512 facc[4];
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) facc[i] = _mm512_setzero_ps();
    for (size_t g = 0; g < groups; g++) {
        /* Low- and high-nibble halves accumulate separately: one chain of two dependent
         * vpdpbusd per block made the GEMV latency-bound (64 % of the L3 roofline). */
        __m512i acc[4], acc2[4];
        _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) acc[i] = acc2[i] = _mm512_setzero_si512();
        const size_t q0 = g * G / 8, q1 = ((g + 1) * G < k16 ? (g + 1) * G : k16) / 8;
        for (size_t q = q0; q < q1; q++) {
            _mm_prefetch((const char *)(blk + q * 64 + 4096), _MM_HINT_T0);
            const __m512i v = _mm512_load_si512(blk + q * 64);
            const __m512i wlo = _mm512_sub_epi8(_mm512_and_si512(v, lo4), eight);
            const __m512i whi = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), lo4), eight);
            _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
                int32_t a0, a1;
                memcpy(&a0, xq + (size_t)i * ldq + 8 * q, 4);
                memcpy(&a1, xq + (size_t)i * ldq + 8 * q + 4, 4);
                acc[i] = _mm512_dpbusd_epi32(acc[i], _mm512_set1_epi32(a0), wlo);
                acc2[i] = _mm512_dpbusd_epi32(acc2[i], _mm512_set1_epi32(a1), whi);
            }
        }
        const __m512 sg = _mm512_load_ps(ps + g * 16);
        _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++)
            facc[i] = _mm512_fmadd_ps(sg, _mm512_cvtepi32_ps(_mm512_add_epi32(acc[i], acc2[i])), facc[i]);
    }
    const size_t col = p * 16, nv = w->n - col < 16 ? w->n - col : 16;
    const __mmask16 m = (__mmask16)((1u << nv) - 1);
    const __m512 b = w->bias ? _mm512_maskz_loadu_ps(m, w->bias + col) : _mm512_setzero_ps();
    const __m512 comp = _mm512_load_ps(w->pcomp + p * 16);
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
        const __m512 corrected = _mm512_fnmadd_ps(_mm512_set1_ps((float)zx[i]), comp, facc[i]);
        const __m512 r = act_512(_mm512_fmadd_ps(_mm512_set1_ps(sx[i]), corrected, b), act);
        _mm512_mask_storeu_ps(y + (size_t)i * ldy + col, m, r);
    }
}

CONDENSE_TARGET_VNNI512 void condense_q4_integer__avx512vnni(const condense_q4_packed *w, size_t p0,
                                                             size_t p1, size_t m,
                                                             const uint8_t *xq, size_t ldq,
                                                             const float *sx, const int32_t *zx,
                                                             float *y, size_t ldy, int act) {
    for (size_t p = p0; p < p1; p++) {
        for (size_t i = 0; i < m; i += 4) {
            const size_t mr = m - i < 4 ? m - i : 4;
            const uint8_t *xi = xq + i * ldq;
            float *yi = y + i * ldy;
            switch (mr) {
            case 1: q4_vnni(1, w, p, xi, ldq, sx + i, zx + i, yi, ldy, act); break;
            case 2: q4_vnni(2, w, p, xi, ldq, sx + i, zx + i, yi, ldy, act); break;
            case 3: q4_vnni(3, w, p, xi, ldq, sx + i, zx + i, yi, ldy, act); break;
            default: q4_vnni(4, w, p, xi, ldq, sx + i, zx + i, yi, ldy, act); break;
            }
        }
    }
}
#endif
