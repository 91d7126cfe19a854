/*
 * The template plugin: a complete Condense backend in one file, against condense_plugin.h only.
 * It runs dense f32 layers with a plain triple loop; copy it and replace prepare/run with your
 * library's calls. Build:
 *     cc -O2 -shared -fPIC -I Plugins/include condense_template_plugin.c -o libcondense_template.so
 * Load: CONDENSE_PLUGIN_PATH=/path/libcondense_template.so, or BackendRegistry.loadPlugin(at:).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "condense_plugin.h"

typedef struct {
    uint64_t n, k;
    uint32_t act;
    float *w, *b;
} state;

static uint32_t score(void) { return 1; } /* usable anywhere, preferred by nothing */

static int supports(const condense_plugin_layer *l) {
    return l->struct_size >= sizeof(condense_plugin_layer) && l->format == CONDENSE_PLUGIN_DENSE && l->activation <= 2;
}

static void *prepare(const condense_plugin_weights *w) {
    const condense_plugin_layer *l = w->layer;
    state *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->n = l->n;
    s->k = l->k;
    s->act = l->activation;
    s->w = malloc((l->n * l->k ? l->n * l->k : 1) * sizeof(float));
    if (!s->w) { free(s); return NULL; }
    memcpy(s->w, w->dense, l->n * l->k * sizeof(float));
    if (w->bias) {
        s->b = malloc((l->n ? l->n : 1) * sizeof(float));
        if (!s->b) { free(s->w); free(s); return NULL; }
        memcpy(s->b, w->bias, l->n * sizeof(float));
    }
    return s;
}

static int run(void *sv, const float *x, float *y, uint64_t rows, int32_t threads) {
    (void)threads;
    const state *s = sv;
    for (uint64_t i = 0; i < rows; i++)
        for (uint64_t j = 0; j < s->n; j++) {
            double acc = s->b ? s->b[j] : 0;
            for (uint64_t c = 0; c < s->k; c++) acc += (double)x[i * s->k + c] * s->w[j * s->k + c];
            float v = (float)acc;
            if (s->act == 1) v = v > 0 || v != v ? v : 0;
            if (s->act == 2) v = 0.5f * v * (1 + erff(v * 0.70710678f));
            y[i * s->n + j] = v;
        }
    return 0;
}

static void release(void *sv) {
    state *s = sv;
    if (!s) return;
    free(s->w);
    free(s->b);
    free(s);
}

static const char *kernel_name(void *sv) { (void)sv; return "template_f32_loop"; }

static const condense_plugin_v1 table = {
    .abi_version = CONDENSE_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(condense_plugin_v1),
    .name = "template",
    .version = 1,
    .score = score,
    .supports = supports,
    .prepare = prepare,
    .run = run,
    .release = release,
    .kernel_name = kernel_name,
    .unusable_reason = NULL,
};

__attribute__((visibility("default"))) const condense_plugin_v1 *condense_plugin_entry(uint32_t host_abi_version) {
    return host_abi_version >= 1 ? &table : NULL;
}
