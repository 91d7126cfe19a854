/*
 * oneDNN plugin: dense f32 and int8 layers through oneDNN's matmul primitive, with the weights
 * reordered once, at prepare, into the blocked layout the primitive asks for (format_tag any).
 *
 * oneDNN is found at run time by dlopen of libdnnl.so.2 (Debian: libdnnl2 / libdnnl-dev) or
 * CONDENSE_ONEDNN_LIB=/path/libdnnl.so.2. The plugin declares the few oneDNN v2 C-API entry points
 * and constants it uses itself, so it builds without oneDNN's headers; where <dnnl.h> is present
 * the declarations are checked against it at compile time. Without oneDNN the plugin loads and
 * reports score 0 with the reason.
 *     cc -O2 -shared -fPIC -I Plugins/include condense_onednn_plugin.c -o libcondense_onednn.so -lm
 *
 * One primitive per layer serves every batch size: M is a run-time dimension. int8 layers quantize
 * X per call (per tensor, symmetric s8) and pass sx·scales[j] as run-time output scales; bias and
 * activation are applied after, in f32. Threads: oneDNN's OpenMP, its team size set per call to
 * the host's `threads` (omp_set_num_threads on the calling thread); <= 0 leaves OMP_NUM_THREADS.
 */
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "condense_plugin.h"

/* ---- the slice of oneDNN v2's C API used here ---- */
typedef int64_t odn_dims[12];
typedef void *odn_handle; /* engine, stream, primitive, primitive_desc, memory, attr, post_ops */
/* dnnl_memory_desc_t is 696 bytes and dnnl_matmul_desc_t 2800 in oneDNN 2.6 (x86-64); opaque
 * buffers with room to spare, since the plugin only passes their addresses. */
typedef struct { _Alignas(64) unsigned char b[1024]; } odn_md;
typedef struct { _Alignas(64) unsigned char b[4096]; } odn_matmul_desc;
typedef struct { int arg; odn_handle memory; } odn_exec_arg;

enum {
    ODN_SUCCESS = 0, ODN_F32 = 3, ODN_S8 = 5, ODN_TAG_ANY = 1, ODN_TAG_AB = 3, ODN_TAG_BA = 22,
    ODN_CPU = 1, ODN_STREAM_DEFAULT = 1, ODN_QUERY_WEIGHTS_MD = 131, ODN_QUERY_IMPL_INFO_STR = 8,
    ODN_ELTWISE_RELU = 31, ODN_ELTWISE_GELU_ERF = 48,
    ODN_ARG_SRC = 1, ODN_ARG_WEIGHTS = 33, ODN_ARG_DST = 17, ODN_ARG_BIAS = 41, ODN_ARG_FROM = 1,
    ODN_ARG_TO = 17, ODN_ARG_OUTPUT_SCALES = 513,
};
#define ODN_RUNTIME_DIM INT64_MIN
#define ODN_MEMORY_ALLOCATE ((void *)(size_t)-1)
static const uint32_t odn_runtime_f32_bits = 0x7fc000d0u;

#if defined(__has_include)
#if __has_include(<dnnl.h>)
#include <dnnl.h>
_Static_assert(sizeof(dnnl_memory_desc_t) <= sizeof(odn_md), "odn_md too small");
_Static_assert(sizeof(dnnl_matmul_desc_t) <= sizeof(odn_matmul_desc), "odn_matmul_desc too small");
_Static_assert((int)dnnl_f32 == ODN_F32 && (int)dnnl_s8 == ODN_S8, "data types");
_Static_assert((int)dnnl_format_tag_any == ODN_TAG_ANY && (int)dnnl_ab == ODN_TAG_AB && (int)dnnl_ba == ODN_TAG_BA, "tags");
_Static_assert((int)dnnl_cpu == ODN_CPU && (int)dnnl_stream_default_flags == ODN_STREAM_DEFAULT, "engine/stream");
_Static_assert((int)dnnl_query_weights_md == ODN_QUERY_WEIGHTS_MD && (int)dnnl_query_impl_info_str == ODN_QUERY_IMPL_INFO_STR, "queries");
_Static_assert((int)dnnl_eltwise_relu == ODN_ELTWISE_RELU && (int)dnnl_eltwise_gelu_erf == ODN_ELTWISE_GELU_ERF, "eltwise");
_Static_assert(DNNL_ARG_SRC == ODN_ARG_SRC && DNNL_ARG_WEIGHTS == ODN_ARG_WEIGHTS && DNNL_ARG_DST == ODN_ARG_DST
               && DNNL_ARG_BIAS == ODN_ARG_BIAS && DNNL_ARG_FROM == ODN_ARG_FROM && DNNL_ARG_TO == ODN_ARG_TO
               && DNNL_ARG_ATTR_OUTPUT_SCALES == ODN_ARG_OUTPUT_SCALES, "args");
