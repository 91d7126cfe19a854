/* Y[M,N] = X[M,K] · Wᵀ with W kept in ggml's blocks (Q8_0, Q4_0, Q4_1): the weights are read at
 * their stored size (4.5–8.5 bits) instead of being widened to f32, which is what bounds token
 * generation. Each block's dot is d·Σ x·q (+ m·Σ x for Q4_1, with Σ x precomputed once per block
 * of X): the exact dequantized values times x, summed in another order. Scalar and AVX-512
 * kernels; threads over rows of W. */
#include "internal.h"
#include "omp_shim.h"

#include <string.h>

#if CONDENSE_X86
#include <immintrin.h>
#endif

static inline float h16(const uint8_t *p) { return condense_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

static size_t block_bytes(uint32_t type) {
    switch (type) {
    case CONDENSE_GGUF_Q8_0: return 34;
    case CONDENSE_GGUF_Q4_0: return 18;
    case CONDENSE_GGUF_Q4_1: return 20;
    default: return 0;
    }
}

/* One weight row (nb blocks) against one row of X; xs: Σ x per block (Q4_1 only). */
static float row_dot_scalar(uint32_t type, const uint8_t *w, size_t nb, const float *x, const float *xs) {
    float acc = 0;
    for (size_t b = 0; b < nb; b++, x += 32) {
        float s = 0;
        if (type == CONDENSE_GGUF_Q8_0) {
            const uint8_t *blk = w + b * 34;
            for (int j = 0; j < 32; j++) s += x[j] * (float)(int8_t)blk[2 + j];
            acc += h16(blk) * s;
        } else if (type == CONDENSE_GGUF_Q4_0) {
            const uint8_t *blk = w + b * 18;
            for (int j = 0; j < 16; j++) s += x[j] * (float)((blk[2 + j] & 0xF) - 8) + x[j + 16] * (float)((blk[2 + j] >> 4) - 8);
            acc += h16(blk) * s;
        } else {
            const uint8_t *blk = w + b * 20;
            for (int j = 0; j < 16; j++) s += x[j] * (float)(blk[4 + j] & 0xF) + x[j + 16] * (float)(blk[4 + j] >> 4);
            acc += h16(blk) * s + h16(blk + 2) * xs[b];
        }
    }
    return acc;
}

#if CONDENSE_X86
#define CONDENSE_TARGET_GGUF512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")))

/* F16C: the block scales without a call per block (exact, like condense_f16_to_f32). */
CONDENSE_TARGET_GGUF512 static inline float h16_f16c(const uint8_t *p) {
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(p[0] | (p[1] << 8))));
}

CONDENSE_TARGET_GGUF512 static float row_dot_avx512(uint32_t type, const uint8_t *w, size_t nb, const float *x, const float *xs) {
    __m512 acc = _mm512_setzero_ps();
    float mterm = 0;
    const __m128i lo4 = _mm_set1_epi8(0x0F);
    for (size_t b = 0; b < nb; b++, x += 32) {
        const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
        __m512 q0, q1;
        const uint8_t *blk;
        if (type == CONDENSE_GGUF_Q8_0) {
            blk = w + b * 34;
            q0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + 2))));
            q1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + 18))));
        } else {
            blk = w + b * (type == CONDENSE_GGUF_Q4_0 ? 18 : 20);
            const __m128i v = _mm_loadu_si128((const __m128i *)(blk + (type == CONDENSE_GGUF_Q4_0 ? 2 : 4)));
            __m512i l = _mm512_cvtepu8_epi32(_mm_and_si128(v, lo4));
            __m512i h = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v, 4), lo4));
            if (type == CONDENSE_GGUF_Q4_0) {
                const __m512i eight = _mm512_set1_epi32(8);
                l = _mm512_sub_epi32(l, eight);
                h = _mm512_sub_epi32(h, eight);
            } else {
                mterm += h16_f16c(blk + 2) * xs[b];
            }
            q0 = _mm512_cvtepi32_ps(l);
            q1 = _mm512_cvtepi32_ps(h);
        }
        const __m512 p = _mm512_fmadd_ps(x1, q1, _mm512_mul_ps(x0, q0));
        acc = _mm512_fmadd_ps(_mm512_set1_ps(h16_f16c(blk)), p, acc);
        if (b + 8 < nb) _mm_prefetch((const char *)(blk + 8 * 20), _MM_HINT_T0);
    }
    return _mm512_reduce_add_ps(acc) + mterm;
}
#endif

