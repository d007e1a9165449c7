/* AVX2 + FMA + F16C prompt-batch (matrix-matrix) quant kernels: one weight
 * row against four activation rows, and four activation rows x two weight
 * rows. Same run-time dispatch and bit-exactness rules as quant_avx2.c. */
#include "kernels/quant_avx2_inl.h"

#if defined(__x86_64__) || defined(__i386__)

/* ---- one weight row against four activation rows (prompt batches) -----------
 * The weight block is loaded and unpacked once for the four rows; each
 * output keeps the single-row kernel's order exactly (one accumulator,
 * blocks in order), so batch and single-token results are the same bits. */
TGT static void rows4_q8_0(const void *w, const QAct *a, int64_t K, float *out) {
    const BlockQ8_0 *b = w;
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    for (int64_t i = 0; i < K / QK; i++) {
        const __m256i wv = load_q8(b[i].qs), aw = _mm256_sign_epi8(wv, wv);
        const float dw = h2f(b[i].d);
#define ROW(c, m) c = _mm256_fmadd_ps(_mm256_set1_ps(dw * a[m].d[i]), \
                                      _mm256_cvtepi32_ps(dot_us(aw, _mm256_sign_epi8(load_q8(a[m].qs + i * QK), wv))), c)
        ROW(c0, 0); ROW(c1, 1); ROW(c2, 2); ROW(c3, 3);
#undef ROW
    }
    out[0] = hsum_ps(c0), out[1] = hsum_ps(c1), out[2] = hsum_ps(c2), out[3] = hsum_ps(c3);
}

TGT static void rows4_q4_1(const void *w, const QAct *a, int64_t K, float *out) {
    const BlockQ4_1 *b = w;
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int64_t i = 0; i < K / QK; i++) {
        const __m256i wv = nibbles(b[i].qs);
        const float dw = h2f(b[i].d), mw = h2f(b[i].m);
#define ROW(c, sm, m) c = _mm256_fmadd_ps(_mm256_set1_ps(dw * a[m].d[i]), \
                                          _mm256_cvtepi32_ps(dot_us(wv, load_q8(a[m].qs + i * QK))), c); \
                      sm = fmaf(mw, a[m].s[i], sm)
        ROW(c0, s0, 0); ROW(c1, s1, 1); ROW(c2, s2, 2); ROW(c3, s3, 3);
#undef ROW
    }
    out[0] = hsum_ps(c0) + s0, out[1] = hsum_ps(c1) + s1, out[2] = hsum_ps(c2) + s2, out[3] = hsum_ps(c3) + s3;
}

/* ---- four activation rows x two weight rows (prompt batches) ---------------
 * The rows4 arithmetic with twice the reuse: each activation block loaded
 * once for two weight rows, each weight block unpacked once for four
 * activation rows. The eight block scales dw*da (and for Q4_1 the eight
 * min terms m*s) are computed eight at a time, a chunk of blocks ahead, so
 * the dot loop broadcasts them from L1 instead of a scalar multiply and a
 * shuffle per output and block. Every output keeps one accumulator, blocks
 * in order, the same products and the same horizontal sum: the same bits
 * as the single-row kernels (and llama.cpp). Lane p = 4*c + r: weight row c,
 * activation row r. */
#define T42_CHUNK 64 /* blocks per scale pass: 2 KiB of scales on the stack */

/* [d0 x4, d1 x4] from the first halves of two blocks (Q8_0: d; Q4_1: d, m). */
TGT static inline __m256 halves2(const void *p0, const void *p1, int k) {
    const __m256 v = _mm256_castps128_ps256(_mm_cvtph_ps(_mm_unpacklo_epi32(ld32(p0), ld32(p1))));
    return _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(k, k, k, k, k + 2, k + 2, k + 2, k + 2));
}

/* hsum_ps of eight vectors at once, lane p = hsum_ps(c[p]) with the same
 * additions in the same order: lo+hi halves, then (0+2),(1+3), then their sum. */
