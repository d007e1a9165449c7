/* Inference kernels with the arithmetic of llama.cpp's CPU backend (ggml-cpu,
 * x86 AVX2 build), so that a GGUF model run by jarip gives llama.cpp's
 * logits bit for bit and therefore its greedy tokens.
 *
 * Why bit for bit: the quantized matmuls quantize their input to 8 bits per
 * 32-block (Q8_0/Q8_1), so a one-ulp difference anywhere upstream can move
 * an activation across a rounding boundary, which changes it by 1/254 of its
 * block's maximum; over 30 layers those flips add up to logit differences of
 * ~0.5 and different greedy tokens within a few dozen steps. The matmuls
 * themselves already match (quant_avx2.c), so what is left is every other
 * operation of a block, each reproduced here as measured against llama.cpp's
 * intermediate tensors (dumped by scripts/llamacpp_intermediates.py):
 *   - RMSNorm: sum of squares in double, in order; scale = 1/sqrtf(mean+eps)
 *     in float; y = (x*scale)*w (two roundings, as the norm and the weight
 *     multiply are separate ops there).
 *   - RoPE: per position, theta starts at the position and is multiplied by
 *     base^(-2/D) in float for each pair; cosf/sinf of it; the rotation is
 *     fma(x0, c, -(x1*s)) and fma(x0, s, x1*c) (the compiled ggml code).
 *   - Attention scores: ggml_vec_dot_f32's order (4 accumulators of 8 lanes
 *     over 32-element steps, then a fixed reduction tree); softmax of
 *     score*scale with ggml's vector exp (the Arm optimized-routines
 *     polynomial), the sum in double over horizontal sums of 8, then a
 *     multiply by (float)(1/sum).
 *   - Weighted sum of values: for a batch of queries llama.cpp goes through
 *     tinyBLAS (one 8-lane accumulator per output, position j in lane j%8);
 *     for a single query through ggml_vec_dot_f32 (lane j%32). Zero padding
 *     of the cache does not change either sum.
 *   - SwiGLU: x/(1+exp(-x)) with the same vector exp, times the up value.
 * With llama.cpp's default F16 KV cache (type_k = type_v = F16, flash
 * attention off; lcpp_attention_f16), measured the same way:
 *   - keys and values are rounded to half when stored (ggml's cpy to F16);
 *   - scores: ggml's mul_mat of the F16 keys by the f32 queries converts the
 *     queries to half first (F16 is the vec_dot type of F16); for a batch of
 *     queries the product runs in tinyBLAS (one 8-lane accumulator over d,
 *     then the 8-lane horizontal sum), for a single query in
 *     ggml_vec_dot_f16 (lane d%32, the same reduction as ggml_vec_dot_f32);
 *   - the softmax is unchanged (f32 scores); its probabilities are rounded
 *     to half (the f32 operand of the values' F16 mul_mat), then summed
 *     with the half values in the orders above (lane j%8 / j%32).
 * Training does not use these (it keeps its own kernels and numerics). */
#include "kernels/lcpp_private.h"
#include "kernels/quant_blocks.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>

/* ---- scalar versions (any CPU; also the reference order) ------------------ */

/* ggml's vector exp for one value: n = round(x/ln2) via the 1.5*2^23 trick,
 * reduced argument b, degree-5 polynomial, and the scale 2^n built in the
 * exponent bits, with the out-of-range branches of the vector code. */
static float exp_ggml(float x) {
    const float shift = 0x1.8p23f;
    const float z = fmaf(x, 0x1.715476p+0f, shift);
    const float n = z - shift;
    const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    uint32_t zb;
    memcpy(&zb, &z, 4);
    const uint32_t e = zb << 23;
    const uint32_t one = 0x3f800000u;
    uint32_t kb = e + one;
    float k;
    memcpy(&k, &kb, 4);
    const float u = b * b;
    const float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)), u,
                         0x1.ffffecp-1f * b);
    if (!(fabsf(n) > 126)) return fmaf(j, k, k);
    const uint32_t g = n <= 0 ? 0x82000000u : 0;
    const uint32_t s1b = g + 0x7f000000u, s2b = e - g;
    float s1, s2;
    memcpy(&s1, &s1b, 4);
    memcpy(&s2, &s2b, 4);
    if (fabsf(n) > 192) return s1 * s1;
    return fmaf(s2, j, s2) * s1;
}

/* The reduction tree of ggml's 8-lane horizontal sum (hi+lo halves, then
 * pairs): ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)). */
static float hsum8_tree(const float *a) {
    const float s0 = a[0] + a[4], s1 = a[1] + a[5], s2 = a[2] + a[6], s3 = a[3] + a[7];
    return (s0 + s2) + (s1 + s3);
}

/* ggml_vec_dot_f32 on n % 32 == 0: lanes j%32, then (l, l+16) and
 * (l+8, l+24) added, their sum, then hadd twice over the two halves:
 * ((c0+c4)+(c1+c5)) + ((c2+c6)+(c3+c7)). */
