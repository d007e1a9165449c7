/* K-quants (256-element super-blocks): Q4_K, Q5_K, Q6_K weights and the Q8_K
 * activation type. Dequantization and the scalar dots follow GGML's
 * definitions exactly; the quantizers are jarip's own: per sub-block a
 * least-squares refined (scale, min), then 6-bit (Q4_K/Q5_K) or int8 (Q6_K)
 * quantization of those scales relative to the super-block's largest. */
#include "kernels/quant_blocks.h"

#include <stddef.h>

#include <float.h>
#include <math.h>

/* ---- dequantization ---------------------------------------------------------------- */
void dequant_q4_K(const void *src, float *y, int64_t nb) {
    const BlockQ4_K *b = src;
    for (int64_t i = 0; i < nb; i++) {
        const float d = fp16_to_f32(b[i].d), dmin = fp16_to_f32(b[i].dmin);
        const uint8_t *q = b[i].qs;
        for (int j = 0; j < 4; j++, q += 32) {
            uint8_t s1, m1, s2, m2;
            kq_scale_min(2 * j, b[i].scales, &s1, &m1);
            kq_scale_min(2 * j + 1, b[i].scales, &s2, &m2);
            const float d1 = d * s1, c1 = dmin * m1, d2 = d * s2, c2 = dmin * m2;
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - c1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - c2;
        }
    }
}

void dequant_q5_K(const void *src, float *y, int64_t nb) {
    const BlockQ5_K *b = src;
    for (int64_t i = 0; i < nb; i++) {
        const float d = fp16_to_f32(b[i].d), dmin = fp16_to_f32(b[i].dmin);
        const uint8_t *ql = b[i].qs, *qh = b[i].qh;
        for (int j = 0; j < 4; j++, ql += 32) {
            uint8_t s1, m1, s2, m2;
            kq_scale_min(2 * j, b[i].scales, &s1, &m1);
            kq_scale_min(2 * j + 1, b[i].scales, &s2, &m2);
            const float d1 = d * s1, c1 = dmin * m1, d2 = d * s2, c2 = dmin * m2;
            const uint8_t u1 = (uint8_t)(1u << (2 * j)), u2 = (uint8_t)(2u << (2 * j));
            for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - c1;
            for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - c2;
        }
    }
}

/* 6-bit value e (0..255) of a Q6_K block, minus 32. */
static inline int q6_val(const BlockQ6_K *b, int e) {
    const int half = e / 128, r = e % 128, l = r % 32, quarter = r / 32;
    const uint8_t *ql = b->ql + half * 64, *qh = b->qh + half * 32;
    int lo = quarter & 1 ? ql[l + 32] : ql[l];
    lo = quarter >= 2 ? lo >> 4 : lo & 0xF;
    return (lo | (((qh[l] >> (2 * quarter)) & 3) << 4)) - 32;
}

void dequant_q6_K(const void *src, float *y, int64_t nb) {
    const BlockQ6_K *b = src;
    for (int64_t i = 0; i < nb; i++) {
        const float d = fp16_to_f32(b[i].d);
        for (int e = 0; e < QK_K; e++) *y++ = d * b[i].scales[e / 16] * q6_val(&b[i], e);
    }
}

void dequant_q8_K(const void *src, float *y, int64_t nb) {
    const BlockQ8_K *b = src;
    for (int64_t i = 0; i < nb; i++)
        for (int j = 0; j < QK_K; j++) *y++ = b[i].d * b[i].qs[j];
}

/* ---- quantizers ------------------------------------------------------------------------ */
/* Fit x[0..n) ~ scale*q - mn with q in 0..nmax, mn >= 0 (i.e. min <= 0), by
 * alternating rounding and a 2-parameter least-squares fit; keeps the best. */
static void fit_scale_min(const float *x, int n, int nmax, float *scale, float *mn) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < n; j++) lo = fminf(lo, x[j]), hi = fmaxf(hi, x[j]);
    if (lo > 0) lo = 0;
    if (hi <= lo) {
        *scale = 0, *mn = -lo;
        return;
    }
    float s = (hi - lo) / nmax, m = -lo, best = FLT_MAX, bs = s, bm = m;
    for (int it = 0; it < 6; it++) {
        /* round with the current (s, m), measure, then refit */
        double sq = 0, sx = 0, sqq = 0, sxq = 0, err = 0;
        for (int j = 0; j < n; j++) {
            int q = nearest_int((x[j] + m) / s);
            q = q < 0 ? 0 : q > nmax ? nmax : q;
            double e = s * q - m - x[j];
            err += e * e;
            sq += q, sx += x[j], sqq += (double)q * q, sxq += (double)x[j] * q;
        }
        if (err < best) best = (float)err, bs = s, bm = m;
        double det = n * sqq - sq * sq;
        if (det <= 0) break;
        double ns = (n * sxq - sq * sx) / det, nm = (sq * sxq - sqq * sx) / det; /* x ~ ns*q - nm */
        if (ns <= 0) break;
        if (nm < 0) { /* min must stay <= 0: refit scale with m = 0 */
            nm = 0;
            ns = sqq > 0 ? sxq / sqq : ns;
        }
        s = (float)ns, m = (float)nm;
    }
    *scale = bs, *mn = bm;
}

