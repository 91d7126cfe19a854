/* The GGUF (ggml) block types dequantized to f32, each exactly as ggml defines it (ggml-quants.c,
 * dequantize_row_*): the reference the repacking and the kernels are checked against, and the
 * path for tensors kept in f32 (norms, embeddings read a row at a time). Products are evaluated in
 * ggml's order with contraction off, so results are bit-exact to the definition. */
#include "internal.h"

#include <math.h>
#include <string.h>

#pragma clang fp contract(off)

float condense_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: mant · 2^-24, exact in f32 */
            const float f = (float)mant * 0x1p-24f;
            return sign ? -f : f;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Round to nearest even, as F16C's vcvtps2ph does: subnormal halves, overflow to ±Inf, NaN kept
 * quiet with its payload's top bits. */
uint16_t condense_f32_to_f16_one(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7FFFFFFFu;
    if (ax >= 0x7F800000u) return (uint16_t)(sign | 0x7C00u | (ax > 0x7F800000u ? 0x200u | ((ax >> 13) & 0x3FFu) : 0));
    if (ax >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u);   /* ≥ 65520 rounds to Inf */
    if (ax <= 0x33000000u) return (uint16_t)sign;               /* ≤ 2^-25 rounds to 0 */
    const uint32_t e = ax >> 23;
    uint32_t r, rem, half;
    if (e < 113) {   /* a subnormal half: units of 2^-24 */
        const uint32_t m = (ax & 0x7FFFFFu) | 0x800000u, shift = 126 - e;
        r = m >> shift;
        rem = m & ((1u << shift) - 1);
        half = 1u << (shift - 1);
    } else {
        r = ((e - 112) << 10) | ((ax >> 13) & 0x3FFu);
        rem = ax & 0x1FFFu;
        half = 0x1000u;
    }
    if (rem > half || (rem == half && (r & 1))) r++;   /* a carry moves into the exponent, as it should */
    return (uint16_t)(sign | r);
}

#if CONDENSE_ARM64
#include <arm_neon.h>
#endif
#if CONDENSE_X86
#include <immintrin.h>
CONDENSE_TARGET_AVX512 static size_t f32_to_f16_avx512(const float *x, uint16_t *y, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(void *)(y + i), _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return i;
}
#endif

void condense_f32_to_f16(const float *x, uint16_t *y, size_t n, condense_isa isa) {
    if (isa > condense_isa_detected()) isa = condense_isa_detected();
    size_t i = 0;
#if CONDENSE_X86
    if (isa >= CONDENSE_ISA_AVX512) i = f32_to_f16_avx512(x, y, n);
#elif CONDENSE_ARM64
    /* FCVTN rounds to nearest even and quiets a NaN keeping its top payload bits, as F16C and the
     * scalar rule do (FPCR.DN is off in user space): the same bits, tested NaN included. */
    if (condense_isa_arm_simd(isa))
        for (; i + 4 <= n; i += 4) vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
#endif
    for (; i < n; i++) y[i] = condense_f32_to_f16_one(x[i]);
}

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline float h2f(const uint8_t *p) { return condense_f16_to_f32(rd16(p)); }

static void q4_0(const uint8_t *b, size_t blocks, float *y) {
    for (size_t i = 0; i < blocks; i++, b += 18, y += 32) {
        const float d = h2f(b);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((b[2 + j] & 0x0F) - 8) * d;
            y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
        }
    }
}

static void q4_1(const uint8_t *b, size_t blocks, float *y) {
    for (size_t i = 0; i < blocks; i++, b += 20, y += 32) {
        const float d = h2f(b), m = h2f(b + 2);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)(b[4 + j] & 0x0F) * d + m;
            y[j + 16] = (float)(b[4 + j] >> 4) * d + m;
        }
    }
}

