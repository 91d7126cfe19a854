/* Y[M,N] = X[M,K] · Wᵀ with W in ggml blocks (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS), computed the way ggml's CPU
 * backend does: each row of X is quantized per block of 32 to int8 with an f16 scale (ggml's q8_0;
 * q8_1's d·Σq for Q4_1), and each block's dot is an exact integer dot scaled once:
 *     y += dw·dx·(Σ qw·qx − o·Σ qx)   (+ mw·sx for Q4_1, Q5_1),
 *     o = 8 (Q4_0), 16 (Q5_0), 128 (Q8_0), 0 (Q4_1, Q5_1).
 * The integer dot is 4× cheaper than widening every weight to f32, which is what bounded token
 * generation; the result equals llama.cpp's up to the order of float sums.
 *
 * Weights are repacked once into groups of 16 rows, block by block, so that one 512-bit VNNI
 * instruction computes 4-element dots for 16 rows at once and no horizontal sum is needed:
 *     group g, block b:  chunks × [16 rows × 4 bytes]   then 16 f16 scales (then 16 f16 mins)
 * Q4 chunk c holds each row's qs bytes 4c…4c+3: low nibbles pair with x[4c…4c+3], high nibbles
 * with x[16+4c…]; Q8_0 chunk c holds qs[4c…4c+3] + 128 (vpdpbusd wants unsigned weights).
 * Q5_0/Q5_1 add one 64-byte vector of fifth bits: bit k of a row's byte t is the high bit of
 * chunk k's element t (chunks 0–3 the low nibbles, 4–7 the high ones).
 * The K-quants keep their super-blocks of 256 (8 blocks of 32): a header of the 16 rows' f16 d
 * (and dmin for Q4_K), then per block the quants as above and the rows' 8-bit sub-block scales:
 *     Q4_K: 6-bit scale and min per block of 32:  y += D·sc·dx·Σ q·qx − Dmin·m·sx
 *     Q6_K: 4 low bits as Q4's nibbles, the 2 high bits in two more 64-byte vectors placed so one
 *           shift and mask puts them in bits 4–5; a signed scale per 16:
 *           y += D·sc_lo·dx·(Σ_lo q·qx − 32·Σ_lo qx) + D·sc_hi·dx·(Σ_hi …)
 *     Q5_K: Q4_K with Q5_0's vector of fifth bits before the scales and mins.
 *     Q3_K: Q6_K's layout exactly, code = q − 4 + 32 (28…35) and its 6-bit scale − 32 as the
 *           signed scale per 16: no kernel of its own, at Q6_K's bytes (6.56 bits per weight
 *           read against 3.44 stored).
 *     IQ4_XS (KIQ): a super-block's d, per block of 32 the IQ4_NL nibbles and a signed scale
 *           (6-bit − 32): y += D·sc·dx·(Σ (level+128)·qx − 128·Σ qx).
 * so that every type runs at its stored size (Q4_K 4.625 bits per weight against 4.5 stored,
 * Q6_K exactly its 6.5625). IQ4_NL is Q4_0's layout whose 4-bit codes index 16 int8 levels: a
 * table lookup (vpshufb, TBL) turns the nibbles into level + 128, after which it runs as Q8_0's
 * codes do (o = 128). Rows beyond N are zero (scale 0).
 * Scalar and AVX-512 VNNI kernels, bit-identical: integer sums are exact and the float steps
 * are the same fused multiply-adds in the same order. Threads over groups of rows. */
#include "internal.h"

#include <math.h>
#include <string.h>

#if CONDENSE_X86
#include <immintrin.h>
#endif

#define GROUP 16

typedef struct layout {
    int kind;           /* FLAT (blocks of 32), KQ4 (Q4_K, Q5_K), KQ6 (Q6_K, Q3_K) or KIQ (IQ4_XS) */
    int chunks;         /* 64-byte chunks of quants per group-block */
    int has_min;        /* Q4_1 */
    int offset;         /* o: the unsigned code of a zero weight */
    size_t src_block;   /* stored bytes per block of 32 */
    size_t qs_off;      /* offset of the quants in a stored block */
    size_t gb;          /* packed bytes per group-block (FLAT) */
    size_t hdr, kb;     /* K-quants: header bytes per group-super-block, bytes per group-block */
    int hbits;          /* Q5_0/Q5_1: a vector of fifth bits after the nibbles */
    size_t qh_off;      /* offset of the 32 fifth bits in a stored block */
    int lut;            /* IQ4_NL: codes index iq4nl_levels (stored +128) */
    size_t sc_off;      /* K-quants: offset of the per-block scales (then mins) in a group-block */
} layout;

/* IQ4_NL's 16 levels + 128 (unsigned, as vpdpbusd wants), for every lane of a table lookup. */
static const uint8_t iq4nl_u8[16] = {1, 24, 45, 63, 79, 93, 106, 118, 129, 141, 153, 166, 181, 197, 217, 241};

enum { FLAT = 0, KQ4 = 1, KQ6 = 2, S24 = 3, KIQ = 4 };

/* S24Q4 (Condense's own block, not ggml's): per 64 columns of a row, 2 kept of every 4, each a
 * signed 4-bit value with one f16 scale, 3.25 bits per weight. Stored row block (26 bytes):
 *     f16 d · u64 keep-mask (bit c: column c kept) · 16 bytes: kept value j (q + 8) in byte j/2,
 *     low nibble for even j.
 * Packed per group of 16 rows and 64 columns (416 bytes):
 *     8 × 32 bytes of nibbles: pair p's byte j holds value j of step 2p (low) and of 2p+1 (high),
 *         step s being columns 4s…4s+3 of the 16 rows, its 32 kept values in row order;
 *     16 × u64 masks: step s's bit 4r+t is row r's column 4s+t;  16 f16 scales.
 * vpexpandb puts a step's 32 values at their mask's bits over a vector of 8s (q = 0 for the
 * pruned weights), so the integer dot and the o = 8 correction are Q4_0's. */
#define S24_GB 416

static int layout_of(uint32_t type, layout *L) {
    switch (type) {
    case CONDENSE_GGUF_Q8_0: *L = (layout){FLAT, 8, 0, 128, 34, 2, 0, 0, 0, 0, 0}; break;
    case CONDENSE_GGUF_Q4_0: *L = (layout){FLAT, 4, 0, 8, 18, 2, 0, 0, 0, 0, 0}; break;
    case CONDENSE_GGUF_Q4_1: *L = (layout){FLAT, 4, 1, 0, 20, 4, 0, 0, 0, 0, 0}; break;
    case CONDENSE_GGUF_Q5_0: *L = (layout){FLAT, 4, 0, 16, 22, 6, 0, 0, 0, 1, 2}; break;
    case CONDENSE_GGUF_Q5_1: *L = (layout){FLAT, 4, 1, 0, 24, 8, 0, 0, 0, 1, 4}; break;
    case CONDENSE_GGUF_IQ4_NL: *L = (layout){FLAT, 4, 0, 128, 18, 2, 0, 0, 0, 0, 0, 1, 0}; break;
    case CONDENSE_GGUF_Q4_K: *L = (layout){KQ4, 4, 1, 0, 144, 0, 0, 64, 256 + 32, 0, 0, 0, 256}; break;
    case CONDENSE_GGUF_Q5_K: *L = (layout){KQ4, 4, 1, 0, 176, 0, 0, 64, 256 + 64 + 32, 1, 0, 0, 320}; break;
    case CONDENSE_GGUF_Q6_K: *L = (layout){KQ6, 4, 0, 32, 210, 0, 0, 32, 256 + 128 + 32, 0, 0, 0, 384}; break;
    case CONDENSE_GGUF_Q3_K: *L = (layout){KQ6, 4, 0, 32, 110, 0, 0, 32, 256 + 128 + 32, 0, 0, 0, 384}; break;
    case CONDENSE_GGUF_IQ4_XS: *L = (layout){KIQ, 4, 0, 128, 136, 0, 0, 32, 256 + 16, 0, 0, 1, 256}; break;
    case CONDENSE_BLOCK_S24Q4: *L = (layout){S24, 4, 0, 8, 26, 10, 0, 0, 0, 0, 0}; L->gb = S24_GB; return 1;
    default: return 0;
    }
    L->gb = (size_t)L->chunks * 64 + (L->hbits ? 64 : 0) + 32 + (L->has_min ? 32 : 0);
    return 1;
}

static size_t elems_per_block(const layout *L) { return L->kind == FLAT ? 32 : L->kind == S24 ? 64 : 256; }

/* Offset of the f16 scales (then mins) in a FLAT group-block. */
static size_t flat_scales(const layout *L) { return (size_t)L->chunks * 64 + (L->hbits ? 64 : 0); }

/* Packed bytes of one group of 16 rows (nb blocks of 32). */
static size_t group_bytes(const layout *L, size_t nb) {
    if (L->kind == S24) return nb / 2 * S24_GB;
    return L->kind == FLAT ? nb * L->gb : nb / 8 * (L->hdr + 8 * L->kb);
}

/* Block b of a group: its quants, and (K-quants) its super-block's header. */
static inline const uint8_t *block_at(const layout *L, const uint8_t *gw, size_t b) {
    return L->kind == FLAT ? gw + b * L->gb : gw + b / 8 * (L->hdr + 8 * L->kb) + L->hdr + b % 8 * L->kb;
}
static inline const uint8_t *header_at(const layout *L, const uint8_t *gw, size_t b) {
    return gw + b / 8 * (L->hdr + 8 * L->kb);
}

size_t condense_gguf_packed_size(uint32_t type, size_t n, size_t k) {
    layout L;
    if (!layout_of(type, &L) || k % elems_per_block(&L)) return 0;
    const size_t groups = n / GROUP + (n % GROUP != 0), nb = k / 32;
    size_t bytes;
    if (__builtin_mul_overflow(groups, group_bytes(&L, nb), &bytes)) return 0;
    return bytes;
}

/* The 256 codes of a Q4_K super-block (0…15) with its 8 scales and mins, in ggml's order. */
static void q4k_codes(const uint8_t *blk, uint8_t *code, uint8_t *sc, uint8_t *mn) {
    const uint8_t *q = blk + 4, *qs = blk + 16;
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            sc[j] = q[j] & 63;
            mn[j] = q[j + 4] & 63;
        } else {
            sc[j] = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
            mn[j] = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
        }
        for (int l = 0; l < 32; l++) code[32 * j + l] = j % 2 ? qs[32 * (j / 2) + l] >> 4 : qs[32 * (j / 2) + l] & 0xF;
    }
}

