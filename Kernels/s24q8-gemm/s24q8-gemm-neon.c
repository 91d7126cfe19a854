/* 2:4-int8 dot kernels for AArch64. Per 16 columns, the two mask bytes pick two TBL controls
 * (each byte: the stored value's slot, or 0xFF, which TBL turns into 0, for a pruned column);
 * TBL places the 8 stored values of those columns into 16 s8 lanes. Then
 *  - neon: widen to int16 and multiply-accumulate into int32 (SMLAL): exact;
 *  - dotprod: SDOT on x − 128, with 128·Σw added back per row: exact, 4× fewer instructions.
 * One expansion serves up to 4 rows of X. */
#include "internal.h"

#if CONDENSE_ARM64
#include <arm_neon.h>
#include <pthread.h>

static uint8_t ctl[2][256][8];
static pthread_once_t ctl_once = PTHREAD_ONCE_INIT;

static void build_ctl(void) {
    for (int h = 0; h < 2; h++)
        for (int b = 0; b < 256; b++) {
            int slot = 4 * h;
            for (int i = 0; i < 8; i++) ctl[h][b][i] = (b >> i) & 1 ? (uint8_t)slot++ : 0xFF;
        }
}

CONDENSE_INLINE int8x16_t expand16(const int8_t *v, const uint8_t *mb, size_t c) {
    const int8x8_t packed = vld1_s8(v + 8 * c);
    return vcombine_s8(vtbl1_s8(packed, vreinterpret_s8_u8(vld1_u8(ctl[0][mb[2 * c]]))),
                       vtbl1_s8(packed, vreinterpret_s8_u8(vld1_u8(ctl[1][mb[2 * c + 1]]))));
}

CONDENSE_INLINE void row_neon(const int MB, const int8_t *v, const uint8_t *mb, size_t chunks, const uint8_t *xq,
                              size_t ldq, int32_t *acc, size_t ldacc) {
    int32x4_t s[4][2];
    for (int i = 0; i < MB; i++) s[i][0] = s[i][1] = vdupq_n_s32(0);
    for (size_t c = 0; c < chunks; c++) {
        const int8x16_t w = expand16(v, mb, c);
        const int16x8_t wl = vmovl_s8(vget_low_s8(w)), wh = vmovl_s8(vget_high_s8(w));
        for (int i = 0; i < MB; i++) {
            const uint8x16_t x = vld1q_u8(xq + (size_t)i * ldq + 16 * c);
            const int16x8_t xl = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(x)));
            const int16x8_t xh = vreinterpretq_s16_u16(vmovl_u8(vget_high_u8(x)));
            s[i][0] = vmlal_s16(s[i][0], vget_low_s16(xl), vget_low_s16(wl));
            s[i][1] = vmlal_s16(s[i][1], vget_high_s16(xl), vget_high_s16(wl));
            s[i][0] = vmlal_s16(s[i][0], vget_low_s16(xh), vget_low_s16(wh));
            s[i][1] = vmlal_s16(s[i][1], vget_high_s16(xh), vget_high_s16(wh));
        }
    }
    for (int i = 0; i < MB; i++) acc[(size_t)i * ldacc] = vaddvq_s32(vaddq_s32(s[i][0], s[i][1]));
}

CONDENSE_INLINE CONDENSE_TARGET_DOTPROD void row_sdot(const int MB, const int8_t *v, const uint8_t *mb, size_t chunks,
                                                      const uint8_t *xq, size_t ldq, int32_t wsum, int32_t *acc,
                                                      size_t ldacc) {
    int32x4_t s[4];
    for (int i = 0; i < MB; i++) s[i] = vdupq_n_s32(0);
    const uint8x16_t flip = vdupq_n_u8(0x80);
    for (size_t c = 0; c < chunks; c++) {
        const int8x16_t w = expand16(v, mb, c);
        for (int i = 0; i < MB; i++) {
            const int8x16_t x = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(xq + (size_t)i * ldq + 16 * c), flip));
            s[i] = vdotq_s32(s[i], w, x);
        }
    }
    for (int i = 0; i < MB; i++) acc[(size_t)i * ldacc] = vaddvq_s32(s[i]) + 128 * wsum;
}

#define S24Q8_DRIVER(NAME, ATTR, CALL)                                                              \
    ATTR void NAME(const condense_s24q8_packed *w, size_t n0, size_t n1, size_t m, const uint8_t *xq, size_t ldq, \
                   int32_t *acc, size_t ldacc) {                                                    \
        pthread_once(&ctl_once, build_ctl);                                                         \
        const size_t chunks = w->k64 / 16, words = w->k64 / 64;                                     \
        for (size_t r = n0; r < n1; r++) {                                                          \
            const int8_t *v = w->values + r * (w->k64 / 2);                                         \
            const uint8_t *mb = (const uint8_t *)(w->masks + r * words); /* little-endian bytes */  \
            const int32_t ws = w->wsum[r];                                                          \
            (void)ws;                                                                               \
            for (size_t i = 0; i < m; i += 4) {                                                     \
                const uint8_t *xi = xq + i * ldq;                                                   \
                int32_t *ai = acc + i * ldacc + r;                                                  \
                switch (m - i >= 4 ? 4 : m - i) {                                                   \
                case 1: CALL(1); break;                                                             \
                case 2: CALL(2); break;                                                             \
                case 3: CALL(3); break;                                                             \
                default: CALL(4); break;                                                            \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
    }

#define CALL_NEON(MB) row_neon(MB, v, mb, chunks, xi, ldq, ai, ldacc)
#define CALL_SDOT(MB) row_sdot(MB, v, mb, chunks, xi, ldq, ws, ai, ldacc)
S24Q8_DRIVER(condense_s24q8_dot__neon, , CALL_NEON)
S24Q8_DRIVER(condense_s24q8_dot__dotprod, CONDENSE_TARGET_DOTPROD, CALL_SDOT)
#endif