_Static_assert(DNNL_RUNTIME_DIM_VAL == ODN_RUNTIME_DIM && sizeof(dnnl_exec_arg_t) == sizeof(odn_exec_arg), "runtime dim");
#endif
#endif

#define ODN_FUNCS(X)                                                                                   \
    X(dnnl_engine_create, int, (odn_handle *, int, size_t))                                           \
    X(dnnl_stream_create, int, (odn_handle *, odn_handle, unsigned))                                  \
    X(dnnl_memory_desc_init_by_tag, int, (odn_md *, int, const int64_t *, int, int))                  \
    X(dnnl_matmul_desc_init, int, (odn_matmul_desc *, const odn_md *, const odn_md *, const odn_md *, \
                                   const odn_md *))                                                   \
    X(dnnl_primitive_attr_create, int, (odn_handle *))                                                \
    X(dnnl_primitive_attr_destroy, int, (odn_handle))                                                 \
    X(dnnl_primitive_attr_set_output_scales, int, (odn_handle, int64_t, int, const float *))          \
    X(dnnl_primitive_attr_set_post_ops, int, (odn_handle, odn_handle))                                \
    X(dnnl_post_ops_create, int, (odn_handle *))                                                      \
    X(dnnl_post_ops_destroy, int, (odn_handle))                                                       \
    X(dnnl_post_ops_append_eltwise, int, (odn_handle, float, int, float, float))                      \
    X(dnnl_primitive_desc_create, int, (odn_handle *, const void *, odn_handle, odn_handle, odn_handle)) \
    X(dnnl_primitive_desc_destroy, int, (odn_handle))                                                 \
    X(dnnl_primitive_desc_query_md, const odn_md *, (odn_handle, int, int))                           \
    X(dnnl_primitive_desc_query, int, (odn_handle, int, int, void *))                                 \
    X(dnnl_reorder_primitive_desc_create, int, (odn_handle *, const odn_md *, odn_handle, const odn_md *, \
                                                odn_handle, odn_handle))                              \
    X(dnnl_primitive_create, int, (odn_handle *, odn_handle))                                         \
    X(dnnl_primitive_destroy, int, (odn_handle))                                                      \
    X(dnnl_primitive_execute, int, (odn_handle, odn_handle, int, const odn_exec_arg *))               \
    X(dnnl_stream_wait, int, (odn_handle))                                                            \
    X(dnnl_memory_create, int, (odn_handle *, const odn_md *, odn_handle, void *))                    \
    X(dnnl_memory_destroy, int, (odn_handle))

#define DECLARE(name, ret, args) static ret(*p_##name) args;
ODN_FUNCS(DECLARE)

static odn_handle engine;
static char found[256];
static char reason[512];
/* oneDNN's OpenMP runtime (libgomp, loaded with libdnnl): its per-thread team size is how the
 * ABI's `threads` is honoured. NULL for a build with another threading runtime. */
static void (*p_omp_set_num_threads)(int);
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void find_onednn(void) {
    /* Be a good neighbour: libgomp's idle threads spin 300 000 rounds (~1 ms or more) after each
     * region, taking the cores from the host's own thread pool. Read when libgomp loads (with
     * libdnnl, unless something loaded it before); a user's value wins. */
    setenv("GOMP_SPINCOUNT", "10000", 0);
    const char *names[] = {getenv("CONDENSE_ONEDNN_LIB"), "libdnnl.so.2", "libmkldnn.so.1"};
    /* CONDENSE_ONEDNN_LIB names the one library to use: no fallback to the system's. */
    const size_t tries = names[0] && *names[0] ? 1 : sizeof names / sizeof names[0];
    for (size_t i = 0; i < tries; i++) {
        if (!names[i] || !*names[i]) continue;
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) continue;
        int ok = 1;
#define RESOLVE(name, ret, args) ok = ok && (*(void **)&p_##name = dlsym(h, #name)) != NULL;
        ODN_FUNCS(RESOLVE)
        if (ok && p_dnnl_engine_create(&engine, ODN_CPU, 0) == ODN_SUCCESS) {
            snprintf(found, sizeof found, "%s", names[i]);
            *(void **)&p_omp_set_num_threads = dlsym(h, "omp_set_num_threads");
            return; /* kept open for the life of the process */
        }
        engine = NULL;
        dlclose(h);
    }
    if (tries == 1) {
        snprintf(reason, sizeof reason, "CONDENSE_ONEDNN_LIB=%s cannot be loaded or is not oneDNN v2", names[0]);
        return;
    }
    snprintf(reason, sizeof reason,
             "oneDNN v2 not found (tried CONDENSE_ONEDNN_LIB, libdnnl.so.2; Debian: apt-get install libdnnl2)");
}

