/* Q2_K and Q3_K, read-only (published Q2_K / Q3_K_M files use them):
 * dequantization exactly as GGML defines it, and scalar dots with Q8_K
 * activations. jarip does not quantize to these types. */
#include "kernels/quant_blocks.h"

/* Integer levels of one super-block, value = d*sc[g]*L - dmin*mn[g] for
 * element e in group g = e/16. */
static void q2_levels(const BlockQ2_K *b, int8_t L[QK_K], int sc[16], int mn[16]) {
    for (int g = 0; g < 16; g++) sc[g] = b->scales[g] & 0xF, mn[g] = b->scales[g] >> 4;
    /* element e: half n = e/128, within it j = (e%128)/32 picks the bit pair,
     * l = e%32 the byte of that half's 32 */
    for (int e = 0; e < QK_K; e++) {
        const int n = e / 128, j = (e % 128) / 32, l = e % 32;
        L[e] = (int8_t)((b->qs[32 * n + l] >> (2 * j)) & 3);
    }
}

static void q3_levels(const BlockQ3_K *b, int8_t L[QK_K], int sc[16]) {
    /* 16 six-bit scales: low 4 bits from bytes 0..7 (two per byte), high 2
     * bits from bytes 8..11 (four per byte) */
    for (int g = 0; g < 16; g++) {
        const int lo = g < 8 ? b->scales[g] & 0xF : b->scales[g - 8] >> 4;
        const int hi = (b->scales[8 + g % 4] >> (2 * (g / 4))) & 3;
        sc[g] = (lo | (hi << 4)) - 32;
    }
    for (int e = 0; e < QK_K; e++) {
        const int n = e / 128, j = (e % 128) / 32, l = e % 32;
        const int low = (b->qs[32 * n + l] >> (2 * j)) & 3;
        const int high = (b->hmask[l] >> (4 * n + j)) & 1;
        L[e] = (int8_t)(low - (high ? 0 : 4));
    }
}

void dequant_q2_K(const void *src, float *y, int64_t nb) {
    const BlockQ2_K *b = src;
    for (int64_t i = 0; i < nb; i++, y += QK_K) {
        int8_t L[QK_K];
        int sc[16], mn[16];
        q2_levels(&b[i], L, sc, mn);
        const float d = fp16_to_f32(b[i].d), dmin = fp16_to_f32(b[i].dmin);
        for (int e = 0; e < QK_K; e++) y[e] = d * sc[e / 16] * L[e] - dmin * mn[e / 16];
    }
}

void dequant_q3_K(const void *src, float *y, int64_t nb) {
    const BlockQ3_K *b = src;
    for (int64_t i = 0; i < nb; i++, y += QK_K) {
        int8_t L[QK_K];
        int sc[16];
        q3_levels(&b[i], L, sc);
        const float d = fp16_to_f32(b[i].d);
        for (int e = 0; e < QK_K; e++) y[e] = d * sc[e / 16] * L[e];
    }
}

/* sum over groups of sc*<L, a> (and mn * sum a for Q2_K), then the scales */
float dot_q2_K_scalar(const void *w, const QAct *a, const float *x, int64_t K) {
    (void)x;
    const BlockQ2_K *b = w;
    float acc = 0;
    for (int64_t i = 0; i < K / QK_K; i++) {
        int8_t L[QK_K];
        int sc[16], mn[16], sumi = 0, summ = 0;
        q2_levels(&b[i], L, sc, mn);
        const int8_t *q8 = a->qs + i * QK_K;
        for (int g = 0; g < 16; g++) {
            int p = 0;
            for (int l = 0; l < 16; l++) p += L[16 * g + l] * q8[16 * g + l];
            sumi += sc[g] * p;
            summ += mn[g] * a->bsums[i * 16 + g];
        }
        acc += a->d[i] * (fp16_to_f32(b[i].d) * (float)sumi - fp16_to_f32(b[i].dmin) * (float)summ);
    }
    return acc;
}

float dot_q3_K_scalar(const void *w, const QAct *a, const float *x, int64_t K) {
    (void)x;
    const BlockQ3_K *b = w;
    float acc = 0;
    for (int64_t i = 0; i < K / QK_K; i++) {
        int8_t L[QK_K];
        int sc[16], sumi = 0;
        q3_levels(&b[i], L, sc);
        const int8_t *q8 = a->qs + i * QK_K;
        for (int g = 0; g < 16; g++) {
            int p = 0;
            for (int l = 0; l < 16; l++) p += L[16 * g + l] * q8[16 * g + l];
            sumi += sc[g] * p;
        }
        acc += a->d[i] * fp16_to_f32(b[i].d) * (float)sumi;
    }
    return acc;
}
