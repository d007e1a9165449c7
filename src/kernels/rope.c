/* Rotary position embedding (Su et al. 2021), both pair layouts. */
#include "kernels.h"

#include <math.h>
#include <stdlib.h>

/* cos and sin of (pos0 + t) * theta^(-2i/D) for t < T, i < D/2: cs, sn (T, D/2).
 * In double: positions reach 10^5 and float loses the phase. */
static void rope_table(float *cs, float *sn, int T, int D, int pos0, float theta, float sign) {
    const int half = D / 2;
#pragma omp parallel for if (T > 1)
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            const double a = (pos0 + t) * pow((double)theta, -2.0 * i / D);
            cs[(size_t)t * half + i] = (float)cos(a);
            sn[(size_t)t * half + i] = sign * (float)sin(a);
        }
}

/* The angles depend on the position alone: one table per call serves every
 * sequence of the batch and every head (the same values as computing them
 * per row, B times fewer cos, sin and pow). */
static void rope_apply(float *x, int B, int T, int H, int D, int pos0, float theta, int neox, float sign) {
    const int half = D / 2;
    float stack[2 * 512], *cs = stack;
    if ((size_t)T * half > 512 && !(cs = malloc(2 * (size_t)T * half * sizeof(float)))) {
        for (int b = 0; b < B; b++) /* out of memory: one position at a time (its table fits the stack) */
            for (int t = 0; t < T; t++) rope_apply(x + ((size_t)b * T + t) * H * D, 1, 1, H, D, pos0 + t, theta, neox, sign);
        return;
    }
    float *sn = cs + (size_t)T * half;
    rope_table(cs, sn, T, D, pos0, theta, sign);
#pragma omp parallel for collapse(2) if (B * T > 1) /* a decoding step is too small to fork for */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *c = cs + (size_t)t * half, *s = sn + (size_t)t * half;
            for (int h = 0; h < H; h++) {
                float *v = x + (((size_t)b * T + t) * H + h) * D;
                for (int i = 0; i < half; i++) {
                    int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
                    float x0 = v[i0], x1 = v[i1];
                    v[i0] = x0 * c[i] - x1 * s[i];
                    v[i1] = x0 * s[i] + x1 * c[i];
                }
            }
        }
    if (cs != stack) free(cs);
}

void rope_forward(float *x, int B, int T, int H, int D, int pos0, float theta, int neox) {
    rope_apply(x, B, T, H, D, pos0, theta, neox, 1.0f);
}

void rope_backward(float *dx, int B, int T, int H, int D, int pos0, float theta, int neox) {
    rope_apply(dx, B, T, H, D, pos0, theta, neox, -1.0f);
}