/* The one registration point: descriptor and code together, one entry per block type and ISA. */
typedef float (*row_dot_fn)(uint32_t, const uint8_t *, size_t, const float *, const float *);
typedef struct gguf_kernel_impl {
    condense_gguf_kernel info; /* first: its address is the entry's */
    row_dot_fn dot;
} gguf_kernel_impl;

static const gguf_kernel_impl kernels[] = {
    {{"gguf_q8_0_dot__scalar", CONDENSE_ISA_SCALAR, CONDENSE_GGUF_Q8_0}, row_dot_scalar},
    {{"gguf_q4_0_dot__scalar", CONDENSE_ISA_SCALAR, CONDENSE_GGUF_Q4_0}, row_dot_scalar},
    {{"gguf_q4_1_dot__scalar", CONDENSE_ISA_SCALAR, CONDENSE_GGUF_Q4_1}, row_dot_scalar},
#if CONDENSE_X86
    {{"gguf_q8_0_dot__avx512", CONDENSE_ISA_AVX512, CONDENSE_GGUF_Q8_0}, row_dot_avx512},
    {{"gguf_q4_0_dot__avx512", CONDENSE_ISA_AVX512, CONDENSE_GGUF_Q4_0}, row_dot_avx512},
    {{"gguf_q4_1_dot__avx512", CONDENSE_ISA_AVX512, CONDENSE_GGUF_Q4_1}, row_dot_avx512},
#endif
};

int condense_gguf_kernel_count(void) { return (int)(sizeof kernels / sizeof kernels[0]); }

const condense_gguf_kernel *condense_gguf_kernel_at(int i) {
    return i >= 0 && i < condense_gguf_kernel_count() ? &kernels[i].info : NULL;
}

static const gguf_kernel_impl *kernel_for(uint32_t type, condense_isa isa) {
    if (isa > condense_isa_detected()) isa = condense_isa_detected();
    const gguf_kernel_impl *best = NULL;
    for (int i = 0; i < condense_gguf_kernel_count(); i++) {
        const gguf_kernel_impl *k = &kernels[i];
        if (k->info.type != type || k->info.isa > isa) continue;
        if (!best || k->info.isa > best->info.isa) best = k;
    }
    return best;
}

int condense_gguf_gemm(uint32_t type, const void *w, size_t n, size_t k, size_t m, const float *x, size_t lda,
                       float *y, size_t ldy, condense_isa isa, int threads) {
    const size_t bb = block_bytes(type);
    if (!bb || k % 32) return CONDENSE_ERR_INVALID;
    if (m == 0 || n == 0) return CONDENSE_OK;
    const size_t nb = k / 32, row_bytes = nb * bb;
    /* Σ x per block of 32, per row of X (Q4_1's min term): computed once per call. */
    float *xs = NULL;
    if (type == CONDENSE_GGUF_Q4_1) {
        xs = condense_scratch(CONDENSE_SCRATCH_QX, m * nb * sizeof(float) + 64);
        if (!xs) return CONDENSE_ERR_NO_MEMORY;
        for (size_t i = 0; i < m; i++)
            for (size_t b = 0; b < nb; b++) {
                float s = 0;
                for (int j = 0; j < 32; j++) s += x[i * lda + b * 32 + j];
                xs[i * nb + b] = s;
            }
    }
    const gguf_kernel_impl *kr = kernel_for(type, isa);
    if (!kr) return CONDENSE_ERR_INVALID;
    const row_dot_fn dot = kr->dot;
    int nt = threads > 0 ? threads : condense_get_num_threads();
    if (n * k * m < 65536) nt = 1;
    const uint8_t *wb = w;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (long r = 0; r < (long)n; r++) {
        const uint8_t *wr = wb + (size_t)r * row_bytes;
        for (size_t i = 0; i < m; i++) y[i * ldy + (size_t)r] = dot(type, wr, nb, x + i * lda, xs ? xs + i * nb : NULL);
    }
    return CONDENSE_OK;
}

const char *condense_gguf_gemm_kernel_name(uint32_t type, condense_isa isa) {
    const gguf_kernel_impl *k = kernel_for(type, isa);
    return k ? k->info.name : "none";
}
