/* Softmax cross-entropy with an ignore index (targets < 0). */
#include "kernels.h"

#include <math.h>
#include <string.h>

#include "vmath.h"

double crossentropy_forward(float *losses, float *lse, const float *logits, const int32_t *targets, int N, int V,
                            int *count) {
    double total = 0.0;
    int n = 0;
#pragma omp parallel for reduction(+ : total, n)
    for (int i = 0; i < N; i++) {
        if (targets[i] < 0) {
            if (losses) losses[i] = 0.0f;
            continue;
        }
        const float *l = logits + (size_t)i * V;
        float mx = vec_max(l, V);
        float lse_i = (float)log(vec_exp_sum(NULL, l, mx, 1.0f, V)) + mx;
        float loss = lse_i - l[targets[i]];
        if (losses) losses[i] = loss;
        if (lse) lse[i] = lse_i;
        total += loss;
        n++;
    }
    if (count) *count = n;
    return n ? total / n : 0.0;
}

void crossentropy_backward(float *dlogits, const float *logits, const float *lse, const int32_t *targets, int N, int V,
                           float scale) {
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float *l = logits + (size_t)i * V;
        float *d = dlogits + (size_t)i * V;
        if (targets[i] < 0) {
            memset(d, 0, (size_t)V * sizeof(float));
            continue;
        }
        /* softmax = exp(l - lse): one pass when the forward kept lse */
        float shift;
        if (lse) {
            shift = lse[i];
        } else {
            float mx = vec_max(l, V);
            shift = (float)log(vec_exp_sum(NULL, l, mx, 1.0f, V)) + mx;
        }
        int tgt = targets[i];
        vec_exp_sum(d, l, shift, scale, V);
        d[tgt] -= scale;
    }
}