static float dot_vecdot_scalar(const float *x, const float *y, int n) {
    float acc[32] = {0};
    for (int i = 0; i < n; i += 32)
        for (int l = 0; l < 32; l++) acc[l] = fmaf(x[i + l], y[i + l], acc[l]);
    float c[8];
    for (int l = 0; l < 8; l++) c[l] = (acc[l] + acc[16 + l]) + (acc[8 + l] + acc[24 + l]);
    const float t0 = c[0] + c[4], t1 = c[1] + c[5], t2 = c[2] + c[6], t3 = c[3] + c[7];
    return (t0 + t1) + (t2 + t3);
}

/* ---- AVX2 versions ---------------------------------------------------------- */
#if defined(__x86_64__) || defined(__i386__)
#include "kernels/quant_avx2_inl.h" /* TGT, hsum8_ps */
#define HAVE_SIMD_PATH 1

TGT static inline __m256 exp8(__m256 x) {
    const __m256 shift = _mm256_set1_ps(0x1.8p23f);
    const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), shift);
    const __m256 n = _mm256_sub_ps(z, shift);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                      _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1))));
    const __m256 absn = _mm256_andnot_ps(_mm256_set1_ps(-0.f), n);
    const __m256 big = _mm256_cmp_ps(absn, _mm256_set1_ps(126), _CMP_GT_OQ);
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f));
    const __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f));
    const __m256 j = _mm256_fmadd_ps(_mm256_fmadd_ps(p, u, q), u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
    if (!_mm256_movemask_ps(big)) return _mm256_fmadd_ps(j, k, k);
    /* |n| > 126: 2^n split in two factors; |n| > 192: overflow / underflow */
    const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                       _mm256_set1_epi32((int)0x82000000u));
    const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    const __m256 huge = _mm256_cmp_ps(absn, _mm256_set1_ps(192), _CMP_GT_OQ);
    const __m256 mid = _mm256_blendv_ps(_mm256_fmadd_ps(k, j, k), _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1), big);
    return _mm256_blendv_ps(mid, _mm256_mul_ps(s1, s1), huge);
}

