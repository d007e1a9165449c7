/* Reference (scalar) block formats: float conversions, dequantize/quantize
 * of the 32-element formats, activation quantization, scalar dot products.
 * The quantizers follow llama.cpp's reference rounding exactly, so a file
 * quantized here is byte-identical to one quantized by its reference code. */
#include "kernels/quant_blocks.h"

#include <math.h>

/* ---- half / bfloat16 ----------------------------------------------------------- */
float fp16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF, u;
    if (exp == 0x1F) {
        u = sign | 0x7F800000u | (man << 13); /* inf / nan */
    } else if (exp == 0) {
        if (!man) {
            u = sign;
        } else { /* subnormal: normalize */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FF) << 13);
        }
    } else {
        u = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_fp16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000, a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return (uint16_t)(sign | 0x7E00 | ((a >> 13) & 0x3FF)); /* nan stays nan */
    if (a >= 0x477FF000u) return (uint16_t)(sign | 0x7C00); /* rounds to >= 65520: inf */
    if (a < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        if (a < 0x33000000u) return (uint16_t)sign; /* < half of the smallest subnormal */
        uint32_t e = a >> 23, m = (a & 0x7FFFFF) | 0x800000;
        uint32_t shift = 126 - e; /* 14 + (113 - e) - 1 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = a - 0x38000000u; /* rebias exponent 127 -> 15 */
    uint32_t h = r >> 13, rem = r & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 64); /* quiet nan */
    return (uint16_t)((u + (0x7FFF + ((u >> 16) & 1))) >> 16);
}

/* ---- 32-element formats ------------------------------------------------------------ */
static void amax_max(const float *x, int n, float *amax, float *max) {
    float a = 0, m = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > a) a = fabsf(x[j]), m = x[j];
    *amax = a, *max = m;
}

static void min_max(const float *x, int n, float *mn, float *mx) {
    float lo = INFINITY, hi = -INFINITY;
    for (int j = 0; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo, *mx = hi;
}

static void quant_q4_0(const float *x, BlockQ4_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK) {
        float amax, max;
        amax_max(x, QK, &amax, &max);
        const float d = max / -8, id = d ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        for (int j = 0; j < QK / 2; j++) {
            int a = (int8_t)(x[j] * id + 8.5f), b = (int8_t)(x[j + QK / 2] * id + 8.5f);
            a = a < 15 ? a : 15, b = b < 15 ? b : 15;
            y[i].qs[j] = (uint8_t)(a | (b << 4));
        }
    }
}

static void quant_q4_1(const float *x, BlockQ4_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK) {
        float mn, mx;
        min_max(x, QK, &mn, &mx);
        const float d = (mx - mn) / 15, id = d ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        y[i].m = f32_to_fp16(mn);
        for (int j = 0; j < QK / 2; j++) {
            int a = (int8_t)((x[j] - mn) * id + 0.5f), b = (int8_t)((x[j + QK / 2] - mn) * id + 0.5f);
            a = a < 15 ? a : 15, b = b < 15 ? b : 15;
            y[i].qs[j] = (uint8_t)(a | (b << 4));
        }
    }
}