static uint32_t score(void) {
    pthread_once(&once, find_onednn);
    return engine ? 3 : 0;
}

static const char *unusable_reason(void) {
    pthread_once(&once, find_onednn);
    return reason;
}

static int supports(const condense_plugin_layer *l) {
    if (l->struct_size < sizeof(condense_plugin_layer) || l->activation > 2) return 0;
    if (l->n == 0 || l->k == 0 || l->n > INT32_MAX || l->k > INT32_MAX) return 0;
    return l->format == CONDENSE_PLUGIN_DENSE || l->format == CONDENSE_PLUGIN_INT8;
}

typedef struct {
    int64_t n, k;
    int int8, act;
    odn_md src_md, dst_md, wei_md, bias_md, scales_md;
    odn_handle pd, prim, weights, bias_mem; /* bias_mem: f32 layers only */
    float *wscales, *bias;                  /* int8 layers: per-channel scales, bias (or NULL) */
    char kernel[160];
} state;

static void release(void *sv) {
    state *s = sv;
    if (!s) return;
    if (s->prim) p_dnnl_primitive_destroy(s->prim);
    if (s->pd) p_dnnl_primitive_desc_destroy(s->pd);
    if (s->weights) p_dnnl_memory_destroy(s->weights);
    if (s->bias_mem) p_dnnl_memory_destroy(s->bias_mem);
    free(s->wscales);
    free(s->bias);
    free(s);
}

/* One stream per thread: run() is called concurrently and a stream is not meant to be shared. */
static pthread_key_t stream_key;
static pthread_once_t stream_once = PTHREAD_ONCE_INIT;
/* No destructor: streams are tiny and the engine outlives threads, and a destructor would be code
 * of this library run at every thread's exit. */
static void stream_key_init(void) { pthread_key_create(&stream_key, NULL); }
static odn_handle thread_stream(void) {
    pthread_once(&stream_once, stream_key_init);
    odn_handle st = pthread_getspecific(stream_key);
    if (!st && p_dnnl_stream_create(&st, engine, ODN_STREAM_DEFAULT) == ODN_SUCCESS) pthread_setspecific(stream_key, st);
    return st;
}

/* Reorders `data` (layout `user`) into a new memory of layout `packed`. */
static odn_handle reorder_into(const odn_md *user, const void *data, const odn_md *packed) {
    odn_handle um = NULL, pm = NULL, rpd = NULL, r = NULL, st = thread_stream();
    int ok = st && p_dnnl_memory_create(&um, user, engine, (void *)data) == ODN_SUCCESS
             && p_dnnl_memory_create(&pm, packed, engine, ODN_MEMORY_ALLOCATE) == ODN_SUCCESS
             && p_dnnl_reorder_primitive_desc_create(&rpd, user, engine, packed, engine, NULL) == ODN_SUCCESS
             && p_dnnl_primitive_create(&r, rpd) == ODN_SUCCESS;
    if (ok) {
        odn_exec_arg args[] = {{ODN_ARG_FROM, um}, {ODN_ARG_TO, pm}};
        ok = p_dnnl_primitive_execute(r, st, 2, args) == ODN_SUCCESS && p_dnnl_stream_wait(st) == ODN_SUCCESS;
    }
    if (r) p_dnnl_primitive_destroy(r);
    if (rpd) p_dnnl_primitive_desc_destroy(rpd);
    if (um) p_dnnl_memory_destroy(um);
    if (!ok && pm) { p_dnnl_memory_destroy(pm); pm = NULL; }
    return pm;
}

