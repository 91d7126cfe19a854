/* Portable 2:4-int8 kernel: the reference sibling, and the path without VBMI2 + VNNI. */
#include "internal.h"

void condense_s24q8_dot__scalar(const condense_s24q8_packed *w, size_t n0, size_t n1, size_t m,
                                const uint8_t *xq, size_t ldq, int32_t *acc, size_t ldacc) {
    const size_t words = w->k64 / 64;
    for (size_t r = n0; r < n1; r++) {
        const int8_t *v = w->values + r * (w->k64 / 2);
        const uint64_t *mk = w->masks + r * words;
        for (size_t i = 0; i < m; i++) {
            const uint8_t *xi = xq + i * ldq;
            int32_t s = 0;
            size_t slot = 0;
            for (size_t c = 0; c < words; c++)
                for (unsigned b = 0; b < 64; b++)
                    if ((mk[c] >> b) & 1) s += (int32_t)xi[64 * c + b] * v[slot++];
            acc[i * ldacc + r] = s;
        }
    }
}