/* The 256 codes of a Q6_K super-block (0…63), in ggml's order. */
static void q6k_codes(const uint8_t *blk, uint8_t *code) {
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = blk + 64 * h, *qh = blk + 128 + 32 * h;
        uint8_t *c = code + 128 * h;
        for (int l = 0; l < 32; l++) {
            c[l] = (uint8_t)((ql[l] & 0xF) | ((qh[l] & 3) << 4));
            c[l + 32] = (uint8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
            c[l + 64] = (uint8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
            c[l + 96] = (uint8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
        }
    }
}

/* Q3_K as Q6_K: the 256 codes q − 4 + 32 and the 16 signed scales (6-bit − 32), in ggml's order. */
static void q3k_codes(const uint8_t *blk, uint8_t *code, int8_t *scale) {
    const uint8_t *hm = blk, *q = blk + 32, *sc = blk + 96;
    for (int s = 0; s < 16; s++)
        scale[s] = (int8_t)((((sc[s % 8] >> (4 * (s / 8))) & 0xF) | (((sc[8 + s % 4] >> (2 * (s / 4))) & 3) << 4)) - 32);
    for (int e = 0; e < 256; e++) {
        const int n = e / 128, shift = 2 * (e % 128 / 32), l = e % 32;
        const int v = (q[32 * n + l] >> shift) & 3, h = (hm[l] >> (4 * n + shift / 2)) & 1;
        code[e] = (uint8_t)(v - (h ? 0 : 4) + 32);
    }
}

/* IQ4_XS: the 256 level indices (nibbles, ggml's order) and 8 signed scales (6-bit − 32). */
static void iq4xs_codes(const uint8_t *blk, uint8_t *code, int8_t *scale) {
    const unsigned sh = (unsigned)blk[2] | (unsigned)blk[3] << 8;
    for (int ib = 0; ib < 8; ib++) {
        scale[ib] = (int8_t)((((blk[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) | (((sh >> (2 * ib)) & 3) << 4)) - 32);
        for (int j = 0; j < 16; j++) {
            code[32 * ib + j] = blk[8 + 16 * ib + j] & 0xF;
            code[32 * ib + 16 + j] = blk[8 + 16 * ib + j] >> 4;
        }
    }
}

/* Where Q6_K's high bits of chunk k (elements 4k…4k+3) live: vector k/2 % 2, shifted left by
 * this many bits (bits 4–5 after the kernel's shift and mask). */
static const int q6_hshift[8] = {4, 6, 4, 6, 0, 2, 0, 2};

/* 32 codes of one row into the group-block's chunks (byte 4c+t: element 4c+t low, 16+4c+t high). */
static void put_nibbles(uint8_t *o, int r, const uint8_t *code) {
    for (int c = 0; c < 4; c++)
        for (int t = 0; t < 4; t++) o[c * 64 + r * 4 + t] = (uint8_t)((code[4 * c + t] & 0xF) | (code[16 + 4 * c + t] & 0xF) << 4);
}

/* The fifth bits of 32 codes (0…31) into the vector after the chunks, as Q5_0's are packed: bit c
 * of byte 4r+t is element 4c+t's (c < 4) or 16+4(c−4)+t's. */
static void put_fifth_bits(uint8_t *h, int r, const uint8_t *code) {
    for (int t = 0; t < 4; t++) {
        uint8_t v = 0;
        for (int c = 0; c < 8; c++) v |= (uint8_t)(((code[c < 4 ? 4 * c + t : 16 + 4 * (c - 4) + t] >> 4) & 1) << c);
        h[r * 4 + t] = v;
    }
}

/* The 256 codes of a Q5_K super-block (0…31) with its scales and mins: Q4_K's, plus the fifth
 * bits (bit j of byte l: element l of sub-block j). */
static void q5k_codes(const uint8_t *blk, uint8_t *code, uint8_t *sc, uint8_t *mn) {
    uint8_t nib[144];
    memcpy(nib, blk, 16);               /* d, dmin, scales: where Q4_K has them */
    memcpy(nib + 16, blk + 48, 128);    /* the nibbles */
    q4k_codes(nib, code, sc, mn);
    for (int j = 0; j < 8; j++)
        for (int l = 0; l < 32; l++) code[32 * j + l] |= (uint8_t)(((blk[16 + l] >> j) & 1) << 4);
}

int condense_gguf_pack(uint32_t type, const void *w, size_t n, size_t k, void *dst) {
    layout L;
    if (!layout_of(type, &L) || !condense_gguf_packed_size(type, n, k)) return CONDENSE_ERR_INVALID;
    const size_t nb = k / 32, groups = (n + GROUP - 1) / GROUP, gbytes = group_bytes(&L, nb);
    const size_t row_bytes = k / elems_per_block(&L) * L.src_block;
    const uint8_t *src = w;
    uint8_t *out = dst;
    memset(out, 0, groups * gbytes);
    for (size_t g = 0; g < groups; g++) {
        uint8_t *go = out + g * gbytes;
        for (size_t r = 0; r < GROUP && g * GROUP + r < n; r++) {
            const uint8_t *row = src + (g * GROUP + r) * row_bytes;
            if (L.kind == S24) {
                for (size_t b = 0; b < nb / 2; b++) {
                    const uint8_t *blk = row + b * L.src_block;
                    uint8_t *o = go + b * S24_GB;
                    uint64_t keep = 0;
                    for (int j = 0; j < 8; j++) keep |= (uint64_t)blk[2 + j] << (8 * j);
                    int j = 0;   /* index of the next kept value */
                    for (int st = 0; st < 16; st++) {
                        const unsigned nib = (unsigned)(keep >> (4 * st)) & 15;
                        if (__builtin_popcount(nib) != 2) return CONDENSE_ERR_INVALID;
                        uint64_t m;
                        memcpy(&m, o + 256 + 8 * st, 8);
                        m |= (uint64_t)nib << (4 * r);
                        memcpy(o + 256 + 8 * st, &m, 8);
                        for (int e = 0; e < 2; e++, j++) {
                            const uint8_t v = (blk[10 + j / 2] >> (4 * (j % 2))) & 15;
                            o[32 * (st / 2) + 2 * r + e] |= (uint8_t)(v << (4 * (st % 2)));
                        }
                    }
                    memcpy(o + 384 + 2 * r, blk, 2);
                }
                continue;
            }
            if (L.kind == FLAT) {
                const uint8_t flip = type == CONDENSE_GGUF_Q8_0 ? 0x80 : 0;
                for (size_t b = 0; b < nb; b++) {
                    const uint8_t *blk = row + b * L.src_block;
                    uint8_t *o = go + b * L.gb;
                    for (int c = 0; c < L.chunks; c++)
                        for (int t = 0; t < 4; t++) o[c * 64 + r * 4 + t] = blk[L.qs_off + 4 * c + t] ^ flip;
                    const size_t so = flat_scales(&L);
                    if (L.hbits) {
                        const uint8_t *hp = blk + L.qh_off;
                        const uint32_t qh = (uint32_t)hp[0] | (uint32_t)hp[1] << 8 | (uint32_t)hp[2] << 16 | (uint32_t)hp[3] << 24;
                        for (int t = 0; t < 4; t++) {
                            uint8_t v = 0;
                            for (int c = 0; c < 8; c++) v |= (uint8_t)(((qh >> (c < 4 ? 4 * c + t : 16 + 4 * (c - 4) + t)) & 1) << c);
                            o[256 + r * 4 + t] = v;
                        }
                    }
                    memcpy(o + so + r * 2, blk, 2);
                    if (L.has_min) memcpy(o + so + 32 + r * 2, blk + 2, 2);
                }
                continue;
            }
            for (size_t sb = 0; sb < nb / 8; sb++) {
                const uint8_t *blk = row + sb * L.src_block;
                uint8_t *h = go + sb * (L.hdr + 8 * L.kb);
                uint8_t code[256], sc[8], mn[8];
                int8_t ssc[16];   /* signed scales: Q6_K's and Q3_K's per 16, IQ4_XS's per 32 */
                if (L.kind == KQ4) {
                    if (L.hbits) q5k_codes(blk, code, sc, mn);
                    else q4k_codes(blk, code, sc, mn);
                    memcpy(h + 2 * r, blk, 2);           /* d */
                    memcpy(h + 32 + 2 * r, blk + 2, 2);  /* dmin */
                } else if (L.kind == KIQ) {
                    iq4xs_codes(blk, code, ssc);
                    memcpy(h + 2 * r, blk, 2);           /* d */
                } else if (type == CONDENSE_GGUF_Q3_K) {
                    q3k_codes(blk, code, ssc);
                    memcpy(h + 2 * r, blk + 108, 2);     /* d */
                } else {
                    q6k_codes(blk, code);
                    memcpy(ssc, blk + 192, 16);
                    memcpy(h + 2 * r, blk + 208, 2);     /* d */
                }
                for (int j = 0; j < 8; j++) {
                    uint8_t *o = h + L.hdr + (size_t)j * L.kb;
                    const uint8_t *cj = code + 32 * j;
                    put_nibbles(o, (int)r, cj);
                    if (L.hbits) put_fifth_bits(o + 256, (int)r, cj);
                    if (L.kind == KQ4) {
                        o[L.sc_off + r] = sc[j];
                        o[L.sc_off + 16 + r] = mn[j];
                    } else if (L.kind == KIQ) {
                        o[L.sc_off + r] = (uint8_t)ssc[j];
                    } else {
                        for (int e = 0; e < 32; e++) {
                            const int ch = e / 4, t = e % 4;
                            o[256 + (ch / 2 % 2) * 64 + r * 4 + t] |= (uint8_t)((cj[e] >> 4) << q6_hshift[ch]);
                        }
                        o[384 + r] = (uint8_t)ssc[2 * j];        /* the scale of elements 0…15 */
                        o[400 + r] = (uint8_t)ssc[2 * j + 1];    /* and of 16…31 */
                    }
                }
            }
        }
    }
    return CONDENSE_OK;
}

/* ---- X quantized per block of 32 (ggml's q8_0 / q8_1) ------------------------------------- */

typedef struct qx_rows {
    const int8_t *q;     /* m × k */
    const float *d;      /* m × nb: the f16-rounded scale */
    const int32_t *c;    /* m × nb: o·Σ q (Q6_K: o·Σ of the first 16) */
    const int32_t *c2;   /* m × nb: Q6_K: o·Σ of the last 16 */
    const float *s;      /* m × nb: f16(d·Σ q), Q4_1 only */
    size_t k, nb;
} qx_rows;

/* v rounded to f16 precision (nearest even, as F16C): the same bits on every path. */
static float f16_round(float v) { return condense_f16_to_f32(condense_f32_to_f16_one(v)); }

/* One block: scale, codes (nearest even), Σ codes of each half. The same arithmetic on every path. */
static void quantize_block_scalar(const float *x, int8_t *q, float *d, int32_t *sum) {
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float id = amax != 0 ? 127.0f / amax : 0.0f;
    sum[0] = sum[1] = 0;
    for (int j = 0; j < 32; j++) {
        const float f = nearbyintf(x[j] * id);
        const int v = f >= -127 && f <= 127 ? (int)f : 0;   /* NaN: 0, as the vector path's vpmovdb gives */
        q[j] = (int8_t)v;
        sum[j / 16] += v;
    }
    *d = amax / 127.0f;
}

#if CONDENSE_X86
#define CONDENSE_TARGET_GGUF512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")))

CONDENSE_TARGET_GGUF512 static void quantize_block_avx512(const float *x, int8_t *q, float *d, int32_t *sum) {
    const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
    const __m512 a = _mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1));
    const float amax = _mm512_reduce_max_ps(a);
    const __m512 id = _mm512_set1_ps(amax != 0 ? 127.0f / amax : 0.0f);
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, id)), q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, id));
    _mm_storeu_si128((__m128i *)q, _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtepi32_epi8(q1));
    *d = amax / 127.0f;
    sum[0] = _mm512_reduce_add_epi32(q0);
    sum[1] = _mm512_reduce_add_epi32(q1);
}
#endif