static void *prepare(const condense_plugin_weights *w) {
    const condense_plugin_layer *l = w->layer;
    if (!engine || !supports(l)) return NULL;
    state *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->n = (int64_t)l->n;
    s->k = (int64_t)l->k;
    s->int8 = l->format == CONDENSE_PLUGIN_INT8;
    s->act = (int)l->activation;
    const int wt = s->int8 ? ODN_S8 : ODN_F32;
    odn_dims sd = {ODN_RUNTIME_DIM, s->k}, wd = {s->k, s->n}, dd = {ODN_RUNTIME_DIM, s->n}, bd = {1, s->n};
    odn_md wany, wuser;
    odn_matmul_desc mmd;
    odn_handle attr = NULL, po = NULL;
    int ok = p_dnnl_memory_desc_init_by_tag(&s->src_md, 2, sd, wt, ODN_TAG_AB) == ODN_SUCCESS
             && p_dnnl_memory_desc_init_by_tag(&wany, 2, wd, wt, ODN_TAG_ANY) == ODN_SUCCESS
             /* W[n][k] row-major is oneDNN's [k, n] weights in "ba" order. */
             && p_dnnl_memory_desc_init_by_tag(&wuser, 2, wd, wt, ODN_TAG_BA) == ODN_SUCCESS
             && p_dnnl_memory_desc_init_by_tag(&s->dst_md, 2, dd, ODN_F32, ODN_TAG_AB) == ODN_SUCCESS
             && p_dnnl_memory_desc_init_by_tag(&s->bias_md, 2, bd, ODN_F32, ODN_TAG_AB) == ODN_SUCCESS
             && p_dnnl_primitive_attr_create(&attr) == ODN_SUCCESS;
    const int f32_bias = !s->int8 && w->bias;
    if (ok && s->int8) {
        float rt;
        memcpy(&rt, &odn_runtime_f32_bits, sizeof rt);
        /* run-time scales are declared with count 1 (oneDNN v2's rule); mask 1<<1: one per column */
        ok = p_dnnl_primitive_attr_set_output_scales(attr, 1, 1 << 1, &rt) == ODN_SUCCESS;
        odn_dims scd = {s->n};
        ok = ok && p_dnnl_memory_desc_init_by_tag(&s->scales_md, 1, scd, ODN_F32, 2 /* dnnl_a */) == ODN_SUCCESS;
    } else if (ok && s->act) {
        ok = p_dnnl_post_ops_create(&po) == ODN_SUCCESS
             && p_dnnl_post_ops_append_eltwise(po, 1.0f, s->act == 1 ? ODN_ELTWISE_RELU : ODN_ELTWISE_GELU_ERF, 0, 0)
                    == ODN_SUCCESS
             && p_dnnl_primitive_attr_set_post_ops(attr, po) == ODN_SUCCESS;
    }
    ok = ok && p_dnnl_matmul_desc_init(&mmd, &s->src_md, &wany, f32_bias ? &s->bias_md : NULL, &s->dst_md) == ODN_SUCCESS
         && p_dnnl_primitive_desc_create(&s->pd, &mmd, attr, engine, NULL) == ODN_SUCCESS
         && p_dnnl_primitive_create(&s->prim, s->pd) == ODN_SUCCESS;
    if (po) p_dnnl_post_ops_destroy(po);
    if (attr) p_dnnl_primitive_attr_destroy(attr);
    if (ok) {
        const odn_md *packed = p_dnnl_primitive_desc_query_md(s->pd, ODN_QUERY_WEIGHTS_MD, 0);
        s->wei_md = *packed;
        s->weights = reorder_into(&wuser, s->int8 ? (const void *)w->q8 : (const void *)w->dense, &s->wei_md);
        ok = s->weights != NULL;
        const char *impl = "";
        if (p_dnnl_primitive_desc_query(s->pd, ODN_QUERY_IMPL_INFO_STR, 0, &impl) != ODN_SUCCESS || !impl) impl = "?";
        snprintf(s->kernel, sizeof s->kernel, "onednn matmul %s (%s)", impl, s->int8 ? "s8" : "f32");
    }
    if (ok && f32_bias) { /* a copy: the host's bias pointer dies after prepare */
        s->bias_mem = reorder_into(&s->bias_md, w->bias, &s->bias_md);
        ok = s->bias_mem != NULL;
    }
    if (ok && s->int8) {
        s->wscales = malloc((size_t)s->n * sizeof(float));
        ok = s->wscales != NULL;
        if (ok) memcpy(s->wscales, w->scales, (size_t)s->n * sizeof(float));
        if (ok && w->bias) {
            s->bias = malloc((size_t)s->n * sizeof(float));
            ok = s->bias != NULL;
            if (ok) memcpy(s->bias, w->bias, (size_t)s->n * sizeof(float));
        }
    }
    if (!ok) { release(s); return NULL; }
    return s;
}

