/*
 * Condense plugin ABI, version 1. A plugin is a shared library that exports
 *
 *     const condense_plugin_v1 *condense_plugin_entry(uint32_t host_abi_version);
 *
 * and includes nothing of Condense but this header. Rules (see docs/plugin-abi.md):
 *  - every struct that crosses the ABI begins with `abi_version` and `struct_size`;
 *  - members are only ever appended; each says which ABI version added it;
 *  - the host reads a member only if struct_size covers it, and NULL means "not provided";
 *  - the plugin keeps ownership of what it returns; the host frees prepared state only through
 *    `release`, and never unloads a plugin while a layer it prepared is alive.
 */
#ifndef CONDENSE_PLUGIN_H
#define CONDENSE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CONDENSE_PLUGIN_ABI_VERSION 1u
#define CONDENSE_PLUGIN_ENTRY "condense_plugin_entry"

/** Weight formats (values are stable). */
typedef enum condense_plugin_format {
    CONDENSE_PLUGIN_DENSE = 0,   /* f32 row-major W[n][k] */
    CONDENSE_PLUGIN_S24 = 1,     /* 2:4: values n·k4/2 f32, meta n·meta_stride bytes (docs/formats.md) */
    CONDENSE_PLUGIN_CSR = 2,     /* row_ptr n+1 (u32), index (u16 or u32), values f32 */
    CONDENSE_PLUGIN_INT8 = 3,    /* s8 n·k, scales n (symmetric per channel) */
    CONDENSE_PLUGIN_INT4 = 4,    /* packed nibbles n·⌈k/2⌉, scales n·groups */
} condense_plugin_format;

/** What a layer is: asked of `supports` before any weights are handed over. v1. */
typedef struct condense_plugin_layer {
    uint32_t abi_version;        /* v1 */
    uint32_t struct_size;        /* v1 */
    uint32_t format;             /* v1: condense_plugin_format */
    uint64_t n, k;               /* v1: output and input features */
    uint32_t has_bias;           /* v1 */
    uint32_t activation;         /* v1: 0 none, 1 ReLU, 2 GELU (exact, erf) */
    uint32_t group_size;         /* v1: int4 only */
} condense_plugin_layer;

/** The weights of a layer, in its format. Pointers are valid only during `prepare`. v1. */
typedef struct condense_plugin_weights {
    uint32_t abi_version;        /* v1 */
    uint32_t struct_size;        /* v1 */
    const condense_plugin_layer *layer; /* v1 */
    const float *dense;          /* v1: DENSE */
    const float *values;         /* v1: S24, CSR values */
    const uint8_t *meta;         /* v1: S24 masks */
    uint64_t k4, meta_stride;    /* v1: S24 */
    const uint32_t *row_ptr;     /* v1: CSR */
    const void *index;           /* v1: CSR */
    uint32_t index_bytes;        /* v1: CSR, 2 or 4 */
    const int8_t *q8;            /* v1: INT8 */
    const uint8_t *q4;           /* v1: INT4 */
    const float *scales;         /* v1: INT8, INT4 */
    const float *bias;           /* v1: n floats or NULL */
} condense_plugin_weights;

/** The function table a plugin returns. Required members: name, supports, prepare, run,
 *  release. v1. */
typedef struct condense_plugin_v1 {
    uint32_t abi_version;        /* v1: CONDENSE_PLUGIN_ABI_VERSION the plugin was built for */
    uint32_t struct_size;        /* v1: sizeof(condense_plugin_v1) */
    const char *name;            /* v1: short unique backend name */
    uint32_t version;            /* v1: the plugin's own version (part of tuning-cache keys) */
    /** v1, optional: suitability on this CPU, 0 = unusable (e.g. its library is missing). */
    uint32_t (*score)(void);
    /** v1: 1 if it can run this layer. */
    int (*supports)(const condense_plugin_layer *layer);
    /** v1: pack the weights; returns state or NULL on failure. */
    void *(*prepare)(const condense_plugin_weights *weights);
    /** v1: Y[rows, n] = act(X[rows, k] · Wᵀ + b), row-major, contiguous; threads <= 0: default.
     *  Returns 0 on success. Called concurrently from several threads on the same state. */
    int (*run)(void *state, const float *x, float *y, uint64_t rows, int32_t threads);
    /** v1: free prepared state. */
    void (*release)(void *state);
    /** v1, optional: the kernel a prepared state runs (for placement reports). */
    const char *(*kernel_name)(void *state);
    /** v1, optional: why score() is 0, for the host's log. */
    const char *(*unusable_reason)(void);
} condense_plugin_v1;

typedef const condense_plugin_v1 *(*condense_plugin_entry_fn)(uint32_t host_abi_version);

#ifdef __cplusplus
}
#endif

#endif /* CONDENSE_PLUGIN_H */