typedef void (*quantize_block_fn)(const float *, int8_t *, float *, int32_t *);

static void quantize_rows(quantize_block_fn qb, const layout *L, const float *x, size_t lda, size_t m, size_t k,
                          int8_t *q, float *d, int32_t *c, int32_t *c2, float *s) {
    const size_t nb = k / 32;
    for (size_t i = 0; i < m; i++)
        for (size_t b = 0; b < nb; b++) {
            float dd;
            int32_t sum[2];
            qb(x + i * lda + b * 32, q + i * k + b * 32, &dd, sum);
            d[i * nb + b] = f16_round(dd);
            c[i * nb + b] = L->offset * (L->kind == KQ6 ? sum[0] : sum[0] + sum[1]);
            c2[i * nb + b] = L->offset * sum[1];
            if (s) s[i * nb + b] = f16_round(dd * (float)(sum[0] + sum[1]));
        }
}

/* ---- Block kernels: one group of 16 rows against rows m0…m1 of X ------------------------- */

typedef void (*group_fn)(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y,
                         size_t ldy, int valid);

static inline float f16_at(const uint8_t *p) { return condense_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

static void group_scalar(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y,
                         size_t ldy, int valid) {
    const int q4 = L->chunks == 4;
    for (size_t i = m0; i < m1; i++) {
        float acc[GROUP] = {0};
        const int8_t *xq = x->q + i * x->k;
        for (size_t b = 0; b < x->nb; b++, xq += 32) {
            const uint8_t *blk = block_at(L, gw, b), *hdr = header_at(L, gw, b), *sc = blk + flat_scales(L);
            const size_t ib = i * x->nb + b;
            const float dx = x->d[ib];
            for (int r = 0; r < GROUP; r++) {
                int32_t half[2] = {0, 0};   /* Σ q·qx over elements 0…15 and 16…31 */
                for (int ch = 0; ch < L->chunks; ch++)
                    for (int t = 0; t < 4; t++) {
                        const uint8_t v = blk[ch * 64 + r * 4 + t];
                        if (!q4) { half[ch / 4] += v * xq[4 * ch + t]; continue; }
                        int lo = v & 15, hi = v >> 4;
                        if (L->lut) lo = iq4nl_u8[lo], hi = iq4nl_u8[hi];
                        if (L->kind == KQ6) {
                            lo |= (blk[256 + (ch / 2 % 2) * 64 + r * 4 + t] >> q6_hshift[ch] & 3) << 4;
                            hi |= (blk[256 + ((ch + 4) / 2 % 2) * 64 + r * 4 + t] >> q6_hshift[ch + 4] & 3) << 4;
                        } else if (L->hbits) {
                            lo |= (blk[256 + r * 4 + t] >> ch & 1) << 4;
                            hi |= (blk[256 + r * 4 + t] >> (ch + 4) & 1) << 4;
                        }
                        half[0] += lo * xq[4 * ch + t];
                        half[1] += hi * xq[16 + 4 * ch + t];
                    }
                if (L->kind == FLAT) {
                    acc[r] = fmaf((float)(half[0] + half[1] - x->c[ib]), f16_at(sc + 2 * r) * dx, acc[r]);
                    if (L->has_min) acc[r] = fmaf(f16_at(sc + 32 + 2 * r), x->s[ib], acc[r]);
                } else if (L->kind == KIQ) {
                    acc[r] = fmaf((float)(half[0] + half[1] - x->c[ib]), f16_at(hdr + 2 * r) * (float)(int8_t)blk[L->sc_off + r] * dx, acc[r]);
                } else if (L->kind == KQ4) {
                    acc[r] = fmaf((float)(half[0] + half[1]), f16_at(hdr + 2 * r) * (float)blk[L->sc_off + r] * dx, acc[r]);
                    acc[r] = fmaf(-(f16_at(hdr + 32 + 2 * r) * (float)blk[L->sc_off + 16 + r]), x->s[ib], acc[r]);
                } else {
                    const float d = f16_at(hdr + 2 * r);
                    acc[r] = fmaf((float)(half[0] - x->c[ib]), d * (float)(int8_t)blk[384 + r] * dx, acc[r]);
                    acc[r] = fmaf((float)(half[1] - x->c2[ib]), d * (float)(int8_t)blk[400 + r] * dx, acc[r]);
                }
            }
        }
        for (int r = 0; r < valid; r++) y[i * ldy + (size_t)r] = acc[r];
    }
}


/* S24Q4: 16 steps of 4 columns per block of 64; pruned weights read as code 8 (q = 0). */
static void group_s24_scalar(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y,
                             size_t ldy, int valid) {
    (void)L;
    for (size_t i = m0; i < m1; i++) {
        float acc[GROUP] = {0};
        const int8_t *xq = x->q + i * x->k;
        for (size_t b = 0; b < x->nb / 2; b++) {
            const uint8_t *blk = gw + b * S24_GB;
            for (int h = 0; h < 2; h++) {
                const size_t ib = i * x->nb + 2 * b + (size_t)h;
                const int8_t *xb = xq + 64 * b + 32 * (size_t)h;
                int32_t s[GROUP] = {0};
                for (int st = 8 * h; st < 8 * h + 8; st++) {
                    uint64_t m;
                    memcpy(&m, blk + 256 + 8 * st, 8);
                    const uint8_t *pr = blk + 32 * (st / 2);
                    int j = 0;
                    for (int r = 0; r < GROUP; r++)
                        for (int t = 0; t < 4; t++) {
                            int u = 8;
                            if (m >> (4 * r + t) & 1) u = (pr[j++] >> (4 * (st % 2))) & 15;
                            s[r] += u * xb[4 * (st % 8) + t];
                        }
                }
                const float dx = x->d[ib];
                for (int r = 0; r < GROUP; r++) acc[r] = fmaf((float)(s[r] - x->c[ib]), f16_at(blk + 384 + 2 * r) * dx, acc[r]);
            }
        }
        for (int r = 0; r < valid; r++) y[i * ldy + (size_t)r] = acc[r];
    }
}

#if CONDENSE_X86
/* MR rows of X at once share the unpacked weights of each block; two integer accumulators per
 * row halve the vpdpbusd dependency chain. 8 rows (a continuous-batching decode step of 8
 * streams in one tile) against 4, interleaved runs of bench generate: pp8 880–1015 against
 * 863–876 tok/s, pp512 998–1052 against 894–925. */
#ifndef GGUF_MR
#define GGUF_MR 8
#endif
/* Prefetch every line of the group-block this many blocks ahead. Measured on the SmolLM2 decode
 * (tg128, 2 threads, interleaved runs): prefetching 2 of a Q4_1 group-block's 5 lines gave
 * 18–23 GB/s of weights, all 5 gave 24.4–26.6 GB/s at distances 4, 16 and 48 alike. */
#define GGUF_PREFETCH 16
CONDENSE_INLINE CONDENSE_TARGET_GGUF512 void group_rows_avx512(const int MR, const layout *L, const uint8_t *gw,
                                                               const qx_rows *x, size_t i0, float *y, size_t ldy,
                                                               __mmask16 mask) {
    const int q4 = L->chunks == 4, kind = L->kind;
    const size_t span = kind == FLAT ? L->gb : L->kb;   /* prefetch stride (K-quants: the header is skipped over) */
    const __m512i lo4 = _mm512_set1_epi8(0x0F), top2 = _mm512_set1_epi8(0x30);
    __m512 acc[GGUF_MR];
    for (int ii = 0; ii < MR; ii++) acc[ii] = _mm512_setzero_ps();
    __m512 dsb = _mm512_setzero_ps(), msb = _mm512_setzero_ps();   /* K-quants: the super-block's d and dmin */
    for (size_t b = 0; b < x->nb; b++) {
        const uint8_t *blk = block_at(L, gw, b);
        for (size_t off = 0; off < span; off += 64) _mm_prefetch((const char *)(blk + GGUF_PREFETCH * span + off), _MM_HINT_T0);
        __m512i w[8];
        if (q4) {
            for (int ch = 0; ch < 4; ch++) {
                const __m512i v = _mm512_loadu_si512(blk + 64 * ch);
                w[ch] = _mm512_and_si512(v, lo4);
                w[4 + ch] = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
            }
            if (L->hbits) {   /* fifth bits: bit ch of each byte into bit 4 */
                const __m512i h = _mm512_loadu_si512(blk + 256), b4 = _mm512_set1_epi8(0x10);
                w[0] = _mm512_or_si512(w[0], _mm512_and_si512(_mm512_slli_epi16(h, 4), b4));
                w[1] = _mm512_or_si512(w[1], _mm512_and_si512(_mm512_slli_epi16(h, 3), b4));
                w[2] = _mm512_or_si512(w[2], _mm512_and_si512(_mm512_slli_epi16(h, 2), b4));
                w[3] = _mm512_or_si512(w[3], _mm512_and_si512(_mm512_slli_epi16(h, 1), b4));
                w[4] = _mm512_or_si512(w[4], _mm512_and_si512(h, b4));
                w[5] = _mm512_or_si512(w[5], _mm512_and_si512(_mm512_srli_epi16(h, 1), b4));
                w[6] = _mm512_or_si512(w[6], _mm512_and_si512(_mm512_srli_epi16(h, 2), b4));
                w[7] = _mm512_or_si512(w[7], _mm512_and_si512(_mm512_srli_epi16(h, 3), b4));
            }
            if (L->lut) {   /* IQ4_NL: levels + 128 */
                const __m512i t = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)iq4nl_u8));
                for (int j = 0; j < 8; j++) w[j] = _mm512_shuffle_epi8(t, w[j]);
            }
            if (kind == KQ6) {   /* high bits into bits 4–5 (see q6_hshift) */
                const __m512i h0 = _mm512_loadu_si512(blk + 256), h1 = _mm512_loadu_si512(blk + 320);
                w[0] = _mm512_or_si512(w[0], _mm512_and_si512(h0, top2));
                w[1] = _mm512_or_si512(w[1], _mm512_and_si512(_mm512_srli_epi16(h0, 2), top2));
                w[4] = _mm512_or_si512(w[4], _mm512_and_si512(_mm512_slli_epi16(h0, 4), top2));
                w[5] = _mm512_or_si512(w[5], _mm512_and_si512(_mm512_slli_epi16(h0, 2), top2));
                w[2] = _mm512_or_si512(w[2], _mm512_and_si512(h1, top2));
                w[3] = _mm512_or_si512(w[3], _mm512_and_si512(_mm512_srli_epi16(h1, 2), top2));
                w[6] = _mm512_or_si512(w[6], _mm512_and_si512(_mm512_slli_epi16(h1, 4), top2));
                w[7] = _mm512_or_si512(w[7], _mm512_and_si512(_mm512_slli_epi16(h1, 2), top2));
            }
        } else {
            for (int ch = 0; ch < 8; ch++) w[ch] = _mm512_loadu_si512(blk + 64 * ch);
        }
        /* Per-row scales of this block: s0 (elements 0…15, or all), s1 (16…31) and the min. */
        __m512 sc0, sc1 = _mm512_setzero_ps(), mw = _mm512_setzero_ps();
        if (kind == FLAT) {
            const uint8_t *sc = blk + flat_scales(L);
            sc0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)sc));
            if (L->has_min) mw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sc + 32)));
        } else {
            if (b % 8 == 0) {
                const uint8_t *hdr = header_at(L, gw, b);
                dsb = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)hdr));
                if (kind == KQ4) msb = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(hdr + 32)));
            }
            if (kind == KQ4) {
                sc0 = _mm512_mul_ps(dsb, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(blk + L->sc_off)))));
                mw = _mm512_mul_ps(msb, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(blk + L->sc_off + 16)))));
            } else if (kind == KIQ) {
                sc0 = _mm512_mul_ps(dsb, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + L->sc_off)))));
            } else {
                sc0 = _mm512_mul_ps(dsb, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + 384)))));
                sc1 = _mm512_mul_ps(dsb, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + 400)))));
            }
        }
        for (int ii = 0; ii < MR; ii++) {
            const size_t i = i0 + (size_t)ii, ib = i * x->nb + b;
            const int32_t *xd = (const int32_t *)(const void *)(x->q + i * x->k + b * 32);
            /* w[ch] pairs with x dword ch (Q4: low nibbles are elements 4ch…, high ones 16 + 4ch…;
             * Q8_0: elements 4ch…): s0 sums elements 0…15, s1 16…31. */
            __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
            for (int ch = 0; ch < 4; ch++) {
                s0 = _mm512_dpbusd_epi32(s0, w[ch], _mm512_set1_epi32(xd[ch]));
                s1 = _mm512_dpbusd_epi32(s1, w[ch + 4], _mm512_set1_epi32(xd[ch + 4]));
            }
            const __m512 dx = _mm512_set1_ps(x->d[ib]);
            if (kind == KQ6) {
                acc[ii] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(s0, _mm512_set1_epi32(x->c[ib]))), _mm512_mul_ps(sc0, dx), acc[ii]);
                acc[ii] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(s1, _mm512_set1_epi32(x->c2[ib]))), _mm512_mul_ps(sc1, dx), acc[ii]);
                continue;
            }
            const __m512i s = _mm512_sub_epi32(_mm512_add_epi32(s0, s1), _mm512_set1_epi32(x->c[ib]));
            acc[ii] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(sc0, dx), acc[ii]);
            if (kind == KQ4) acc[ii] = _mm512_fnmadd_ps(mw, _mm512_set1_ps(x->s[ib]), acc[ii]);
            else if (L->has_min) acc[ii] = _mm512_fmadd_ps(mw, _mm512_set1_ps(x->s[ib]), acc[ii]);
        }
    }
    for (int ii = 0; ii < MR; ii++) _mm512_mask_storeu_ps(y + (i0 + (size_t)ii) * ldy, mask, acc[ii]);
}

