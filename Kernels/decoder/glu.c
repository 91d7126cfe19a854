/* The gated activation of a decoder's feed-forward block, on the thread team:
 * out[r][j] = act(gu[r][j]) · gu[r][ff + j] for rows of [gate | up].
 *
 * SiLU is x·σ(x). The vector paths compute σ from e = exp(−|x|) (1/(1 + e) for x ≥ 0, e/(1 + e)
 * below), which never overflows, with the kernels' exp (relative error < 2e-7); the scalar path
 * keeps x / (1 + e^−x) with libm's expf. A scalar expf per element was 9 % of a SmolLM2 token
 * (1 536 per layer, on one thread); ggml also evaluates SiLU with its own vector exp. GELU (tanh form) is computed as ggml's CPU backend computes it: the input
 * rounded to f16 looks up a 65 536-entry table of f16 results (0 at or below −10, x at or above
 * 10), which is what keeps Gemma on llama.cpp's perplexity and greedy tokens. */
#include "internal.h"
#include "condense_kernels.h"
#include "decoder-internal.h"

#include <math.h>
#include <pthread.h>

#if CONDENSE_X86
#include "vecmath-avx2.h"
#include "vecmath-avx512.h"
#elif CONDENSE_ARM64
#include "vecmath-neon.h"
#endif

static float gelu_table[65536];
static pthread_once_t gelu_once = PTHREAD_ONCE_INIT;

static void gelu_init(void) {
    for (uint32_t i = 0; i < 65536; i++) {
        const float x = condense_f16_to_f32((uint16_t)i);
        const float y = 0.5f * x * (1.0f + tanhf(0.79788456080286535587989211986876f * x * (1.0f + 0.044715f * x * x)));
        gelu_table[i] = condense_f16_to_f32(condense_f32_to_f16_one(y));
    }
}

float condense_gelu_tanh_f16(float x) {
    pthread_once(&gelu_once, gelu_init);
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    return gelu_table[condense_f32_to_f16_one(x)];
}

/* o[j] = silu(g[j]) · u[j], j < n. Returns how many it did (a multiple of the vector width); the
 * caller finishes the tail on the scalar path's formula. */
#if CONDENSE_X86
CONDENSE_TARGET_AVX512 static size_t silu_avx512(const float *g, const float *u, float *o, size_t n) {
    size_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512 x = _mm512_loadu_ps(g + j);
        const __m512 e = exp_nonpos_512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(x)));
        const __m512 r = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
        const __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
        const __m512 sig = _mm512_mask_mul_ps(r, neg, r, e);
        _mm512_storeu_ps(o + j, _mm512_mul_ps(_mm512_mul_ps(x, sig), _mm512_loadu_ps(u + j)));
    }
    return j;
}
CONDENSE_TARGET_AVX2 static size_t silu_avx2(const float *g, const float *u, float *o, size_t n) {
    size_t j = 0;
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    for (; j + 8 <= n; j += 8) {
        const __m256 x = _mm256_loadu_ps(g + j);
        const __m256 e = exp_nonpos_256(_mm256_or_ps(x, sign));   /* −|x| */
        const __m256 r = _mm256_div_ps(one, _mm256_add_ps(one, e));
        const __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
        const __m256 sig = _mm256_blendv_ps(r, _mm256_mul_ps(r, e), neg);
        _mm256_storeu_ps(o + j, _mm256_mul_ps(_mm256_mul_ps(x, sig), _mm256_loadu_ps(u + j)));
    }
    return j;
}
#elif CONDENSE_ARM64
static size_t silu_neon(const float *g, const float *u, float *o, size_t n) {
    size_t j = 0;
    const float32x4_t one = vdupq_n_f32(1.0f);
    for (; j + 4 <= n; j += 4) {
        const float32x4_t x = vld1q_f32(g + j);
        const float32x4_t e = exp_nonpos_neon(vnegq_f32(vabsq_f32(x)));
        const float32x4_t r = vdivq_f32(one, vaddq_f32(one, e));
        const float32x4_t sig = vbslq_f32(vcltq_f32(x, vdupq_n_f32(0.0f)), vmulq_f32(r, e), r);
        vst1q_f32(o + j, vmulq_f32(vmulq_f32(x, sig), vld1q_f32(u + j)));
    }
    return j;
}
#endif

static size_t silu_vector(condense_isa isa, const float *g, const float *u, float *o, size_t n) {
#if CONDENSE_X86
    if (isa >= CONDENSE_ISA_AVX512) return silu_avx512(g, u, o, n);
    if (isa >= CONDENSE_ISA_AVX2) return silu_avx2(g, u, o, n);
#elif CONDENSE_ARM64
    if (isa >= CONDENSE_ISA_NEON) return silu_neon(g, u, o, n);
#endif
    (void)isa; (void)g; (void)u; (void)o; (void)n;
    return 0;
}

#define GLU_SPAN 256

/* Thread t of nt: a share of rows × column spans (a single row still spreads over the threads). */
void condense_glu_share(void *ctx, int t, int nt) {
    const glu_ctx *c = ctx;
    const size_t spans = (c->ff + GLU_SPAN - 1) / GLU_SPAN, items = c->rows * spans;
    uint16_t h[GLU_SPAN];
    for (size_t it = items * (size_t)t / (size_t)nt; it < items * (size_t)(t + 1) / (size_t)nt; it++) {
        const size_t r = it / spans, j0 = (it % spans) * GLU_SPAN, n = c->ff - j0 < GLU_SPAN ? c->ff - j0 : GLU_SPAN;
        const float *g = c->gu + r * 2 * c->ff + j0, *u = g + c->ff;
        float *o = c->out + r * c->ff + j0;
        if (c->act == CONDENSE_GLU_SILU) {
            for (size_t j = silu_vector(c->isa, g, u, o, n); j < n; j++) o[j] = g[j] / (1.0f + expf(-g[j])) * u[j];
        } else {
            condense_f32_to_f16(g, h, n, c->isa);
            for (size_t j = 0; j < n; j++) {
                const float x = g[j];
                o[j] = (x <= -10.0f ? 0.0f : x >= 10.0f ? x : gelu_table[h[j]]) * u[j];
            }
        }
    }
}

int condense_glu_plan(glu_ctx *c, const float *gu, size_t rows, size_t ff, int act, float *out, condense_isa isa, int threads) {
    if (act != CONDENSE_GLU_SILU && act != CONDENSE_GLU_GELU_TANH) return CONDENSE_ERR_INVALID;
    if (rows && ff && (!gu || !out)) return CONDENSE_ERR_INVALID;
    if (act == CONDENSE_GLU_GELU_TANH) pthread_once(&gelu_once, gelu_init);
    int nt = threads > 0 ? threads : condense_get_num_threads();
    if (rows * ff < 16384) nt = 1;
    if (isa > condense_isa_detected()) isa = condense_isa_detected();
    *c = (glu_ctx){gu, rows, ff, act, out, isa, nt};
    return CONDENSE_OK;
}

int condense_glu(const float *gu, size_t rows, size_t ff, int act, float *out, condense_isa isa, int threads) {
    glu_ctx c;
    const int st = condense_glu_plan(&c, gu, rows, ff, act, out, isa, threads);
    if (st != CONDENSE_OK || rows == 0 || ff == 0) return st;
    condense_team_run(c.nt, condense_glu_share, &c);
    return CONDENSE_OK;
}
