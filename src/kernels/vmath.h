/* Vectorisable elementary functions for the hot loops (softmax, GELU,
 * SiLU, cross-entropy). glibc's expf/tanhf are scalar calls; these are plain
 * C that the compiler turns into SIMD inside `omp simd` loops.
 * fast_expf: Cody-Waite range reduction and a degree-6 polynomial (Cephes
 * coefficients), relative error below 2e-7 on [-87, 88]; inputs are clamped
 * there (below: ~1e-38, never 0 or a denormal; above: ~1.6e38). */
#ifndef JARIP_VMATH_H
#define JARIP_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef JARIP_GRADCHECK64 /* the float64 gradient check runs exact libm */
static inline float fast_expf(float x) { return exp(x); }
static inline float fast_tanhf(float x) { return tanh(x); }
#else
static inline float fast_expf(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float k = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - k * 0.693359375f + k * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* a NaN x (a hostile model's weights, a diverged run) gives NaN p, so
     * any exponent will do; converting NaN k to int would be UB */
    int32_t bits = ((k == k ? (int32_t)k : 0) + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* tanh(x) = 1 - 2 / (e^(2x) + 1): absolute error ~1e-7 everywhere. */
static inline float fast_tanhf(float x) { return 1.0f - 2.0f / (fast_expf(2.0f * x) + 1.0f); }
#endif

/* The same exp eight lanes at a time. gcc does vectorise fast_expf inside
 * `omp simd` loops, but its floorf/bit-cast sequence came out 8x slower than
 * this (measured on the 50257-wide cross-entropy rows), and those rows, the
 * GELU and the attention softmax are most of training's non-GEMM time. */
#if defined(__AVX2__) && defined(__FMA__) && !defined(JARIP_GRADCHECK64)
#include <immintrin.h>
#define VMATH_AVX2 1
static inline __m256 exp_avx2(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 k = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fmadd_ps(k, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}
static inline __m256 tanh_avx2(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = exp_avx2(_mm256_add_ps(x, x));
    return _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
}
static inline float hsum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

/* max over x[0..n) (-inf for n = 0). */
static inline float vec_max(const float *x, int n) {
    float mx = -INFINITY;
    int i = 0;
#ifdef VMATH_AVX2
    if (n >= 8) {
        __m256 m = _mm256_loadu_ps(x);
        for (i = 8; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        mx = _mm_cvtss_f32(h);
    }
#endif
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}

/* y[i] = exp(x[i] - sub) * scale for i < n when y is not NULL (y may be
 * x); returns the sum of exp(x[i] - sub) (the unscaled terms). */
static inline float vec_exp_sum(float *y, const float *x, float sub, float scale, int n) {
    float sum = 0.0f;
    int i = 0;
#ifdef VMATH_AVX2
    __m256 acc = _mm256_setzero_ps(), vs = _mm256_set1_ps(sub), vk = _mm256_set1_ps(scale);
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs));
        acc = _mm256_add_ps(acc, e);
        if (y) _mm256_storeu_ps(y + i, _mm256_mul_ps(e, vk));
    }
    sum = hsum_avx2(acc);
#endif
    for (; i < n; i++) {
        float e = fast_expf(x[i] - sub);
        sum += e;
        if (y) y[i] = e * scale;
    }
    return sum;
}

#endif
