/* Elementwise activations: GELU (tanh form, as GPT-2) and SwiGLU. */
#include "kernels.h"

#include <math.h>

#include "vmath.h"

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

/* Chunks of whole cache lines per thread; inside, eight lanes at a time. */
#define ACT_CHUNK 4096

#ifdef VMATH_AVX2
static inline __m256 sigmoid_avx2(__m256 g) {
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), g))));
}
static inline __m256 gelu_inner_avx2(__m256 v) { /* sqrt(2/pi) (v + 0.044715 v^3) */
    __m256 v3 = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
    return _mm256_mul_ps(_mm256_set1_ps(GELU_K), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), v3, v));
}
#endif

void gelu_forward(float *out, const float *x, size_t n) {
#pragma omp parallel for
    for (size_t c = 0; c < n; c += ACT_CHUNK) {
        size_t i = c, end = c + ACT_CHUNK < n ? c + ACT_CHUNK : n;
#ifdef VMATH_AVX2
        const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
        for (; i + 8 <= end; i += 8) {
            __m256 v = _mm256_loadu_ps(x + i);
            __m256 t = tanh_avx2(gelu_inner_avx2(v));
            _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, t)));
        }
#endif
        for (; i < end; i++) {
            float v = x[i];
            out[i] = 0.5f * v * (1.0f + fast_tanhf(GELU_K * (v + 0.044715f * v * v * v)));
        }
    }
}

void gelu_backward(float *dx, const float *x, const float *dout, size_t n) {
#pragma omp parallel for
    for (size_t c = 0; c < n; c += ACT_CHUNK) {
        size_t i = c, end = c + ACT_CHUNK < n ? c + ACT_CHUNK : n;
#ifdef VMATH_AVX2
        const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
        const __m256 k3 = _mm256_set1_ps(3.0f * 0.044715f), kk = _mm256_set1_ps(0.5f * GELU_K);
        for (; i + 8 <= end; i += 8) {
            __m256 v = _mm256_loadu_ps(x + i);
            __m256 t = tanh_avx2(gelu_inner_avx2(v));
            __m256 sech2 = _mm256_fnmadd_ps(t, t, one);
            /* 0.5 (1 + t) + 0.5 k v sech^2 (1 + 3 0.044715 v^2) */
            __m256 g = _mm256_fmadd_ps(half, t, half);
            __m256 inner = _mm256_fmadd_ps(k3, _mm256_mul_ps(v, v), one);
            g = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_mul_ps(kk, v), sech2), inner, g);
            _mm256_storeu_ps(dx + i, _mm256_fmadd_ps(g, _mm256_loadu_ps(dout + i), _mm256_loadu_ps(dx + i)));
        }
#endif
        for (; i < end; i++) {
            float v = x[i];
            float u = GELU_K * (v + 0.044715f * v * v * v);
            float t = fast_tanhf(u);
            float sech2 = 1.0f - t * t;
            float g = 0.5f * (1.0f + t) + 0.5f * v * sech2 * GELU_K * (1.0f + 3.0f * 0.044715f * v * v);
            dx[i] += g * dout[i];
        }
    }
}

void swiglu_forward(float *out, const float *g, const float *u, size_t n) {
#pragma omp parallel for
    for (size_t c = 0; c < n; c += ACT_CHUNK) {
        size_t i = c, end = c + ACT_CHUNK < n ? c + ACT_CHUNK : n;
#ifdef VMATH_AVX2
        for (; i + 8 <= end; i += 8) {
            __m256 gv = _mm256_loadu_ps(g + i);
            __m256 s = sigmoid_avx2(gv);
            _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(gv, s), _mm256_loadu_ps(u + i)));
        }
#endif
        for (; i < end; i++) {
            float s = 1.0f / (1.0f + fast_expf(-g[i]));
            out[i] = g[i] * s * u[i];
        }
    }
}

void swiglu_backward(float *dg, float *du, const float *g, const float *u, const float *dout, size_t n) {
#pragma omp parallel for
    for (size_t c = 0; c < n; c += ACT_CHUNK) {
        size_t i = c, end = c + ACT_CHUNK < n ? c + ACT_CHUNK : n;
#ifdef VMATH_AVX2
        const __m256 one = _mm256_set1_ps(1.0f);
        for (; i + 8 <= end; i += 8) {
            __m256 gv = _mm256_loadu_ps(g + i), uv = _mm256_loadu_ps(u + i), dv = _mm256_loadu_ps(dout + i);
            __m256 s = sigmoid_avx2(gv);
            __m256 silu = _mm256_mul_ps(gv, s);
            /* d silu/dg = s (1 + g (1 - s)) */
            __m256 ds = _mm256_mul_ps(s, _mm256_fmadd_ps(gv, _mm256_sub_ps(one, s), one));
            _mm256_storeu_ps(dg + i, _mm256_fmadd_ps(_mm256_mul_ps(dv, uv), ds, _mm256_loadu_ps(dg + i)));
            _mm256_storeu_ps(du + i, _mm256_fmadd_ps(dv, silu, _mm256_loadu_ps(du + i)));
        }
#endif
        for (; i < end; i++) {
            float s = 1.0f / (1.0f + fast_expf(-g[i]));
            float silu = g[i] * s;
            dg[i] += dout[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
            du[i] += dout[i] * silu;
        }
    }
}