/* Shared by Q4_K and Q5_K: 8 sub-blocks of 32 -> 6-bit scales/mins packed
 * into 12 bytes, d/dmin halves, and the integer levels L (0..nmax). */
static void kq_fit(const float *x, int nmax, uint16_t *dh, uint16_t *dminh, uint8_t *scales, uint8_t *L) {
    float sc[8], mn[8], maxs = 0, maxm = 0;
    for (int j = 0; j < 8; j++) {
        fit_scale_min(x + 32 * j, 32, nmax, &sc[j], &mn[j]);
        maxs = fmaxf(maxs, sc[j]), maxm = fmaxf(maxm, mn[j]);
    }
    const float d = maxs / 63, dmin = maxm / 63;
    *dh = f32_to_fp16(d), *dminh = f32_to_fp16(dmin);
    const float dq = fp16_to_f32(*dh), dminq = fp16_to_f32(*dminh);
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        int a = dq > 0 ? nearest_int(sc[j] / dq) : 0, b = dminq > 0 ? nearest_int(mn[j] / dminq) : 0;
        ls[j] = (uint8_t)(a < 0 ? 0 : a > 63 ? 63 : a), lm[j] = (uint8_t)(b < 0 ? 0 : b > 63 ? 63 : b);
    }
    for (int j = 0; j < 4; j++) {
        scales[j] = (uint8_t)((ls[j] & 63) | ((ls[j + 4] >> 4) << 6));
        scales[j + 4] = (uint8_t)((lm[j] & 63) | ((lm[j + 4] >> 4) << 6));
        scales[j + 8] = (uint8_t)((ls[j + 4] & 0xF) | ((lm[j + 4] & 0xF) << 4));
    }
    /* requantize against the scales as stored */
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        kq_scale_min(j, scales, &s, &m);
        const float ds = dq * s, dm = dminq * m;
        for (int l = 0; l < 32; l++) {
            int q = ds > 0 ? nearest_int((x[32 * j + l] + dm) / ds) : 0;
            L[32 * j + l] = (uint8_t)(q < 0 ? 0 : q > nmax ? nmax : q);
        }
    }
}

void quant_q4_K(const float *x, void *dst, int64_t nb) {
    BlockQ4_K *y = dst;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        kq_fit(x, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) y[i].qs[32 * j + l] = (uint8_t)(L[64 * j + l] | (L[64 * j + 32 + l] << 4));
    }
}

void quant_q5_K(const float *x, void *dst, int64_t nb) {
    BlockQ5_K *y = dst;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        kq_fit(x, 31, &y[i].d, &y[i].dmin, y[i].scales, L);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) {
                const int a = L[64 * j + l], b = L[64 * j + 32 + l];
                y[i].qs[32 * j + l] = (uint8_t)((a & 0xF) | ((b & 0xF) << 4));
                y[i].qh[l] |= (uint8_t)(((a >> 4) << (2 * j)) | ((b >> 4) << (2 * j + 1)));
            }
    }
}

/* Symmetric scale for 16 values with q in -32..31: try scales around
 * max/-32 and keep the one with the least squared error. */
static float fit_sym16(const float *x) {
    float amax = 0, max = 0;
    for (int j = 0; j < 16; j++)
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
    if (amax == 0) return 0;
    float best = FLT_MAX, bs = max / -32;
    for (int k = -4; k <= 4; k++) {
        const float s = max / (-32 + 0.25f * k);
        float err = 0;
        for (int j = 0; j < 16; j++) {
            int q = nearest_int(x[j] / s);
            q = q < -32 ? -32 : q > 31 ? 31 : q;
            const float e = s * q - x[j];
            err += e * e;
        }
        if (err < best) best = err, bs = s;
    }
    return bs;
}

