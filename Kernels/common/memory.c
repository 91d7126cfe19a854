/* Allocation for the kernels: one aligned allocator with a test hook, and the grow-only
 * per-thread scratch buffers the drivers share (each family had its own copy before). */
#include "internal.h"

#include <stdlib.h>

/* Per thread, so parallel tests arming it do not make each other's kernels fail. */
static _Thread_local int fail_next;

void condense_test_fail_allocations(int count) { fail_next = count > 0 ? count : 0; }

void *condense_aligned_alloc(size_t bytes) {
    if (fail_next > 0) {
        fail_next--;
        return NULL;
    }
    const size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes) return NULL; /* overflow */
    return aligned_alloc(64, rounded ? rounded : 64);
}

void *condense_zalloc(size_t bytes) {
    if (fail_next > 0) {
        fail_next--;
        return NULL;
    }
    return calloc(1, bytes ? bytes : 1);
}

/* A kernel call is often microseconds: malloc/free per call showed up at high sparsity, so each
 * thread keeps its buffers (OpenMP's threads are long-lived) and only grows them. */
static _Thread_local void *bufs[CONDENSE_SCRATCH_SLOTS];
static _Thread_local size_t caps[CONDENSE_SCRATCH_SLOTS];

void *condense_scratch(int slot, size_t bytes) {
    /* While the test hook is armed the buffer is allocated anew, so the failure path is reached
     * whatever earlier calls left behind. */
    if (bytes > caps[slot] || fail_next > 0) {
        free(bufs[slot]);
        bufs[slot] = condense_aligned_alloc(bytes);
        caps[slot] = bufs[slot] ? bytes : 0;
    }
    return bufs[slot];
}
