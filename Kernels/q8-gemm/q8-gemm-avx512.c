/* int8 micro-kernel 12×32 with AVX-512 VNNI: vpdpbusd multiplies 4 u8 activations by 4 s8 weights
 * and adds the 4 products into each int32 lane, 64 multiply-adds per instruction. */
#include "internal.h"

#if CONDENSE_X86
#include <immintrin.h>
#include <string.h>

#define CONDENSE_TARGET_VNNI512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

CONDENSE_INLINE CONDENSE_TARGET_VNNI512 void q8_512(const int MR, int nv, size_t kq, const uint8_t *a,
                                                     size_t lda, const int8_t *b, int32_t *c,
                                                     size_t ldc) {
    __m512i c0[12], c1[12];
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm512_setzero_si512();
    for (size_t q = 0; q < kq; q++) {
        _mm_prefetch((const char *)(b + q * 128 + 16384), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + q * 128 + 16384 + 64), _MM_HINT_T0);
        const __m512i b0 = _mm512_load_si512(b + q * 128), b1 = _mm512_load_si512(b + q * 128 + 64);
        _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
            int32_t quad;
            memcpy(&quad, a + (size_t)i * lda + 4 * q, 4);
            const __m512i av = _mm512_set1_epi32(quad);
            c0[i] = _mm512_dpbusd_epi32(c0[i], av, b0);
            c1[i] = _mm512_dpbusd_epi32(c1[i], av, b1);
        }
    }
    const __mmask16 m0 = nv >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nv) - 1);
    const __mmask16 m1 = nv >= 32 ? (__mmask16)0xFFFF : nv <= 16 ? 0 : (__mmask16)((1u << (nv - 16)) - 1);
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
        _mm512_mask_storeu_epi32(c + (size_t)i * ldc, m0, c0[i]);
        _mm512_mask_storeu_epi32(c + (size_t)i * ldc + 16, m1, c1[i]);
    }
}

CONDENSE_TARGET_VNNI512 void condense_q8_ukernel_12x32__avx512vnni(int mr, int nv, size_t kq,
                                                                   const uint8_t *a, size_t lda,
                                                                   const void *b, int32_t *c,
                                                                   size_t ldc) {
#define Q8_CASE(R) case R: q8_512(R, nv, kq, a, lda, (const int8_t *)b, c, ldc); break;
    switch (mr) {
        Q8_CASE(1) Q8_CASE(2) Q8_CASE(3) Q8_CASE(4) Q8_CASE(5) Q8_CASE(6)
        Q8_CASE(7) Q8_CASE(8) Q8_CASE(9) Q8_CASE(10) Q8_CASE(11) Q8_CASE(12)
        default: break;
    }
#undef Q8_CASE
}
#endif