/* Q5_0 / Q5_1: d (, m), 32 high bits, 16 bytes of low nibbles; element j's high bit is bit j. */
static void q5(const uint8_t *b, size_t blocks, float *y, int has_min) {
    const size_t bb = has_min ? 24 : 22;
    for (size_t i = 0; i < blocks; i++, b += bb, y += 32) {
        const float d = h2f(b), m = has_min ? h2f(b + 2) : 0;
        const uint8_t *hp = b + (has_min ? 4 : 2), *qs = hp + 4;
        const uint32_t qh = (uint32_t)hp[0] | (uint32_t)hp[1] << 8 | (uint32_t)hp[2] << 16 | (uint32_t)hp[3] << 24;
        for (int j = 0; j < 16; j++) {
            const int x0 = (qs[j] & 0x0F) | (int)(((qh >> j) << 4) & 0x10);
            const int x1 = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
            if (has_min) {
                y[j] = (float)x0 * d + m;
                y[j + 16] = (float)x1 * d + m;
            } else {
                y[j] = (float)(x0 - 16) * d;
                y[j + 16] = (float)(x1 - 16) * d;
            }
        }
    }
}

static void q8_0(const uint8_t *b, size_t blocks, float *y) {
    for (size_t i = 0; i < blocks; i++, b += 34, y += 32) {
        const float d = h2f(b);
        for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
    }
}

static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Q4_K: d, dmin (f16), 12 bytes of 6-bit scales and mins, 128 bytes of nibbles; 256 values. */
static void q4_k(const uint8_t *b, size_t blocks, float *y) {
    for (size_t i = 0; i < blocks; i++, b += 144) {
        const float d = h2f(b), min = h2f(b + 2);
        const uint8_t *scales = b + 4, *q = b + 16;
        int is = 0;
        for (int j = 0; j < 256; j += 64) {
            uint8_t sc, m;
            scale_min_k4(is + 0, scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            scale_min_k4(is + 1, scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
            q += 32;
            is += 2;
        }
    }
}

/* Q6_K: 128 bytes of low nibbles, 64 of high 2-bit pairs, 16 signed scales, d (f16). */
static void q6_k(const uint8_t *b, size_t blocks, float *y) {
    for (size_t i = 0; i < blocks; i++, b += 210) {
        const float d = h2f(b + 208);
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        for (int n = 0; n < 256; n += 128) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = (int)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = (int)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = (int)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * (float)sc[is + 0] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

/* Q2_K: 16 bytes of 4-bit scale | 4-bit min per 16 values, 64 bytes of 2-bit codes, d, dmin. */
static void q2_k(const uint8_t *b, size_t blocks, float *y) {
    for (size_t i = 0; i < blocks; i++, b += 84) {
        const float d = h2f(b + 80), min = h2f(b + 82);
        const uint8_t *sc = b, *q = b + 16;
        int is = 0;
        for (int n = 0; n < 256; n += 128, q += 32)
            for (int shift = 0; shift < 8; shift += 2)
                for (int half = 0; half < 2; half++, is++) {
                    const float dl = d * (float)(sc[is] & 0xF), ml = min * (float)(sc[is] >> 4);
                    for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[16 * half + l] >> shift) & 3) - ml;
                }
    }
}

/* Q3_K: 32 bytes of high bits, 64 of 2-bit codes, 12 of 6-bit scales (biased by 32) per 16
 * values, d. A value is d·(s − 32)·(q − 4·(1 − h)). */
static void q3_k(const uint8_t *b, size_t blocks, float *y) {
    for (size_t i = 0; i < blocks; i++, b += 110) {
        const float d = h2f(b + 108);
        const uint8_t *hm = b, *q = b + 32, *sc = b + 96;
        int is = 0, bit = 0;
        for (int n = 0; n < 256; n += 128, q += 32)
            for (int shift = 0; shift < 8; shift += 2, bit++)
                for (int half = 0; half < 2; half++, is++) {
                    const int s = ((sc[is % 8] >> (4 * (is / 8))) & 0xF) | (((sc[8 + is % 4] >> (2 * (is / 4))) & 3) << 4);
                    const float dl = d * (float)(s - 32);
                    for (int l = 0; l < 16; l++) {
                        const int e = 16 * half + l;
                        *y++ = dl * (float)((int)((q[e] >> shift) & 3) - ((hm[e] >> bit) & 1 ? 0 : 4));
                    }
                }
    }
}

/* Q5_K: Q4_K's d, dmin and 6-bit scales and mins, 32 bytes of fifth bits (bit j: sub-block j),
 * 128 bytes of nibbles. */
static void q5_k(const uint8_t *b, size_t blocks, float *y) {
    for (size_t i = 0; i < blocks; i++, b += 176) {
        const float d = h2f(b), min = h2f(b + 2);
        const uint8_t *scales = b + 4, *qh = b + 16, *q = b + 48;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            scale_min_k4(j, scales, &sc, &m);
            const float dl = d * sc, ml = min * m;
            for (int l = 0; l < 32; l++) {
                const int v = (j % 2 ? q[32 * (j / 2) + l] >> 4 : q[32 * (j / 2) + l] & 0xF) | (((qh[l] >> j) & 1) << 4);
                *y++ = dl * (float)v - ml;
            }
        }
    }
}

/* IQ4_NL's 16 levels (int8), and MXFP4's (E2M1 values doubled; its scale is halved). */
static const int8_t condense_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
static const int8_t mxfp4_values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* 32 values from 16 bytes of 4-bit indices into `levels` (low nibbles first), times d. */
static void lut32(const uint8_t *qs, const int8_t *levels, float d, float *y) {
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)levels[qs[j] & 0xF];
        y[j + 16] = d * (float)levels[qs[j] >> 4];
    }
}

