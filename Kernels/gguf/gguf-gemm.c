/* Y[M,N] = X[M,K] · Wᵀ with W in ggml blocks (Q8_0, Q4_0, Q4_1), computed the way ggml's CPU
 * backend does: each row of X is quantized per block of 32 to int8 with an f16 scale (ggml's q8_0;
 * q8_1's d·Σq for Q4_1), and each block's dot is an exact integer dot scaled once:
 *     y += dw·dx·(Σ qw·qx − o·Σ qx)   (+ mw·sx for Q4_1),   o = 8 (Q4_0), 128 (Q8_0), 0 (Q4_1).
 * The integer dot is 4× cheaper than widening every weight to f32, which is what bounded token
 * generation; the result equals llama.cpp's up to the order of float sums.
 *
 * Weights are repacked once into groups of 16 rows, block by block, so that one 512-bit VNNI
 * instruction computes 4-element dots for 16 rows at once and no horizontal sum is needed:
 *     group g, block b:  chunks × [16 rows × 4 bytes]   then 16 f16 scales (then 16 f16 mins)
 * Q4 chunk c holds each row's qs bytes 4c…4c+3: low nibbles pair with x[4c…4c+3], high nibbles
 * with x[16+4c…]; Q8_0 chunk c holds qs[4c…4c+3] + 128 (vpdpbusd wants unsigned weights).
 * The packed size equals the stored size for every type. Rows beyond N are zero (scale 0).
 * Scalar and AVX-512 VNNI kernels, bit-identical: integer sums are exact and the float steps
 * are the same fused multiply-adds in the same order. Threads over groups of rows. */
#include "internal.h"
#include "omp_shim.h"

#include <math.h>
#include <string.h>

#if CONDENSE_X86
#include <immintrin.h>
#endif

#define GROUP 16

typedef struct layout {
    int chunks;         /* 64-byte chunks of quants per group-block */
    int has_min;        /* Q4_1 */
    int offset;         /* o: the unsigned code of a zero weight */
    size_t src_block;   /* stored bytes per block of 32 */
    size_t qs_off;      /* offset of the quants in a stored block */
    size_t gb;          /* packed bytes per group-block */
} layout;

static int layout_of(uint32_t type, layout *L) {
    switch (type) {
    case CONDENSE_GGUF_Q8_0: *L = (layout){8, 0, 128, 34, 2, 0}; break;
    case CONDENSE_GGUF_Q4_0: *L = (layout){4, 0, 8, 18, 2, 0}; break;
    case CONDENSE_GGUF_Q4_1: *L = (layout){4, 1, 0, 20, 4, 0}; break;
    default: return 0;
    }
    L->gb = (size_t)L->chunks * 64 + 32 + (L->has_min ? 32 : 0);
    return 1;
}

size_t condense_gguf_packed_size(uint32_t type, size_t n, size_t k) {
    layout L;
    if (!layout_of(type, &L) || k % 32) return 0;
    const size_t groups = n / GROUP + (n % GROUP != 0), nb = k / 32;
    size_t bytes;
    if (__builtin_mul_overflow(groups, nb, &bytes) || __builtin_mul_overflow(bytes, L.gb, &bytes)) return 0;
    return bytes;
}

int condense_gguf_pack(uint32_t type, const void *w, size_t n, size_t k, void *dst) {
    layout L;
    if (!layout_of(type, &L) || k % 32 || !condense_gguf_packed_size(type, n, k)) return CONDENSE_ERR_INVALID;
    const size_t nb = k / 32, groups = (n + GROUP - 1) / GROUP;
    const uint8_t *src = w;
    uint8_t *out = dst;
    const uint8_t flip = type == CONDENSE_GGUF_Q8_0 ? 0x80 : 0;
    for (size_t g = 0; g < groups; g++)
        for (size_t b = 0; b < nb; b++) {
            uint8_t *o = out + (g * nb + b) * L.gb;
            memset(o, 0, L.gb);
            for (size_t r = 0; r < GROUP && g * GROUP + r < n; r++) {
                const uint8_t *blk = src + ((g * GROUP + r) * nb + b) * L.src_block;
                for (int c = 0; c < L.chunks; c++)
                    for (int t = 0; t < 4; t++) o[c * 64 + r * 4 + t] = blk[L.qs_off + 4 * c + t] ^ flip;
                memcpy(o + L.chunks * 64 + r * 2, blk, 2);
                if (L.has_min) memcpy(o + L.chunks * 64 + 32 + r * 2, blk + 2, 2);
            }
        }
    return CONDENSE_OK;
}

