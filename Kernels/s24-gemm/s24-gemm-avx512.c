/* 2:4 "dot" kernel for AVX-512: 8 stored values expand into 16 columns under the 16-bit lane
 * mask of 4 groups (register-form vexpandps; the memory form is slow on AMD cores), then FMA
 * with 16 columns of each row of X. Up to 4 weight rows × 4 X rows per pass. */
#include "sparse.h"

#if CONDENSE_X86
#include <immintrin.h>
#include <string.h>

CONDENSE_INLINE CONDENSE_TARGET_AVX512 void s24_dot_512(const int MB, const condense_s24_packed *w,
                                                         size_t n0, size_t n1, const float *x,
                                                         size_t lda, float *y, size_t ldy) {
    const size_t k = w->k, vs = w->k16 / 2, ms = w->k16 / 8;
    const size_t full = k / 16, tail = k % 16;
    const __mmask16 tmask = (__mmask16)((1u << tail) - 1);
    for (size_t n = n0; n < n1; n += 4) {
        const int nb = n1 - n < 4 ? (int)(n1 - n) : 4;
        const float *v[4];
        const uint8_t *mk[4];
        /* Rows past n1 repeat the last valid row: no branches in the loop, results dropped. */
        for (int j = 0; j < 4; j++) {
            size_t r = n + (size_t)(j < nb ? j : nb - 1);
            v[j] = w->values + r * vs;
            mk[j] = w->meta + r * ms;
        }
        __m512 acc[4][4];
        _Pragma("clang loop unroll(full)")
        for (int j = 0; j < 4; j++) {
            _Pragma("clang loop unroll(full)")
            for (int i = 0; i < MB; i++) acc[j][i] = _mm512_setzero_ps();
        }
        for (size_t c = 0; c <= full; c++) {
            if (c == full && tail == 0) break;
            const __mmask16 xm = c < full ? (__mmask16)0xFFFF : tmask;
            __m512 xv[4];
            _Pragma("clang loop unroll(full)")
            for (int i = 0; i < MB; i++) xv[i] = _mm512_maskz_loadu_ps(xm, x + i * lda + 16 * c);
            _Pragma("clang loop unroll(full)")
            for (int j = 0; j < 4; j++) {
                _mm_prefetch((const char *)(v[j] + 8 * c + 512), _MM_HINT_T0);
                uint16_t bits;
                memcpy(&bits, mk[j] + 2 * c, 2);
                const __m512 wv = _mm512_maskz_expand_ps((__mmask16)bits,
                                                         _mm512_castps256_ps512(_mm256_loadu_ps(v[j] + 8 * c)));
                _Pragma("clang loop unroll(full)")
                for (int i = 0; i < MB; i++) acc[j][i] = _mm512_fmadd_ps(wv, xv[i], acc[j][i]);
            }
        }
        for (int j = 0; j < nb; j++) {
            _Pragma("clang loop unroll(full)")
            for (int i = 0; i < MB; i++) y[i * ldy + n + (size_t)j] = _mm512_reduce_add_ps(acc[j][i]);
        }
    }
}

CONDENSE_TARGET_AVX512 void condense_s24_dot__avx512(const condense_s24_packed *w, size_t n0,
                                                     size_t n1, size_t mb, const float *x,
                                                     size_t lda, float *y, size_t ldy) {
    for (size_t i = 0; i < mb; i += 4) {
        size_t b = mb - i < 4 ? mb - i : 4;
        const float *xi = x + i * lda;
        float *yi = y + i * ldy;
        switch (b) {
        case 1: s24_dot_512(1, w, n0, n1, xi, lda, yi, ldy); break;
        case 2: s24_dot_512(2, w, n0, n1, xi, lda, yi, ldy); break;
        case 3: s24_dot_512(3, w, n0, n1, xi, lda, yi, ldy); break;
        default: s24_dot_512(4, w, n0, n1, xi, lda, yi, ldy); break;
        }
    }
}
#endif