CONDENSE_TARGET_GGUF512 static void group_avx512(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0,
                                                 size_t m1, float *y, size_t ldy, int valid) {
    const __mmask16 mask = (__mmask16)(valid >= GROUP ? 0xFFFF : (1u << valid) - 1);
    size_t i = m0;
    for (; i + GGUF_MR <= m1; i += GGUF_MR) group_rows_avx512(GGUF_MR, L, gw, x, i, y, ldy, mask);
    switch (m1 - i) {
    case 7: group_rows_avx512(7, L, gw, x, i, y, ldy, mask); break;
    case 6: group_rows_avx512(6, L, gw, x, i, y, ldy, mask); break;
    case 5: group_rows_avx512(5, L, gw, x, i, y, ldy, mask); break;
    case 4: group_rows_avx512(4, L, gw, x, i, y, ldy, mask); break;
    case 3: group_rows_avx512(3, L, gw, x, i, y, ldy, mask); break;
    case 2: group_rows_avx512(2, L, gw, x, i, y, ldy, mask); break;
    case 1: group_rows_avx512(1, L, gw, x, i, y, ldy, mask); break;
    default: break;
    }
}

/* AVX2 (no VNNI): one half of a group (8 rows, one ymm of dwords per chunk) per pass, MR ≤ 4
 * rows of X. u8 codes × s8 X with vpmaddubsw then vpmaddwd against ones: the int16 pair sums
 * cannot saturate for 4-, 5- and 6-bit codes (63·127·2 < 32767). Q8_0's stored codes are
 * q + 128, which would: they are flipped back to s8 and multiplied as |q| × sign(x, q) (at most
 * 128·127·2), and the dot is then Σ q·qx itself, so its o·Σqx term is not subtracted. The float
 * steps are the scalar kernel's, in its order: the results are bit-identical. */
#define CONDENSE_TARGET_GGUF256 __attribute__((target("avx2,fma,f16c")))
#define S24_PREFETCH 8
CONDENSE_INLINE CONDENSE_TARGET_GGUF256 __m256i dot4_u8s8(__m256i w, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
}
CONDENSE_INLINE CONDENSE_TARGET_GGUF256 void group_half_avx2(const int MR, const layout *L, const uint8_t *gw,
                                                            const qx_rows *x, size_t i0, int half, float *y,
                                                            size_t ldy, int valid) {
    const int q4 = L->chunks == 4, kind = L->kind, q8 = !q4 || L->lut;   /* q8: signed codes, |q| × sign(x, q) */
    const __m256i lo4 = _mm256_set1_epi8(0x0F), top2 = _mm256_set1_epi8(0x30), b4 = _mm256_set1_epi8(0x10);
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)iq4nl_u8));
    __m256 acc[4];
    for (int ii = 0; ii < MR; ii++) acc[ii] = _mm256_setzero_ps();
    __m256 dsb = _mm256_setzero_ps(), msb = _mm256_setzero_ps();
    for (size_t b = 0; b < x->nb; b++) {
        const uint8_t *blk = block_at(L, gw, b);
        __m256i s0[4], s1[4];
        for (int ii = 0; ii < MR; ii++) s0[ii] = s1[ii] = _mm256_setzero_si256();
        __m256i h0 = _mm256_setzero_si256(), h1 = _mm256_setzero_si256();
        if (q4 && (L->hbits || kind == KQ6)) h0 = _mm256_loadu_si256((const __m256i *)(blk + 256 + 32 * half));
        if (kind == KQ6) h1 = _mm256_loadu_si256((const __m256i *)(blk + 320 + 32 * half));
        for (int ch = 0; ch < 4; ch++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(blk + 64 * ch + 32 * half));
            __m256i lo, hi;
            if (q4) {
                lo = _mm256_and_si256(v, lo4);
                hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
                if (L->lut) {   /* IQ4_NL: the levels themselves (s8), as Q8_0's flipped codes */
                    lo = _mm256_xor_si256(_mm256_shuffle_epi8(lut, lo), flip);
                    hi = _mm256_xor_si256(_mm256_shuffle_epi8(lut, hi), flip);
                }
                if (L->hbits) {   /* fifth bits: bit ch of each byte for the low nibbles, ch + 4 for the high */
                    const __m128i sl = _mm_cvtsi32_si128(4 - ch), sr = _mm_cvtsi32_si128(ch);
                    lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_sll_epi16(h0, sl), b4));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_srl_epi16(h0, sr), b4));
                }
                if (kind == KQ6) {   /* high bits into bits 4–5 (see q6_hshift) */
                    const __m256i h = ch < 2 ? h0 : h1;
                    if (ch % 2 == 0) {
                        lo = _mm256_or_si256(lo, _mm256_and_si256(h, top2));
                        hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(h, 4), top2));
                    } else {
                        lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_srli_epi16(h, 2), top2));
                        hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(h, 2), top2));
                    }
                }
            } else {
                lo = _mm256_xor_si256(v, flip);
                hi = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk + 64 * (ch + 4) + 32 * half)), flip);
            }
            for (int ii = 0; ii < MR; ii++) {
                const int32_t *xd = (const int32_t *)(const void *)(x->q + (i0 + (size_t)ii) * x->k + b * 32);
                const __m256i xa = _mm256_set1_epi32(xd[ch]), xb = _mm256_set1_epi32(xd[ch + 4]);
                if (q8) {
                    s0[ii] = _mm256_add_epi32(s0[ii], dot4_u8s8(_mm256_abs_epi8(lo), _mm256_sign_epi8(xa, lo)));
                    s1[ii] = _mm256_add_epi32(s1[ii], dot4_u8s8(_mm256_abs_epi8(hi), _mm256_sign_epi8(xb, hi)));
                } else {
                    s0[ii] = _mm256_add_epi32(s0[ii], dot4_u8s8(lo, xa));
                    s1[ii] = _mm256_add_epi32(s1[ii], dot4_u8s8(hi, xb));
                }
            }
        }
        __m256 sc0, sc1 = _mm256_setzero_ps(), mw = _mm256_setzero_ps();
        if (kind == FLAT) {
            const uint8_t *sc = blk + flat_scales(L);
            sc0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sc + 16 * half)));
            if (L->has_min) mw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sc + 32 + 16 * half)));
        } else {
            if (b % 8 == 0) {
                const uint8_t *hdr = header_at(L, gw, b);
                dsb = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(hdr + 16 * half)));
                if (kind == KQ4) msb = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(hdr + 32 + 16 * half)));
            }
            if (kind == KQ4) {
                sc0 = _mm256_mul_ps(dsb, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(blk + L->sc_off + 8 * half)))));
                mw = _mm256_mul_ps(msb, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(blk + L->sc_off + 16 + 8 * half)))));
            } else if (kind == KIQ) {
                sc0 = _mm256_mul_ps(dsb, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(blk + L->sc_off + 8 * half)))));
            } else {
                sc0 = _mm256_mul_ps(dsb, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(blk + 384 + 8 * half)))));
                sc1 = _mm256_mul_ps(dsb, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(blk + 400 + 8 * half)))));
            }
        }
        for (int ii = 0; ii < MR; ii++) {
            const size_t ib = (i0 + (size_t)ii) * x->nb + b;
            const __m256 dx = _mm256_set1_ps(x->d[ib]);
            if (kind == KQ6) {
                acc[ii] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s0[ii], _mm256_set1_epi32(x->c[ib]))), _mm256_mul_ps(sc0, dx), acc[ii]);
                acc[ii] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s1[ii], _mm256_set1_epi32(x->c2[ib]))), _mm256_mul_ps(sc1, dx), acc[ii]);
                continue;
            }
            __m256i t = _mm256_add_epi32(s0[ii], s1[ii]);
            if (!q8) t = _mm256_sub_epi32(t, _mm256_set1_epi32(x->c[ib]));
            acc[ii] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_mul_ps(sc0, dx), acc[ii]);
            if (kind == KQ4) acc[ii] = _mm256_fnmadd_ps(mw, _mm256_set1_ps(x->s[ib]), acc[ii]);
            else if (L->has_min) acc[ii] = _mm256_fmadd_ps(mw, _mm256_set1_ps(x->s[ib]), acc[ii]);
        }
    }
    const int lanes = valid - 8 * half;
    for (int ii = 0; ii < MR; ii++) {
        float out[8];
        _mm256_storeu_ps(out, acc[ii]);
        float *yi = y + (i0 + (size_t)ii) * ldy + 8 * half;
        for (int r = 0; r < 8 && r < lanes; r++) yi[r] = out[r];
    }
}