TGT static inline __m256 hsum8_ps(__m256 c0, __m256 c1, __m256 c2, __m256 c3, __m256 c4, __m256 c5, __m256 c6,
                                  __m256 c7) {
#define HALVES(x, y) _mm256_add_ps(_mm256_permute2f128_ps(x, y, 0x20), _mm256_permute2f128_ps(x, y, 0x31))
    const __m256 r01 = HALVES(c0, c1), r23 = HALVES(c2, c3), r45 = HALVES(c4, c5), r67 = HALVES(c6, c7);
#undef HALVES
    const __m256 s0 = _mm256_add_ps(_mm256_shuffle_ps(r01, r23, 0x44), _mm256_shuffle_ps(r01, r23, 0xEE));
    const __m256 s1 = _mm256_add_ps(_mm256_shuffle_ps(r45, r67, 0x44), _mm256_shuffle_ps(r45, r67, 0xEE));
    const __m256 f = _mm256_add_ps(_mm256_shuffle_ps(s0, s1, 0x88), _mm256_shuffle_ps(s0, s1, 0xDD));
    return _mm256_permutevar8x32_ps(f, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

TGT static void tile42_q8_0(const uint8_t *w, size_t rb, const float *wsc, const QAct *a, const float *d4,
                            const float *s4, int64_t K, float *out) {
    (void)s4;
    const BlockQ8_0 *b0 = (const void *)w, *b1 = (const void *)(w + rb);
    _Alignas(32) float sc[T42_CHUNK * 8];
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    const int64_t nb = K / QK;
    for (int64_t i0 = 0; i0 < nb; i0 += T42_CHUNK) {
        const int64_t n = nb - i0 < T42_CHUNK ? nb - i0 : T42_CHUNK;
        for (int64_t j = 0; j < n; j++)
            _mm256_store_ps(sc + 8 * j, _mm256_mul_ps(_mm256_load_ps(wsc + 8 * (i0 + j)),
                                                      _mm256_broadcast_ps((const __m128 *)(d4 + 4 * (i0 + j)))));
        for (int64_t j = 0; j < n; j++) {
            const int64_t i = i0 + j;
            const __m256i w0 = load_q8(b0[i].qs), w1 = load_q8(b1[i].qs);
            const __m256i u0 = _mm256_sign_epi8(w0, w0), u1 = _mm256_sign_epi8(w1, w1);
            const float *s = sc + 8 * j;
#define ROW(r)                                                                                                     \
    do {                                                                                                           \
        const __m256i av = load_q8(a[r].qs + i * QK);                                                              \
        c0##r = _mm256_fmadd_ps(_mm256_broadcast_ss(s + r), _mm256_cvtepi32_ps(dot_us(u0, _mm256_sign_epi8(av, w0))), c0##r); \
        c1##r = _mm256_fmadd_ps(_mm256_broadcast_ss(s + 4 + r), _mm256_cvtepi32_ps(dot_us(u1, _mm256_sign_epi8(av, w1))), c1##r); \
    } while (0)
            ROW(0); ROW(1); ROW(2); ROW(3);
#undef ROW
        }
    }
    _mm256_storeu_ps(out, hsum8_ps(c00, c01, c02, c03, c10, c11, c12, c13));
}

TGT static void tile42_q4_1(const uint8_t *w, size_t rb, const float *wsc, const QAct *a, const float *d4,
                            const float *s4, int64_t K, float *out) {
    const BlockQ4_1 *b0 = (const void *)w, *b1 = (const void *)(w + rb);
    _Alignas(32) float sc[T42_CHUNK * 8];
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m256 mins = c00; /* lane p: fmaf chain of m * s over the blocks, as the single-row kernel's summ */
    const int64_t nb = K / QK;
    for (int64_t i0 = 0; i0 < nb; i0 += T42_CHUNK) {
        const int64_t n = nb - i0 < T42_CHUNK ? nb - i0 : T42_CHUNK;
        for (int64_t j = 0; j < n; j++) {
            const float *ws = wsc + 16 * (i0 + j);
            _mm256_store_ps(sc + 8 * j, _mm256_mul_ps(_mm256_load_ps(ws), _mm256_broadcast_ps((const __m128 *)(d4 + 4 * (i0 + j)))));
            mins = _mm256_fmadd_ps(_mm256_load_ps(ws + 8), _mm256_broadcast_ps((const __m128 *)(s4 + 4 * (i0 + j))), mins);
        }
        for (int64_t j = 0; j < n; j++) {
            const int64_t i = i0 + j;
            const __m256i u0 = nibbles(b0[i].qs), u1 = nibbles(b1[i].qs);
            const float *s = sc + 8 * j;
#define ROW(r)                                                                                                     \
    do {                                                                                                           \
        const __m256i av = load_q8(a[r].qs + i * QK);                                                              \
        c0##r = _mm256_fmadd_ps(_mm256_broadcast_ss(s + r), _mm256_cvtepi32_ps(dot_us(u0, av)), c0##r);             \
        c1##r = _mm256_fmadd_ps(_mm256_broadcast_ss(s + 4 + r), _mm256_cvtepi32_ps(dot_us(u1, av)), c1##r);         \
    } while (0)
            ROW(0); ROW(1); ROW(2); ROW(3);
#undef ROW
        }
    }
    _mm256_storeu_ps(out, _mm256_add_ps(hsum8_ps(c00, c01, c02, c03, c10, c11, c12, c13), mins));
}

/* The pair's weight scales the kernels read: per block [d0 x4, d1 x4]
 * (Q8_0), then [m0 x4, m1 x4] (Q4_1); built once per tile of weight rows
 * and read by every group of four activation rows. */
TGT static void tile42_scales_q8_0(const uint8_t *w, size_t rb, int64_t K, float *wsc) {
    const BlockQ8_0 *b0 = (const void *)w, *b1 = (const void *)(w + rb);
    for (int64_t i = 0; i < K / QK; i++) _mm256_store_ps(wsc + 8 * i, halves2(&b0[i], &b1[i], 0));
}

TGT static void tile42_scales_q4_1(const uint8_t *w, size_t rb, int64_t K, float *wsc) {
    const BlockQ4_1 *b0 = (const void *)w, *b1 = (const void *)(w + rb);
    for (int64_t i = 0; i < K / QK; i++) {
        _mm256_store_ps(wsc + 16 * i, halves2(&b0[i], &b1[i], 0));
        _mm256_store_ps(wsc + 16 * i + 8, halves2(&b0[i], &b1[i], 1));
    }
}

QTile42ScalesFn quant_tile42_scales_fn_avx2(int t) {
    if (!quant_tile42_fn_avx2(t)) return NULL;
    return t == DT_Q8_0 ? tile42_scales_q8_0 : tile42_scales_q4_1;
}

QTile42Fn quant_tile42_fn_avx2(int t) {
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !JARIP_CPU_F16C()) return NULL;
    return t == DT_Q8_0 ? tile42_q8_0 : t == DT_Q4_1 ? tile42_q4_1 : NULL;
}

QRows4Fn quant_rows4_fn_avx2(int t) {
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return NULL;
    return t == DT_Q8_0 ? rows4_q8_0 : t == DT_Q4_1 ? rows4_q4_1 : NULL;
}
#else
QRows4Fn quant_rows4_fn_avx2(int t) {
    (void)t;
    return NULL;
}
QTile42Fn quant_tile42_fn_avx2(int t) {
    (void)t;
    return NULL;
}
QTile42ScalesFn quant_tile42_scales_fn_avx2(int t) {
    (void)t;
    return NULL;
}
#endif
