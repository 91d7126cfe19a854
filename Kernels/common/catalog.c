/* The kernel catalog: every family's table, one descriptor type (condense_kernels.h). Built once
 * from the families' own tables, so a kernel is registered in exactly one place, beside its code. */
#include "internal.h"
#include "condense_kernels.h"

#include <pthread.h>
#include <stdlib.h>

static condense_kernel_desc *all;
static int count;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void add(const char *name, const char *family, condense_isa isa, uint32_t features) {
    all[count++] = (condense_kernel_desc){name, family, isa, features};
}

static void build(void) {
    const int n = condense_f32_gemm_kernel_count() + condense_half_kernel_count() + condense_sparse_kernel_count() +
                  condense_q8_kernel_count() + condense_q4_kernel_count() + condense_s24q8_kernel_count() +
                  condense_gguf_kernel_count();
    all = calloc((size_t)(n > 0 ? n : 1), sizeof *all);
    if (!all) return;   /* the catalog is then empty; nothing else depends on it */
    for (int i = 0; i < condense_f32_gemm_kernel_count(); i++) {
        const condense_f32_gemm_kernel *k = condense_f32_gemm_kernel_at(i);
        add(k->name, "f32_gemm", k->isa, 0);
    }
    for (int i = 0; i < condense_half_kernel_count(); i++) {
        const condense_half_kernel *k = condense_half_kernel_at(i);
        add(k->name, "half", k->isa, k->features);
    }
    for (int i = 0; i < condense_sparse_kernel_count(); i++) {
        const condense_sparse_kernel *k = condense_sparse_kernel_at(i);
        add(k->name, "sparse", k->isa, 0);
    }
    for (int i = 0; i < condense_q8_kernel_count(); i++) {
        const condense_q8_kernel *k = condense_q8_kernel_at(i);
        add(k->name, "q8", k->isa, k->features);
    }
    for (int i = 0; i < condense_q4_kernel_count(); i++) {
        const condense_q4_kernel *k = condense_q4_kernel_at(i);
        add(k->name, "q4", k->isa, k->features);
    }
    for (int i = 0; i < condense_s24q8_kernel_count(); i++) {
        const condense_s24q8_kernel *k = condense_s24q8_kernel_at(i);
        add(k->name, "s24q8", k->isa, k->features);
    }
    for (int i = 0; i < condense_gguf_kernel_count(); i++) {
        const condense_gguf_kernel *k = condense_gguf_kernel_at(i);
        add(k->name, "gguf", k->isa, k->features);
    }
}

int condense_kernel_count(void) {
    pthread_once(&once, build);
    return count;
}

const condense_kernel_desc *condense_kernel_at(int i) {
    return i >= 0 && i < condense_kernel_count() ? &all[i] : NULL;
}

int condense_kernel_desc_runnable(const condense_kernel_desc *k) {
    if (!k || !condense_isa_runs_on(k->isa, condense_isa_detected())) return 0;
    return (condense_cpu_features() & k->features) == k->features;
}