TGT static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Eight floats of x: floats (xf) or halves widened (xh, exact). */
TGT static inline __m256 load_half8(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
TGT static inline __m256 load8(const float *xf, const uint16_t *xh, int i) {
    return xh ? load_half8(xh + i) : _mm256_loadu_ps(xf + i);
}

/* ggml_vec_dot_f32 (x floats) or ggml_vec_dot_f16 (x halves, y already
 * rounded to half): the same 4 accumulators and reduction. */
TGT static float dot_vecdot_avx2(const float *xf, const uint16_t *xh, const float *y, int n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int i = 0; i < n; i += 32) {
        a0 = _mm256_fmadd_ps(load8(xf, xh, i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(load8(xf, xh, i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(load8(xf, xh, i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(load8(xf, xh, i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    const __m256 c = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
    const __m128 t = _mm_add_ps(_mm256_castps256_ps128(c), _mm256_extractf128_ps(c, 1));
    const __m128 h = _mm_hadd_ps(t, t);
    return _mm_cvtss_f32(_mm_hadd_ps(h, h));
}

TGT static void swiglu_avx2(float *out, const float *g, const float *u, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 s = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1), exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i]; /* ggml's scalar tail */
}

/* Softmax of w[0..n) (n % 8 == 0, masked entries -inf) in place. */
TGT static void softmax_avx2(float *w, int n, float mx) {
    double sum = 0;
    for (int i = 0; i < n; i += 8) {
        const __m256 v = exp8(_mm256_sub_ps(_mm256_loadu_ps(w + i), _mm256_set1_ps(mx)));
        _mm256_storeu_ps(w + i, v);
        sum += (double)hsum8(v);
    }
    const __m256 sc = _mm256_set1_ps((float)(1.0 / sum));
    for (int i = 0; i < n; i += 8) _mm256_storeu_ps(w + i, _mm256_mul_ps(_mm256_loadu_ps(w + i), sc));
}

/* Score of one key row: ggml_vec_dot_f32 / _f16's 32-lane order, or
 * tinyBLAS's 8-lane one (lanes8). Half keys (kh) or float keys (kf). */
TGT static float dot_key_avx2(const float *kf, const uint16_t *kh, const float *q, int D, int lanes8) {
    if (lanes8) { /* half keys only (the f32 cache's batched scores are vec_dot's) */
        __m256 a = _mm256_setzero_ps();
        for (int d = 0; d < D; d += 8) a = _mm256_fmadd_ps(load_half8(kh + d), _mm256_loadu_ps(q + d), a);
        return hsum8(a);
    }
    return dot_vecdot_avx2(kf, kh, q, D);
}

/* x[0..n) rounded to half and back (n % 8 == 0), as ggml's f32 -> F16 conversion. */
TGT static void round_half_avx2(float *x, int n) {
    for (int i = 0; i < n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
}

TGT static void load_half_avx2(float *dst, const uint16_t *src, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_half8(src + i));
    for (; i < n; i++) dst[i] = fp16_to_f32(src[i]);
}

TGT static void store_half_avx2(uint16_t *dst, const float *src, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = f32_to_fp16(src[i]);
}

/* tinyBLAS's reduction of 8 lane accumulators: ((c0+c4)+(c2+c6)) + ((c1+c5)+(c3+c7)). */
TGT static inline __m256 tree8(const __m256 *c) {
    return _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c[0], c[4]), _mm256_add_ps(c[2], c[6])),
                         _mm256_add_ps(_mm256_add_ps(c[1], c[5]), _mm256_add_ps(c[3], c[7])));
}

/* ggml_vec_dot_f32 / _f16's reduction of 32 lane accumulators of 8 outputs
 * (lane l's at lanes + l * lstride): (l + l+16) + (l+8 + l+24), then the
 * hadd tree ((c0+c4)+(c1+c5)) + ((c2+c6)+(c3+c7)). */
TGT static inline __m256 tree32(const float *lanes, size_t lstride) {
#define L(l) _mm256_loadu_ps(lanes + (size_t)(l) * lstride)
    __m256 c[8];
    for (int l = 0; l < 8; l++) c[l] = _mm256_add_ps(_mm256_add_ps(L(l), L(l + 16)), _mm256_add_ps(L(l + 8), L(l + 24)));
#undef L
    return _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c[0], c[4]), _mm256_add_ps(c[1], c[5])),
                         _mm256_add_ps(_mm256_add_ps(c[2], c[6]), _mm256_add_ps(c[3], c[7])));
}

/* exp8 on sixteen lanes: the same operations lane by lane, so the same bits. */
TGT512 static inline __m512 exp16(__m512 x) {
    const __m512 shift = _mm512_set1_ps(0x1.8p23f);
    const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), shift);
    const __m512 n = _mm512_sub_ps(z, shift);
    const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f),
                                      _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
    const __m512i e = _mm512_slli_epi32(_mm512_castps_si512(z), 23);
    const __m512 k = _mm512_castsi512_ps(_mm512_add_epi32(e, _mm512_castps_si512(_mm512_set1_ps(1))));
    const __m512 absn = _mm512_castsi512_ps(_mm512_andnot_si512(_mm512_castps_si512(_mm512_set1_ps(-0.f)), _mm512_castps_si512(n)));
    const __mmask16 big = _mm512_cmp_ps_mask(absn, _mm512_set1_ps(126), _CMP_GT_OQ);
    const __m512 u = _mm512_mul_ps(b, b);
    const __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f));
    const __m512 q = _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f));
    const __m512 j = _mm512_fmadd_ps(_mm512_fmadd_ps(p, u, q), u, _mm512_mul_ps(_mm512_set1_ps(0x1.ffffecp-1f), b));
    if (!big) return _mm512_fmadd_ps(j, k, k);
    const __m512i g = _mm512_maskz_mov_epi32(_mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ),
                                             _mm512_set1_epi32((int)0x82000000u));
    const __m512 s1 = _mm512_castsi512_ps(_mm512_add_epi32(g, _mm512_set1_epi32(0x7f000000)));
    const __m512 s2 = _mm512_castsi512_ps(_mm512_sub_epi32(e, g));
    const __mmask16 huge = _mm512_cmp_ps_mask(absn, _mm512_set1_ps(192), _CMP_GT_OQ);
    const __m512 mid = _mm512_mask_blend_ps(big, _mm512_fmadd_ps(k, j, k), _mm512_mul_ps(_mm512_fmadd_ps(s2, j, s2), s1));
    return _mm512_mask_blend_ps(huge, mid, _mm512_mul_ps(s1, s1));
}

/* softmax_avx2 and the rounding to half on sixteen lanes (n % 16 == 0):
 * the double sum still takes each eight lanes' hsum8 in order. */
TGT512 static void softmax_half_avx512(float *w, int n, float mx) {
    double sum = 0;
    for (int i = 0; i < n; i += 16) {
        const __m512 v = exp16(_mm512_sub_ps(_mm512_loadu_ps(w + i), _mm512_set1_ps(mx)));
        _mm512_storeu_ps(w + i, v);
        sum += (double)hsum8(_mm512_castps512_ps256(v));
        sum += (double)hsum8(_mm512_extractf32x8_ps(v, 1));
    }
    const __m512 sc = _mm512_set1_ps((float)(1.0 / sum));
    for (int i = 0; i < n; i += 16)
        _mm512_storeu_ps(w + i, _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_mul_ps(_mm512_loadu_ps(w + i), sc),
                                                                _MM_FROUND_TO_NEAREST_INT)));
}

