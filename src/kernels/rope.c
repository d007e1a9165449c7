/* Rotary position embedding (Su et al. 2021), both pair layouts. */
#include "kernels.h"

#include <math.h>

static void rope_apply(float *x, int B, int T, int H, int D, int pos0, float theta, int neox, float sign) {
    int half = D / 2;
#pragma omp parallel for collapse(2) if (B * T > 1) /* a decoding step is too small to fork for */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float cs[512], sn[512]; /* D <= 1024 checked by config use; half fits */
            int pos = pos0 + t;
            for (int i = 0; i < half && i < 512; i++) {
                /* double for the angle: positions reach 10^5 and float loses the phase */
                double freq = pow((double)theta, -2.0 * i / D);
                double a = pos * freq;
                cs[i] = (float)cos(a);
                sn[i] = sign * (float)sin(a);
            }
            for (int h = 0; h < H; h++) {
                float *v = x + (((size_t)b * T + t) * H + h) * D;
                for (int i = 0; i < half; i++) {
                    int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
                    float x0 = v[i0], x1 = v[i1];
                    v[i0] = x0 * cs[i] - x1 * sn[i];
                    v[i1] = x0 * sn[i] + x1 * cs[i];
                }
            }
        }
}

void rope_forward(float *x, int B, int T, int H, int D, int pos0, float theta, int neox) {
    rope_apply(x, B, T, H, D, pos0, theta, neox, 1.0f);
}

void rope_backward(float *dx, int B, int T, int H, int D, int pos0, float theta, int neox) {
    rope_apply(dx, B, T, H, D, pos0, theta, neox, -1.0f);
}
