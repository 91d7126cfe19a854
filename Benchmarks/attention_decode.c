// One decode step's causal attention (one query row over p0 cached positions; SmolLM2's shape:
// 9 heads, 3 KV heads, head dimension 64), the cache hot, timed per call: what
// docs/performance.md quotes for f16 against q8_0 caches at depth 4096.
//
//   mkdir -p /tmp/kb && for f in $(find Kernels -name '*.c'); do
//     clang -O2 -fno-math-errno -IKernels/common -IKernels/include -c $f -o /tmp/kb/$(echo $f | tr / _).o; done
//   clang -O2 -IKernels/include Benchmarks/attention_decode.c /tmp/kb/*.o -lpthread -lm -o /tmp/kb/attn
//   /tmp/kb/attn 4096 2 1     # positions, threads, ggml type (1: F16, 8: Q8_0)
#include "condense_kernels.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s POSITIONS THREADS [GGML_TYPE]\n", argv[0]);
        return 2;
    }
    const int heads = 9, kvh = 3, hd = 64;
    const size_t p0 = (size_t)atol(argv[1]), kvd = (size_t)kvh * hd, n = p0 + 1;
    const int thr = atoi(argv[2]);
    const uint32_t type = argc > 3 ? (uint32_t)atoi(argv[3]) : CONDENSE_GGUF_F16;
    if (type != CONDENSE_GGUF_F16 && type != CONDENSE_GGUF_Q8_0) {
        fprintf(stderr, "type must be 1 (F16) or 8 (Q8_0)\n");
        return 2;
    }
    float *q = malloc(heads * hd * sizeof *q), *o = malloc(heads * hd * sizeof *o), *row = malloc(kvd * sizeof *row);
    uint8_t *k = malloc(n * kvd * 2), *v = malloc(n * kvd * 2);
    const size_t rb = type == CONDENSE_GGUF_F16 ? kvd * 2 : kvd / 32 * 34;
    for (int i = 0; i < heads * hd; i++) q[i] = (float)(rand() % 100) / 100.0f;
    for (size_t r = 0; r < n; r++) {
        for (size_t j = 0; j < kvd; j++) row[j] = (float)(rand() % 100) / 100.0f - 0.5f;
        condense_kv_write_row(type, row, k + r * rb, kvd, condense_isa_active());
        condense_kv_write_row(type, row, v + r * rb, kvd, condense_isa_active());
    }
    const condense_isa isa = condense_isa_active();
    for (int w = 0; w < 50; w++)
        condense_causal_attention(q, heads * hd, k, v, type, kvd, o, heads * hd, 1, p0, heads, kvh, hd, 0.125f, isa, thr);
    const int reps = 2000;
    const double t0 = now();
    for (int w = 0; w < reps; w++)
        condense_causal_attention(q, heads * hd, k, v, type, kvd, o, heads * hd, 1, p0, heads, kvh, hd, 0.125f, isa, thr);
    const double t = (now() - t0) / reps;
    printf("positions %zu, threads %d, type %u: %.1f us per call, x30 layers = %.2f ms per token\n", p0, thr, type, t * 1e6, t * 30e3);
    free(q); free(o); free(row); free(k); free(v);
    return 0;
}