/* Scores w[0..n) of one query -> probabilities rounded to half, as the
 * half-cache paths feed them to the values: padded with -inf to a multiple
 * of 32, softmax, rounding (lcpp_private.h). */
TGT void lcpp_probs_half(float *w, int n, int wide) {
    const int np = (n + 31) & ~31;
    /* the max in 8 lanes: the same value as a scalar scan (a max does not
     * round; of +0 and -0 either gives the same exp(w - mx)), and the
     * scalar scan's dependent vmaxss chain was ~10% of the attention */
    float mx = -INFINITY;
    int j = 0;
    if (n >= 8) {
        __m256 m = _mm256_loadu_ps(w);
        for (j = 8; j + 8 <= n; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(w + j));
        _Alignas(32) float l[8];
        _mm256_store_ps(l, m);
        for (int i = 0; i < 8; i++) mx = l[i] > mx ? l[i] : mx;
    }
    for (; j < n; j++) mx = w[j] > mx ? w[j] : mx;
    for (j = n; j < np; j++) w[j] = -INFINITY;
    if (wide) {
        softmax_half_avx512(w, np, mx);
        return;
    }
    softmax_avx2(w, np, mx);
    round_half_avx2(w, np);
}

/* The 8-lane weighted sum (a batch of queries) for outputs d..d+7: the 8
 * lane accumulators stay in registers over all positions (the order of
 * every sum is the one below; fma(v, 0, a) == a for p[j] == 0). */
TGT static inline __m256 wsum8_chunk(const float *p, const float *vf, const uint16_t *vh, size_t vstride, int n, int d) {
    __m256 c[8];
    for (int l = 0; l < 8; l++) c[l] = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= n; j += 8) {
#pragma GCC unroll 8
        for (int l = 0; l < 8; l++) {
            const size_t o = (size_t)(j + l) * vstride + d;
            c[l] = _mm256_fmadd_ps(vh ? load_half8(vh + o) : _mm256_loadu_ps(vf + o), _mm256_broadcast_ss(p + j + l), c[l]);
        }
    }
    for (int l = 0; j + l < n; l++) {
        const size_t o = (size_t)(j + l) * vstride + d;
        c[l] = _mm256_fmadd_ps(vh ? load_half8(vh + o) : _mm256_loadu_ps(vf + o), _mm256_broadcast_ss(p + j + l), c[l]);
    }
    return tree8(c);
}

/* out[d] = sum_j p[j] v[j][d] over j < n, position j accumulating into
 * lane j % lanes (8: tinyBLAS, 32: ggml_vec_dot) of output d, then ggml's
 * reduction of the lanes. Values as floats (vf) or halves (vh).
 * acc: lanes * D floats of scratch (32 lanes only). */
TGT static void weighted_sum_avx2(float *out, const float *p, const float *vf, const uint16_t *vh, size_t vstride, int n,
                                  int D, int lanes, float *acc) {
    if (lanes == 8) {
        for (int d = 0; d < D; d += 8)
            _mm256_storeu_ps(out + d, vh ? wsum8_chunk(p, NULL, vh, vstride, n, d) : wsum8_chunk(p, vf, NULL, vstride, n, d));
        return;
    }
    memset(acc, 0, (size_t)lanes * D * sizeof(float));
    for (int j = 0; j < n; j++) {
        if (p[j] == 0.0f) continue; /* fma(v, 0, a) == a: masked / padded positions */
        const __m256 pj = _mm256_set1_ps(p[j]);
        float *a = acc + (size_t)(j % lanes) * D;
        const float *vfj = vf ? vf + (size_t)j * vstride : NULL;
        const uint16_t *vhj = vh ? vh + (size_t)j * vstride : NULL;
        for (int d = 0; d < D; d += 8)
            _mm256_storeu_ps(a + d, _mm256_fmadd_ps(load8(vfj, vhj, d), pj, _mm256_loadu_ps(a + d)));
    }
    for (int d = 0; d < D; d += 8) _mm256_storeu_ps(out + d, tree32(acc + d, (size_t)D));
}

static int have_avx2(void) {
    return kernel_isa() >= ISA_AVX2;
}
#else
#define HAVE_SIMD_PATH 0
static int have_avx2(void) { return 0; }
#endif

/* ---- scalar counterparts of the AVX2 routines (same order) ----------------- */
static void softmax_scalar(float *w, int n, float mx) {
    double sum = 0;
    for (int i = 0; i < n; i += 8) {
        for (int l = 0; l < 8; l++) w[i + l] = exp_ggml(w[i + l] - mx);
        sum += (double)hsum8_tree(w + i);
    }
    const float sc = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) w[i] *= sc;
}

static float elem(const float *vf, const uint16_t *vh, size_t i) { return vh ? fp16_to_f32(vh[i]) : vf[i]; }

