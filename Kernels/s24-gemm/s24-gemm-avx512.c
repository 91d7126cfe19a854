/* 2:4 "panel" kernel for AVX-512. An earlier expand-based kernel (8 values expanded into 16
 * columns by vexpandps under the 4-group lane mask, then FMA with X) ran 1.5–2× slower at M = 1
 * and kept dense FLOPs at larger M. The panel kernel runs up to M = 15; from 16 the bucket
 * kernel (s24-bucket.h, instantiated at the end) takes over. */
#include "sparse.h"
#include "vecmath-avx512.h"

#if CONDENSE_X86
/* The 2:4 "panel" kernel: MR rows of X × NP panels of 16 weight rows. Per group of 4 columns,
 * the 4 values of a row of X are broadcast to the four 128-bit lanes, and an in-lane permute
 * (vpermilps, driven by each weight row's 2-bit positions) picks the value each lane needs:
 * 2 FMAs + 2 permutes per group, row of X and 16 weight rows, where dense needs 4 FMAs. */
CONDENSE_INLINE CONDENSE_TARGET_AVX512 void panel_512(const int MR, const int NP,
                                                       const condense_s24_packed *w, size_t p0,
                                                       const float *x, size_t lda, float *y,
                                                       size_t ldy, int act) {
    const size_t G = w->groups, gfull = w->k / 4;
    const __mmask8 tail = (__mmask8)((1u << (w->k % 4)) - 1);
    const __m512i shifts = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const float *vals[2];
    const uint64_t *pos[2];
    for (int j = 0; j < NP; j++) {
        vals[j] = w->panel_values + (p0 + (size_t)j) * G * 32;
        pos[j] = w->panel_pos + (p0 + (size_t)j) * G;
    }
    __m512 acc[4][2][2];
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
        _Pragma("clang loop unroll(full)") for (int j = 0; j < NP; j++) {
            acc[i][j][0] = _mm512_setzero_ps();
            acc[i][j][1] = _mm512_setzero_ps();
        }
    }
    for (size_t g = 0; g < G; g++) {
        __m512 v0[2], v1[2];
        __m512i c0[2], c1[2];
        _Pragma("clang loop unroll(full)") for (int j = 0; j < NP; j++) {
            _mm_prefetch((const char *)(vals[j] + g * 32 + 1024), _MM_HINT_T0);
            v0[j] = _mm512_load_ps(vals[j] + g * 32);
            v1[j] = _mm512_load_ps(vals[j] + g * 32 + 16);
            const uint64_t pp = pos[j][g];
            /* vpermilps reads only bits 1:0 of each control element: no masking needed. */
            c0[j] = _mm512_srlv_epi32(_mm512_set1_epi32((int)(uint32_t)pp), shifts);
            c1[j] = _mm512_srlv_epi32(_mm512_set1_epi32((int)(uint32_t)(pp >> 32)), shifts);
        }
        _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
            const float *xr = x + (size_t)i * lda + 4 * g;
            const __m128 xq = g < gfull ? _mm_loadu_ps(xr) : _mm_maskz_loadu_ps(tail, xr);
            const __m512 xb = _mm512_broadcast_f32x4(xq);
            _Pragma("clang loop unroll(full)") for (int j = 0; j < NP; j++) {
                acc[i][j][0] = _mm512_fmadd_ps(v0[j], _mm512_permutevar_ps(xb, c0[j]), acc[i][j][0]);
                acc[i][j][1] = _mm512_fmadd_ps(v1[j], _mm512_permutevar_ps(xb, c1[j]), acc[i][j][1]);
            }
        }
    }
    _Pragma("clang loop unroll(full)") for (int j = 0; j < NP; j++) {
        const size_t col = (p0 + (size_t)j) * 16;
        const size_t nv = w->n - col < 16 ? w->n - col : 16;
        const __mmask16 m = (__mmask16)((1u << nv) - 1);
        const __m512 b = w->bias ? _mm512_maskz_loadu_ps(m, w->bias + col) : _mm512_setzero_ps();
        _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
            __m512 s = act_512(_mm512_add_ps(_mm512_add_ps(acc[i][j][0], acc[i][j][1]), b), act);
            _mm512_mask_storeu_ps(y + (size_t)i * ldy + col, m, s);
        }
    }
}

/* Panels [p_begin, p_end) for all rows of X, in pairs of panels × blocks of 4 rows: a pair's
 * weights (K · 68 bytes) stay in L1/L2 while every block of X passes over them. */
CONDENSE_TARGET_AVX512 void condense_s24_panel__avx512(const condense_s24_packed *w, size_t p_begin,
                                                       size_t p_end, size_t m, const float *x,
                                                       size_t lda, float *y, size_t ldy, int act) {
#define PANEL_CASE(R, P) case (R) * 2 + (P) - 1: panel_512(R, P, w, p, xi, lda, yi, ldy, act); break;
    for (size_t p = p_begin; p < p_end; p += 2) {
        const int np = p_end - p >= 2 ? 2 : 1;
        for (size_t i = 0; i < m; i += 4) {
            const int mr = m - i >= 4 ? 4 : (int)(m - i);
            const float *xi = x + i * lda;
            float *yi = y + i * ldy;
            switch (mr * 2 + np - 1) {
                PANEL_CASE(1, 1) PANEL_CASE(1, 2) PANEL_CASE(2, 1) PANEL_CASE(2, 2)
                PANEL_CASE(3, 1) PANEL_CASE(3, 2) PANEL_CASE(4, 1) PANEL_CASE(4, 2)
                default: break;
            }
        }
    }
#undef PANEL_CASE
}

#define S24B_TARGET CONDENSE_TARGET_AVX512
#define S24B_SUFFIX _avx512
#include "s24-bucket.h"
#endif