/* ---- X quantized per block of 32 (ggml's q8_0 / q8_1) ------------------------------------- */

typedef struct qx_rows {
    const int8_t *q;     /* m × k */
    const float *d;      /* m × nb: the f16-rounded scale */
    const int32_t *c;    /* m × nb: o·Σ q */
    const float *s;      /* m × nb: f16(d·Σ q), Q4_1 only */
    size_t k, nb;
} qx_rows;

/* Round to nearest even at f16 precision, as F16C's conversion does (finite values; overflow to
 * ±Inf). Portable so that every path gives the same bits. */
static float f16_round(float v) {
    if (!isfinite(v) || v == 0) return v;
    const float a = fabsf(v);
    if (a >= 65520.0f) return copysignf(INFINITY, v);
    int e;
    frexpf(a, &e);                                         /* a = f·2^e, f in [0.5, 1) */
    const float ulp = ldexpf(1, (e - 1 < -14 ? -14 : e - 1) - 10);   /* 10 fraction bits; subnormals below 2^-14 */
    return copysignf(nearbyintf(a / ulp) * ulp, v);
}

/* One block: scale, codes (nearest even), Σ codes. The same arithmetic on every path. */
static void quantize_block_scalar(const float *x, int8_t *q, float *d, int32_t *sum) {
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float id = amax != 0 ? 127.0f / amax : 0.0f;
    int32_t s = 0;
    for (int j = 0; j < 32; j++) {
        const float f = nearbyintf(x[j] * id);
        const int v = f >= -127 && f <= 127 ? (int)f : 0;   /* NaN: 0, as the vector path's vpmovdb gives */
        q[j] = (int8_t)v;
        s += v;
    }
    *d = amax / 127.0f;
    *sum = s;
}

#if CONDENSE_X86
#define CONDENSE_TARGET_GGUF512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")))

CONDENSE_TARGET_GGUF512 static void quantize_block_avx512(const float *x, int8_t *q, float *d, int32_t *sum) {
    const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
    const __m512 a = _mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1));
    const float amax = _mm512_reduce_max_ps(a);
    const __m512 id = _mm512_set1_ps(amax != 0 ? 127.0f / amax : 0.0f);
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, id)), q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, id));
    _mm_storeu_si128((__m128i *)q, _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtepi32_epi8(q1));
    *d = amax / 127.0f;
    *sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
}
#endif

typedef void (*quantize_block_fn)(const float *, int8_t *, float *, int32_t *);

static void quantize_rows(quantize_block_fn qb, const layout *L, const float *x, size_t lda, size_t m, size_t k,
                          int8_t *q, float *d, int32_t *c, float *s) {
    const size_t nb = k / 32;
    for (size_t i = 0; i < m; i++)
        for (size_t b = 0; b < nb; b++) {
            float dd;
            int32_t sum;
            qb(x + i * lda + b * 32, q + i * k + b * 32, &dd, &sum);
            d[i * nb + b] = f16_round(dd);
            c[i * nb + b] = L->offset * sum;
            if (s) s[i * nb + b] = f16_round(dd * (float)sum);
        }
}

/* ---- Block kernels: one group of 16 rows against rows m0…m1 of X ------------------------- */

typedef void (*group_fn)(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y,
                         size_t ldy, int valid);

static void group_scalar(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y,
                         size_t ldy, int valid) {
    const int q4 = L->chunks == 4;
    for (size_t i = m0; i < m1; i++) {
        float acc[GROUP] = {0};
        const int8_t *xq = x->q + i * x->k;
        for (size_t b = 0; b < x->nb; b++, xq += 32) {
            const uint8_t *blk = gw + b * L->gb, *sc = blk + L->chunks * 64;
            const float dx = x->d[i * x->nb + b];
            for (int r = 0; r < GROUP; r++) {
                int32_t s = 0;
                for (int ch = 0; ch < L->chunks; ch++)
                    for (int t = 0; t < 4; t++) {
                        const uint8_t v = blk[ch * 64 + r * 4 + t];
                        if (q4) s += (v & 15) * xq[4 * ch + t] + (v >> 4) * xq[16 + 4 * ch + t];
                        else s += v * xq[4 * ch + t];
                    }
                s -= x->c[i * x->nb + b];
                const float dw = condense_f16_to_f32((uint16_t)(sc[2 * r] | sc[2 * r + 1] << 8));
                acc[r] = fmaf((float)s, dw * dx, acc[r]);
                if (L->has_min) {
                    const float mw = condense_f16_to_f32((uint16_t)(sc[32 + 2 * r] | sc[33 + 2 * r] << 8));
                    acc[r] = fmaf(mw, x->s[i * x->nb + b], acc[r]);
                }
            }
        }
        for (int r = 0; r < valid; r++) y[i * ldy + (size_t)r] = acc[r];
    }
}