static float dot_key_scalar(const float *kf, const uint16_t *kh, const float *q, int D, int lanes8) {
    float k[1024]; /* D <= 1024 (lcpp_attention_ok) */
    for (int d = 0; d < D; d++) k[d] = elem(kf, kh, (size_t)d);
    if (!lanes8) return dot_vecdot_scalar(k, q, D);
    float acc[8] = {0};
    for (int d = 0; d < D; d++) acc[d % 8] = fmaf(k[d], q[d], acc[d % 8]);
    return hsum8_tree(acc);
}

static void round_half_scalar(float *x, int n) {
    for (int i = 0; i < n; i++) x[i] = fp16_to_f32(f32_to_fp16(x[i]));
}

static void weighted_sum_scalar(float *out, const float *p, const float *vf, const uint16_t *vh, size_t vstride, int n,
                                int D, int lanes, float *acc) {
    memset(acc, 0, (size_t)lanes * D * sizeof(float));
    for (int j = 0; j < n; j++)
        if (p[j] != 0.0f)
            for (int d = 0; d < D; d++)
                acc[(size_t)(j % lanes) * D + d] =
                    fmaf(elem(vf, vh, (size_t)j * vstride + d), p[j], acc[(size_t)(j % lanes) * D + d]);
    for (int d = 0; d < D; d++) {
        float c[8];
        for (int l = 0; l < 8; l++)
            c[l] = lanes == 32 ? (acc[(size_t)l * D + d] + acc[(size_t)(l + 16) * D + d]) +
                                     (acc[(size_t)(l + 8) * D + d] + acc[(size_t)(l + 24) * D + d])
                               : acc[(size_t)l * D + d];
        out[d] = lanes == 32 ? ((c[0] + c[4]) + (c[1] + c[5])) + ((c[2] + c[6]) + (c[3] + c[7])) : hsum8_tree(c);
    }
}

/* ---- public ------------------------------------------------------------------ */

/* Rows four at a time: each row's sum of squares is still one sequential
 * double chain (ggml's order), but four chains run side by side instead of
 * one add's latency per element (~1.5% of a prompt). */
void lcpp_rmsnorm(float *out, const float *x, const float *w, int N, int C, float eps) {
#pragma omp parallel for if (N >= 16)
    for (int g = 0; g < (N + 3) / 4; g++) {
        const int i0 = 4 * g, n = N - i0 < 4 ? N - i0 : 4;
        const float *xr[4];
        for (int r = 0; r < 4; r++) xr[r] = x + (size_t)(i0 + (r < n ? r : 0)) * C; /* a short group repeats row i0 */
        double ss[4] = {0, 0, 0, 0};
        for (int j = 0; j < C; j++)
            for (int r = 0; r < 4; r++) ss[r] += (double)(xr[r][j] * xr[r][j]);
        for (int r = 0; r < n; r++) {
            const float *xi = xr[r];
            float *oi = out + (size_t)(i0 + r) * C;
            const float mean = (float)(ss[r] / C);
            const float scale = 1.0f / sqrtf(mean + eps);
            for (int j = 0; j < C; j++) {
                const float y = xi[j] * scale; /* rounded before the weight, as in ggml */
                oi[j] = y * w[j];
            }
        }
    }
}

void lcpp_rope(float *x, int T, int H, int D, int pos0, float base, int neox) {
    const float step = powf(base, -2.0f / (float)D);
    const int half = D / 2;
#pragma omp parallel for if (T >= 16)
    for (int t = 0; t < T; t++) {
        float cs[512], sn[512];
        float theta = (float)(pos0 + t);
        for (int i = 0; i < half && i < 512; i++) {
            cs[i] = cosf(theta);
            sn[i] = sinf(theta);
            theta *= step;
        }
        for (int h = 0; h < H; h++) {
            float *v = x + ((size_t)t * H + h) * D;
            for (int i = 0; i < half && i < 512; i++) {
                const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
                const float x0 = v[i0], x1 = v[i1];
                v[i0] = fmaf(x0, cs[i], -(x1 * sn[i]));
                v[i1] = fmaf(x0, sn[i], x1 * cs[i]);
            }
        }
    }
}

void lcpp_swiglu(float *out, const float *g, const float *u, size_t n) {
#if HAVE_SIMD_PATH
    if (have_avx2()) {
        if (n >= 65536) {
            const size_t chunk = 4096;
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i += chunk) swiglu_avx2(out + i, g + i, u + i, n - i < chunk ? n - i : chunk);
        } else {
            swiglu_avx2(out, g, u, n);
        }
        return;
    }
