/* The gated activation of a decoder's feed-forward block, on the thread team:
 * out[r][j] = act(gu[r][j]) · gu[r][ff + j] for rows of [gate | up].
 *
 * SiLU is x / (1 + e^−x) in the order the Swift loop it replaces used, so SiLU models keep their
 * figures bit for bit. GELU (tanh form) is computed as ggml's CPU backend computes it: the input
 * rounded to f16 looks up a 65 536-entry table of f16 results (0 at or below −10, x at or above
 * 10), which is what keeps Gemma on llama.cpp's perplexity and greedy tokens. */
#include "internal.h"
#include "condense_kernels.h"

#include <math.h>
#include <pthread.h>

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

typedef struct {
    const float *gu;
    size_t rows, ff;
    int act;
    float *out;
    condense_isa isa;
} glu_ctx;

#define GLU_SPAN 256

/* Thread t of nt: a share of rows × column spans (a single row still spreads over the threads). */
static void glu_share(void *ctx, int t, int nt) {
    const glu_ctx *c = ctx;
    const size_t spans = (c->ff + GLU_SPAN - 1) / GLU_SPAN, items = c->rows * spans;
    uint16_t h[GLU_SPAN];
    for (size_t it = items * (size_t)t / (size_t)nt; it < items * (size_t)(t + 1) / (size_t)nt; it++) {
        const size_t r = it / spans, j0 = (it % spans) * GLU_SPAN, n = c->ff - j0 < GLU_SPAN ? c->ff - j0 : GLU_SPAN;
        const float *g = c->gu + r * 2 * c->ff + j0, *u = g + c->ff;
        float *o = c->out + r * c->ff + j0;
        if (c->act == CONDENSE_GLU_SILU) {
            for (size_t j = 0; j < n; j++) o[j] = g[j] / (1.0f + expf(-g[j])) * u[j];
        } else {
            condense_f32_to_f16(g, h, n, c->isa);
            for (size_t j = 0; j < n; j++) {
                const float x = g[j];
                o[j] = (x <= -10.0f ? 0.0f : x >= 10.0f ? x : gelu_table[h[j]]) * u[j];
            }
        }
    }
}

int condense_glu(const float *gu, size_t rows, size_t ff, int act, float *out, condense_isa isa, int threads) {
    if (act != CONDENSE_GLU_SILU && act != CONDENSE_GLU_GELU_TANH) return CONDENSE_ERR_INVALID;
    if (rows == 0 || ff == 0) return CONDENSE_OK;
    if (!gu || !out) return CONDENSE_ERR_INVALID;
    if (act == CONDENSE_GLU_GELU_TANH) pthread_once(&gelu_once, gelu_init);
    int nt = threads > 0 ? threads : condense_get_num_threads();
    if (rows * ff < 16384) nt = 1;
    const glu_ctx c = {gu, rows, ff, act, out, isa};
    condense_team_run(nt, glu_share, (void *)&c);
    return CONDENSE_OK;
}
