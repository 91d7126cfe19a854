/*
 * oneDNN peer for `condense bench gemm --peers`: Y[M,N] = X[M,K] · W[N,K]ᵀ with oneDNN's matmul,
 * weights reordered once (untimed) into the layout the primitive prefers (format_tag any),
 * one primitive per shape. Prints JSON records like `condense bench gemm --json`.
 *
 * With --int8: u8 activations × s8 weights → f32 (the integer matmul; activations arrive already
 * quantized, so oneDNN's time excludes the quantization Condense does per call).
 *
 * usage: gemm_onednn [--int8] [--threads T] [--reps R] [--min-sample S] [--rotate C] M,N,K [M,N,K ...]
 * --rotate C cycles through C copies of the packed weights (as Condense's --rotate), so that at
 * M = 1 they stream from DRAM; --min-sample is the seconds a timed sample must last.
 * Threads come from OMP_NUM_THREADS (oneDNN's Debian build uses OpenMP); --threads sets it.
 */
#include <dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(call)                                                              \
    do {                                                                         \
        dnnl_status_t s_ = (call);                                               \
        if (s_ != dnnl_success) {                                                \
            fprintf(stderr, "oneDNN error %d at %s:%d\n", (int)s_, __FILE__, __LINE__); \
            exit(2);                                                             \
        }                                                                        \
    } while (0)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void fill(float *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)(seed >> 8) / (float)(1 << 24) * 2.0f - 1.0f;
    }
}

int main(int argc, char **argv) {
    int reps = 7, threads = 0, int8 = 0, rotate = 1;
    double min_sample = 0.02;
    int first = 1;
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    int argi = 1;
    for (; argi < argc; argi++) {
        if (!strcmp(argv[argi], "--reps") && argi + 1 < argc) reps = atoi(argv[++argi]);
        else if (!strcmp(argv[argi], "--threads") && argi + 1 < argc) threads = atoi(argv[++argi]);
        else if (!strcmp(argv[argi], "--int8")) int8 = 1;
        else if (!strcmp(argv[argi], "--rotate") && argi + 1 < argc) rotate = atoi(argv[++argi]);
        else if (!strcmp(argv[argi], "--min-sample") && argi + 1 < argc) min_sample = atof(argv[++argi]);
        else break;
    }
    if (threads > 0) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d", threads);
        /* libgomp reads OMP_NUM_THREADS in a load-time constructor: the caller must set it. */
        if (!getenv("OMP_NUM_THREADS") || strcmp(getenv("OMP_NUM_THREADS"), buf) != 0)
            fprintf(stderr, "note: set OMP_NUM_THREADS=%s in the environment for %d threads\n", buf, threads);
    }
    if (rotate < 1 || rotate > 4096 || reps < 1 || !(min_sample >= 0)) {
        fprintf(stderr, "bad --rotate, --reps or --min-sample\n");
        return 1;
    }
    CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&stream, eng, dnnl_stream_default_flags));
    printf("[");
    for (; argi < argc; argi++) {
        long m, n, k;
        if (sscanf(argv[argi], "%ld,%ld,%ld", &m, &n, &k) != 3) {
            fprintf(stderr, "bad case '%s', expected M,N,K\n", argv[argi]);
            return 1;
        }
        dnnl_dims_t sd = {m, k}, wd = {k, n}, dd = {m, n};
        dnnl_memory_desc_t src_md, wei_any, wei_user, dst_md;
        const dnnl_data_type_t st = int8 ? dnnl_u8 : dnnl_f32, wt = int8 ? dnnl_s8 : dnnl_f32;
        CHECK(dnnl_memory_desc_init_by_tag(&src_md, 2, sd, st, dnnl_ab));
        CHECK(dnnl_memory_desc_init_by_tag(&wei_any, 2, wd, wt, dnnl_format_tag_any));
        /* W[N,K] row-major is the [K,N] weights matrix in "ba" order. */
        CHECK(dnnl_memory_desc_init_by_tag(&wei_user, 2, wd, wt, dnnl_ba));
        CHECK(dnnl_memory_desc_init_by_tag(&dst_md, 2, dd, dnnl_f32, dnnl_ab));
        dnnl_matmul_desc_t mmd;
        CHECK(dnnl_matmul_desc_init(&mmd, &src_md, &wei_any, NULL, &dst_md));
        dnnl_primitive_desc_t pd;
        CHECK(dnnl_primitive_desc_create(&pd, &mmd, NULL, eng, NULL));
        const dnnl_memory_desc_t *wei_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        const char *impl = "";
        CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));

        dnnl_memory_t src, wu, dst;
        dnnl_memory_t *wp = malloc(sizeof(dnnl_memory_t) * (size_t)rotate);
        CHECK(dnnl_memory_create(&src, &src_md, eng, DNNL_MEMORY_ALLOCATE));
        CHECK(dnnl_memory_create(&wu, &wei_user, eng, DNNL_MEMORY_ALLOCATE));
        for (int c = 0; c < rotate; c++) CHECK(dnnl_memory_create(&wp[c], wei_md, eng, DNNL_MEMORY_ALLOCATE));
        CHECK(dnnl_memory_create(&dst, &dst_md, eng, DNNL_MEMORY_ALLOCATE));
        void *h;
        if (int8) { /* bytes: any pattern is a valid u8 / s8 */
            CHECK(dnnl_memory_get_data_handle(src, &h)); fill(h, (size_t)(m * k) / 4, 1);
            CHECK(dnnl_memory_get_data_handle(wu, &h)); fill(h, (size_t)(n * k) / 4, 2);
        } else {
            CHECK(dnnl_memory_get_data_handle(src, &h)); fill(h, (size_t)(m * k), 1);
            CHECK(dnnl_memory_get_data_handle(wu, &h)); fill(h, (size_t)(n * k), 2);
        }

        dnnl_primitive_desc_t rpd;
        dnnl_primitive_t reorder, mm;
        CHECK(dnnl_reorder_primitive_desc_create(&rpd, &wei_user, eng, wei_md, eng, NULL));
        CHECK(dnnl_primitive_create(&reorder, rpd));
        for (int c = 0; c < rotate; c++) {
            dnnl_exec_arg_t rargs[] = {{DNNL_ARG_FROM, wu}, {DNNL_ARG_TO, wp[c]}};
            CHECK(dnnl_primitive_execute(reorder, stream, 2, rargs));
        }
        CHECK(dnnl_stream_wait(stream));
        CHECK(dnnl_primitive_create(&mm, pd));
        dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wp[0]}, {DNNL_ARG_DST, dst}};
        long turn = 0;