CONDENSE_TARGET_GGUF256 static void group_avx2(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0,
                                               size_t m1, float *y, size_t ldy, int valid) {
    for (int half = 0; half < 2 && 8 * half < valid; half++) {
        size_t i = m0;
        for (; i + 4 <= m1; i += 4) group_half_avx2(4, L, gw, x, i, half, y, ldy, valid);
        switch (m1 - i) {
        case 3: group_half_avx2(3, L, gw, x, i, half, y, ldy, valid); break;
        case 2: group_half_avx2(2, L, gw, x, i, half, y, ldy, valid); break;
        case 1: group_half_avx2(1, L, gw, x, i, half, y, ldy, valid); break;
        default: break;
        }
    }
}

/* S24Q4 on AVX2 (no vpexpandb): per step and half group (8 rows × 4 columns), the 16 kept codes
 * become signed q = code − 8 and one pshufb places them; its control comes from the rows' 4-bit
 * masks through two 8-entry vpermd tables (one per high bit of the nibble) plus each row's slot
 * base 2r, and a pruned column's index has bit 7 set, so it reads 0. The dot is Σ q·qx itself
 * (sign trick, |q| ≤ 8), which is Σ code·qx − 8·Σ qx exactly: bit-identical to the other paths. */
static const int32_t s24_ctl[16] = {
    /* nibble → 4 bytes: byte t = slot of column t (0 or 1) or 0x80 if pruned; only the 6
     * two-bit nibbles occur (the packer checks), the others read as all pruned. */
    (int32_t)0x80808080, (int32_t)0x80808080, (int32_t)0x80808080, (int32_t)0x80800100,
    (int32_t)0x80808080, (int32_t)0x80018000, (int32_t)0x80010080, (int32_t)0x80808080,
    (int32_t)0x80808080, (int32_t)0x01808000, (int32_t)0x01800080, (int32_t)0x80808080,
    (int32_t)0x01008080, (int32_t)0x80808080, (int32_t)0x80808080, (int32_t)0x80808080,
};
CONDENSE_INLINE CONDENSE_TARGET_GGUF256 void s24_half_avx2(const int MR, const uint8_t *gw, const qx_rows *x,
                                                          size_t i0, int rh, float *y, size_t ldy, int valid) {
    const __m256i lo_tab = _mm256_loadu_si256((const __m256i *)s24_ctl), hi_tab = _mm256_loadu_si256((const __m256i *)(s24_ctl + 8));
    const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    /* Row r's slot base 2r (r within its 128-bit lane's 4 rows reads bytes 2r…2r+1 of the broadcast codes). */
    const __m256i base = _mm256_setr_epi32(0x00000000, 0x02020202, 0x04040404, 0x06060606,
                                           0x08080808, 0x0A0A0A0A, 0x0C0C0C0C, 0x0E0E0E0E);
    const __m256i f15 = _mm256_set1_epi32(15), eight_i = _mm256_set1_epi32(8);
    const __m128i lo4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    __m256 acc[4];
    for (int ii = 0; ii < MR; ii++) acc[ii] = _mm256_setzero_ps();
    for (size_t b = 0; b < x->nb / 2; b++) {
        const uint8_t *blk = gw + b * S24_GB;
        _mm_prefetch((const char *)(blk + S24_PREFETCH * S24_GB), _MM_HINT_T0);
        const __m256 sc = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 384 + 16 * rh)));
        for (int h = 0; h < 2; h++) {
            __m256i s[4];
            for (int ii = 0; ii < MR; ii++) s[ii] = _mm256_setzero_si256();
            for (int st = 8 * h; st < 8 * h + 8; st++) {
                uint64_t m64;
                memcpy(&m64, blk + 256 + 8 * st, 8);
                const __m256i nib = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)(uint32_t)(m64 >> (32 * rh))), shifts), f15);
                const __m256i hi_sel = _mm256_cmpgt_epi32(nib, _mm256_set1_epi32(7));
                const __m256i ctl = _mm256_add_epi8(_mm256_blendv_epi8(_mm256_permutevar8x32_epi32(lo_tab, nib),
                                                                       _mm256_permutevar8x32_epi32(hi_tab, _mm256_sub_epi32(nib, eight_i)), hi_sel),
                                                    base);
                __m128i codes = _mm_loadu_si128((const __m128i *)(blk + 32 * (st / 2) + 16 * rh));
                if (st % 2) codes = _mm_srli_epi16(codes, 4);
                const __m128i q = _mm_sub_epi8(_mm_and_si128(codes, lo4), eight);
                const __m256i w = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(q), ctl);
                const __m256i aw = _mm256_abs_epi8(w);
                for (int ii = 0; ii < MR; ii++) {
                    const int32_t *xd = (const int32_t *)(const void *)(x->q + (i0 + (size_t)ii) * x->k + 64 * b + 32 * (size_t)h);
                    const __m256i xv = _mm256_set1_epi32(xd[st % 8]);
                    s[ii] = _mm256_add_epi32(s[ii], dot4_u8s8(aw, _mm256_sign_epi8(xv, w)));
                }
            }
            for (int ii = 0; ii < MR; ii++) {
                const size_t ib = (i0 + (size_t)ii) * x->nb + 2 * b + (size_t)h;
                acc[ii] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[ii]), _mm256_mul_ps(sc, _mm256_set1_ps(x->d[ib])), acc[ii]);
            }
        }
    }
    const int lanes = valid - 8 * rh;
    for (int ii = 0; ii < MR; ii++) {
        float out[8];
        _mm256_storeu_ps(out, acc[ii]);
        float *yi = y + (i0 + (size_t)ii) * ldy + 8 * rh;
        for (int r = 0; r < 8 && r < lanes; r++) yi[r] = out[r];
    }
}

CONDENSE_TARGET_GGUF256 static void group_s24_avx2(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0,
                                                   size_t m1, float *y, size_t ldy, int valid) {
    (void)L;
    for (int rh = 0; rh < 2 && 8 * rh < valid; rh++) {
        size_t i = m0;
        for (; i + 4 <= m1; i += 4) s24_half_avx2(4, gw, x, i, rh, y, ldy, valid);
        switch (m1 - i) {
        case 3: s24_half_avx2(3, gw, x, i, rh, y, ldy, valid); break;
        case 2: s24_half_avx2(2, gw, x, i, rh, y, ldy, valid); break;
        case 1: s24_half_avx2(1, gw, x, i, rh, y, ldy, valid); break;
        default: break;
        }
    }
}

#define CONDENSE_TARGET_S24Q4 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx512vbmi2,avx2,fma,f16c")))
/* MR rows of X share each step's expanded weights: per 64 weights of 16 rows, one 32-byte
 * nibble pair serves two steps, one vpexpandb per step, then one vpdpbusd per row of X. */