#endif
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) out[i + l] = g[i + l] / (1.0f + exp_ggml(-g[i + l])) * u[i + l];
    for (; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* Scratch of one (query, head): the score row padded to 32, 32 lanes of D. */
static size_t head_scratch(int S, int D) { return (((size_t)S + 31) & ~(size_t)31) + 32 * (size_t)D; }
/* Up to this many floats it lives on the stack (contexts up to 8192 at D=64). */
#define HEAD_STACK_FLOATS (8192 + 32 * 64)

/* The cache of one kv head: float (kf, vf) or half (kh, vh) rows of stride
 * kvstride elements. */
typedef struct {
    const float *kf, *vf;
    const uint16_t *kh, *vh;
    size_t kvstride;
} HeadKV;

/* One (query, head): scores over n valid positions (padded with -inf to a
 * multiple of 32 for the softmax and the weighted sum). A half cache rounds
 * the query and the probabilities to half, as ggml's F16 mul_mat does, and
 * takes tinyBLAS's 8-lane scores for a batch. */
static void one_head(float *out, const float *q_in, const HeadKV *c, int n, int D, float scale, int batched, float *scr,
                     int simd) {
    const int lanes = batched ? 8 : 32, half = c->kh != NULL, lanes8 = half && batched;
    const int np = (n + 31) & ~31;
    float *w = scr, *acc = scr + np;
    _Alignas(32) float qr[1024]; /* D <= 1024 (lcpp_attention_ok) */
    const float *q = q_in;
    if (half) {
        memcpy(qr, q_in, (size_t)D * sizeof(float));
#if HAVE_SIMD_PATH
        if (simd) round_half_avx2(qr, D);
        else
#endif
            round_half_scalar(qr, D);
        q = qr;
    }
    float mx = -INFINITY;
    for (int j = 0; j < n; j++) {
        const size_t o = (size_t)j * c->kvstride;
        const float *kf = c->kf ? c->kf + o : NULL;
        const uint16_t *kh = half ? c->kh + o : NULL;
#if HAVE_SIMD_PATH
        const float s = simd ? dot_key_avx2(kf, kh, q, D, lanes8) : dot_key_scalar(kf, kh, q, D, lanes8);
#else
        const float s = dot_key_scalar(kf, kh, q, D, lanes8);
#endif
        w[j] = s * scale;
        mx = w[j] > mx ? w[j] : mx;
    }
    for (int j = n; j < np; j++) w[j] = -INFINITY;
#if HAVE_SIMD_PATH
    if (simd) {
        softmax_avx2(w, np, mx);
        if (half) round_half_avx2(w, np);
        weighted_sum_avx2(out, w, c->vf, c->vh, c->kvstride, n, D, lanes, acc);
        return;
    }
#endif
    softmax_scalar(w, np, mx);
    if (half) round_half_scalar(w, np);
    weighted_sum_scalar(out, w, c->vf, c->vh, c->kvstride, n, D, lanes, acc);
}


#if HAVE_SIMD_PATH
/* One token (T == 1) over the half cache, ggml_vec_dot_f16's order (lane
 * d % 32 for a score, lane j % 32 for a value sum), but the query heads of
 * a kv head share each key and value load: up to DEC_G queries at a time.
 * Three phases, each split over threads: scores by blocks of keys, the
 * softmax per query, value sums by 32-wide slices of D. Same bits as
 * one_head with a single query. */
enum { DEC_G = 3, DEC_KEYS = 128 };

/* Scores of keys [j0, j1) of kv head row kh (stride kvs) for G rounded
 * queries q (rows of D): four keys, then ggml's reduction of each dot's
 * four accumulators, the last two hadd steps shared by the four keys. */
TGT static inline __attribute__((always_inline)) void dec_scores(float *w, size_t wstride, const float *q, int G, const uint16_t *kh,
                                  const uint16_t *vh, size_t kvs, int j0, int j1, int D, float scale) {
    for (int j = j0; j < j1; j += 4) {
        for (int u = 0; u < 4 && j + u < j1; u++) /* these rows' values, for the value phase */
            for (int i = 0; i < D; i += 32) _mm_prefetch((const char *)(vh + (size_t)(j + u) * kvs + i), _MM_HINT_T1);
        __m128 t[DEC_G][4];
        for (int u = 0; u < 4; u++) {
            const uint16_t *k = kh + (size_t)(j + u < j1 ? j + u : j1 - 1) * kvs; /* a short last group repeats a key */
            __m256 a[DEC_G][4];
            for (int g = 0; g < DEC_G; g++)
                for (int m = 0; m < 4; m++) a[g][m] = _mm256_setzero_ps();
            for (int i = 0; i < D; i += 32)
#pragma GCC unroll 4
                for (int m = 0; m < 4; m++) {
                    const __m256 kv = load_half8(k + i + 8 * m);
#pragma GCC unroll 3
                    for (int g = 0; g < DEC_G; g++)
                        if (g < G) a[g][m] = _mm256_fmadd_ps(kv, _mm256_loadu_ps(q + (size_t)g * D + i + 8 * m), a[g][m]);
                }
#pragma GCC unroll 3
            for (int g = 0; g < DEC_G; g++) {
                const __m256 c = _mm256_add_ps(_mm256_add_ps(a[g][0], a[g][2]), _mm256_add_ps(a[g][1], a[g][3]));
                t[g][u] = _mm_add_ps(_mm256_castps256_ps128(c), _mm256_extractf128_ps(c, 1));
            }
        }
        for (int g = 0; g < G; g++) {
            /* hadd(hadd(A,B), hadd(C,D)) = [(A0+A1)+(A2+A3), ...]: vec_dot's last two steps per key */
            const __m128 s = _mm_hadd_ps(_mm_hadd_ps(t[g][0], t[g][1]), _mm_hadd_ps(t[g][2], t[g][3]));
            _Alignas(16) float r[4];
            _mm_store_ps(r, s);
            for (int u = 0; u < 4 && j + u < j1; u++) w[(size_t)g * wstride + j + u] = r[u] * scale;
        }
    }
}

/* Value sums over n positions for G queries (probabilities p, rows of
 * pstride) on the 32-wide slice d0 of D: lane l holds positions j = l mod
 * 32 in increasing j, then vec_dot's reduction of the 32 lanes. */
TGT static inline __attribute__((always_inline)) void dec_values(float *out, size_t ostride, const float *p, size_t pstride, int G, const uint16_t *vh,
                                  size_t kvs, int n, int d0) {
    _Alignas(32) float lanes[DEC_G][32][32];
    for (int l = 0; l < 32; l++) {
        __m256 a[DEC_G][4];
        for (int g = 0; g < DEC_G; g++)
            for (int m = 0; m < 4; m++) a[g][m] = _mm256_setzero_ps();
        for (int j = l; j < n; j += 32) {
            __m256 pj[DEC_G];
#pragma GCC unroll 3
            for (int g = 0; g < DEC_G; g++) pj[g] = _mm256_broadcast_ss(p + (size_t)(g < G ? g : 0) * pstride + j);
#pragma GCC unroll 4
            for (int m = 0; m < 4; m++) {
                const __m256 v = load_half8(vh + (size_t)j * kvs + d0 + 8 * m);
#pragma GCC unroll 3
                for (int g = 0; g < DEC_G; g++)
                    if (g < G) a[g][m] = _mm256_fmadd_ps(v, pj[g], a[g][m]);
            }
        }
        for (int g = 0; g < G; g++)
            for (int m = 0; m < 4; m++) _mm256_store_ps(lanes[g][l] + 8 * m, a[g][m]);
    }
    for (int g = 0; g < G; g++)
        for (int m = 0; m < 4; m++) _mm256_storeu_ps(out + (size_t)g * ostride + d0 + 8 * m, tree32(lanes[g][0] + 8 * m, 32));
}

static int attention_half_decode(float *out, const float *q, const uint16_t *kc, const uint16_t *vc, int pos0, int Hq,
                                 int Hkv, int D) {
    const int n = pos0 + 1, np = (n + 31) & ~31, group = Hq / Hkv;
    const int sets = (group + DEC_G - 1) / DEC_G; /* query sets per kv head */
    const size_t kvs = (size_t)Hkv * D;
    const float scale = 1.0f / sqrtf((float)D);
    float *w = malloc(((size_t)Hq * np + (size_t)Hq * D) * sizeof(float)), *qr = w ? w + (size_t)Hq * np : NULL;
    if (!w) return ERR_NOMEM;
    memcpy(qr, q, (size_t)Hq * D * sizeof(float));
    round_half_avx2(qr, Hq * D);
    const int kblocks = (n + DEC_KEYS - 1) / DEC_KEYS, score_items = Hkv * sets * kblocks;
    const int value_items = Hkv * sets * (D / 32);
    const int par = omp_get_max_threads() > 1 && !omp_in_parallel() && (size_t)Hq * n >= 4096;
    /* On one thread (a short cache, or one sequence of a batched step) the
     * cache is usually cold (the other sequences' caches passed through since
     * this layer's last step): ask for all the keys at once, and for the
     * values as the scores go (dec_scores), instead of one miss at a time.
     * 17 -> 13 us for 100 positions of SmolLM2's shape, 54 -> 32 for 300. */
    if (!par)
        for (int j = 0; j < n; j++)
            for (size_t i = 0; i < kvs; i += 32) _mm_prefetch((const char *)(kc + (size_t)j * kvs + i), _MM_HINT_T0);
#pragma omp parallel if (par)
    {
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < score_items; it++) {
            const int kb = it % kblocks, s = it / kblocks % sets, kvh = it / kblocks / sets, h0 = kvh * group + s * DEC_G;
            const int G = group - s * DEC_G < DEC_G ? group - s * DEC_G : DEC_G;
            const int j0 = kb * DEC_KEYS, j1 = j0 + DEC_KEYS < n ? j0 + DEC_KEYS : n;
            float *wh = w + (size_t)h0 * np;
            const float *qh = qr + (size_t)h0 * D;
            const uint16_t *kh = kc + (size_t)kvh * D, *vh = vc + (size_t)kvh * D;
            /* G a constant in each call, so the accumulators stay in registers */
            if (G == 3) dec_scores(wh, (size_t)np, qh, 3, kh, vh, kvs, j0, j1, D, scale);
            else if (G == 2) dec_scores(wh, (size_t)np, qh, 2, kh, vh, kvs, j0, j1, D, scale);
            else dec_scores(wh, (size_t)np, qh, 1, kh, vh, kvs, j0, j1, D, scale);
        }
#pragma omp for schedule(static)
        for (int h = 0; h < Hq; h++) lcpp_probs_half(w + (size_t)h * np, n, 0);
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < value_items; it++) {
            const int ds = it % (D / 32), s = it / (D / 32) % sets, kvh = it / (D / 32) / sets, h0 = kvh * group + s * DEC_G;
            const int G = group - s * DEC_G < DEC_G ? group - s * DEC_G : DEC_G;
            float *oh = out + (size_t)h0 * D;
            const float *ph = w + (size_t)h0 * np;
            const uint16_t *vh = vc + (size_t)kvh * D;
            if (G == 3) dec_values(oh, (size_t)D, ph, (size_t)np, 3, vh, kvs, n, 32 * ds);
            else if (G == 2) dec_values(oh, (size_t)D, ph, (size_t)np, 2, vh, kvs, n, 32 * ds);
            else dec_values(oh, (size_t)D, ph, (size_t)np, 1, vh, kvs, n, 32 * ds);
        }
    }
    free(w);
    return 0;
}
#endif

