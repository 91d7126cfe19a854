/* 2:4-int8 kernel for AVX-512 VBMI2 + VNNI: per 64 columns, vpexpandb places the 32 stored s8
 * values of a weight row under its 64-bit position mask, and vpdpbusd multiplies them with 64 u8
 * activations. Half the weight bytes of dense int8 for two extra instructions per 64 columns. */
#include "internal.h"

#if CONDENSE_X86
#include <immintrin.h>

#define CONDENSE_TARGET_VBMI2 \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx512vbmi2,avx2,fma")))

CONDENSE_INLINE CONDENSE_TARGET_VBMI2 void s24q8_512(const int MB, const condense_s24q8_packed *w,
                                                      size_t n0, size_t n1, const uint8_t *xq,
                                                      size_t ldq, int32_t *acc, size_t ldacc) {
    const size_t words = w->k64 / 64, vs = w->k64 / 2;
    for (size_t n = n0; n < n1; n += 4) {
        const int nb = n1 - n < 4 ? (int)(n1 - n) : 4;
        const int8_t *v[4];
        const uint64_t *mk[4];
        for (int j = 0; j < 4; j++) { /* rows past n1 repeat the last one; results dropped */
            const size_t r = n + (size_t)(j < nb ? j : nb - 1);
            v[j] = w->values + r * vs;
            mk[j] = w->masks + r * words;
        }
        __m512i a[4][4];
        _Pragma("clang loop unroll(full)") for (int j = 0; j < 4; j++) {
            _Pragma("clang loop unroll(full)") for (int i = 0; i < MB; i++) a[j][i] = _mm512_setzero_si512();
        }
        for (size_t c = 0; c < words; c++) {
            __m512i xv[4];
            _Pragma("clang loop unroll(full)") for (int i = 0; i < MB; i++)
                xv[i] = _mm512_loadu_si512(xq + (size_t)i * ldq + 64 * c);
            _Pragma("clang loop unroll(full)") for (int j = 0; j < 4; j++) {
                _mm_prefetch((const char *)(v[j] + 32 * c + 2048), _MM_HINT_T0);
                _mm_prefetch((const char *)(mk[j] + c + 64), _MM_HINT_T0);
                const __m512i wv = _mm512_maskz_expand_epi8(
                    (__mmask64)mk[j][c], _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(v[j] + 32 * c))));
                _Pragma("clang loop unroll(full)") for (int i = 0; i < MB; i++) a[j][i] = _mm512_dpbusd_epi32(a[j][i], xv[i], wv);
            }
        }
        for (int j = 0; j < nb; j++) {
            _Pragma("clang loop unroll(full)") for (int i = 0; i < MB; i++)
                acc[(size_t)i * ldacc + n + (size_t)j] = _mm512_reduce_add_epi32(a[j][i]);
        }
    }
}

CONDENSE_TARGET_VBMI2 void condense_s24q8_dot__avx512vbmi2(const condense_s24q8_packed *w, size_t n0,
                                                           size_t n1, size_t m, const uint8_t *xq,
                                                           size_t ldq, int32_t *acc, size_t ldacc) {
    for (size_t i = 0; i < m; i += 4) {
        const size_t mb = m - i < 4 ? m - i : 4;
        const uint8_t *xi = xq + i * ldq;
        int32_t *ai = acc + i * ldacc;
        switch (mb) {
        case 1: s24q8_512(1, w, n0, n1, xi, ldq, ai, ldacc); break;
        case 2: s24q8_512(2, w, n0, n1, xi, ldq, ai, ldacc); break;
        case 3: s24q8_512(3, w, n0, n1, xi, ldq, ai, ldacc); break;
        default: s24q8_512(4, w, n0, n1, xi, ldq, ai, ldacc); break;
        }
    }
}
#endif