CONDENSE_INLINE CONDENSE_TARGET_S24Q4 void s24_rows_avx512(const int MR, const uint8_t *gw, const qx_rows *x, size_t i0,
                                                           float *y, size_t ldy, __mmask16 mask) {
    const __m512i eights = _mm512_set1_epi8(8);
    const __m256i lo4 = _mm256_set1_epi8(0x0F);
    __m512 acc[GGUF_MR];
    for (int ii = 0; ii < MR; ii++) acc[ii] = _mm512_setzero_ps();
    for (size_t b = 0; b < x->nb / 2; b++) {
        const uint8_t *blk = gw + b * S24_GB;
        for (int off = 0; off < S24_GB; off += 64) _mm_prefetch((const char *)(blk + S24_PREFETCH * S24_GB + off), _MM_HINT_T0);
        const __m512 sc = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + 384)));
        for (int h = 0; h < 2; h++) {
            /* Two integer accumulators per row (even and odd steps): two vpdpbusd chains. */
            __m512i s[GGUF_MR][2];
            for (int ii = 0; ii < MR; ii++) s[ii][0] = s[ii][1] = _mm512_setzero_si512();
            for (int p = 4 * h; p < 4 * h + 4; p++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(blk + 32 * p));
                const __m256i half[2] = {_mm256_and_si256(v, lo4), _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4)};
                for (int e = 0; e < 2; e++) {
                    const int st = 2 * p + e;
                    const __mmask64 k = _cvtu64_mask64(*(const uint64_t *)(const void *)(blk + 256 + 8 * st));
                    const __m512i w = _mm512_mask_expand_epi8(eights, k, _mm512_castsi256_si512(half[e]));
                    for (int ii = 0; ii < MR; ii++) {
                        const int32_t *xd = (const int32_t *)(const void *)(x->q + (i0 + (size_t)ii) * x->k + 64 * b + 32 * (size_t)h);
                        s[ii][e] = _mm512_dpbusd_epi32(s[ii][e], w, _mm512_set1_epi32(xd[st % 8]));
                    }
                }
            }
            for (int ii = 0; ii < MR; ii++) {
                const size_t ib = (i0 + (size_t)ii) * x->nb + 2 * b + (size_t)h;
                const __m512i t = _mm512_sub_epi32(_mm512_add_epi32(s[ii][0], s[ii][1]), _mm512_set1_epi32(x->c[ib]));
                acc[ii] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_mul_ps(sc, _mm512_set1_ps(x->d[ib])), acc[ii]);
            }
        }
    }
    for (int ii = 0; ii < MR; ii++) _mm512_mask_storeu_ps(y + (i0 + (size_t)ii) * ldy, mask, acc[ii]);
}

CONDENSE_TARGET_S24Q4 static void group_s24_avx512(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0,
                                                   size_t m1, float *y, size_t ldy, int valid) {
    (void)L;
    const __mmask16 mask = (__mmask16)(valid >= GROUP ? 0xFFFF : (1u << valid) - 1);
    size_t i = m0;
    for (; i + GGUF_MR <= m1; i += GGUF_MR) s24_rows_avx512(GGUF_MR, gw, x, i, y, ldy, mask);
    switch (m1 - i) {
    case 7: s24_rows_avx512(7, gw, x, i, y, ldy, mask); break;
    case 6: s24_rows_avx512(6, gw, x, i, y, ldy, mask); break;
    case 5: s24_rows_avx512(5, gw, x, i, y, ldy, mask); break;
    case 4: s24_rows_avx512(4, gw, x, i, y, ldy, mask); break;
    case 3: s24_rows_avx512(3, gw, x, i, y, ldy, mask); break;
    case 2: s24_rows_avx512(2, gw, x, i, y, ldy, mask); break;
    case 1: s24_rows_avx512(1, gw, x, i, y, ldy, mask); break;
    default: break;
    }
}
#endif


#if CONDENSE_ARM64
#include <arm_neon.h>
#include <pthread.h>
/* AArch64: the AVX2 kernel's method on 4-row quarters of the 16-row group. Codes (u8 ≤ 63) and
 * X (s8) give 4-byte dots per row: SDOT at the dotprod level; at the neon level SMULL to int16
 * (|63·127|, and Q8_0's |128·127|·2, fit) and pairwise adds. Q8_0's codes are flipped back to s8,
 * so its dot is Σ q·qx itself and its o·Σqx term is not subtracted. The float steps are the
 * scalar kernel's, in its order: bit-identical results. */
CONDENSE_INLINE int32x4_t dot4_neon(int32x4_t acc, int8x16_t w, int8x16_t x) {
    const int16x8_t lo = vmull_s8(vget_low_s8(w), vget_low_s8(x)), hi = vmull_s8(vget_high_s8(w), vget_high_s8(x));
    return vaddq_s32(acc, vpaddlq_s16(vpaddq_s16(lo, hi)));
}
CONDENSE_INLINE CONDENSE_TARGET_DOTPROD int32x4_t dot4_sdot(int32x4_t acc, int8x16_t w, int8x16_t x) {
    return vdotq_s32(acc, w, x);
}
CONDENSE_INLINE float32x4_t u8x4_f32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return vcvtq_f32_u32(vmovl_u16(vget_low_u16(vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(v))))));
}
CONDENSE_INLINE float32x4_t s8x4_f32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return vcvtq_f32_s32(vmovl_s16(vget_low_s16(vmovl_s8(vreinterpret_s8_u32(vdup_n_u32(v))))));
}
CONDENSE_INLINE float32x4_t f16x4_f32(const uint8_t *p) { return vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(p))); }
CONDENSE_INLINE int8x16_t xquad(const int8_t *xq, int quad) {
    int32_t v;
    memcpy(&v, xq + 4 * quad, 4);
    return vreinterpretq_s8_s32(vdupq_n_s32(v));
}