int quant_matches_llamacpp(int t) { return t == DT_Q4_1 || t == DT_Q8_0 || t == DT_Q8_0_R16; }

int lcpp_attention_ok(int D) { return D % 32 == 0 && D <= 1024; }

/* lcpp_attention over a float (kf, vf) or half (khalf, vhalf) cache. */
static int attention_any(float *out, const float *q, const float *kf, const float *vf, const uint16_t *khalf,
                         const uint16_t *vhalf, int T, int pos0, int Hq, int Hkv, int D) {
    int failed = 0;
    const size_t kvstride = (size_t)Hkv * D;
    const int group = Hq / Hkv;
    const float scale = 1.0f / sqrtf((float)D);
    const int batched = T >= 2, simd = have_avx2();
    const int items = T * Hq;
    /* a decoding step has Hq small items: forking costs more than it saves
     * until the context is long */
    const int par = omp_get_max_threads() > 1 && !omp_in_parallel() && (size_t)items * (pos0 + T) >= 4096;
#pragma omp parallel for schedule(dynamic, 1) if (par)
    for (int it = 0; it < items; it++) {
        const int t = it / Hq, h = it % Hq, kh = h / group;
        const size_t need = head_scratch(pos0 + t + 1, D);
        _Alignas(32) float stack[HEAD_STACK_FLOATS];
        float *scr = need <= HEAD_STACK_FLOATS ? stack : malloc(need * sizeof(float));
        if (!scr) { /* out of memory for a context beyond the stack buffer */
#pragma omp atomic write
            failed = 1;
            continue;
        }
        const size_t o = (size_t)kh * D;
        const HeadKV c = {kf ? kf + o : NULL, vf ? vf + o : NULL, khalf ? khalf + o : NULL, vhalf ? vhalf + o : NULL,
                         kvstride};
        one_head(out + ((size_t)t * Hq + h) * D, q + ((size_t)t * Hq + h) * D, &c, pos0 + t + 1, D, scale, batched, scr,
                 simd);
        if (scr != stack) free(scr);
    }
    return failed ? ERR_NOMEM : 0;
}