static int run(void *sv, const float *x, float *y, uint64_t rows, int32_t threads) {
    const state *s = sv;
    /* The nthreads ICV belongs to the calling thread, so concurrent callers do not race. */
    if (threads > 0 && p_omp_set_num_threads) p_omp_set_num_threads(threads);
    if (rows == 0) return 0;
    odn_handle st = thread_stream();
    if (!st) return 1;
    odn_dims sd = {(int64_t)rows, s->k}, dd = {(int64_t)rows, s->n};
    odn_md src_md, dst_md;
    const int wt = s->int8 ? ODN_S8 : ODN_F32;
    if (p_dnnl_memory_desc_init_by_tag(&src_md, 2, sd, wt, ODN_TAG_AB) != ODN_SUCCESS
        || p_dnnl_memory_desc_init_by_tag(&dst_md, 2, dd, ODN_F32, ODN_TAG_AB) != ODN_SUCCESS)
        return 1;
    const size_t count = (size_t)rows * (size_t)s->k;
    int8_t *xq = NULL;
    float *oscale = NULL;
    const void *src = x;
    if (s->int8) { /* dynamic per-tensor symmetric quantization of X */
        float amax = 0;
        for (size_t i = 0; i < count; i++) amax = fmaxf(amax, fabsf(x[i]));
        const float sx = amax > 0 ? amax / 127.0f : 1.0f, inv = 1.0f / sx;
        xq = malloc(count ? count : 1);
        oscale = malloc((size_t)s->n * sizeof(float));
        if (!xq || !oscale) { free(xq); free(oscale); return 1; }
        for (size_t i = 0; i < count; i++) xq[i] = (int8_t)lrintf(fminf(fmaxf(x[i] * inv, -127.0f), 127.0f));
        for (int64_t j = 0; j < s->n; j++) oscale[j] = sx * s->wscales[j];
        src = xq;
    }
    odn_handle sm = NULL, dm = NULL, om = NULL;
    int ok = p_dnnl_memory_create(&sm, &src_md, engine, (void *)src) == ODN_SUCCESS
             && p_dnnl_memory_create(&dm, &dst_md, engine, y) == ODN_SUCCESS
             && (!s->int8 || p_dnnl_memory_create(&om, &s->scales_md, engine, oscale) == ODN_SUCCESS);
    if (ok) {
        odn_exec_arg args[4] = {{ODN_ARG_SRC, sm}, {ODN_ARG_WEIGHTS, s->weights}, {ODN_ARG_DST, dm}};
        int nargs = 3;
        if (s->bias_mem) args[nargs++] = (odn_exec_arg){ODN_ARG_BIAS, s->bias_mem};
        if (om) args[nargs++] = (odn_exec_arg){ODN_ARG_OUTPUT_SCALES, om};
        ok = p_dnnl_primitive_execute(s->prim, st, nargs, args) == ODN_SUCCESS && p_dnnl_stream_wait(st) == ODN_SUCCESS;
    }
    if (sm) p_dnnl_memory_destroy(sm);
    if (dm) p_dnnl_memory_destroy(dm);
    if (om) p_dnnl_memory_destroy(om);
    free(xq);
    free(oscale);
    if (ok && s->int8 && (s->bias || s->act)) {
        for (uint64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < s->n; j++) {
                float v = y[i * (uint64_t)s->n + (uint64_t)j] + (s->bias ? s->bias[j] : 0.0f);
                if (s->act == 1) v = v > 0 || v != v ? v : 0;
                if (s->act == 2) v = 0.5f * v * (1 + erff(v * 0.70710678f));
                y[i * (uint64_t)s->n + (uint64_t)j] = v;
            }
    }
    return ok ? 0 : 1;
}

static const char *kernel_name(void *sv) { return sv ? ((const state *)sv)->kernel : found; }

static const condense_plugin_v1 table = {
    .abi_version = CONDENSE_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(condense_plugin_v1),
    .name = "onednn",
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
