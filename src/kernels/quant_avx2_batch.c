/* AVX2 + FMA + F16C prompt-batch (matrix-matrix) quant kernels: one weight
 * row against four activation rows, and four activation rows x two weight
 * rows. Same run-time dispatch and bit-exactness rules as quant_avx2.c. */
#include "kernels/quant_avx2_inl.h"

#if defined(__x86_64__) || defined(__i386__)

/* ---- one weight row against four activation rows (prompt batches) -----------
 * The weight block is loaded and unpacked once for the four rows; each
 * output keeps the single-row kernel's order exactly (one accumulator,
 * blocks in order), so batch and single-token results are the same bits. */
/* Q8_0 (Q4_0 and Q5_0: quant_blocksum.c). */
TGT static void rows4_q8_0(const void *w, const QAct *a, int64_t K, float *out) {
    const BlockQ8_0 *b = w;
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    for (int64_t i = 0; i < K / QK; i++) {
        const __m256i wv = load_q8(b[i].qs);
        const __m256i aw = _mm256_sign_epi8(wv, wv);
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
/* [d0 x4, d1 x4] from the first halves of two blocks (Q8_0: d; Q4_1: d, m). */
TGT static inline __m256 halves2(const void *p0, const void *p1, int k) {
    const __m256 v = _mm256_castps128_ps256(_mm_cvtph_ps(_mm_unpacklo_epi32(ld32(p0), ld32(p1))));
    return _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(k, k, k, k, k + 2, k + 2, k + 2, k + 2));
}

/* The 4x2 kernels themselves: quant_tile42_tmpl.h with AVX2's integer dot
 * (maddubs + madd; |w| and sign(a, w) for the signed Q8_0 weights). */
#define T42_TGT TGT
#define T42_NAME(x) x##_avx2
#define T42_SW(raw, off, u, w) ((w) = (off) == 128 ? (raw) : _mm256_sub_epi8(raw, _mm256_set1_epi8((char)(off))), (u) = _mm256_sign_epi8(w, w))
#define T42_SA(av, off) (av)
#define T42_SDOT(u, w, av, prep) dot_us(u, _mm256_sign_epi8(av, w))
#define T42_U8_DOT(u, av) dot_us(u, av)
#include "kernels/quant_tile42_tmpl.h"

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
    if (kernel_isa() < ISA_AVX2) return NULL;
    return t == DT_Q8_0 ? tile42_q8_0_avx2 : t == DT_Q4_1 ? tile42_q4_1_avx2 : NULL;
}

QRows4Fn quant_rows4_fn_avx2(int t) {
    if (kernel_isa() < ISA_AVX2) return NULL;
    return t == DT_Q8_0 ? rows4_q8_0 : t == DT_Q4_1 ? rows4_q4_1 : quant_blocksum_rows4_fn_avx2(t);
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
