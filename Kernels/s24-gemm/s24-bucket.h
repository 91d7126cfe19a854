/* The 2:4 "bucket" kernel body, instantiated per ISA (s24-gemm-avx2.c, s24-gemm-avx512.c) with
 * S24B_TARGET and S24B_SUFFIX defined.
 *
 * Why it exists: kernels that vectorise over weight rows (panel, dot) must move each lane's X
 * value into place with one permute per FMA, so at M ≥ 8 they run at dense speed with half the
 * FLOPs. Here the vector runs over 8 rows of X (a transposed slab X^T[k][Mp]) and each weight
 * row's value is a broadcast. Within a group of 4 columns the four X^T vectors sit in registers;
 * the rows of a tile are sorted per group by which 2 of the 4 columns they keep (6 patterns), so
 * each pattern's loop names its two registers in code: no permute, no gather, 2 FMAs per kept
 * pair and X row vector. Accumulators live in an L1 block Y^T[row][Mp] (load, 2 FMAs, store).
 * 256-bit vectors: on Zen 5 as measured here, ymm FMAs issue twice as often as zmm ones, so the
 * FLOPs are the same and loads/stores per FMA are cheaper. */

/* Patterns in the order the packer writes them: (0,1) (0,2) (0,3) (1,2) (1,3) (2,3). */
#define S24B_PA(p) ((p) < 3 ? 0 : (p) < 5 ? 1 : 2)
#define S24B_PB(p) ((p) == 0 ? 1 : (p) == 1 || (p) == 3 ? 2 : 3)

#define S24B_CAT2(a, b) a##b
#define S24B_CAT(a, b) S24B_CAT2(a, b)
#define S24B_NAME(base) S24B_CAT(base, S24B_SUFFIX)

/* One tile (rows [t·NT, …)) against V vectors of 8 X rows; yt receives rows × 8V floats. */
#define S24B_TILE(V)                                                                              \
    CONDENSE_INLINE S24B_TARGET void S24B_CAT(S24B_NAME(s24b_tile_), V)(                          \
        const condense_s24_packed *w, size_t t, const float *xt, float *restrict yt) {            \
        const size_t mp = 8 * (V), nt = w->bucket_rows_per_tile, r0 = t * nt;                     \
        const size_t rows = w->n - r0 < nt ? w->n - r0 : nt, G = w->groups;                       \
        for (size_t i = 0; i < rows * mp; i += 8) _mm256_store_ps(yt + i, _mm256_setzero_ps());   \
        const uint16_t *restrict cnt = w->bucket_count + t * G * 6;                               \
        const uint16_t *restrict rw = w->bucket_row + r0 * G;                                     \
        const float *restrict vl = w->bucket_values + 2 * r0 * G;                                 \
        for (size_t g = 0; g < G; g++) {                                                          \
            __m256 x[4][V];                                                                       \
            _Pragma("clang loop unroll(full)") for (int i = 0; i < 4; i++)                        \
                _Pragma("clang loop unroll(full)") for (int v = 0; v < (V); v++)                  \
                    x[i][v] = _mm256_load_ps(xt + (4 * g + (size_t)i) * mp + 8 * (size_t)v);      \
            _Pragma("clang loop unroll(full)") for (int p = 0; p < 6; p++) {                      \
                const size_t c = cnt[g * 6 + (size_t)p];                                          \
                for (size_t i = 0; i < c; i++) {                                                  \
                    float *restrict yr = yt + (size_t)rw[i] * mp;                                 \
                    const __m256 w0 = _mm256_broadcast_ss(vl + 2 * i);                            \
                    const __m256 w1 = _mm256_broadcast_ss(vl + 2 * i + 1);                        \
                    _Pragma("clang loop unroll(full)") for (int v = 0; v < (V); v++) {            \
                        __m256 acc = _mm256_load_ps(yr + 8 * v);                                  \
                        acc = _mm256_fmadd_ps(x[S24B_PA(p)][v], w0, acc);                         \
                        acc = _mm256_fmadd_ps(x[S24B_PB(p)][v], w1, acc);                         \
                        _mm256_store_ps(yr + 8 * v, acc);                                         \
                    }                                                                             \
                }                                                                                 \
                rw += c;                                                                          \
                vl += 2 * c;                                                                      \
            }                                                                                     \
        }                                                                                         \
    }