#define RUN_ONE() do { args[1].memory = wp[turn++ % rotate]; CHECK(dnnl_primitive_execute(mm, stream, 3, args)); } while (0)

        /* Same method as Condense's bench: warm-up, calibrate to >= min_sample a sample, median. */
        RUN_ONE();
        CHECK(dnnl_stream_wait(stream));
        long iters = 1;
        for (;;) {
            double t0 = now_s();
            for (long i = 0; i < iters; i++) RUN_ONE();
            CHECK(dnnl_stream_wait(stream));
            double t = now_s() - t0;
            if (t >= min_sample || iters >= (1 << 20)) break;
            iters *= 2;
        }
        double *ts = malloc(sizeof(double) * (size_t)reps);
        for (int r = 0; r < reps; r++) {
            double t0 = now_s();
            for (long i = 0; i < iters; i++) RUN_ONE();
            CHECK(dnnl_stream_wait(stream));
            ts[r] = (now_s() - t0) / (double)iters;
        }
        qsort(ts, (size_t)reps, sizeof(double), cmp_double);
        double med = ts[reps / 2];
        printf("%s\n  {\"op\": \"gemm\", \"format\": \"%s\", \"m\": %ld, \"n\": %ld, \"k\": %ld, "
               "\"backend\": \"onednn\", \"kernel\": \"%s\", \"median_s\": %.9g, \"min_s\": %.9g, "
               "\"max_s\": %.9g, \"rotate\": %d, \"overhead_s\": 0, \"%s\": %.6g}",
               first ? "" : ",", int8 ? "int8" : "dense", m, n, k, impl, med, ts[0], ts[reps - 1], rotate,
               int8 ? "gops" : "gflops", 2.0 * m * n * k / med * 1e-9);
        first = 0;
        free(ts);
        dnnl_primitive_destroy(mm);
        dnnl_primitive_destroy(reorder);
        dnnl_primitive_desc_destroy(rpd);
        dnnl_primitive_desc_destroy(pd);
        dnnl_memory_destroy(src);
        dnnl_memory_destroy(wu);
        for (int c = 0; c < rotate; c++) dnnl_memory_destroy(wp[c]);
        free(wp);
        dnnl_memory_destroy(dst);
    }
    printf("\n]\n");
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(eng);
    return 0;
}
