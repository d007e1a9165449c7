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
    int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* tanh(x) = 1 - 2 / (e^(2x) + 1): absolute error ~1e-7 everywhere. */
static inline float fast_tanhf(float x) { return 1.0f - 2.0f / (fast_expf(2.0f * x) + 1.0f); }
#endif

#endif
