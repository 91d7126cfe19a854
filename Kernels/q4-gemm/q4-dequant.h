/* The int4 panel unpack, written once in C and compiled per ISA (the contiguous byte → f32
 * loop vectorises under the target attributes): one panel's K slice, exactly s·q, into the f32
 * micro-kernel's [k][nr] layout. */
#ifndef CONDENSE_Q4_DEQUANT_H
#define CONDENSE_Q4_DEQUANT_H
#include "internal.h"

#define CONDENSE_Q4_UNPACK(NAME, ATTR)                                                            \
    ATTR void NAME(const condense_q4_packed *w, size_t panel, size_t k0, size_t kc, float *buf) { \
        const size_t nr = w->nr, half = nr / 2;                                                   \
        const uint8_t *nb = w->nib + (panel * w->k16 + k0) * half;                                \
        for (size_t kk = 0; kk < kc; kk++) {                                                      \
            const float *s = w->pscale + (panel * w->groups + (k0 + kk) / w->group) * nr;         \
            const uint8_t *b = nb + kk * half;                                                    \
            float *d = buf + kk * nr;                                                             \
            /* Sign-extend each nibble through uint8_t: shifting a negative int is UB. */          \
            for (size_t j = 0; j < half; j++) {                                                   \
                d[j] = s[j] * (float)((int8_t)(uint8_t)(b[j] << 4) >> 4);                         \
                d[j + half] = s[j + half] * (float)((int8_t)b[j] >> 4);                           \
            }                                                                                     \
        }                                                                                         \
    }
#endif
