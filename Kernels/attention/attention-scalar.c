/* Attention, portable C: the encoder's (sequence, head) pair and the decoder's causal chunk, the
 * reference the vector paths are checked against. */
#include "attention-internal.h"

#include <math.h>

void condense_attention_pair_scalar(const float *q, const float *k, const float *v, size_t ld, float *out,
                                  size_t ldo, size_t rows, int d, float scale, float *s) {
    for (size_t i = 0; i < rows; i++) {
        float mx = -INFINITY;
        for (size_t j = 0; j < rows; j++) {
            float dot = 0;
            for (int c = 0; c < d; c++) dot += q[i * ld + (size_t)c] * k[j * ld + (size_t)c];
            s[j] = dot * scale;
            mx = s[j] > mx ? s[j] : mx;
        }
        float sum = 0;
        for (size_t j = 0; j < rows; j++) { s[j] = expf(s[j] - mx); sum += s[j]; }
        const float inv = 1.0f / sum;
        float *o = out + i * ldo;
        for (int c = 0; c < d; c++) o[c] = 0;
        for (size_t j = 0; j < rows; j++) {
            const float p = s[j] * inv;
            for (int c = 0; c < d; c++) o[c] += p * v[j * ld + (size_t)c];
        }
    }
}

/* Positions [a, b) of one KV head (kh, vh: its first element in row 0) for the group's query
 * heads (qg: the first one's q): m[g] = max score, l[g] = Σ e^(s − m), o[g] = Σ e^(s − m)·v. */
void condense_causal_chunk_scalar(const causal_args *A, const float *qg, const uint8_t *kh, const uint8_t *vh, size_t a,
                                size_t b, float *sc, float *m, float *l, float *o) {
    const size_t n = b - a;
    const int hd = A->hd;
    for (int g = 0; g < A->group; g++) {
        const float *qr = qg + (size_t)g * (size_t)hd;
        float *s = sc + (size_t)g * n, mx = -INFINITY, sum = 0;
        for (size_t p = 0; p < n; p++) {
            const uint8_t *kr = kh + (a + p) * A->k_row_bytes;
            float dot = 0;
            for (int e = 0; e < hd; e++) dot += qr[e] * kv_at(A->kt, kr, e);
            s[p] = dot * A->scale;
            if (A->softcap > 0) s[p] = A->softcap * tanhf(s[p] / A->softcap);
            mx = s[p] > mx ? s[p] : mx;
        }
        for (size_t p = 0; p < n; p++) { s[p] = expf(s[p] - mx); sum += s[p]; }
        float *og = o + (size_t)g * (size_t)hd;
        for (int e = 0; e < hd; e++) og[e] = 0;
        for (size_t p = 0; p < n; p++) {
            const uint8_t *vr = vh + (a + p) * A->v_row_bytes;
            for (int e = 0; e < hd; e++) og[e] += s[p] * kv_at(A->vt, vr, e);
        }
        m[g] = mx;
        l[g] = sum;
    }
}
