/* The 6×16 int8 kernel on 256-bit vpdpbusd, instantiated by q8-gemm-avxvnni.c once per encoding
 * with CONDENSE_TARGET_VNNI256, DPBUSD256, Q8_VNNI256_NAME and Q8_VNNI256_BODY defined. */
CONDENSE_INLINE CONDENSE_TARGET_VNNI256 void Q8_VNNI256_BODY(const int MR, int nv, size_t kq, const uint8_t *a,
                                                         size_t lda, const int8_t *b,
                                                         const condense_q8_epilogue *ep) {
    __m256i c0[6], c1[6];
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm256_setzero_si256();
    for (size_t q = 0; q < kq; q++) {
        const int8_t *bq = b + q * 64; /* 16 channels × 4 bytes */
        _mm_prefetch((const char *)(bq + 4096), _MM_HINT_T0);
        const __m256i b0 = _mm256_load_si256((const __m256i *)bq);
        const __m256i b1 = _mm256_load_si256((const __m256i *)(bq + 32));
        _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
            int32_t quad;
            __builtin_memcpy(&quad, a + (size_t)i * lda + 4 * q, 4);
            const __m256i ai = _mm256_set1_epi32(quad);
            c0[i] = DPBUSD256(c0[i], ai, b0);
            c1[i] = DPBUSD256(c1[i], ai, b1);
        }
    }
    const __m256i m0 = tail_mask_256(nv), m1 = tail_mask_256(nv - 8);
    if (ep->c) {
        _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
            _mm256_maskstore_epi32(ep->c + (size_t)i * ep->ldc, m0, c0[i]);
            _mm256_maskstore_epi32(ep->c + (size_t)i * ep->ldc + 8, m1, c1[i]);
        }
        return;
    }
    const __m256i ws0 = _mm256_maskload_epi32(ep->wsum, m0), ws1 = _mm256_maskload_epi32(ep->wsum + 8, m1);
    const __m256 sw0 = _mm256_maskload_ps(ep->sw, m0), sw1 = _mm256_maskload_ps(ep->sw + 8, m1);
    const __m256 bz0 = ep->bias ? _mm256_maskload_ps(ep->bias, m0) : _mm256_setzero_ps();
    const __m256 bz1 = ep->bias ? _mm256_maskload_ps(ep->bias + 8, m1) : _mm256_setzero_ps();
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MR; i++) {
        const __m256i z = _mm256_set1_epi32(ep->zx[i]);
        const __m256 sx = _mm256_set1_ps(ep->sx[i]);
        __m256 f0 = _mm256_cvtepi32_ps(_mm256_sub_epi32(c0[i], _mm256_mullo_epi32(z, ws0)));
        __m256 f1 = _mm256_cvtepi32_ps(_mm256_sub_epi32(c1[i], _mm256_mullo_epi32(z, ws1)));
        f0 = act_256(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(sx, sw0), f0), bz0), ep->act);
        f1 = act_256(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(sx, sw1), f1), bz1), ep->act);
        _mm256_maskstore_ps(ep->y + (size_t)i * ep->ldy, m0, f0);
        _mm256_maskstore_ps(ep->y + (size_t)i * ep->ldy + 8, m1, f1);
    }
}

CONDENSE_TARGET_VNNI256 void Q8_VNNI256_NAME(int mr, int nv, size_t kq, const uint8_t *a, size_t lda, const void *b,
                                             const condense_q8_epilogue *ep) {
#define UK_CASE(R) case R: Q8_VNNI256_BODY(R, nv, kq, a, lda, (const int8_t *)b, ep); break;
    switch (mr) {
        UK_CASE(1) UK_CASE(2) UK_CASE(3) UK_CASE(4) UK_CASE(5) UK_CASE(6)
        default: break;
    }
#undef UK_CASE
}
