/* 2:4-int8 dot kernel for AVX2 (no vpexpandb, no VNNI). Per 16 columns, two mask bytes pick two
 * 8-byte pshufb controls from a table (each byte: the stored value's slot, or 0x80 for a pruned
 * column), which place the 8 stored values of those columns into 16 s8 lanes. Weights and u8
 * activations are widened to int16 and vpmaddwd sums pairs into int32: exact, no saturation (the
 * same reason the AVX2 int8 kernel avoids vpmaddubsw). One expansion serves up to 4 rows of X. */
#include "internal.h"

#if CONDENSE_X86
#include <immintrin.h>
#include <pthread.h>

/* ctl[h][b]: 8 pshufb indices for mask byte b (columns 8j…8j+7), slots offset by 4·h (the
 * second byte of a 16-column chunk reads stored bytes 4…7). */
static uint64_t ctl[2][256];
static pthread_once_t ctl_once = PTHREAD_ONCE_INIT;

static void build_ctl(void) {
    for (int h = 0; h < 2; h++)
        for (int b = 0; b < 256; b++) {
            uint64_t c = 0;
            int slot = 4 * h;
            for (int i = 0; i < 8; i++) {
                const uint64_t v = (b >> i) & 1 ? (uint64_t)slot++ : 0x80;
                c |= v << (8 * i);
            }
            ctl[h][b] = c;
        }
}

CONDENSE_INLINE CONDENSE_TARGET_AVX2 int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

CONDENSE_INLINE CONDENSE_TARGET_AVX2 void row_avx2(const int MB, const int8_t *v, const uint8_t *mb, size_t chunks,
                                                    const uint8_t *xq, size_t ldq, int32_t *acc, size_t ldacc) {
    __m256i s[4];
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MB; i++) s[i] = _mm256_setzero_si256();
    for (size_t c = 0; c < chunks; c++) {
        const __m128i control = _mm_set_epi64x((long long)ctl[1][mb[2 * c + 1]], (long long)ctl[0][mb[2 * c]]);
        const __m128i packed = _mm_loadl_epi64((const __m128i *)(v + 8 * c));
        const __m256i w16 = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(packed, control));
        _Pragma("clang loop unroll(full)") for (int i = 0; i < MB; i++) {
            const __m256i x16 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(xq + (size_t)i * ldq + 16 * c)));
            s[i] = _mm256_add_epi32(s[i], _mm256_madd_epi16(x16, w16));
        }
    }
    _Pragma("clang loop unroll(full)") for (int i = 0; i < MB; i++) acc[(size_t)i * ldacc] = hsum_epi32(s[i]);
}

CONDENSE_TARGET_AVX2 void condense_s24q8_dot__avx2(const condense_s24q8_packed *w, size_t n0, size_t n1, size_t m,
                                                   const uint8_t *xq, size_t ldq, int32_t *acc, size_t ldacc) {
    pthread_once(&ctl_once, build_ctl);
    const size_t chunks = w->k64 / 16, words = w->k64 / 64;
    for (size_t r = n0; r < n1; r++) {
        const int8_t *v = w->values + r * (w->k64 / 2);
        /* The 64-bit mask words as bytes, little-endian: byte j covers columns 8j…8j+7. */
        const uint8_t *mb = (const uint8_t *)(w->masks + r * words);
        _mm_prefetch((const char *)(v + w->k64 / 2), _MM_HINT_T0);
        for (size_t i = 0; i < m; i += 4) {
            const uint8_t *xi = xq + i * ldq;
            int32_t *ai = acc + i * ldacc + r;
            switch (m - i >= 4 ? 4 : m - i) {
            case 1: row_avx2(1, v, mb, chunks, xi, ldq, ai, ldacc); break;
            case 2: row_avx2(2, v, mb, chunks, xi, ldq, ai, ldacc); break;
            case 3: row_avx2(3, v, mb, chunks, xi, ldq, ai, ldacc); break;
            default: row_avx2(4, v, mb, chunks, xi, ldq, ai, ldacc); break;
            }
        }
    }
}
#endif
