/* The exact-dequantize int4 kernel, written once in C and compiled per ISA (target attributes
 * let the compiler vectorise the unpack and the 16 independent partial sums). Each weight row is
 * expanded to f32 (s·q, exact) in an L1-sized buffer, then dotted with up to every row of X. */
#ifndef CONDENSE_Q4_DEQUANT_H
#define CONDENSE_Q4_DEQUANT_H
#include "internal.h"

#define CONDENSE_Q4_DEQUANT_KERNEL(NAME, ATTR)                                                    \
    ATTR int NAME(const condense_q4_packed *w, size_t n0, size_t n1, size_t m, const float *x,    \
                  size_t lda, float *y, size_t ldy) {                                             \
        const size_t k = w->k, k16 = w->k16, G = w->group;                                        \
        float *wr = condense_scratch(CONDENSE_SCRATCH_WROW, k16 * sizeof(float));                 \
        if (!wr) return CONDENSE_ERR_NO_MEMORY;                                                   \
        for (size_t r = n0; r < n1; r++) {                                                        \
            const uint8_t *nb = w->nib + r * (k16 / 2);                                           \
            const float *sc = w->scale + r * w->groups;                                           \
            for (size_t g = 0; g < w->groups; g++) {                                              \
                const float s = sc[g];                                                            \
                const size_t c0 = g * G / 2, c1 = ((g + 1) * G < k16 ? (g + 1) * G : k16) / 2;    \
                for (size_t c = c0; c < c1; c++) {                                                \
                    /* Sign-extend each nibble through uint8_t: shifting a negative int is UB. */  \
                    wr[2 * c] = s * (float)((int8_t)(uint8_t)(nb[c] << 4) >> 4);                  \
                    wr[2 * c + 1] = s * (float)((int8_t)nb[c] >> 4);                              \
                }                                                                                 \
            }                                                                                     \
            for (size_t i = 0; i < m; i++) {                                                      \
                const float *xi = x + i * lda;                                                    \
                float acc[16] = {0};                                                              \
                size_t c = 0;                                                                     \
                for (; c + 16 <= k; c += 16)                                                      \
                    for (int j = 0; j < 16; j++) acc[j] += wr[c + j] * xi[c + j];                 \
                for (; c < k; c++) acc[c % 16] += wr[c] * xi[c];                                  \
                float s = 0;                                                                      \
                for (int j = 0; j < 16; j++) s += acc[j];                                         \
                y[i * ldy + r] = s;                                                               \
            }                                                                                     \
        }                                                                                         \
        return CONDENSE_OK;                                                                       \
    }
#endif
