/*
 * Multi-head self-attention over packed sequences (no padding): for each sequence s (rows
 * seq_start[s]..seq_start[s+1]) and head h (columns h·d..h·d+d of q, k, v):
 *     out_i = Σ_j softmax_j(scale · q_i·k_j) · v_j
 * Parallel over (sequence, head) pairs. The AVX-512 path transposes K once per pair so that the
 * scores of one query are broadcast-FMAs over keys, and uses the shared vector exp; the portable
 * path is the reference loop.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "condense_kernels.h"
#include "internal.h"
#include "omp_shim.h"
#include "vecmath-avx512.h"

static void attention_pair_scalar(const float *q, const float *k, const float *v, size_t ld, float *out,
                                  size_t ldo, size_t rows, int d, float scale, float *s) {
    for (size_t i = 0; i < rows; i++) {
        float mx = -INFINITY;
        for (size_t j = 0; j < rows; j++) {
            float dot = 0;
            for (int c = 0; c < d; c++) dot += q[i * ld + (size_t)c] * k[j * ld + (size_t)c];
            s[j] = dot * scale;
            mx = s[j] > mx ? s[j] : mx;
        }
        float sum = 0;
        for (size_t j = 0; j < rows; j++) { s[j] = expf(s[j] - mx); sum += s[j]; }
        const float inv = 1.0f / sum;
        float *o = out + i * ldo;
        for (int c = 0; c < d; c++) o[c] = 0;
        for (size_t j = 0; j < rows; j++) {
            const float p = s[j] * inv;
            for (int c = 0; c < d; c++) o[c] += p * v[j * ld + (size_t)c];
        }
    }
}

#if CONDENSE_X86
/* d a multiple of 16. kt: d × l16 floats, s: l16 floats (64-byte aligned). */
CONDENSE_TARGET_AVX512 static void attention_pair_avx512(const float *q, const float *k, const float *v, size_t ld,
                                                         float *out, size_t ldo, size_t rows, int d, float scale,
                                                         float *kt, float *s) {
    const size_t l16 = (rows + 15) / 16 * 16;
    for (int c = 0; c < d; c++) {
        float *dst = kt + (size_t)c * l16;
        for (size_t j = 0; j < rows; j++) dst[j] = k[j * ld + (size_t)c];
        for (size_t j = rows; j < l16; j++) dst[j] = 0;
    }
    const __mmask16 tail = (__mmask16)((rows % 16) ? (1u << (rows % 16)) - 1 : 0xFFFF);
    for (size_t i = 0; i < rows; i++) {
        const float *qi = q + i * ld;
        __m512 vmax = _mm512_set1_ps(-INFINITY);
        for (size_t j = 0; j < l16; j += 16) {
            __m512 acc = _mm512_setzero_ps();
            for (int c = 0; c < d; c++) acc = _mm512_fmadd_ps(_mm512_set1_ps(qi[c]), _mm512_load_ps(kt + (size_t)c * l16 + j), acc);
            acc = _mm512_mul_ps(acc, _mm512_set1_ps(scale));
            const __mmask16 m = j + 16 <= rows ? 0xFFFF : tail;
            _mm512_store_ps(s + j, acc);
            vmax = _mm512_mask_max_ps(vmax, m, vmax, acc);
        }
        const float mx = _mm512_reduce_max_ps(vmax);
        __m512 vsum = _mm512_setzero_ps();
        for (size_t j = 0; j < l16; j += 16) {
            const __mmask16 m = j + 16 <= rows ? 0xFFFF : tail;
            __m512 e = exp_nonpos_512(_mm512_sub_ps(_mm512_load_ps(s + j), _mm512_set1_ps(mx)));
            e = _mm512_maskz_mov_ps(m, e);
            _mm512_store_ps(s + j, e);
            vsum = _mm512_add_ps(vsum, e);
        }
        const float inv = 1.0f / _mm512_reduce_add_ps(vsum);
        float *o = out + i * ldo;
        for (int c = 0; c < d; c += 16) {
            __m512 acc = _mm512_setzero_ps();
            for (size_t j = 0; j < rows; j++) acc = _mm512_fmadd_ps(_mm512_set1_ps(s[j]), _mm512_loadu_ps(v + j * ld + (size_t)c), acc);
            _mm512_storeu_ps(o + c, _mm512_mul_ps(acc, _mm512_set1_ps(inv)));
        }
    }
}
#endif