/* IQ4_XS: d, 2 high bits and 4 low bits of a 6-bit scale (biased by 32) per 32 values, 128
 * bytes of IQ4_NL indices. */
static void iq4_xs(const uint8_t *b, size_t blocks, float *y) {
    for (size_t i = 0; i < blocks; i++, b += 136, y += 256) {
        const float d = h2f(b);
        const unsigned sh = rd16(b + 2);
        for (int ib = 0; ib < 8; ib++) {
            const int ls = ((b[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) | (((sh >> (2 * ib)) & 3) << 4);
            lut32(b + 8 + 16 * ib, condense_iq4nl_values, d * (float)(ls - 32), y + 32 * ib);
        }
    }
}

/* MXFP4: an E8M0 exponent (2^(e−128), the halved scale), 16 bytes of E2M1 indices. */
static void mxfp4(const uint8_t *b, size_t blocks, float *y) {
    for (size_t i = 0; i < blocks; i++, b += 17, y += 32) {
        const uint32_t bits = b[0] < 2 ? 0x00200000u << b[0] : (uint32_t)(b[0] - 1) << 23;
        float d;
        memcpy(&d, &bits, 4);
        lut32(b + 1, mxfp4_values, d, y);
    }
}

/* ggml's reference quantizers, for KV cache rows: Q8_0 d = amax/127, q = round(x/d) (half away
 * from zero, as roundf); Q4_0 d = (the value of largest magnitude)/−8, q = min(15, trunc(x/d + 8.5)). */
void condense_quantize_row_q8_0(const float *x, void *out, size_t n) {
    uint8_t *y = out;
    for (size_t b = 0; b < n / 32; b++, x += 32, y += 34) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        const uint16_t h = condense_f32_to_f16_one(d);
        y[0] = (uint8_t)h;
        y[1] = (uint8_t)(h >> 8);
        for (int j = 0; j < 32; j++) {
            const float r = roundf(x[j] * id);
            y[2 + j] = (uint8_t)(int8_t)(r == r ? (int)r : 0);   /* NaN: 0, not undefined behaviour */
        }
    }
}

void condense_quantize_row_q4_0(const float *x, void *out, size_t n) {
    uint8_t *y = out;
    for (size_t b = 0; b < n / 32; b++, x += 32, y += 18) {
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
        const uint16_t h = condense_f32_to_f16_one(d);
        y[0] = (uint8_t)h;
        y[1] = (uint8_t)(h >> 8);
        for (int j = 0; j < 16; j++) {
            const float fa = x[j] * id + 8.5f, fc = x[16 + j] * id + 8.5f;
            const int8_t a = (int8_t)(fa == fa ? (int)fa : 8), c = (int8_t)(fc == fc ? (int)fc : 8);
            y[2 + j] = (uint8_t)((a < 15 ? a : 15) | (c < 15 ? c : 15) << 4);
        }
    }
}

int condense_gguf_dequantize(uint32_t type, const void *src, size_t n, float *y) {
    const uint8_t *b = src;
    switch (type) {
    case CONDENSE_GGUF_F32:
        memcpy(y, src, n * sizeof(float));
        return CONDENSE_OK;
    case CONDENSE_GGUF_F16:
        for (size_t i = 0; i < n; i++) y[i] = h2f(b + 2 * i);
        return CONDENSE_OK;
    case CONDENSE_GGUF_BF16:
        for (size_t i = 0; i < n; i++) {
            const uint32_t bits = (uint32_t)rd16(b + 2 * i) << 16;
            memcpy(&y[i], &bits, 4);
        }
        return CONDENSE_OK;
    case CONDENSE_GGUF_Q4_0: if (n % 32) return CONDENSE_ERR_INVALID; q4_0(b, n / 32, y); return CONDENSE_OK;
    case CONDENSE_GGUF_Q4_1: if (n % 32) return CONDENSE_ERR_INVALID; q4_1(b, n / 32, y); return CONDENSE_OK;
    case CONDENSE_GGUF_Q8_0: if (n % 32) return CONDENSE_ERR_INVALID; q8_0(b, n / 32, y); return CONDENSE_OK;
    case CONDENSE_GGUF_Q5_0: if (n % 32) return CONDENSE_ERR_INVALID; q5(b, n / 32, y, 0); return CONDENSE_OK;
    case CONDENSE_GGUF_Q5_1: if (n % 32) return CONDENSE_ERR_INVALID; q5(b, n / 32, y, 1); return CONDENSE_OK;
    case CONDENSE_GGUF_Q4_K: if (n % 256) return CONDENSE_ERR_INVALID; q4_k(b, n / 256, y); return CONDENSE_OK;
    case CONDENSE_GGUF_Q6_K: if (n % 256) return CONDENSE_ERR_INVALID; q6_k(b, n / 256, y); return CONDENSE_OK;
    case CONDENSE_GGUF_Q2_K: if (n % 256) return CONDENSE_ERR_INVALID; q2_k(b, n / 256, y); return CONDENSE_OK;
    case CONDENSE_GGUF_Q3_K: if (n % 256) return CONDENSE_ERR_INVALID; q3_k(b, n / 256, y); return CONDENSE_OK;
    case CONDENSE_GGUF_Q5_K: if (n % 256) return CONDENSE_ERR_INVALID; q5_k(b, n / 256, y); return CONDENSE_OK;
    case CONDENSE_GGUF_IQ4_XS: if (n % 256) return CONDENSE_ERR_INVALID; iq4_xs(b, n / 256, y); return CONDENSE_OK;
    case CONDENSE_GGUF_IQ4_NL:
        if (n % 32) return CONDENSE_ERR_INVALID;
        for (size_t i = 0; i < n / 32; i++) lut32(b + 18 * i + 2, condense_iq4nl_values, h2f(b + 18 * i), y + 32 * i);
        return CONDENSE_OK;
    case CONDENSE_GGUF_MXFP4: if (n % 32) return CONDENSE_ERR_INVALID; mxfp4(b, n / 32, y); return CONDENSE_OK;
    default: return CONDENSE_ERR_INVALID;
    }
}