#define GGUF_GROUP_NEON(NAME, ATTR, DOT)                                                                       \
    CONDENSE_INLINE ATTR void NAME##_rows(const int MR, const layout *L, const uint8_t *gw, const qx_rows *x,  \
                                          size_t i0, float *y, size_t ldy, int valid) {                        \
        const int q4 = L->chunks == 4, kind = L->kind, q8 = !q4 || L->lut;                                     \
        const uint8x16_t lo4 = vdupq_n_u8(0x0F), top2 = vdupq_n_u8(0x30), b4 = vdupq_n_u8(0x10);               \
        const uint8x16_t flip = vdupq_n_u8(0x80), lut = vld1q_u8(iq4nl_u8);                                    \
        float32x4_t acc[2][4], dsb[4], msb[4];                                                                 \
        for (int ii = 0; ii < MR; ii++)                                                                        \
            for (int qq = 0; qq < 4; qq++) acc[ii][qq] = vdupq_n_f32(0.0f);                                    \
        for (int qq = 0; qq < 4; qq++) dsb[qq] = msb[qq] = vdupq_n_f32(0.0f);                                  \
        for (size_t b = 0; b < x->nb; b++) {                                                                   \
            const uint8_t *blk = block_at(L, gw, b);                                                           \
            int32x4_t s0[2][4], s1[2][4];                                                                      \
            for (int ii = 0; ii < MR; ii++)                                                                    \
                for (int qq = 0; qq < 4; qq++) s0[ii][qq] = s1[ii][qq] = vdupq_n_s32(0);                       \
            for (int ch = 0; ch < 4; ch++) {                                                                   \
                int8x16_t xa[2], xb[2];                                                                        \
                for (int ii = 0; ii < MR; ii++) {                                                              \
                    const int8_t *xd = x->q + (i0 + (size_t)ii) * x->k + b * 32;                               \
                    xa[ii] = xquad(xd, ch);                                                                    \
                    xb[ii] = xquad(xd, ch + 4);                                                                \
                }                                                                                              \
                for (int qq = 0; qq < 4; qq++) {                                                               \
                    const uint8x16_t v = vld1q_u8(blk + 64 * ch + 16 * qq);                                    \
                    uint8x16_t lo, hi;                                                                         \
                    if (q4) {                                                                                  \
                        lo = vandq_u8(v, lo4);                                                                 \
                        hi = vshrq_n_u8(v, 4);                                                                 \
                        if (L->lut) { /* IQ4_NL: the levels themselves (s8) */                                 \
                            lo = veorq_u8(vqtbl1q_u8(lut, lo), flip);                                          \
                            hi = veorq_u8(vqtbl1q_u8(lut, hi), flip);                                          \
                        }                                                                                      \
                        if (L->hbits) {                                                                        \
                            const uint8x16_t h = vld1q_u8(blk + 256 + 16 * qq);                                \
                            lo = vorrq_u8(lo, vandq_u8(vshlq_u8(h, vdupq_n_s8((int8_t)(4 - ch))), b4));        \
                            hi = vorrq_u8(hi, vandq_u8(vshlq_u8(h, vdupq_n_s8((int8_t)-ch)), b4));             \
                        }                                                                                      \
                        if (kind == KQ6) {                                                                     \
                            const uint8x16_t h = vld1q_u8(blk + (ch < 2 ? 256 : 320) + 16 * qq);               \
                            if (ch % 2 == 0) {                                                                 \
                                lo = vorrq_u8(lo, vandq_u8(h, top2));                                          \
                                hi = vorrq_u8(hi, vandq_u8(vshlq_n_u8(h, 4), top2));                           \
                            } else {                                                                           \
                                lo = vorrq_u8(lo, vandq_u8(vshrq_n_u8(h, 2), top2));                           \
                                hi = vorrq_u8(hi, vandq_u8(vshlq_n_u8(h, 2), top2));                           \
                            }                                                                                  \
                        }                                                                                      \
                    } else {                                                                                   \
                        lo = veorq_u8(v, flip);                                                                \
                        hi = veorq_u8(vld1q_u8(blk + 64 * (ch + 4) + 16 * qq), flip);                          \
                    }                                                                                          \
                    for (int ii = 0; ii < MR; ii++) {                                                          \
                        s0[ii][qq] = DOT(s0[ii][qq], vreinterpretq_s8_u8(lo), xa[ii]);                         \
                        s1[ii][qq] = DOT(s1[ii][qq], vreinterpretq_s8_u8(hi), xb[ii]);                         \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
            float32x4_t sc0[4], sc1[4], mw[4];                                                                 \
            for (int qq = 0; qq < 4; qq++) {                                                                   \
                sc1[qq] = mw[qq] = vdupq_n_f32(0.0f);                                                          \
                if (kind == FLAT) {                                                                            \
                    const uint8_t *sc = blk + flat_scales(L);                                                  \
                    sc0[qq] = f16x4_f32(sc + 8 * qq);                                                          \
                    if (L->has_min) mw[qq] = f16x4_f32(sc + 32 + 8 * qq);                                      \
                } else {                                                                                       \
                    if (b % 8 == 0) {                                                                          \
                        const uint8_t *hdr = header_at(L, gw, b);                                              \
                        dsb[qq] = f16x4_f32(hdr + 8 * qq);                                                     \
                        if (kind == KQ4) msb[qq] = f16x4_f32(hdr + 32 + 8 * qq);                               \
                    }                                                                                          \
                    if (kind == KQ4) {                                                                         \
                        sc0[qq] = vmulq_f32(dsb[qq], u8x4_f32(blk + L->sc_off + 4 * qq));                      \
                        mw[qq] = vmulq_f32(msb[qq], u8x4_f32(blk + L->sc_off + 16 + 4 * qq));                  \
                    } else if (kind == KIQ) {                                                                  \
                        sc0[qq] = vmulq_f32(dsb[qq], s8x4_f32(blk + L->sc_off + 4 * qq));                      \
                    } else {                                                                                   \
                        sc0[qq] = vmulq_f32(dsb[qq], s8x4_f32(blk + 384 + 4 * qq));                            \
                        sc1[qq] = vmulq_f32(dsb[qq], s8x4_f32(blk + 400 + 4 * qq));                            \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
            for (int ii = 0; ii < MR; ii++) {                                                                  \
                const size_t ib = (i0 + (size_t)ii) * x->nb + b;                                               \
                const float dx = x->d[ib];                                                                     \
                for (int qq = 0; qq < 4; qq++) {                                                               \
                    if (kind == KQ6) {                                                                         \
                        acc[ii][qq] = vfmaq_f32(acc[ii][qq], vcvtq_f32_s32(vsubq_s32(s0[ii][qq], vdupq_n_s32(x->c[ib]))), \
                                                vmulq_n_f32(sc0[qq], dx));                                     \
                        acc[ii][qq] = vfmaq_f32(acc[ii][qq], vcvtq_f32_s32(vsubq_s32(s1[ii][qq], vdupq_n_s32(x->c2[ib]))), \
                                                vmulq_n_f32(sc1[qq], dx));                                     \
                        continue;                                                                              \
                    }                                                                                          \
                    int32x4_t t = vaddq_s32(s0[ii][qq], s1[ii][qq]);                                           \
                    if (!q8) t = vsubq_s32(t, vdupq_n_s32(x->c[ib]));                                          \
                    acc[ii][qq] = vfmaq_f32(acc[ii][qq], vcvtq_f32_s32(t), vmulq_n_f32(sc0[qq], dx));          \
                    if (kind == KQ4) acc[ii][qq] = vfmsq_f32(acc[ii][qq], mw[qq], vdupq_n_f32(x->s[ib]));      \
                    else if (L->has_min) acc[ii][qq] = vfmaq_f32(acc[ii][qq], mw[qq], vdupq_n_f32(x->s[ib]));  \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
        for (int ii = 0; ii < MR; ii++) {                                                                      \
            float out[16];                                                                                     \
            for (int qq = 0; qq < 4; qq++) vst1q_f32(out + 4 * qq, acc[ii][qq]);                               \
            float *yi = y + (i0 + (size_t)ii) * ldy;                                                           \
            for (int r = 0; r < valid; r++) yi[r] = out[r];                                                    \
        }                                                                                                      \
    }                                                                                                          \
    ATTR static void NAME(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y,  \
                          size_t ldy, int valid) {                                                             \
        size_t i = m0;                                                                                         \
        for (; i + 2 <= m1; i += 2) NAME##_rows(2, L, gw, x, i, y, ldy, valid);                                \
        if (i < m1) NAME##_rows(1, L, gw, x, i, y, ldy, valid);                                                \
    }
GGUF_GROUP_NEON(group_neon, , dot4_neon)
GGUF_GROUP_NEON(group_dotprod, CONDENSE_TARGET_DOTPROD, dot4_sdot)

/* S24Q4 on AArch64: per step (4 columns) the 16 rows' nibble masks give a TBL index per (row,
 * column): 2r + the kept value's slot, or 0x80 + 2r (out of the 32-byte table: reads 0) for a
 * pruned column. TBL places the 32 kept q = code − 8 into the 16 rows × 4 columns, and the dot is
 * Σ q·qx itself (= Σ code·qx − 8·Σ qx exactly): bit-identical to the scalar kernel. */
static uint32_t s24_ctl_neon[16];
static pthread_once_t s24_ctl_once = PTHREAD_ONCE_INIT;
static void s24_ctl_build(void) {
    for (int nib = 0; nib < 16; nib++) {
        uint32_t c = 0;
        int slot = 0;
        for (int t = 0; t < 4; t++) c |= (uint32_t)((nib >> t) & 1 ? slot++ : 0x80) << (8 * t);
        s24_ctl_neon[nib] = __builtin_popcount((unsigned)nib) == 2 ? c : 0x80808080u;
    }
}
#define S24_GROUP_NEON(NAME, ATTR, DOT)                                                                        \
    CONDENSE_INLINE ATTR void NAME##_rows(const int MR, const uint8_t *gw, const qx_rows *x, size_t i0, float *y, \
                                          size_t ldy, int valid) {                                             \
        float32x4_t acc[2][4];                                                                                 \
        for (int ii = 0; ii < MR; ii++)                                                                        \
            for (int qq = 0; qq < 4; qq++) acc[ii][qq] = vdupq_n_f32(0.0f);                                    \
        const uint8x16_t lo4 = vdupq_n_u8(0x0F);                                                               \
        const int8x16_t eight = vdupq_n_s8(8);                                                                 \
        for (size_t b = 0; b < x->nb / 2; b++) {                                                               \
            const uint8_t *blk = gw + b * S24_GB;                                                              \
            float32x4_t sc[4];                                                                                 \
            for (int qq = 0; qq < 4; qq++) sc[qq] = f16x4_f32(blk + 384 + 8 * qq);                             \
            for (int h = 0; h < 2; h++) {                                                                      \
                int32x4_t sd[2][4];                                                                            \
                for (int ii = 0; ii < MR; ii++)                                                                \
                    for (int qq = 0; qq < 4; qq++) sd[ii][qq] = vdupq_n_s32(0);                                \
                for (int st = 8 * h; st < 8 * h + 8; st++) {                                                   \
                    uint64_t m64;                                                                              \
                    memcpy(&m64, blk + 256 + 8 * st, 8);                                                       \
                    uint32_t idx[16];                                                                          \
                    for (int r = 0; r < 16; r++) idx[r] = s24_ctl_neon[(m64 >> (4 * r)) & 15] + 0x02020202u * (uint32_t)r; \
                    const uint8_t *pr = blk + 32 * (st / 2);                                                   \
                    uint8x16x2_t q;                                                                            \
                    for (int j = 0; j < 2; j++) {                                                              \
                        uint8x16_t c = vld1q_u8(pr + 16 * j);                                                  \
                        if (st % 2) c = vshrq_n_u8(c, 4);                                                      \
                        q.val[j] = vreinterpretq_u8_s8(vsubq_s8(vreinterpretq_s8_u8(vandq_u8(c, lo4)), eight)); \
                    }                                                                                          \
                    int8x16_t wq[4];                                                                           \
                    for (int qq = 0; qq < 4; qq++)                                                             \
                        wq[qq] = vreinterpretq_s8_u8(vqtbl2q_u8(q, vld1q_u8((const uint8_t *)(idx + 4 * qq)))); \
                    for (int ii = 0; ii < MR; ii++) {                                                          \
                        const int8x16_t xv = xquad(x->q + (i0 + (size_t)ii) * x->k + 64 * b + 32 * (size_t)h, st % 8); \
                        for (int qq = 0; qq < 4; qq++) sd[ii][qq] = DOT(sd[ii][qq], wq[qq], xv);               \
                    }                                                                                          \
                }                                                                                              \
                for (int ii = 0; ii < MR; ii++) {                                                              \
                    const float dx = x->d[(i0 + (size_t)ii) * x->nb + 2 * b + (size_t)h];                     \
                    for (int qq = 0; qq < 4; qq++)                                                             \
                        acc[ii][qq] = vfmaq_f32(acc[ii][qq], vcvtq_f32_s32(sd[ii][qq]), vmulq_n_f32(sc[qq], dx)); \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
        for (int ii = 0; ii < MR; ii++) {                                                                      \
            float out[16];                                                                                     \
            for (int qq = 0; qq < 4; qq++) vst1q_f32(out + 4 * qq, acc[ii][qq]);                               \
            for (int r = 0; r < valid; r++) y[(i0 + (size_t)ii) * ldy + (size_t)r] = out[r];                   \
        }                                                                                                      \
    }                                                                                                          \
    ATTR static void NAME(const layout *L, const uint8_t *gw, const qx_rows *x, size_t m0, size_t m1, float *y,  \
                          size_t ldy, int valid) {                                                             \
        (void)L;                                                                                               \
        pthread_once(&s24_ctl_once, s24_ctl_build);                                                            \
        size_t i = m0;                                                                                         \
        for (; i + 2 <= m1; i += 2) NAME##_rows(2, gw, x, i, y, ldy, valid);                                   \
        if (i < m1) NAME##_rows(1, gw, x, i, y, ldy, valid);                                                   \
    }
S24_GROUP_NEON(group_s24_neon, , dot4_neon)
S24_GROUP_NEON(group_s24_dotprod, CONDENSE_TARGET_DOTPROD, dot4_sdot)

/* ggml's q8_0 of one block, the scalar rule: max by maxNum (NaN ignored, as fmaxf), FCVTNS
 * rounds to nearest even and turns NaN into 0. */
static void quantize_block_neon(const float *x, int8_t *q, float *d, int32_t *sum) {
    float32x4_t v[8], a = vdupq_n_f32(0.0f);
    for (int j = 0; j < 8; j++) {
        v[j] = vld1q_f32(x + 4 * j);
        a = vmaxnmq_f32(a, vabsq_f32(v[j]));
    }
    const float amax = vmaxnmvq_f32(a);
    const float id = amax != 0 ? 127.0f / amax : 0.0f;
    int32x4_t s[2] = {vdupq_n_s32(0), vdupq_n_s32(0)};
    for (int j = 0; j < 8; j++) {
        const int32x4_t qi = vcvtnq_s32_f32(vmulq_n_f32(v[j], id));
        s[j / 4] = vaddq_s32(s[j / 4], qi);
        const int16x4_t h = vmovn_s32(qi);
        const int8x8_t b = vmovn_s16(vcombine_s16(h, h));
        vst1_lane_s32((int32_t *)(void *)(q + 4 * j), vreinterpret_s32_s8(b), 0);
    }
    *d = amax / 127.0f;
    sum[0] = vaddvq_s32(s[0]);
    sum[1] = vaddvq_s32(s[1]);
}
#endif

/* The one registration point: descriptor and code together, one entry per block type and ISA. */
typedef struct gguf_kernel_impl {
    condense_gguf_kernel info; /* first: its address is the entry's */
    group_fn group;
    quantize_block_fn quantize;
} gguf_kernel_impl;

static const gguf_kernel_impl kernels[] = {
    {{"gguf_q8_0_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q8_0}, group_scalar, quantize_block_scalar},
    {{"gguf_q4_0_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q4_0}, group_scalar, quantize_block_scalar},
    {{"gguf_q4_1_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q4_1}, group_scalar, quantize_block_scalar},
    {{"gguf_q5_0_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q5_0}, group_scalar, quantize_block_scalar},
    {{"gguf_q5_1_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q5_1}, group_scalar, quantize_block_scalar},
    {{"gguf_q4_k_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q4_K}, group_scalar, quantize_block_scalar},
    {{"gguf_q6_k_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q6_K}, group_scalar, quantize_block_scalar},
    {{"gguf_q5_k_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q5_K}, group_scalar, quantize_block_scalar},
    {{"gguf_iq4_nl_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_IQ4_NL}, group_scalar, quantize_block_scalar},
    {{"gguf_q3_k_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q3_K}, group_scalar, quantize_block_scalar},
    {{"gguf_iq4_xs_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_IQ4_XS}, group_scalar, quantize_block_scalar},
    {{"s24q4_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_BLOCK_S24Q4}, group_s24_scalar, quantize_block_scalar},
#if CONDENSE_X86
    {{"gguf_q8_0_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_Q8_0}, group_avx2, quantize_block_scalar},
    {{"gguf_q4_0_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_Q4_0}, group_avx2, quantize_block_scalar},
    {{"gguf_q4_1_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_Q4_1}, group_avx2, quantize_block_scalar},
    {{"gguf_q5_0_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_Q5_0}, group_avx2, quantize_block_scalar},
    {{"gguf_q5_1_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_Q5_1}, group_avx2, quantize_block_scalar},
    {{"gguf_q4_k_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_Q4_K}, group_avx2, quantize_block_scalar},
    {{"gguf_q6_k_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_Q6_K}, group_avx2, quantize_block_scalar},
    {{"gguf_q5_k_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_Q5_K}, group_avx2, quantize_block_scalar},
    {{"gguf_iq4_nl_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_IQ4_NL}, group_avx2, quantize_block_scalar},
    {{"gguf_q3_k_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_Q3_K}, group_avx2, quantize_block_scalar},
    {{"gguf_iq4_xs_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_IQ4_XS}, group_avx2, quantize_block_scalar},
    {{"s24q4_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_BLOCK_S24Q4}, group_s24_avx2, quantize_block_scalar},
    {{"gguf_q8_0_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q8_0},
     group_avx512, quantize_block_avx512},
    {{"gguf_q4_0_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q4_0},
     group_avx512, quantize_block_avx512},
    {{"gguf_q4_1_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q4_1},
     group_avx512, quantize_block_avx512},
    {{"gguf_q5_0_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q5_0},
     group_avx512, quantize_block_avx512},
    {{"gguf_q5_1_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q5_1},
     group_avx512, quantize_block_avx512},
    {{"gguf_q4_k_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q4_K},
     group_avx512, quantize_block_avx512},
    {{"gguf_q6_k_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q6_K},
     group_avx512, quantize_block_avx512},
    {{"gguf_q5_k_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q5_K},
     group_avx512, quantize_block_avx512},
    {{"gguf_iq4_nl_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_IQ4_NL},
     group_avx512, quantize_block_avx512},
    {{"gguf_q3_k_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q3_K},
     group_avx512, quantize_block_avx512},
    {{"gguf_iq4_xs_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_IQ4_XS},
     group_avx512, quantize_block_avx512},
    {{"s24q4_x16__avx512vbmi2", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_AVX512VBMI2 | CONDENSE_CPU_F16C,
      CONDENSE_BLOCK_S24Q4},
     group_s24_avx512, quantize_block_avx512},
#endif
#if CONDENSE_ARM64
    {{"gguf_q8_0_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_Q8_0}, group_neon, quantize_block_neon},
    {{"gguf_q4_0_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_Q4_0}, group_neon, quantize_block_neon},
    {{"gguf_q4_1_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_Q4_1}, group_neon, quantize_block_neon},
    {{"gguf_q5_0_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_Q5_0}, group_neon, quantize_block_neon},
    {{"gguf_q5_1_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_Q5_1}, group_neon, quantize_block_neon},
    {{"gguf_q4_k_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_Q4_K}, group_neon, quantize_block_neon},
    {{"gguf_q6_k_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_Q6_K}, group_neon, quantize_block_neon},
    {{"gguf_q5_k_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_Q5_K}, group_neon, quantize_block_neon},
    {{"gguf_iq4_nl_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_IQ4_NL}, group_neon, quantize_block_neon},
    {{"gguf_q3_k_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_Q3_K}, group_neon, quantize_block_neon},
    {{"gguf_iq4_xs_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_IQ4_XS}, group_neon, quantize_block_neon},
    {{"s24q4_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_BLOCK_S24Q4}, group_s24_neon, quantize_block_neon},
    {{"gguf_q8_0_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_Q8_0}, group_dotprod, quantize_block_neon},
    {{"gguf_q4_0_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_Q4_0}, group_dotprod, quantize_block_neon},
    {{"gguf_q4_1_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_Q4_1}, group_dotprod, quantize_block_neon},
    {{"gguf_q5_0_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_Q5_0}, group_dotprod, quantize_block_neon},
    {{"gguf_q5_1_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_Q5_1}, group_dotprod, quantize_block_neon},
    {{"gguf_q4_k_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_Q4_K}, group_dotprod, quantize_block_neon},
    {{"gguf_q6_k_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_Q6_K}, group_dotprod, quantize_block_neon},
    {{"gguf_q5_k_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_Q5_K}, group_dotprod, quantize_block_neon},
    {{"gguf_iq4_nl_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_IQ4_NL}, group_dotprod, quantize_block_neon},
    {{"gguf_q3_k_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_Q3_K}, group_dotprod, quantize_block_neon},
    {{"gguf_iq4_xs_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_IQ4_XS}, group_dotprod, quantize_block_neon},
    {{"s24q4_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_BLOCK_S24Q4}, group_s24_dotprod, quantize_block_neon},
#endif
};

int condense_gguf_kernel_count(void) { return (int)(sizeof kernels / sizeof kernels[0]); }

const condense_gguf_kernel *condense_gguf_kernel_at(int i) {
    return i >= 0 && i < condense_gguf_kernel_count() ? &kernels[i].info : NULL;
}

static const gguf_kernel_impl *kernel_for(uint32_t type, condense_isa isa) {
    if (isa > condense_isa_detected()) isa = condense_isa_detected();
    const uint32_t have = condense_cpu_features();
    const gguf_kernel_impl *best = NULL;
    for (int i = 0; i < condense_gguf_kernel_count(); i++) {
        const gguf_kernel_impl *k = &kernels[i];
        if (k->info.type != type || k->info.isa > isa || !condense_isa_runs_on(k->info.isa, condense_isa_detected()) ||
            (k->info.features & have) != k->info.features)
            continue;
        if (!best || k->info.isa > best->info.isa) best = k;
    }
    return best;
}

typedef struct {
    const layout *L;
    const gguf_kernel_impl *kr;
    const float *x;
    size_t lda, m, k;
    int8_t *q;
    float *d;
    int32_t *c, *c2;
    float *s;
    size_t nb;
    const qx_rows *xr;
    const uint8_t *wb;
    size_t gbytes, groups, n;
    group_fn run;
    float *y;
    size_t ldy;
} gguf_ctx;

/* Thread t of nt quantizes its share of the rows of X, the team meets, then runs its groups. */
static void gguf_share(void *ctx, int t, int nt) {
    const gguf_ctx *g = ctx;
    const size_t i0 = g->m * (size_t)t / (size_t)nt, i1 = g->m * (size_t)(t + 1) / (size_t)nt;
    if (i1 > i0)
        quantize_rows(g->kr->quantize, g->L, g->x + i0 * g->lda, g->lda, i1 - i0, g->k, g->q + i0 * g->k, g->d + i0 * g->nb,
                      g->c + i0 * g->nb, g->c2 + i0 * g->nb, g->s ? g->s + i0 * g->nb : NULL);
    condense_team_barrier(nt);
    for (size_t gi = g->groups * (size_t)t / (size_t)nt; gi < g->groups * (size_t)(t + 1) / (size_t)nt; gi++) {
        const size_t r0 = gi * GROUP;
        const int valid = g->n - r0 >= GROUP ? GROUP : (int)(g->n - r0);
        g->run(g->L, g->wb + gi * g->gbytes, g->xr, 0, g->m, g->y + r0, g->ldy, valid);
    }
}

int condense_gguf_gemm(uint32_t type, const void *packed, size_t n, size_t k, size_t m, const float *x, size_t lda,
                       float *y, size_t ldy, condense_isa isa, int threads) {
    layout L;
    if (!layout_of(type, &L) || !condense_gguf_packed_size(type, n, k)) return CONDENSE_ERR_INVALID;
    if (m == 0 || n == 0) return CONDENSE_OK;
    const gguf_kernel_impl *kr = kernel_for(type, isa);
    if (!kr) return CONDENSE_ERR_INVALID;
    const size_t nb = k / 32, groups = (n + GROUP - 1) / GROUP;
    size_t qbytes, pbytes;
    if (__builtin_mul_overflow(m, k, &qbytes) || __builtin_mul_overflow(m, nb * 16, &pbytes)) return CONDENSE_ERR_INVALID;
    uint8_t *scratch = condense_scratch(CONDENSE_SCRATCH_QX, qbytes + pbytes + 256);
    if (!scratch) return CONDENSE_ERR_NO_MEMORY;
    int8_t *q = (int8_t *)scratch;
    float *d = (float *)(void *)(scratch + (qbytes + 63) / 64 * 64);
    int32_t *c = (int32_t *)(d + m * nb), *c2 = c + m * nb;
    float *s = L.has_min ? (float *)(c2 + m * nb) : NULL;
    int nt = threads > 0 ? threads : condense_get_num_threads();
    if (groups < 2 || n * k * m < 65536) nt = 1;
    const qx_rows xr = {q, d, c, c2, s, k, nb};
    const size_t gbytes = group_bytes(&L, nb);
    const uint8_t *wb = packed;
    const group_fn run = kr->group;
    gguf_ctx gc = {&L, kr, x, lda, m, k, q, d, c, c2, s, nb, &xr, wb, gbytes, groups, n, run, y, ldy};
    condense_team_run(nt, gguf_share, &gc);
    return CONDENSE_OK;
}

const char *condense_gguf_gemm_kernel_name(uint32_t type, condense_isa isa) {
    const gguf_kernel_impl *k = kernel_for(type, isa);
    return k ? k->info.name : "none";
}
