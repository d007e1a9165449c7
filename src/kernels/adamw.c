/* AdamW (Loshchilov & Hutter): decoupled weight decay, bias-corrected. */
#include "kernels.h"

#include <math.h>

void adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float grad_scale, int t) {
    float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
#pragma omp parallel for simd
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * grad_scale;
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float mhat = mi / bc1, vhat = vi / bc2;
        p[i] -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * p[i]);
    }
}

double sumsq(const float *x, size_t n) {
    /* Fixed chunks summed in order: the same value for any thread count. */
    enum { CHUNK = 1 << 14 };
    size_t nchunks = (n + CHUNK - 1) / CHUNK;
    double total = 0.0;
    double part[256];
    for (size_t c0 = 0; c0 < nchunks; c0 += 256) {
        size_t c1 = c0 + 256 < nchunks ? c0 + 256 : nchunks;
#pragma omp parallel for
        for (size_t c = c0; c < c1; c++) {
            size_t a = c * CHUNK, b = a + CHUNK < n ? a + CHUNK : n;
            /* eight independent sums (one long dependency chain of adds
             * ran at ~1 element per 4 cycles, 15 ms per step for 11M
             * gradients); fixed lanes, so still the same value every run */
            double s[8] = {0};
            size_t i = a;
            for (; i + 8 <= b; i += 8)
                for (int j = 0; j < 8; j++) s[j] += (double)x[i + j] * x[i + j];
            for (; i < b; i++) s[0] += (double)x[i] * x[i];
            part[c - c0] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
        }
        for (size_t c = c0; c < c1; c++) total += part[c - c0];
    }
    return total;
}
