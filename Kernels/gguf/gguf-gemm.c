/* Y[M,N] = X[M,K] · Wᵀ with W in ggml blocks (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS), computed the way ggml's CPU
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
 *     Q3_K: Q6_K's kind without its high-bit vectors: code = q + 4 (0…7) as nibbles, o = 4, and
 *           its 6-bit scale − 32 as the signed scale per 16: no kernel of its own, at 4.56
 *           bits per weight read against 3.44 stored (6.56 when it took Q6_K's whole layout).
 *     IQ4_XS (KIQ): a super-block's d, per block of 32 the IQ4_NL nibbles and a signed scale
 *           (6-bit − 32): y += D·sc·dx·(Σ (level+128)·qx − 128·Σ qx).
 *     Q2_K (KQ2): d and dmin, per block of 32 the 2-bit codes as nibbles and a 4-bit scale and
 *           min for each half: y += D·sc_h·dx·Σ_h q·qx − Dmin·m_h·dx·Σ_h qx, h = elements 0…15,
 *           16…31 (5.25 bits per weight read against 2.625 stored).
 * so that every type runs at its stored size (Q4_K 4.625 bits per weight against 4.5 stored,
 * Q6_K exactly its 6.5625). IQ4_NL is Q4_0's layout whose 4-bit codes index 16 int8 levels: a
 * table lookup (vpshufb, TBL) turns the nibbles into level + 128, after which it runs as Q8_0's
 * codes do (o = 128). Rows beyond N are zero (scale 0).
 * This file packs, quantizes X and drives (also the 2:4-int4 blocks, whose kernels are in
 * s24-gemm/s24q4-*.c); the kernels live per ISA (gguf-scalar.c, gguf-avx2.c,
 * gguf-avx512.c, gguf-neon.c), bit-identical: integer sums are exact and the float steps are the
 * same fused multiply-adds in the same order. Threads over groups of rows. */
#include "gguf-internal.h"

#include <string.h>


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
    case CONDENSE_GGUF_Q6_K: *L = (layout){KQ6, 4, 0, 32, 210, 0, 0, 32, 256 + 128 + 32, 0, 0, 0, 384, 1}; break;
    case CONDENSE_GGUF_Q3_K: *L = (layout){KQ6, 4, 0, 4, 110, 0, 0, 32, 256 + 32, 0, 0, 0, 256, 0}; break;
    case CONDENSE_GGUF_IQ4_XS: *L = (layout){KIQ, 4, 0, 128, 136, 0, 0, 32, 256 + 16, 0, 0, 1, 256}; break;
    case CONDENSE_GGUF_Q2_K: *L = (layout){KQ2, 4, 0, 1, 84, 0, 0, 64, 256 + 64, 0, 0, 0, 256}; break;
    case CONDENSE_BLOCK_S24Q4: *L = (layout){S24, 4, 0, 8, 26, 10, 0, 0, 0, 0, 0}; L->gb = S24_GB; return 1;
    default: return 0;
    }
    L->gb = (size_t)L->chunks * 64 + (L->hbits ? 64 : 0) + 32 + (L->has_min ? 32 : 0);
    return 1;
}

