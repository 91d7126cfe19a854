/*
 * CBLAS plugin: dense f32 layers through cblas_sgemm of whatever BLAS is installed, found at run
 * time by dlopen of the usual sonames (or CONDENSE_CBLAS_LIB=/path/libX.so). With no BLAS the
 * plugin loads but reports score 0 with the reason, and the host skips it.
 *     cc -O2 -shared -fPIC -I Plugins/include condense_cblas_plugin.c -o libcondense_cblas.so -ldl -lm
 */
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "condense_plugin.h"

enum { RowMajor = 101, NoTrans = 111, Trans = 112 };
typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                         float *, int);

static sgemm_fn sgemm;
/* The library's thread-count setter, when it has one: OpenBLAS and BLIS set it process-wide,
 * MKL per calling thread. The ABI's `threads` is honoured through it. */
typedef void (*set_threads_fn)(int);
static set_threads_fn set_threads;
static int threads_set; /* last value set (process-wide setters only) */
static char found[512];
static char reason[768];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void find_blas(void) {
    /* Be a good neighbour: OpenBLAS's idle threads spin for 2^28 cycles (~70 ms) after each call,
     * taking the cores from the host's own thread pool. 2^16 cycles (~16 µs) keeps back-to-back
     * calls hot and frees the cores soon after. Read when the library loads; a user's value wins. */
    setenv("OPENBLAS_THREAD_TIMEOUT", "16", 0);
    const char *names[] = {getenv("CONDENSE_CBLAS_LIB"), "libopenblas.so.0", "libopenblas.so", "libblis.so.4",
                           "libmkl_rt.so.2", "libmkl_rt.so.3", "libmkl_rt.so", "libcblas.so.3", "libblas.so.3"};
    /* CONDENSE_CBLAS_LIB names the one library to use: no fallback to another BLAS. */
    const size_t tries = names[0] && *names[0] ? 1 : sizeof names / sizeof names[0];
    for (size_t i = 0; i < tries; i++) {
        if (!names[i] || !*names[i]) continue;
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) continue;
        sgemm_fn f = (sgemm_fn)dlsym(h, "cblas_sgemm");
        if (f) {
            sgemm = f;
            const char *setters[] = {"openblas_set_num_threads", "bli_thread_set_num_threads", "MKL_Set_Num_Threads_Local"};
            for (size_t j = 0; j < 3 && !set_threads; j++) set_threads = (set_threads_fn)dlsym(h, setters[j]);
            snprintf(found, sizeof found, "cblas_sgemm (%s)", names[i]);
            return;
        }
        dlclose(h);
    }
    if (tries == 1) {
        snprintf(reason, sizeof reason, "CONDENSE_CBLAS_LIB=%s cannot be loaded or has no cblas_sgemm", names[0]);
        return;
    }
    snprintf(reason, sizeof reason,
             "no library with cblas_sgemm found (tried CONDENSE_CBLAS_LIB, libopenblas.so.0, libblis.so.4, "
             "libmkl_rt.so, libblas.so.3; apt-get install libopenblas0 or set CONDENSE_CBLAS_LIB)");
}

static uint32_t score(void) {
    pthread_once(&once, find_blas);
    return sgemm ? 2 : 0;
}

static const char *unusable_reason(void) {
    pthread_once(&once, find_blas);
    return reason;
}

typedef struct {
    uint64_t n, k;
    uint32_t act;
    float *w, *b;
} state;

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
    const state *s = sv;
    if (!sgemm) return 1;
    /* threads <= 0: the library's default (OPENBLAS_NUM_THREADS, ...). A process-wide setter is
     * only called when the count changes: it is not free, and concurrent callers ask alike. */
    if (threads > 0 && set_threads && __atomic_exchange_n(&threads_set, threads, __ATOMIC_RELAXED) != threads)
        set_threads(threads);
    if (rows == 0 || s->n == 0) return 0;
    if (s->k == 0) memset(y, 0, rows * s->n * sizeof(float));
    else sgemm(RowMajor, NoTrans, Trans, (int)rows, (int)s->n, (int)s->k, 1.0f, x, (int)s->k, s->w, (int)s->k, 0.0f, y, (int)s->n);
    for (uint64_t i = 0; i < rows; i++)
        for (uint64_t j = 0; j < s->n; j++) {
            float v = y[i * s->n + j] + (s->b ? s->b[j] : 0.0f);
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

static const char *kernel_name(void *sv) { (void)sv; return found; }

static const condense_plugin_v1 table = {
    .abi_version = CONDENSE_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(condense_plugin_v1),
    .name = "cblas",
    .version = 1,
    .score = score,
    .supports = supports,
    .prepare = prepare,
    .run = run,
    .release = release,
    .kernel_name = kernel_name,
    .unusable_reason = unusable_reason,
};

__attribute__((visibility("default"))) const condense_plugin_v1 *condense_plugin_entry(uint32_t host_abi_version) {
    return host_abi_version >= 1 ? &table : NULL;
}
