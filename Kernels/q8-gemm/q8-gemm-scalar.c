/* int8 micro-kernel in portable C (4×16, k4 steps of 4 bytes): the reference sibling. */
#include "internal.h"

void condense_q8_ukernel_4x16__scalar(int mr, int nv, size_t kq, const uint8_t *a, size_t lda,
                                      const void *bv, const condense_q8_epilogue *ep) {
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
    for (int i = 0; i < mr; i++) {
        if (ep->c) {
            for (int j = 0; j < nv; j++) ep->c[(size_t)i * ep->ldc + (size_t)j] = acc[i][j];
            continue;
        }
        float *yi = ep->y + (size_t)i * ep->ldy;
        for (int j = 0; j < nv; j++) {
            float v = ep->sx[i] * ep->sw[j] * (float)(acc[i][j] - ep->zx[i] * ep->wsum[j]);
            yi[j] = ep->bias ? v + ep->bias[j] : v;
        }
        condense_f32_activation__scalar(yi, (size_t)nv, ep->act);
    }
}