static void quant_q5_0(const float *x, BlockQ5_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK) {
        float amax, max;
        amax_max(x, QK, &amax, &max);
        const float d = max / -16, id = d ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            int a = (int8_t)(x[j] * id + 16.5f), b = (int8_t)(x[j + QK / 2] * id + 16.5f);
            a = a < 31 ? a : 31, b = b < 31 ? b : 31;
            y[i].qs[j] = (uint8_t)((a & 0xF) | ((b & 0xF) << 4));
            qh |= ((uint32_t)(a & 0x10) >> 4) << j;
            qh |= ((uint32_t)(b & 0x10) >> 4) << (j + QK / 2);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

static void quant_q5_1(const float *x, BlockQ5_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK) {
        float mn, mx;
        min_max(x, QK, &mn, &mx);
        const float d = (mx - mn) / 31, id = d ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        y[i].m = f32_to_fp16(mn);
        uint32_t qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            unsigned a = (uint8_t)((x[j] - mn) * id + 0.5f), b = (uint8_t)((x[j + QK / 2] - mn) * id + 0.5f);
            y[i].qs[j] = (uint8_t)((a & 0xF) | ((b & 0xF) << 4));
            qh |= ((a & 0x10) >> 4) << j;
            qh |= ((b & 0x10) >> 4) << (j + QK / 2);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

static void quant_q8_0(const float *x, BlockQ8_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK) {
        float amax, max;
        amax_max(x, QK, &amax, &max);
        const float d = amax / 127, id = d ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        for (int j = 0; j < QK; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

/* Decode one block of a 32-element format into integer levels q (value =
 * d*q + m, m = 0 for the symmetric formats). The reference dequantizer and
 * the scalar dots share it, so they agree by construction. */
static void block_levels(int t, const void *blk, int q[QK], float *d, float *m) {
    *m = 0;
    switch (t) {
    case DT_Q4_0: case DT_Q4_1: {
        const uint8_t *qs = t == DT_Q4_0 ? ((const BlockQ4_0 *)blk)->qs : ((const BlockQ4_1 *)blk)->qs;
        const int off = t == DT_Q4_0 ? 8 : 0;
        for (int j = 0; j < QK / 2; j++) q[j] = (qs[j] & 0xF) - off, q[j + QK / 2] = (qs[j] >> 4) - off;
        *d = fp16_to_f32(((const uint16_t *)blk)[0]);
        if (t == DT_Q4_1) *m = fp16_to_f32(((const BlockQ4_1 *)blk)->m);
        break;
    }
    case DT_Q5_0: case DT_Q5_1: {
        const uint8_t *qs = t == DT_Q5_0 ? ((const BlockQ5_0 *)blk)->qs : ((const BlockQ5_1 *)blk)->qs;
        uint32_t qh;
        memcpy(&qh, t == DT_Q5_0 ? ((const BlockQ5_0 *)blk)->qh : ((const BlockQ5_1 *)blk)->qh, 4);
        const int off = t == DT_Q5_0 ? 16 : 0;
        for (int j = 0; j < QK; j++) {
            const int lo = j < QK / 2 ? qs[j] & 0xF : qs[j - QK / 2] >> 4;
            q[j] = (lo | (int)(((qh >> j) & 1) << 4)) - off;
        }
        *d = fp16_to_f32(((const uint16_t *)blk)[0]);
        if (t == DT_Q5_1) *m = fp16_to_f32(((const BlockQ5_1 *)blk)->m);
        break;
    }
    default: { /* DT_Q8_0 */
        const BlockQ8_0 *b = blk;
        for (int j = 0; j < QK; j++) q[j] = b->qs[j];
        *d = fp16_to_f32(b->d);
    }
    }
}

static void dequant_32(int t, const uint8_t *src, float *y, int64_t nb) {
    const size_t bb = dtype_block_bytes(t);
    for (int64_t i = 0; i < nb; i++, y += QK) {
        int q[QK];
        float d, m;
        block_levels(t, src + (size_t)i * bb, q, &d, &m);
        for (int j = 0; j < QK; j++) y[j] = t == DT_Q4_1 || t == DT_Q5_1 ? q[j] * d + m : q[j] * d;
    }
}

int quant_can_dequantize(int t) {
    switch (t) {
    case DT_F32: case DT_F16: case DT_BF16: case DT_Q4_0: case DT_Q4_1: case DT_Q5_0: case DT_Q5_1:
    case DT_Q8_0: case DT_Q2_K: case DT_Q3_K: case DT_Q4_K: case DT_Q5_K: case DT_Q6_K: case DT_Q8_K: return 1;
    default: return 0;
    }
}

/* Q2_K and Q3_K are read-only. */
int quant_can_quantize(int t) { return quant_can_dequantize(t) && t != DT_Q2_K && t != DT_Q3_K; }

int dequantize_row(int t, const void *src, float *y, int64_t n) {
    QDequantFn f = quant_dequant_fn_avx2(t);
    if (f && n >= 0 && n % dtype_block_size(t) == 0) {
        f(src, y, n);
        return 0;
    }
    return dequantize_row_ref(t, src, y, n);
}

int dequantize_row_ref(int t, const void *src, float *y, int64_t n) {
    if (!quant_can_dequantize(t)) return ERR_UNSUPPORTED;
    int bs = dtype_block_size(t);
    if (n < 0 || n % bs) return ERR_INVALID;
    int64_t nb = n / bs;
    switch (t) {
    case DT_F32: memcpy(y, src, (size_t)n * 4); break;
    case DT_F16: for (int64_t i = 0; i < n; i++) y[i] = fp16_to_f32(((const uint16_t *)src)[i]); break;
    case DT_BF16: for (int64_t i = 0; i < n; i++) y[i] = bf16_to_f32(((const uint16_t *)src)[i]); break;
    case DT_Q4_0: case DT_Q4_1: case DT_Q5_0: case DT_Q5_1: case DT_Q8_0: dequant_32(t, src, y, nb); break;
    case DT_Q2_K: dequant_q2_K(src, y, nb); break;
    case DT_Q3_K: dequant_q3_K(src, y, nb); break;
    case DT_Q4_K: dequant_q4_K(src, y, nb); break;
    case DT_Q5_K: dequant_q5_K(src, y, nb); break;
    case DT_Q6_K: dequant_q6_K(src, y, nb); break;
    case DT_Q8_K: dequant_q8_K(src, y, nb); break;
    }
    return 0;
}

int quantize_row(int t, const float *x, void *dst, int64_t n) {
    if (!quant_can_quantize(t)) return ERR_UNSUPPORTED;
    int bs = dtype_block_size(t);
    if (n < 0 || n % bs) return ERR_INVALID;
    int64_t nb = n / bs;
    switch (t) {
    case DT_F32: memcpy(dst, x, (size_t)n * 4); break;
    case DT_F16: for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = f32_to_fp16(x[i]); break;
    case DT_BF16: for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = f32_to_bf16(x[i]); break;
    case DT_Q4_0: quant_q4_0(x, dst, nb); break;
    case DT_Q4_1: quant_q4_1(x, dst, nb); break;
    case DT_Q5_0: quant_q5_0(x, dst, nb); break;
    case DT_Q5_1: quant_q5_1(x, dst, nb); break;
    case DT_Q8_0: quant_q8_0(x, dst, nb); break;
    case DT_Q4_K: quant_q4_K(x, dst, nb); break;
    case DT_Q5_K: quant_q5_K(x, dst, nb); break;
    case DT_Q6_K: quant_q6_K(x, dst, nb); break;
    case DT_Q8_K: quant_q8_K(x, dst, nb); break;
    }
    return 0;
}

/* ---- activations ------------------------------------------------------------------- */
int quant_act_type(int wtype) {
    switch (wtype) {
    case DT_Q4_0: case DT_Q4_1: case DT_Q5_0: case DT_Q5_1: case DT_Q8_0: return DT_Q8_0;
    case DT_Q2_K: case DT_Q3_K: case DT_Q4_K: case DT_Q5_K: case DT_Q6_K: return DT_Q8_K;
    case DT_F16: case DT_BF16: case DT_F32: return DT_F32;
    default: return -1;
    }
}

static size_t up64(size_t n) { return (n + 63) & ~(size_t)63; }

size_t quant_act_bytes(int act, int64_t K) {
    if (act == DT_Q8_0) return up64((size_t)K) + 3 * up64((size_t)K / QK * 4);
    if (act == DT_Q8_K) return up64((size_t)K) + up64((size_t)K / QK_K * 4) + up64((size_t)K / 16 * 2);
    return 64;
}

/* Q8 activations as llama.cpp's SIMD path makes them: id = 127/amax, round
 * to nearest even, d and d*sum kept at half precision. */
static void act_q8(const float *x, int64_t K, QAct *a) {
    for (int64_t b = 0; b < K / QK; b++) {
        const float *xb = x + b * QK;
        float amax = 0;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(xb[j]));
        const float d = amax / 127.f, id = amax != 0.0f ? 127.f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK; j++) {
            /* |x * id| <= 127 for finite x; Inf or NaN saturates as the SIMD packs do
             * (casting a NaN to int is undefined) */
            const float v = nearbyintf(xb[j] * id);
            const int q = v >= -128.f && v <= 127.f ? (int)v : -128;
            a->qs[b * QK + j] = (int8_t)q;
            sum += q;
        }
        a->d[b] = fp16_to_f32(f32_to_fp16(d));
        a->s[b] = fp16_to_f32(f32_to_fp16(d * (float)sum));
        a->qsum[b] = (float)sum;
    }
}

static void act_q8_K(const float *x, int64_t K, QAct *a) {
    for (int64_t b = 0; b < K / QK_K; b++) {
        const float *xb = x + b * QK_K;
        int8_t *q = a->qs + b * QK_K;
        float amax = 0, max = 0;
        for (int j = 0; j < QK_K; j++)
            if (fabsf(xb[j]) > amax) amax = fabsf(xb[j]), max = xb[j];
        if (amax == 0.0f) {
            a->d[b] = 0;
            memset(q, 0, QK_K);
            memset(a->bsums + b * 16, 0, 32);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++) {
            int v = nearest_int(iscale * xb[j]);
            q[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += q[j * 16 + l];
            a->bsums[b * 16 + j] = (int16_t)s;
        }
        a->d[b] = 1 / iscale;
    }
}

static void act_layout(int act, int64_t K, void *scratch, QAct *a) {
    uint8_t *p = scratch;
    memset(a, 0, sizeof *a);
    if (act == DT_Q8_0) {
        a->qs = (int8_t *)p;
        a->d = (float *)(p + up64((size_t)K));
        a->s = (float *)(p + up64((size_t)K) + up64((size_t)K / QK * 4));
        a->qsum = (float *)(p + up64((size_t)K) + 2 * up64((size_t)K / QK * 4));
    } else if (act == DT_Q8_K) {
        a->qs = (int8_t *)p;
        a->d = (float *)(p + up64((size_t)K));
        a->bsums = (int16_t *)(p + up64((size_t)K) + up64((size_t)K / QK_K * 4));
    }
}

void quant_act_row_ref(int act, const float *x, int64_t K, void *scratch, QAct *a) {
    act_layout(act, K, scratch, a);
    if (act == DT_Q8_0) act_q8(x, K, a);
    else if (act == DT_Q8_K) act_q8_K(x, K, a);
}

void quant_act_row(int act, const float *x, int64_t K, void *scratch, QAct *a) {
    QActQ8Fn f = act == DT_Q8_0 ? quant_act_q8_fn_avx2() : NULL;
    QActQ8KFn fk = act == DT_Q8_K ? quant_act_q8_K_fn_avx2() : NULL;
    if (!f && !fk) {
        quant_act_row_ref(act, x, K, scratch, a);
        return;
    }
    act_layout(act, K, scratch, a);
    if (f) f(x, K, a->qs, a->d, a->s, a->qsum);
    else fk(x, K, a->qs, a->d, a->bsums);
}

/* ---- scalar dots ---------------------------------------------------------------------- */
/* sum over blocks of d_w*d_a*<q_w, q_a> + m_w*s_a (the second term only
 * for the formats with a min); Q4_0 / Q5_0 in their block-total order, one
 * fmaf per block (quant_blocks.h), which every SIMD path reproduces. */
static float dot_32(int t, const void *w, const QAct *a, int64_t K) {
    const uint8_t *p = w;
    const size_t bb = dtype_block_bytes(t);
    float acc = 0;
    for (int64_t i = 0; i < K / QK; i++) {
        int q[QK], s = 0;
        float d, m;
        block_levels(t, p + (size_t)i * bb, q, &d, &m);
        for (int j = 0; j < QK; j++) s += q[j] * a->qs[i * QK + j];
        if (t == DT_Q4_0 || t == DT_Q5_0) acc = fmaf(d * a->d[i], (float)s, acc); /* the block-total order (quant_blocks.h) */
        else acc += d * a->d[i] * (float)s + (t == DT_Q4_1 || t == DT_Q5_1 ? m * a->s[i] : 0.0f);
    }
    return acc;
}

#define DOT32(name, T)                                                                    \
    static float name(const void *w, const QAct *a, const float *x, int64_t K) {          \
        (void)x;                                                                          \
        return dot_32(T, w, a, K);                                                        \
    }
DOT32(dot_q4_0, DT_Q4_0)
DOT32(dot_q4_1, DT_Q4_1)
DOT32(dot_q5_0, DT_Q5_0)
DOT32(dot_q5_1, DT_Q5_1)
DOT32(dot_q8_0, DT_Q8_0)

static float dot_f16(const void *w, const QAct *a, const float *x, int64_t K) {
    (void)a;
    const uint16_t *h = w;
    float acc = 0;
    for (int64_t i = 0; i < K; i++) acc += fp16_to_f32(h[i]) * x[i];
    return acc;
}

static float dot_bf16(const void *w, const QAct *a, const float *x, int64_t K) {
    (void)a;
    const uint16_t *h = w;
    float acc = 0;
    for (int64_t i = 0; i < K; i++) acc += bf16_to_f32(h[i]) * x[i];
    return acc;
}

static float dot_f32(const void *w, const QAct *a, const float *x, int64_t K) {
    (void)a;
    const float *f = w;
    float acc = 0;
    for (int64_t i = 0; i < K; i++) acc += f[i] * x[i];
    return acc;
}

QDotFn quant_dot_fn_scalar(int t) {
    switch (t) {
    case DT_Q4_0: return dot_q4_0;
    case DT_Q4_1: return dot_q4_1;
    case DT_Q5_0: return dot_q5_0;
    case DT_Q5_1: return dot_q5_1;
    case DT_Q8_0: return dot_q8_0;
    case DT_Q2_K: return dot_q2_K_scalar;
    case DT_Q3_K: return dot_q3_K_scalar;
    case DT_Q4_K: return dot_q4_K_scalar;
    case DT_Q5_K: return dot_q5_K_scalar;
    case DT_Q6_K: return dot_q6_K_scalar;
    case DT_F16: return dot_f16;
    case DT_BF16: return dot_bf16;
    case DT_F32: return dot_f32;
    default: return NULL;
    }
}