S24B_TILE(1)
S24B_TILE(2)
S24B_TILE(3)
S24B_TILE(4)

/* 8×8 transpose of floats: rows src + i·ls (i < 8) into dst + j·ld (j < 8). */
CONDENSE_INLINE S24B_TARGET void S24B_NAME(s24b_t8x8_)(const float *src, size_t ls, float *dst, size_t ld) {
    __m256 r[8], s[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + (size_t)i * ls);
    for (int i = 0; i < 8; i += 2) {
        s[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        s[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(s[i], s[i + 2], 0x44);
        r[i + 1] = _mm256_shuffle_ps(s[i], s[i + 2], 0xEE);
        r[i + 2] = _mm256_shuffle_ps(s[i + 1], s[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(s[i + 1], s[i + 3], 0xEE);
    }
    /* r[j] holds column j of rows 0-3 (low half) and column j + 4 (high half); r[j + 4] the
     * same for rows 4-7. */
    for (int j = 0; j < 4; j++) {
        _mm256_storeu_ps(dst + (size_t)j * ld, _mm256_permute2f128_ps(r[j], r[j + 4], 0x20));
        _mm256_storeu_ps(dst + (size_t)(j + 4) * ld, _mm256_permute2f128_ps(r[j], r[j + 4], 0x31));
    }
}

/* X rows [0, mv) (mv ≤ mp, mp a multiple of 8), columns [k0, k1) into xt[k][mp]; rows past mv
 * and columns past k (up to k4) are zero. */
S24B_TARGET void S24B_NAME(condense_s24_bucket_pack_x_)(const float *x, size_t lda, size_t mv, size_t mp,
                                                        size_t k, size_t k0, size_t k1, float *xt) {
    size_t kk = k0;
    if (mv == mp) {
        for (; kk + 8 <= k1 && kk + 8 <= k; kk += 8)
            for (size_t i = 0; i < mp; i += 8) S24B_NAME(s24b_t8x8_)(x + i * lda + kk, lda, xt + kk * mp + i, mp);
    }
    for (; kk < k1; kk++)
        for (size_t i = 0; i < mp; i++) xt[kk * mp + i] = i < mv && kk < k ? x[i * lda + kk] : 0.0f;
}

/* Tiles [t0, t1) against one slab: yt scratch of rows_per_tile × mp; Y rows [0, mv). */
S24B_TARGET void S24B_NAME(condense_s24_bucket_)(const condense_s24_packed *w, size_t t0, size_t t1,
                                                 const float *xt, size_t mv, size_t mp, float *yt,
                                                 float *y, size_t ldy) {
    for (size_t t = t0; t < t1; t++) {
        switch (mp / 8) {
        case 1: S24B_CAT(S24B_NAME(s24b_tile_), 1)(w, t, xt, yt); break;
        case 2: S24B_CAT(S24B_NAME(s24b_tile_), 2)(w, t, xt, yt); break;
        case 3: S24B_CAT(S24B_NAME(s24b_tile_), 3)(w, t, xt, yt); break;
        default: S24B_CAT(S24B_NAME(s24b_tile_), 4)(w, t, xt, yt); break;
        }
        const size_t r0 = t * w->bucket_rows_per_tile;
        const size_t rows = w->n - r0 < w->bucket_rows_per_tile ? w->n - r0 : w->bucket_rows_per_tile;
        /* Y^T back into rows of Y: 8×8 blocks, then the edges. */
        size_t r = 0;
        if (mv == mp)
            for (; r + 8 <= rows; r += 8)
                for (size_t i = 0; i < mp; i += 8) S24B_NAME(s24b_t8x8_)(yt + r * mp + i, mp, y + i * ldy + r0 + r, ldy);
        for (; r < rows; r++)
            for (size_t i = 0; i < mv; i++) y[i * ldy + r0 + r] = yt[r * mp + i];
    }
}