static size_t elems_per_block(const layout *L) { return L->kind == FLAT ? 32 : L->kind == S24 ? 64 : 256; }
/* Packed bytes of one group of 16 rows (nb blocks of 32). */
static size_t group_bytes(const layout *L, size_t nb) {
    if (L->kind == S24) return nb / 2 * S24_GB;
    return L->kind == FLAT ? nb * L->gb : nb / 8 * (L->hdr + 8 * L->kb);
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

/* Q3_K in Q6_K's kind: the 256 codes q + 4 (0…7: nibbles, no high-bit vectors) and the 16 signed
 * scales (6-bit − 32), in ggml's order. */
static void q3k_codes(const uint8_t *blk, uint8_t *code, int8_t *scale) {
    const uint8_t *hm = blk, *q = blk + 32, *sc = blk + 96;
    for (int s = 0; s < 16; s++)
        scale[s] = (int8_t)((((sc[s % 8] >> (4 * (s / 8))) & 0xF) | (((sc[8 + s % 4] >> (2 * (s / 4))) & 3) << 4)) - 32);
    for (int e = 0; e < 256; e++) {
        const int n = e / 128, shift = 2 * (e % 128 / 32), l = e % 32;
        const int v = (q[32 * n + l] >> shift) & 3, h = (hm[l] >> (4 * n + shift / 2)) & 1;
        code[e] = (uint8_t)(v - (h ? 0 : 4) + 4);
    }
}

/* Q2_K: the 256 codes (0…3) in ggml's order, the 16 scales and mins (4 bits each). */
static void q2k_codes(const uint8_t *blk, uint8_t *code, uint8_t *sc, uint8_t *mn) {
    const uint8_t *q = blk + 16;
    for (int s = 0; s < 16; s++) { sc[s] = blk[s] & 15; mn[s] = blk[s] >> 4; }
    for (int e = 0; e < 256; e++) code[e] = (uint8_t)((q[32 * (e / 128) + e % 32] >> (2 * (e % 128 / 32))) & 3);
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
                uint8_t code[256], sc[16], mn[16];
                int8_t ssc[16];   /* signed scales: Q6_K's and Q3_K's per 16, IQ4_XS's per 32 */
                if (L.kind == KQ4) {
                    if (L.hbits) q5k_codes(blk, code, sc, mn);
                    else q4k_codes(blk, code, sc, mn);
                    memcpy(h + 2 * r, blk, 2);           /* d */
                    memcpy(h + 32 + 2 * r, blk + 2, 2);  /* dmin */
                } else if (L.kind == KIQ) {
                    iq4xs_codes(blk, code, ssc);
                    memcpy(h + 2 * r, blk, 2);           /* d */
                } else if (L.kind == KQ2) {
                    q2k_codes(blk, code, sc, mn);
                    memcpy(h + 2 * r, blk + 80, 2);      /* d */
                    memcpy(h + 32 + 2 * r, blk + 82, 2); /* dmin */
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
                    } else if (L.kind == KQ2) {   /* scales of the two halves, then their mins */
                        o[L.sc_off + r] = sc[2 * j];
                        o[L.sc_off + 16 + r] = sc[2 * j + 1];
                        o[L.sc_off + 32 + r] = mn[2 * j];
                        o[L.sc_off + 48 + r] = mn[2 * j + 1];
                    } else {
                        if (L.h2)
                            for (int e = 0; e < 32; e++) {
                                const int ch = e / 4, t = e % 4;
                                o[256 + (ch / 2 % 2) * 64 + r * 4 + t] |= (uint8_t)((cj[e] >> 4) << q6_hshift[ch]);
                            }
                        o[L.sc_off + r] = (uint8_t)ssc[2 * j];        /* the scale of elements 0…15 */
                        o[L.sc_off + 16 + r] = (uint8_t)ssc[2 * j + 1];    /* and of 16…31 */
                    }
                }
            }
        }
    }
    return CONDENSE_OK;
}
/* ---- X quantized per block of 32 (ggml's q8_0 / q8_1) ------------------------------------- */
/* v rounded to f16 precision (nearest even, as F16C): the same bits on every path. */
static float f16_round(float v) { return condense_f16_to_f32(condense_f32_to_f16_one(v)); }


static void quantize_rows(quantize_block_fn qb, const layout *L, const float *x, size_t lda, size_t m, size_t k,
                          int8_t *q, float *d, int32_t *c, int32_t *c2, float *s) {
    const size_t nb = k / 32;
    for (size_t i = 0; i < m; i++)
        for (size_t b = 0; b < nb; b++) {
            float dd;
            int32_t sum[2];
            qb(x + i * lda + b * 32, q + i * k + b * 32, &dd, sum);
            d[i * nb + b] = f16_round(dd);
            c[i * nb + b] = L->offset * (L->kind == KQ6 || L->kind == KQ2 ? sum[0] : sum[0] + sum[1]);
            /* Q6_K, Q3_K and Q2_K read the second half's own sum; the others −c, so that a kernel can
             * start its integer sum from it with a broadcast load. */
            c2[i * nb + b] = L->kind == KQ6 || L->kind == KQ2 ? L->offset * sum[1] : -c[i * nb + b];
            if (s) s[i * nb + b] = f16_round(dd * (float)(sum[0] + sum[1]));
        }
}