int lcpp_attention(float *out, const float *q, const float *kc, const float *vc, int T, int pos0, int Hq, int Hkv,
                   int D) {
    return attention_any(out, q, kc, vc, NULL, NULL, T, pos0, Hq, Hkv, D);
}

int lcpp_attention_f16(float *out, const float *q, const uint16_t *kc, const uint16_t *vc, int T, int pos0, int Hq,
                       int Hkv, int D) {
#if HAVE_SIMD_PATH
    if (T >= 2 && have_avx2() && Hkv > 0 && Hq % Hkv == 0)
        return lcpp_attention_half_batched(out, q, kc, vc, T, pos0, Hq, Hkv, D);
    if (T == 1 && have_avx2() && Hkv > 0 && Hq % Hkv == 0)
        return attention_half_decode(out, q, kc, vc, pos0, Hq, Hkv, D);
#endif
    return attention_any(out, q, NULL, NULL, kc, vc, T, pos0, Hq, Hkv, D);
}

void kv_store_f16(uint16_t *dst, const float *src, size_t n) {
#if HAVE_SIMD_PATH
    if (have_avx2()) {
        store_half_avx2(dst, src, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_fp16(src[i]);
}

void kv_load_f16(float *dst, const uint16_t *src, size_t n) {
#if HAVE_SIMD_PATH
    if (have_avx2()) {
        load_half_avx2(dst, src, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = fp16_to_f32(src[i]);
}
