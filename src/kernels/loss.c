/* Softmax cross-entropy with an ignore index (targets < 0). */
#include "kernels.h"

#include <math.h>

#include "vmath.h"

double crossentropy_forward(float *losses, const float *logits, const int32_t *targets, int N, int V, int *count) {
    double total = 0.0;
    int n = 0;
#pragma omp parallel for reduction(+ : total, n)
    for (int i = 0; i < N; i++) {
        if (targets[i] < 0) {
            if (losses) losses[i] = 0.0f;
            continue;
        }
        const float *l = logits + (size_t)i * V;
        float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int j = 0; j < V; j++) mx = l[j] > mx ? l[j] : mx;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; j++) sum += fast_expf(l[j] - mx);
        float loss = (float)(log(sum) + mx - l[targets[i]]);
        if (losses) losses[i] = loss;
        total += loss;
        n++;
    }
    if (count) *count = n;
    return n ? total / n : 0.0;
}

void crossentropy_backward(float *dlogits, const float *logits, const int32_t *targets, int N, int V, float scale) {
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float *l = logits + (size_t)i * V;
        float *d = dlogits + (size_t)i * V;
        if (targets[i] < 0) {
            for (int j = 0; j < V; j++) d[j] = 0.0f;
            continue;
        }
        float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int j = 0; j < V; j++) mx = l[j] > mx ? l[j] : mx;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; j++) sum += fast_expf(l[j] - mx);
        float k = scale / sum;
        int tgt = targets[i];
#pragma omp simd
        for (int j = 0; j < V; j++) d[j] = fast_expf(l[j] - mx) * k;
        d[tgt] -= scale;
    }
}
