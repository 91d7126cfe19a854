/* int8 micro-kernel in portable C (4×16, k4 steps of 4 bytes): the reference sibling. */
#include "internal.h"

void condense_q8_ukernel_4x16__scalar(int mr, int nv, size_t kq, const uint8_t *a, size_t lda,
                                      const void *bv, int32_t *c, size_t ldc) {
    const int8_t *b = bv;
    int32_t acc[4][16] = {{0}};
    for (size_t q = 0; q < kq; q++) {
        const int8_t *bq = b + q * 64; /* 16 channels × 4 bytes */
        for (int i = 0; i < mr; i++) {
            const uint8_t *ai = a + (size_t)i * lda + 4 * q;
            for (int j = 0; j < 16; j++)
                acc[i][j] += ai[0] * bq[4 * j] + ai[1] * bq[4 * j + 1] + ai[2] * bq[4 * j + 2] + ai[3] * bq[4 * j + 3];
        }
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nv; j++) c[(size_t)i * ldc + (size_t)j] = acc[i][j];
}
