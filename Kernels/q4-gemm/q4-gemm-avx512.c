/* int4 for AVX-512: the exact-dequantize panel unpack, and the integer VNNI kernel. */
#include "q4-dequant.h"

#if CONDENSE_X86
#include <immintrin.h>
#include <string.h>
#include "vecmath-avx512.h"

/* The panel unpack by hand (32 rows: byte j holds rows j and j + 16): one zero-extending load
 * of 16 bytes, two shift pairs sign-extend the nibbles in 32-bit lanes, convert, scale. */
CONDENSE_TARGET_AVX512 void condense_q4_unpack__avx512(const condense_q4_packed *w, size_t panel, size_t k0,
                                                       size_t kc, float *buf) {
    const uint8_t *nb = w->nib + (panel * w->k16 + k0) * 16;
    for (size_t kk = 0; kk < kc; kk++) {
        const float *s = w->pscale + (panel * w->groups + (k0 + kk) / w->group) * 32;
        _mm_prefetch((const char *)(nb + kk * 16 + 1024), _MM_HINT_T0);
        const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(nb + kk * 16)));
        const __m512i lo = _mm512_srai_epi32(_mm512_slli_epi32(v, 28), 28);
        const __m512i hi = _mm512_srai_epi32(_mm512_slli_epi32(v, 24), 28);
        _mm512_store_ps(buf + kk * 32, _mm512_mul_ps(_mm512_cvtepi32_ps(lo), _mm512_loadu_ps(s)));
        _mm512_store_ps(buf + kk * 32 + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(hi), _mm512_loadu_ps(s + 16)));
    }
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
