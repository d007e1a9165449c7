/* LayerNorm and RMSNorm, forward and backward. Rows are independent, so
 * OpenMP splits rows; parameter gradients are summed over rows in a second
 * pass split by column blocks, which keeps them bitwise independent of the
 * thread count (resume and layout tests compare exact values). */
#include "kernels.h"

#include <math.h>

#define COLS 64

void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b,
                       int N, int C, float eps) {
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float *xi = x + (size_t)i * C;
        float *oi = out + (size_t)i * C;
        float m = 0.0f;
        for (int j = 0; j < C; j++) m += xi[j];
        m /= C;
        float v = 0.0f;
        for (int j = 0; j < C; j++) {
            float d = xi[j] - m;
            v += d * d;
        }
        v /= C;
        float s = 1.0f / sqrtf(v + eps);
        for (int j = 0; j < C; j++) oi[j] = (xi[j] - m) * s * w[j] + (b ? b[j] : 0.0f);
        if (mean) mean[i] = m;
        if (rstd) rstd[i] = s;
    }
}

void layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w,
                        const float *mean, const float *rstd, int N, int C) {
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float *xi = x + (size_t)i * C, *gi = dout + (size_t)i * C;
        float *dxi = dx + (size_t)i * C;
        float m = mean[i], s = rstd[i];
        float sum_g = 0.0f, sum_gx = 0.0f;
        for (int j = 0; j < C; j++) {
            float g = gi[j] * w[j];
            sum_g += g;
            sum_gx += g * (xi[j] - m) * s;
        }
        sum_g /= C;
        sum_gx /= C;
        for (int j = 0; j < C; j++) dxi[j] += (gi[j] * w[j] - sum_g - (xi[j] - m) * s * sum_gx) * s;
    }
    if (!dw && !db) return; /* a frozen norm (fine-tuning) */
#pragma omp parallel for
    for (int j0 = 0; j0 < C; j0 += COLS) {
        int j1 = j0 + COLS < C ? j0 + COLS : C;
        float aw[COLS] = {0}, ab[COLS] = {0};
        for (int i = 0; i < N; i++) {
            const float *xi = x + (size_t)i * C, *gi = dout + (size_t)i * C;
            float m = mean[i], s = rstd[i];
            for (int j = j0; j < j1; j++) {
                aw[j - j0] += gi[j] * (xi[j] - m) * s;
                ab[j - j0] += gi[j];
            }
        }
        for (int j = j0; j < j1; j++) {
            if (dw) dw[j] += aw[j - j0];
            if (db) db[j] += ab[j - j0];
        }
    }
}

void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps) {
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float *xi = x + (size_t)i * C;
        float *oi = out + (size_t)i * C;
        float ss = 0.0f;
        for (int j = 0; j < C; j++) ss += xi[j] * xi[j];
        float s = 1.0f / sqrtf(ss / C + eps);
        for (int j = 0; j < C; j++) oi[j] = xi[j] * s * w[j];
        if (rstd) rstd[i] = s;
    }
}

void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                      int N, int C) {
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float *xi = x + (size_t)i * C, *gi = dout + (size_t)i * C;
        float *dxi = dx + (size_t)i * C;
        float s = rstd[i];
        float dot = 0.0f;
        for (int j = 0; j < C; j++) dot += gi[j] * w[j] * xi[j];
        float k = dot * s * s * s / C;
        for (int j = 0; j < C; j++) dxi[j] += gi[j] * w[j] * s - xi[j] * k;
    }
    if (!dw) return; /* a frozen norm (fine-tuning) */
#pragma omp parallel for
    for (int j0 = 0; j0 < C; j0 += COLS) {
        int j1 = j0 + COLS < C ? j0 + COLS : C;
        float aw[COLS] = {0};
        for (int i = 0; i < N; i++) {
            const float *xi = x + (size_t)i * C, *gi = dout + (size_t)i * C;
            float s = rstd[i];
            for (int j = j0; j < j1; j++) aw[j - j0] += gi[j] * xi[j] * s;
        }
        for (int j = j0; j < j1; j++) dw[j] += aw[j - j0];
    }
}