/* The one registration point: descriptor and code together, one entry per block type and ISA. */
typedef struct gguf_kernel_impl {
    condense_gguf_kernel info; /* first: its address is the entry's */
    group_fn group;
    quantize_block_fn quantize;
} gguf_kernel_impl;

static const gguf_kernel_impl kernels[] = {
    {{"gguf_q8_0_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q8_0}, condense_gguf_group_scalar, condense_gguf_quantize_block_scalar},
    {{"gguf_q4_0_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q4_0}, condense_gguf_group_scalar, condense_gguf_quantize_block_scalar},
    {{"gguf_q4_1_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q4_1}, condense_gguf_group_scalar, condense_gguf_quantize_block_scalar},
    {{"gguf_q5_0_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q5_0}, condense_gguf_group_scalar, condense_gguf_quantize_block_scalar},
    {{"gguf_q5_1_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q5_1}, condense_gguf_group_scalar, condense_gguf_quantize_block_scalar},
    {{"gguf_q4_k_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q4_K}, condense_gguf_group_scalar, condense_gguf_quantize_block_scalar},
    {{"gguf_q6_k_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q6_K}, condense_gguf_group_scalar, condense_gguf_quantize_block_scalar},
    {{"gguf_q5_k_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q5_K}, condense_gguf_group_scalar, condense_gguf_quantize_block_scalar},
    {{"gguf_iq4_nl_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_IQ4_NL}, condense_gguf_group_scalar, condense_gguf_quantize_block_scalar},
    {{"gguf_q3_k_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q3_K}, condense_gguf_group_scalar, condense_gguf_quantize_block_scalar},
    {{"gguf_iq4_xs_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_IQ4_XS}, condense_gguf_group_scalar, condense_gguf_quantize_block_scalar},
    {{"gguf_q2_k_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_GGUF_Q2_K}, condense_gguf_group_scalar, condense_gguf_quantize_block_scalar},
    {{"s24q4_x16__scalar", CONDENSE_ISA_SCALAR, 0, CONDENSE_BLOCK_S24Q4}, condense_s24q4_group_scalar, condense_gguf_quantize_block_scalar},
#if CONDENSE_X86
    {{"gguf_q8_0_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_Q8_0}, condense_gguf_group_avx2, condense_gguf_quantize_block_scalar},
    {{"gguf_q4_0_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_Q4_0}, condense_gguf_group_avx2, condense_gguf_quantize_block_scalar},
    {{"gguf_q4_1_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_Q4_1}, condense_gguf_group_avx2, condense_gguf_quantize_block_scalar},
    {{"gguf_q5_0_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_Q5_0}, condense_gguf_group_avx2, condense_gguf_quantize_block_scalar},
    {{"gguf_q5_1_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_Q5_1}, condense_gguf_group_avx2, condense_gguf_quantize_block_scalar},
    {{"gguf_q4_k_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_Q4_K}, condense_gguf_group_avx2, condense_gguf_quantize_block_scalar},
    {{"gguf_q6_k_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_Q6_K}, condense_gguf_group_avx2, condense_gguf_quantize_block_scalar},
    {{"gguf_q5_k_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_Q5_K}, condense_gguf_group_avx2, condense_gguf_quantize_block_scalar},
    {{"gguf_iq4_nl_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_IQ4_NL}, condense_gguf_group_avx2, condense_gguf_quantize_block_scalar},
    {{"gguf_q3_k_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_Q3_K}, condense_gguf_group_avx2, condense_gguf_quantize_block_scalar},
    {{"gguf_iq4_xs_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_IQ4_XS}, condense_gguf_group_avx2, condense_gguf_quantize_block_scalar},
    {{"gguf_q2_k_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_GGUF_Q2_K}, condense_gguf_group_avx2, condense_gguf_quantize_block_scalar},
    {{"s24q4_x16__avx2", CONDENSE_ISA_AVX2, CONDENSE_CPU_F16C, CONDENSE_BLOCK_S24Q4}, condense_s24q4_group_avx2, condense_gguf_quantize_block_scalar},
    {{"gguf_q8_0_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q8_0},
     condense_gguf_group_avx512, condense_gguf_quantize_block_avx512},
    {{"gguf_q4_0_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q4_0},
     condense_gguf_group_avx512, condense_gguf_quantize_block_avx512},
    {{"gguf_q4_1_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q4_1},
     condense_gguf_group_avx512, condense_gguf_quantize_block_avx512},
    {{"gguf_q5_0_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q5_0},
     condense_gguf_group_avx512, condense_gguf_quantize_block_avx512},
    {{"gguf_q5_1_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q5_1},
     condense_gguf_group_avx512, condense_gguf_quantize_block_avx512},
    {{"gguf_q4_k_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q4_K},
     condense_gguf_group_avx512, condense_gguf_quantize_block_avx512},
    {{"gguf_q6_k_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q6_K},
     condense_gguf_group_avx512, condense_gguf_quantize_block_avx512},
    {{"gguf_q5_k_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q5_K},
     condense_gguf_group_avx512, condense_gguf_quantize_block_avx512},
    {{"gguf_iq4_nl_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_IQ4_NL},
     condense_gguf_group_avx512, condense_gguf_quantize_block_avx512},
    {{"gguf_q3_k_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q3_K},
     condense_gguf_group_avx512, condense_gguf_quantize_block_avx512},
    {{"gguf_iq4_xs_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_IQ4_XS},
     condense_gguf_group_avx512, condense_gguf_quantize_block_avx512},
    {{"gguf_q2_k_x16__avx512vnni", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_F16C, CONDENSE_GGUF_Q2_K},
     condense_gguf_group_avx512, condense_gguf_quantize_block_avx512},
    {{"s24q4_x16__avx512vbmi2", CONDENSE_ISA_AVX512, CONDENSE_CPU_AVX512VNNI | CONDENSE_CPU_AVX512VBMI2 | CONDENSE_CPU_F16C,
      CONDENSE_BLOCK_S24Q4},
     condense_s24q4_group_avx512, condense_gguf_quantize_block_avx512},
#endif
#if CONDENSE_ARM64
    {{"gguf_q8_0_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_Q8_0}, condense_gguf_group_neon, condense_gguf_quantize_block_neon},
    {{"gguf_q4_0_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_Q4_0}, condense_gguf_group_neon, condense_gguf_quantize_block_neon},
    {{"gguf_q4_1_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_Q4_1}, condense_gguf_group_neon, condense_gguf_quantize_block_neon},
    {{"gguf_q5_0_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_Q5_0}, condense_gguf_group_neon, condense_gguf_quantize_block_neon},
    {{"gguf_q5_1_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_Q5_1}, condense_gguf_group_neon, condense_gguf_quantize_block_neon},
    {{"gguf_q4_k_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_Q4_K}, condense_gguf_group_neon, condense_gguf_quantize_block_neon},
    {{"gguf_q6_k_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_Q6_K}, condense_gguf_group_neon, condense_gguf_quantize_block_neon},
    {{"gguf_q5_k_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_Q5_K}, condense_gguf_group_neon, condense_gguf_quantize_block_neon},
    {{"gguf_iq4_nl_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_IQ4_NL}, condense_gguf_group_neon, condense_gguf_quantize_block_neon},
    {{"gguf_q3_k_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_Q3_K}, condense_gguf_group_neon, condense_gguf_quantize_block_neon},
    {{"gguf_iq4_xs_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_IQ4_XS}, condense_gguf_group_neon, condense_gguf_quantize_block_neon},
    {{"gguf_q2_k_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_GGUF_Q2_K}, condense_gguf_group_neon, condense_gguf_quantize_block_neon},
    {{"s24q4_x16__neon", CONDENSE_ISA_NEON, 0, CONDENSE_BLOCK_S24Q4}, condense_s24q4_group_neon, condense_gguf_quantize_block_neon},
    {{"gguf_q8_0_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_Q8_0}, condense_gguf_group_dotprod, condense_gguf_quantize_block_neon},
    {{"gguf_q4_0_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_Q4_0}, condense_gguf_group_dotprod, condense_gguf_quantize_block_neon},
    {{"gguf_q4_1_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_Q4_1}, condense_gguf_group_dotprod, condense_gguf_quantize_block_neon},
    {{"gguf_q5_0_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_Q5_0}, condense_gguf_group_dotprod, condense_gguf_quantize_block_neon},
    {{"gguf_q5_1_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_Q5_1}, condense_gguf_group_dotprod, condense_gguf_quantize_block_neon},
    {{"gguf_q4_k_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_Q4_K}, condense_gguf_group_dotprod, condense_gguf_quantize_block_neon},
    {{"gguf_q6_k_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_Q6_K}, condense_gguf_group_dotprod, condense_gguf_quantize_block_neon},
    {{"gguf_q5_k_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_Q5_K}, condense_gguf_group_dotprod, condense_gguf_quantize_block_neon},
    {{"gguf_iq4_nl_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_IQ4_NL}, condense_gguf_group_dotprod, condense_gguf_quantize_block_neon},
    {{"gguf_q3_k_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_Q3_K}, condense_gguf_group_dotprod, condense_gguf_quantize_block_neon},
    {{"gguf_iq4_xs_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_IQ4_XS}, condense_gguf_group_dotprod, condense_gguf_quantize_block_neon},
    {{"gguf_q2_k_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_GGUF_Q2_K}, condense_gguf_group_dotprod, condense_gguf_quantize_block_neon},
    {{"s24q4_x16__dotprod", CONDENSE_ISA_DOTPROD, CONDENSE_CPU_DOTPROD, CONDENSE_BLOCK_S24Q4}, condense_s24q4_group_dotprod, condense_gguf_quantize_block_neon},
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

/* Thread t of nt quantizes its share of the rows of X, the team meets, then runs its groups
 * (and adds their bias). Fixed contiguous shares of groups: threads claiming chunks instead
 * (round-robin, or from the two ends, the counter on a line of its own) made SmolLM2's tg128
 * 8–20 % slower here, although the caller waits at the end for the worker's share (the weights
 * stream best as two long runs). */
void condense_gguf_share(void *ctx, int t, int nt) {
    const gguf_job *g = ctx;
    /* Shares counted from the last thread, so that a single row (token generation) is quantized
     * by the caller, already running, not by a worker still waking up while the caller waits. */
    const int s = nt - 1 - t;
    const size_t i0 = g->m * (size_t)s / (size_t)nt, i1 = g->m * (size_t)(s + 1) / (size_t)nt;
    if (i1 > i0)
        quantize_rows(g->quantize, &g->L, g->x + i0 * g->lda, g->lda, i1 - i0, g->k, (int8_t *)g->xr.q + i0 * g->k,
                      (float *)g->xr.d + i0 * g->nb, (int32_t *)g->xr.c + i0 * g->nb, (int32_t *)g->xr.c2 + i0 * g->nb,
                      g->xr.s ? (float *)g->xr.s + i0 * g->nb : NULL);
    condense_team_barrier(nt);
    const size_t g0 = g->groups * (size_t)t / (size_t)nt, g1 = g->groups * (size_t)(t + 1) / (size_t)nt;
    for (size_t gi = g0; gi < g1; gi++) {
        const size_t r0 = gi * GROUP;
        const int valid = g->n - r0 >= GROUP ? GROUP : (int)(g->n - r0);
        g->run(&g->L, g->wb + gi * g->gbytes, &g->xr, 0, g->m, g->y + r0, g->ldy, valid);
    }
    if (g->bias && g1 > g0) {
        const size_t c0 = g0 * GROUP, c1 = g1 * GROUP < g->n ? g1 * GROUP : g->n;
        for (size_t i = 0; i < g->m; i++)
            for (size_t j = c0; j < c1; j++) g->y[i * g->ldy + j] += g->bias[j];
    }
}

size_t condense_gguf_scratch_bytes(size_t m, size_t k) {
    size_t qbytes, pbytes, total;
    if (__builtin_mul_overflow(m, k, &qbytes) || __builtin_mul_overflow(m, k / 32 * 16, &pbytes) ||
        __builtin_add_overflow(qbytes, pbytes, &total) || __builtin_add_overflow(total, (size_t)256, &total))
        return 0;
    return total;
}

int condense_gguf_plan(gguf_job *j, uint32_t type, const void *packed, size_t n, size_t k, size_t m, const float *x, size_t lda,
                       float *y, size_t ldy, const float *bias, condense_isa isa, int threads, uint8_t *scratch) {
    if (!layout_of(type, &j->L) || !condense_gguf_packed_size(type, n, k)) return CONDENSE_ERR_INVALID;
    const gguf_kernel_impl *kr = kernel_for(type, isa);
    if (!kr) return CONDENSE_ERR_INVALID;
    const size_t nb = k / 32, groups = (n + GROUP - 1) / GROUP;
    if (!condense_gguf_scratch_bytes(m, k)) return CONDENSE_ERR_INVALID;
    if (!scratch) return CONDENSE_ERR_NO_MEMORY;
    const size_t qbytes = m * k;
    int8_t *q = (int8_t *)scratch;
    float *d = (float *)(void *)(scratch + (qbytes + 63) / 64 * 64);
    int32_t *c = (int32_t *)(d + m * nb), *c2 = c + m * nb;
    float *s = j->L.has_min ? (float *)(c2 + m * nb) : NULL;
    int nt = threads > 0 ? threads : condense_get_num_threads();
    if (groups < 2 || n * k * m < 65536) nt = 1;
    *j = (gguf_job){.L = j->L, .xr = {q, d, c, c2, s, k, nb}, .quantize = kr->quantize, .run = kr->group, .x = x, .lda = lda,
                    .m = m, .k = k, .nb = nb, .wb = packed, .gbytes = group_bytes(&j->L, nb), .groups = groups, .n = n, .y = y,
                    .ldy = ldy, .bias = bias, .nt = nt};
    return CONDENSE_OK;
}

int condense_gguf_gemm_bias(uint32_t type, const void *packed, size_t n, size_t k, size_t m, const float *x, size_t lda,
                            const float *bias, float *y, size_t ldy, condense_isa isa, int threads) {
    layout L;
    if (!layout_of(type, &L) || !condense_gguf_packed_size(type, n, k)) return CONDENSE_ERR_INVALID;
    if (m == 0 || n == 0) return CONDENSE_OK;
    const size_t bytes = condense_gguf_scratch_bytes(m, k);
    if (!bytes) return CONDENSE_ERR_INVALID;
    /* The plan finds the kernel (INVALID when there is none) and carves the scratch. */
    gguf_job j;
    const int st = condense_gguf_plan(&j, type, packed, n, k, m, x, lda, y, ldy, bias, isa, threads,
                                      condense_scratch(CONDENSE_SCRATCH_QX, bytes));
    if (st != CONDENSE_OK) return st;
    condense_team_run(j.nt, condense_gguf_share, &j);
    return CONDENSE_OK;
}

int condense_gguf_gemm(uint32_t type, const void *packed, size_t n, size_t k, size_t m, const float *x, size_t lda,
                       float *y, size_t ldy, condense_isa isa, int threads) {
    return condense_gguf_gemm_bias(type, packed, n, k, m, x, lda, NULL, y, ldy, isa, threads);
}

const char *condense_gguf_gemm_kernel_name(uint32_t type, condense_isa isa) {
    const gguf_kernel_impl *k = kernel_for(type, isa);
    return k ? k->info.name : "none";
}