#if CONDENSE_X86
/* MR rows of X at once share the unpacked weights of each block; two integer accumulators per
 * row halve the vpdpbusd dependency chain. */
#define GGUF_MR 4
/* Prefetch every line of the group-block this many blocks ahead. Measured on the SmolLM2 decode
 * (tg128, 2 threads, interleaved runs): prefetching 2 of a Q4_1 group-block's 5 lines gave
 * 18–23 GB/s of weights, all 5 gave 24.4–26.6 GB/s at distances 4, 16 and 48 alike. */
#define GGUF_PREFETCH 16
CONDENSE_INLINE CONDENSE_TARGET_GGUF512 void group_rows_avx512(const int MR, const layout *L, const uint8_t *gw,
                                                               const qx_rows *x, size_t i0, float *y, size_t ldy,
                                                               __mmask16 mask) {
    const int q4 = L->chunks == 4, has_min = L->has_min;
    const __m512i lo4 = _mm512_set1_epi8(0x0F);
    __m512 acc[GGUF_MR];
    for (int ii = 0; ii < MR; ii++) acc[ii] = _mm512_setzero_ps();
    for (size_t b = 0; b < x->nb; b++) {
        const uint8_t *blk = gw + b * L->gb;
        for (size_t off = 0; off < L->gb; off += 64) _mm_prefetch((const char *)(blk + GGUF_PREFETCH * L->gb + off), _MM_HINT_T0);
        __m512i w[8];
        if (q4) {
            for (int ch = 0; ch < 4; ch++) {
                const __m512i v = _mm512_loadu_si512(blk + 64 * ch);
                w[ch] = _mm512_and_si512(v, lo4);
                w[4 + ch] = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
            }
        } else {
            for (int ch = 0; ch < 8; ch++) w[ch] = _mm512_loadu_si512(blk + 64 * ch);
        }
        const uint8_t *sc = blk + L->chunks * 64;
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)sc));
        const __m512 mw = has_min ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sc + 32))) : _mm512_setzero_ps();
        for (int ii = 0; ii < MR; ii++) {
            const size_t i = i0 + (size_t)ii;
            const int32_t *xd = (const int32_t *)(const void *)(x->q + i * x->k + b * 32);
            __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
            /* Q4: w[ch] (low nibbles) pairs with x dword ch, w[4 + ch] with dword 4 + ch; Q8_0:
             * w[ch] with dword ch. The same index either way. */
            for (int ch = 0; ch < 8; ch += 2) {
                s0 = _mm512_dpbusd_epi32(s0, w[ch], _mm512_set1_epi32(xd[ch]));
                s1 = _mm512_dpbusd_epi32(s1, w[ch + 1], _mm512_set1_epi32(xd[ch + 1]));
            }
            const __m512i s = _mm512_sub_epi32(_mm512_add_epi32(s0, s1), _mm512_set1_epi32(x->c[i * x->nb + b]));
            acc[ii] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(x->d[i * x->nb + b])), acc[ii]);
            if (has_min) acc[ii] = _mm512_fmadd_ps(mw, _mm512_set1_ps(x->s[i * x->nb + b]), acc[ii]);
        }
    }
    for (int ii = 0; ii < MR; ii++) _mm512_mask_storeu_ps(y + (i0 + (size_t)ii) * ldy, mask, acc[ii]);
}

CONDENSE_TARGET_GGUF512 static void group_avx512(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0,
                                                 size_t m1, float *y, size_t ldy, int valid) {
    const __mmask16 mask = (__mmask16)(valid >= GROUP ? 0xFFFF : (1u << valid) - 1);
    size_t i = m0;
    for (; i + GGUF_MR <= m1; i += GGUF_MR) group_rows_avx512(GGUF_MR, L, gw, x, i, y, ldy, mask);
    switch (m1 - i) {
    case 3: group_rows_avx512(3, L, gw, x, i, y, ldy, mask); break;
    case 2: group_rows_avx512(2, L, gw, x, i, y, ldy, mask); break;
    case 1: group_rows_avx512(1, L, gw, x, i, y, ldy, mask); break;
    default: break;
    }
}
#endif

