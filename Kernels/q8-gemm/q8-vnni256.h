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
    q8_epilogue_256(MR, nv, c0, c1, ep);
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