void quant_q6_K(const float *x, void *dst, int64_t nb) {
    BlockQ6_K *y = dst;
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        float sc[16], amax = 0, max = 0;
        for (int j = 0; j < 16; j++) {
            sc[j] = fit_sym16(x + 16 * j);
            if (fabsf(sc[j]) > amax) amax = fabsf(sc[j]), max = sc[j];
        }
        memset(&y[i], 0, sizeof y[i]);
        if (amax == 0) continue; /* all zero: d = 0, every level 32 (value 0) */
        const float d = max / -128;
        y[i].d = f32_to_fp16(d);
        const float dq = fp16_to_f32(y[i].d);
        uint8_t L[QK_K];
        for (int j = 0; j < 16; j++) {
            int s = dq != 0 ? nearest_int(sc[j] / dq) : 0;
            s = s < -128 ? -128 : s > 127 ? 127 : s;
            y[i].scales[j] = (int8_t)s;
            const float ds = dq * s;
            for (int l = 0; l < 16; l++) {
                int q = ds != 0 ? nearest_int(x[16 * j + l] / ds) : 0;
                q = q < -32 ? -32 : q > 31 ? 31 : q;
                L[16 * j + l] = (uint8_t)(q + 32);
            }
        }
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *q = L + 128 * h;
                const int q1 = q[l], q2 = q[l + 32], q3 = q[l + 64], q4 = q[l + 96];
                y[i].ql[64 * h + l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
                y[i].ql[64 * h + l + 32] = (uint8_t)((q2 & 0xF) | ((q4 & 0xF) << 4));
                y[i].qh[32 * h + l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
    }
}

void quant_q8_K(const float *x, void *dst, int64_t nb) {
    BlockQ8_K *y = dst;
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        float amax = 0, max = 0;
        for (int j = 0; j < QK_K; j++)
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
        memset(&y[i], 0, sizeof y[i]);
        if (amax == 0) continue;
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++) {
            int v = nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += y[i].qs[16 * j + l];
            y[i].bsums[j] = (int16_t)s;
        }
        y[i].d = 1 / iscale;
    }
}

/* ---- scalar dots with Q8_K activations ---------------------------------------------------
 * sum = d_a * (d * sum_j sc_j * <q_j, a_j> - dmin * sum_j m_j * sum(a_j)) */
/* One Q4_K/Q5_K super-block (qh NULL for Q4_K) against Q8_K values q8 with
 * 16-sums bs: the exact integer totals sum_j sc_j * <q, a>_j (isum) and
 * sum_j m_j * sum(a)_j (msum) over its 8 sub-blocks. */
static void kq_block_sums(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, const int8_t *q8,
                          const int16_t *bs, int *isum, int *msum) {
    int sumi = 0, summ = 0;
    for (int j = 0; j < 4; j++) {
        uint8_t s1, m1, s2, m2;
        kq_scale_min(2 * j, scales, &s1, &m1);
        kq_scale_min(2 * j + 1, scales, &s2, &m2);
        int p1 = 0, p2 = 0;
        const uint8_t *q = qs + 32 * j;
        for (int l = 0; l < 32; l++) {
            const int h1 = qh ? ((qh[l] >> (2 * j)) & 1) << 4 : 0, h2 = qh ? ((qh[l] >> (2 * j + 1)) & 1) << 4 : 0;
            p1 += ((q[l] & 0xF) | h1) * q8[64 * j + l];
            p2 += ((q[l] >> 4) | h2) * q8[64 * j + 32 + l];
        }
        sumi += s1 * p1 + s2 * p2;
        summ += m1 * (bs[4 * j] + bs[4 * j + 1]) + m2 * (bs[4 * j + 2] + bs[4 * j + 3]);
    }
    *isum = sumi, *msum = summ;
}

/* The K-quant block-total order (quant_blocks.h): two FMAs per super-block. */
static float kq_dot(const uint8_t *w, size_t bb, size_t qs_off, ptrdiff_t qh_off, const QAct *a, int64_t K) {
    float acc = 0;
    for (int64_t i = 0; i < K / QK_K; i++) {
        const uint8_t *b = w + (size_t)i * bb;
        uint16_t dh, dmh;
        memcpy(&dh, b, 2), memcpy(&dmh, b + 2, 2);
        int isum, msum;
        kq_block_sums(b + 4, b + qs_off, qh_off >= 0 ? b + qh_off : NULL, a->qs + i * QK_K, a->bsums + i * 16, &isum, &msum);
        acc = fmaf(fp16_to_f32(dh) * a->d[i], (float)isum, acc);
        acc = fmaf(-(fp16_to_f32(dmh) * a->d[i]), (float)msum, acc);
    }
    return acc;
}

float dot_q4_K_scalar(const void *w, const QAct *a, const float *x, int64_t K) {
    (void)x;
    return kq_dot(w, sizeof(BlockQ4_K), offsetof(BlockQ4_K, qs), -1, a, K);
}

float dot_q5_K_scalar(const void *w, const QAct *a, const float *x, int64_t K) {
    (void)x;
    return kq_dot(w, sizeof(BlockQ5_K), offsetof(BlockQ5_K, qs), (ptrdiff_t)offsetof(BlockQ5_K, qh), a, K);
}

float dot_q6_K_scalar(const void *w, const QAct *a, const float *x, int64_t K) {
    (void)x;
    const BlockQ6_K *b = w;
    float acc = 0;
    for (int64_t i = 0; i < K / QK_K; i++) {
        const int8_t *q8 = a->qs + i * QK_K;
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            int p = 0;
            for (int l = 0; l < 16; l++) p += q6_val(&b[i], 16 * j + l) * q8[16 * j + l];
            sumi += b[i].scales[j] * p;
        }
        acc += a->d[i] * fp16_to_f32(b[i].d) * (float)sumi;
    }
    return acc;
}
