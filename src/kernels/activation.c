/* Elementwise activations: GELU (tanh form, as GPT-2) and SwiGLU. */
#include "kernels.h"

#include <math.h>

#include "vmath.h"

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

void gelu_forward(float *out, const float *x, size_t n) {
#pragma omp parallel for simd
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        out[i] = 0.5f * v * (1.0f + fast_tanhf(GELU_K * (v + 0.044715f * v * v * v)));
    }
}

void gelu_backward(float *dx, const float *x, const float *dout, size_t n) {
#pragma omp parallel for simd
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float u = GELU_K * (v + 0.044715f * v * v * v);
        float t = fast_tanhf(u);
        float sech2 = 1.0f - t * t;
        float g = 0.5f * (1.0f + t) + 0.5f * v * sech2 * GELU_K * (1.0f + 3.0f * 0.044715f * v * v);
        dx[i] += g * dout[i];
    }
}

void swiglu_forward(float *out, const float *g, const float *u, size_t n) {
#pragma omp parallel for simd
    for (size_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + fast_expf(-g[i]));
        out[i] = g[i] * s * u[i];
    }
}

void swiglu_backward(float *dg, float *du, const float *g, const float *u, const float *dout, size_t n) {
#pragma omp parallel for simd
    for (size_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + fast_expf(-g[i]));
        float silu = g[i] * s;
        dg[i] += dout[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
        du[i] += dout[i] * silu;
    }
}