/* The one registration point: descriptor and code together, one entry per block type and ISA. */
typedef struct gguf_kernel_impl {
    condense_gguf_kernel info; /* first: its address is the entry's */
    group_fn group;
    quantize_block_fn quantize;
} gguf_kernel_impl;

static const gguf_kernel_impl kernels[] = {
    {{"gguf_q8_0_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q8_0}, group_scalar, quantize_block_scalar},
    {{"gguf_q4_0_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q4_0}, group_scalar, quantize_block_scalar},
    {{"gguf_q4_1_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q4_1}, group_scalar, quantize_block_scalar},
#if CONDENSE_X86
    {{"gguf_q8_0_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q8_0},
     group_avx512, quantize_block_avx512},
    {{"gguf_q4_0_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q4_0},
     group_avx512, quantize_block_avx512},
    {{"gguf_q4_1_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q4_1},
     group_avx512, quantize_block_avx512},
#endif
};

int condense_gguf_kernel_count(void) { return (int)(sizeof kernels / sizeof kernels[0]); }

const condense_gguf_kernel *condense_gguf_kernel_at(int i) {
    return i >= 0 && i < condense_gguf_kernel_count() ? &kernels[i].info : NULL;
}

static const gguf_kernel_impl *kernel_for(uint32_t type, condense_isa isa) {
    if (isa > condense_isa_detected()) isa = condense_isa_detected();
    const uint32_t have = condense_cpu_features();
    const gguf_kernel_impl *best = NULL;
    for (int i = 0; i < condense_gguf_kernel_count(); i++) {
        const gguf_kernel_impl *k = &kernels[i];
        if (k->info.type != type || k->info.isa > isa || (k->info.features & have) != k->info.features) continue;
        if (!best || k->info.isa > best->info.isa) best = k;
    }
    return best;
}

int condense_gguf_gemm(uint32_t type, const void *packed, size_t n, size_t k, size_t m, const float *x, size_t lda,
                       float *y, size_t ldy, condense_isa isa, int threads) {
    layout L;
    if (!layout_of(type, &L) || k % 32 || !condense_gguf_packed_size(type, n, k)) return CONDENSE_ERR_INVALID;
    if (m == 0 || n == 0) return CONDENSE_OK;
    const gguf_kernel_impl *kr = kernel_for(type, isa);
    if (!kr) return CONDENSE_ERR_INVALID;
    const size_t nb = k / 32, groups = (n + GROUP - 1) / GROUP;
    size_t qbytes, pbytes;
    if (__builtin_mul_overflow(m, k, &qbytes) || __builtin_mul_overflow(m, nb * 12, &pbytes)) return CONDENSE_ERR_INVALID;
    uint8_t *scratch = condense_scratch(CONDENSE_SCRATCH_QX, qbytes + pbytes + 256);
    if (!scratch) return CONDENSE_ERR_NO_MEMORY;
    int8_t *q = (int8_t *)scratch;
    float *d = (float *)(void *)(scratch + (qbytes + 63) / 64 * 64);
    int32_t *c = (int32_t *)(d + m * nb);
    float *s = L.has_min ? (float *)(c + m * nb) : NULL;
    int nt = threads > 0 ? threads : condense_get_num_threads();
    if (groups < 2 || n * k * m < 65536) nt = 1;
    const qx_rows xr = {q, d, c, s, k, nb};
    const uint8_t *wb = packed;
    const group_fn run = kr->group;
    if (nt == 1 || m < 16) {
        quantize_rows(kr->quantize, &L, x, lda, m, k, q, d, c, s);
    } else {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (long i = 0; i < (long)m; i++)
            quantize_rows(kr->quantize, &L, x + (size_t)i * lda, lda, 1, k, q + (size_t)i * k, d + (size_t)i * nb,
                          c + (size_t)i * nb, s ? s + (size_t)i * nb : NULL);
    }
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (long g = 0; g < (long)groups; g++) {
        const size_t r0 = (size_t)g * GROUP;
        const int valid = n - r0 >= GROUP ? GROUP : (int)(n - r0);
        run(&L, wb + (size_t)g * nb * L.gb, &xr, 0, m, y + r0, ldy, valid);
    }
    return CONDENSE_OK;
}

const char *condense_gguf_gemm_kernel_name(uint32_t type, condense_isa isa) {
    const gguf_kernel_impl *k = kernel_for(type, isa);
    return k ? k->info.name : "none";
}