int condense_f32_attention(const float *q, const float *k, const float *v, size_t ld, float *out, size_t ldo,
                           const int32_t *seq_start, size_t nseq, int heads, int head_dim, float scale, condense_isa isa,
                           int threads) {
    if (heads < 1 || head_dim < 1 || nseq == 0) return 0;
    size_t maxlen = 0;
    for (size_t s = 0; s < nseq; s++) {
        if (seq_start[s + 1] < seq_start[s]) return CONDENSE_ERR_INVALID;
        const size_t l = (size_t)(seq_start[s + 1] - seq_start[s]);
        maxlen = l > maxlen ? l : maxlen;
    }
    const int use512 = CONDENSE_X86 && isa >= CONDENSE_ISA_AVX512 && condense_isa_detected() >= CONDENSE_ISA_AVX512 &&
                       head_dim % 16 == 0;
    const long pairs = (long)(nseq * (size_t)heads);
    const int nt = threads > 0 ? threads : condense_get_num_threads();
    int failed = 0;
#pragma omp parallel num_threads(nt) if (pairs > 1)
    {
        const size_t l16 = (maxlen + 15) / 16 * 16;
        float *kt = condense_aligned_alloc(((size_t)head_dim * l16 + l16 + 16) * sizeof(float));
        float *sc = kt ? kt + (size_t)head_dim * l16 : NULL;
        if (!kt) {
#pragma omp atomic write
            failed = CONDENSE_ERR_NO_MEMORY;
        }
#pragma omp for schedule(static)
        for (long p = 0; p < pairs; p++) {
            if (!kt) continue;
            const size_t s = (size_t)p / (size_t)heads, h = (size_t)p % (size_t)heads;
            const size_t r0 = (size_t)seq_start[s], rows = (size_t)(seq_start[s + 1] - seq_start[s]);
            const size_t col = h * (size_t)head_dim;
            if (rows == 0) continue;
#if CONDENSE_X86
            if (use512) {
                attention_pair_avx512(q + r0 * ld + col, k + r0 * ld + col, v + r0 * ld + col, ld, out + r0 * ldo + col, ldo,
                                      rows, head_dim, scale, kt, sc);
                continue;
            }
#endif
            attention_pair_scalar(q + r0 * ld + col, k + r0 * ld + col, v + r0 * ld + col, ld, out + r0 * ldo + col, ldo,
                                  rows, head_dim, scale, sc);
        }
        free(kt);
    }
    (void)use512;
    return failed;
}

void condense_f32_layernorm(float *x, size_t rows, size_t n, size_t ld, const float *gamma, const float *beta,
                            float eps, int threads) {
    const int nt = threads > 0 ? threads : condense_get_num_threads();
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * n > 65536)
    for (long r = 0; r < (long)rows; r++) {
        float *xr = x + (size_t)r * ld;
        double mean = 0, var = 0;
        for (size_t c = 0; c < n; c++) mean += xr[c];
        mean /= (double)n;
        for (size_t c = 0; c < n; c++) { const double t = xr[c] - mean; var += t * t; }
        const float inv = (float)(1.0 / sqrt(var / (double)n + (double)eps)), mu = (float)mean;
        for (size_t c = 0; c < n; c++) xr[c] = (xr[c] - mu) * inv * gamma[c] + beta[c];
    }
}

void condense_f32_scale_columns(const float *x, size_t rows, size_t n, size_t ldx, const float *s, float *y, size_t ldy,
                                int threads) {
    const int nt = threads > 0 ? threads : condense_get_num_threads();
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * n > 65536)
    for (long r = 0; r < (long)rows; r++) {
        const float *xr = x + (size_t)r * ldx;
        float *yr = y + (size_t)r * ldy;
        for (size_t c = 0; c < n; c++) yr[c] = xr[c] * s[c];
    }
}

/* ---- Causal attention over a KV cache (decoders) ------------------------------------------- */

