/* 2:4 "dot" kernel for AVX2: no expand instruction, so one metadata byte (2 groups, 8 columns)
 * selects a permutation from a 256-entry table that moves 4 stored values into their columns;
 * index 4 reads a zero lane. Up to 4 weight rows × 2 X rows per pass. */
#include "sparse.h"

#if CONDENSE_X86
#include <immintrin.h>
#include <pthread.h>
#include "vecmath-avx2.h"

static int32_t lut[256][8] __attribute__((aligned(32)));
static pthread_once_t lut_once = PTHREAD_ONCE_INIT;

static void build_lut(void) {
    for (int b = 0; b < 256; b++) {
        int slot = 0;
        for (int i = 0; i < 8; i++) {
            /* Slots count the set bits before i; each group has two, so group 1 starts at 2. */
            if (i == 4) slot = 2;
            lut[b][i] = (b >> i) & 1 ? slot++ : 4;
        }
    }
}

CONDENSE_INLINE CONDENSE_TARGET_AVX2 float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

CONDENSE_INLINE CONDENSE_TARGET_AVX2 void s24_dot_256(const int MB, const condense_s24_packed *w,
                                                       size_t n0, size_t n1, const float *x,
                                                       size_t lda, float *y, size_t ldy) {
    const size_t k = w->k, vs = w->k16 / 2, ms = w->k16 / 8;
    const size_t full = k / 8, tail = k % 8;
    const __m256i tmask = tail_mask_256((int)tail);
    for (size_t n = n0; n < n1; n += 4) {
        const int nb = n1 - n < 4 ? (int)(n1 - n) : 4;
        const float *v[4];
        const uint8_t *mk[4];
        for (int j = 0; j < 4; j++) {
            size_t r = n + (size_t)(j < nb ? j : nb - 1);
            v[j] = w->values + r * vs;
            mk[j] = w->meta + r * ms;
        }
        __m256 acc[4][2];
        _Pragma("clang loop unroll(full)")
        for (int j = 0; j < 4; j++) {
            _Pragma("clang loop unroll(full)")
            for (int i = 0; i < MB; i++) acc[j][i] = _mm256_setzero_ps();
        }
        for (size_t c = 0; c <= full; c++) {
            if (c == full && tail == 0) break;
            __m256 xv[2];
            _Pragma("clang loop unroll(full)")
            for (int i = 0; i < MB; i++)
                xv[i] = c < full ? _mm256_loadu_ps(x + i * lda + 8 * c)
                                 : _mm256_maskload_ps(x + i * lda + 8 * c, tmask);
            _Pragma("clang loop unroll(full)")
            for (int j = 0; j < 4; j++) {
                const __m256i perm = _mm256_load_si256((const __m256i *)lut[mk[j][c]]);
                const __m256 wv = _mm256_permutevar8x32_ps(
                    _mm256_zextps128_ps256(_mm_loadu_ps(v[j] + 4 * c)), perm);
                _Pragma("clang loop unroll(full)")
                for (int i = 0; i < MB; i++) acc[j][i] = _mm256_fmadd_ps(wv, xv[i], acc[j][i]);
            }
        }
        for (int j = 0; j < nb; j++) {
            _Pragma("clang loop unroll(full)")
            for (int i = 0; i < MB; i++) y[i * ldy + n + (size_t)j] = hsum8(acc[j][i]);
        }
    }
}

CONDENSE_TARGET_AVX2 void condense_s24_dot__avx2(const condense_s24_packed *w, size_t n0, size_t n1,
                                                 size_t mb, const float *x, size_t lda, float *y,
                                                 size_t ldy) {
    pthread_once(&lut_once, build_lut);
    for (size_t i = 0; i < mb; i += 2) {
        if (mb - i >= 2) s24_dot_256(2, w, n0, n1, x + i * lda, lda, y + i * ldy, ldy);
        else s24_dot_256(1, w, n0, n1, x + i * lda, lda, y + i * ldy, ldy);
    }
}

#define S24B_TARGET CONDENSE_TARGET_AVX2
#define S24B_SUFFIX _avx2
#include "s24-bucket.h"
#endif