/* One query row and head: scores against n cached keys, softmax, weighted sum of the values. */
static void causal_row_scalar(const float *qr, const float *kc, const float *vc, size_t ldkv, size_t n, int hd, float scale,
                              float *sc, float *out) {
    float mx = -INFINITY;
    for (size_t p = 0; p < n; p++) {
        const float *kr = kc + p * ldkv;
        float s = 0;
        for (int e = 0; e < hd; e++) s += qr[e] * kr[e];
        sc[p] = s * scale;
        mx = sc[p] > mx ? sc[p] : mx;
    }
    float sum = 0;
    for (size_t p = 0; p < n; p++) { sc[p] = expf(sc[p] - mx); sum += sc[p]; }
    const float inv = 1.0f / sum;
    for (int e = 0; e < hd; e++) out[e] = 0;
    for (size_t p = 0; p < n; p++) {
        const float w = sc[p] * inv;
        const float *vr = vc + p * ldkv;
        for (int e = 0; e < hd; e++) out[e] += w * vr[e];
    }
}

#if CONDENSE_X86
CONDENSE_TARGET_AVX512 static void causal_row_avx512(const float *qr, const float *kc, const float *vc, size_t ldkv, size_t n, int hd,
                                                     float scale, float *sc, float *out) {
    float mx = -INFINITY;
    for (size_t p = 0; p < n; p++) {
        const float *kr = kc + p * ldkv;
        __m512 acc = _mm512_setzero_ps();
        for (int e = 0; e < hd; e += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(qr + e), _mm512_loadu_ps(kr + e), acc);
        sc[p] = _mm512_reduce_add_ps(acc) * scale;
        mx = sc[p] > mx ? sc[p] : mx;
    }
    float sum = 0;
    for (size_t p = 0; p < n; p++) { sc[p] = expf(sc[p] - mx); sum += sc[p]; }
    const float inv = 1.0f / sum;
    for (int e = 0; e < hd; e += 16) {
        __m512 acc = _mm512_setzero_ps();
        for (size_t p = 0; p < n; p++) acc = _mm512_fmadd_ps(_mm512_set1_ps(sc[p] * inv), _mm512_loadu_ps(vc + p * ldkv + e), acc);
        _mm512_storeu_ps(out + e, acc);
    }
}
#endif

int condense_f32_causal_attention(const float *q, size_t ldq, const float *kc, const float *vc, size_t ldkv, float *out,
                                  size_t ldo, size_t t, size_t p0, int heads, int kv_heads, int hd, float scale,
                                  condense_isa isa, int threads) {
    if (heads < 1 || kv_heads < 1 || heads % kv_heads || hd < 1) return CONDENSE_ERR_INVALID;
    if (t == 0) return CONDENSE_OK;
    if (isa > condense_isa_detected()) isa = condense_isa_detected();
    const int use512 = CONDENSE_X86 && isa >= CONDENSE_ISA_AVX512 && hd % 16 == 0;
    const int group = heads / kv_heads;
    const long pairs = (long)t * heads;
    int nt = threads > 0 ? threads : condense_get_num_threads();
    if ((p0 + t) * (size_t)hd * (size_t)pairs < 65536) nt = 1;
    int failed = 0;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *sc = condense_scratch(CONDENSE_SCRATCH_ATTN, (p0 + t) * sizeof(float));
        if (!sc) {
#pragma omp atomic write
            failed = CONDENSE_ERR_NO_MEMORY;
        }
#pragma omp for schedule(static)
        for (long pr = 0; pr < pairs; pr++) {
            if (!sc) continue;
            const size_t i = (size_t)pr / (size_t)heads;
            const int h = (int)((size_t)pr % (size_t)heads), kvh = h / group;
            const float *qr = q + i * ldq + (size_t)h * (size_t)hd;
            const float *kh = kc + (size_t)kvh * (size_t)hd, *vh = vc + (size_t)kvh * (size_t)hd;
            float *o = out + i * ldo + (size_t)h * (size_t)hd;
#if CONDENSE_X86
            if (use512) { causal_row_avx512(qr, kh, vh, ldkv, p0 + i + 1, hd, scale, sc, o); continue; }
#endif
            causal_row_scalar(qr, kh, vh, ldkv, p0 + i + 1, hd, scale, sc, o);
        }
    }
    (void)use512;
    return failed;
}
