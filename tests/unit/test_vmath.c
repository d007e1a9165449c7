/* The vectorised elementwise kernels against float64 libm: exp (every tail
 * length, the clamped ends), GELU and SwiGLU forward/backward, softmax
 * cross-entropy with and without the saved log-sum-exp. The AVX2 paths and
 * the scalar tails must agree with the same math. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/kernels.h"
#include "kernels/vmath.h"

static float frand(unsigned *s, float lo, float hi) {
    *s = *s * 1664525u + 1013904223u;
    return lo + (hi - lo) * (float)(*s >> 8) / (float)(1u << 24);
}

static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-30); }

static void test_exp(void) {
    unsigned seed = 1;
    float x[67], y[67];
    for (int n = 0; n <= 67; n++) {
        for (int i = 0; i < n; i++) x[i] = frand(&seed, -80.0f, 80.0f);
        double want = 0.0, wmax = -INFINITY;
        for (int i = 0; i < n; i++) wmax = fmax(wmax, x[i]);
        for (int i = 0; i < n; i++) want += exp((double)x[i] - 3.0);
        float got = vec_exp_sum(y, x, 3.0f, 2.0f, n);
        CHECK(n == 0 ? got == 0.0f : rel(got, want) < 1e-5, "vec_exp_sum n=%d: %g vs %g", n, got, want);
        CHECK(vec_max(x, n) == (float)wmax, "vec_max n=%d", n);
        for (int i = 0; i < n; i++)
            CHECK(rel(y[i], 2.0 * exp((double)(x[i] - 3.0f))) < 3e-7, "exp term %d of %d: x=%g %g", i, n, x[i], y[i]);
    }
    /* clamped ends: tiny positive, never 0, inf or nan */
    float big[16] = {-1000, -200, -88, -87, 88, 89, 500, 0, 1, -1, 0.5f, -0.5f, 10, -10, 20, -20};
    float out[16];
    vec_exp_sum(out, big, 0.0f, 1.0f, 16);
    for (int i = 0; i < 16; i++) CHECK(isfinite(out[i]) && out[i] > 0.0f, "exp(%g) = %g", big[i], out[i]);
}

static void test_activations(void) {
    enum { N = 1000 + 5 }; /* not a multiple of 8: the scalar tail runs too */
    unsigned seed = 7;
    float *x = malloc(N * sizeof *x), *u = malloc(N * sizeof *u), *d = malloc(N * sizeof *d);
    float *y = malloc(N * sizeof *y), *dx = malloc(N * sizeof *dx), *du = malloc(N * sizeof *du);
    for (int i = 0; i < N; i++) x[i] = frand(&seed, -8, 8), u[i] = frand(&seed, -2, 2), d[i] = frand(&seed, -1, 1);
    gelu_forward(y, x, N);
    for (int i = 0; i < N; i++) dx[i] = 0.25f;
    gelu_backward(dx, x, d, N);
    double worst_f = 0, worst_b = 0;
    for (int i = 0; i < N; i++) {
        double v = x[i], k = sqrt(2.0 / M_PI), t = tanh(k * (v + 0.044715 * v * v * v));
        double f = 0.5 * v * (1 + t);
        double g = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * k * (1 + 3 * 0.044715 * v * v);
        worst_f = fmax(worst_f, fabs(y[i] - f));
        worst_b = fmax(worst_b, fabs(dx[i] - (0.25 + g * d[i])));
    }
    CHECK(worst_f < 2e-6, "gelu forward max abs error %g", worst_f);
    CHECK(worst_b < 2e-6, "gelu backward max abs error %g", worst_b);
    swiglu_forward(y, x, u, N);
    for (int i = 0; i < N; i++) dx[i] = 0.0f, du[i] = 1.0f;
    swiglu_backward(dx, du, x, u, d, N);
    worst_f = worst_b = 0;
    for (int i = 0; i < N; i++) {
        double g = x[i], s = 1 / (1 + exp(-g));
        worst_f = fmax(worst_f, fabs(y[i] - g * s * u[i]));
        worst_b = fmax(worst_b, fabs(dx[i] - d[i] * u[i] * s * (1 + g * (1 - s))));
        worst_b = fmax(worst_b, fabs(du[i] - (1.0 + d[i] * g * s)));
    }
    CHECK(worst_f < 1e-5, "swiglu forward max abs error %g", worst_f);
    CHECK(worst_b < 1e-5, "swiglu backward max abs error %g", worst_b);
    free(x), free(u), free(d), free(y), free(dx), free(du);
}

static void test_crossentropy(void) {
    enum { R = 5, V = 1003 };
    unsigned seed = 3;
    float *l = malloc(R * V * sizeof *l), *d1 = malloc(R * V * sizeof *d1), *d2 = malloc(R * V * sizeof *d2);
    float losses[R], lse[R];
    int32_t tg[R] = {0, 17, -1, V - 1, 500};
    for (int i = 0; i < R * V; i++) l[i] = frand(&seed, -30, 30);
    int count = 0;
    double mean = crossentropy_forward(losses, lse, l, tg, R, V, &count);
    CHECK(count == 4, "counted %d rows, want 4", count);
    double want_mean = 0;
    for (int r = 0; r < R; r++) {
        double mx = -INFINITY, s = 0;
        for (int j = 0; j < V; j++) mx = fmax(mx, l[r * V + j]);
        for (int j = 0; j < V; j++) s += exp(l[r * V + j] - mx);
        double lse_r = log(s) + mx;
        if (tg[r] < 0) {
            CHECK(losses[r] == 0.0f, "ignored row %d has loss %g", r, losses[r]);
            continue;
        }
        double loss = lse_r - l[r * V + tg[r]];
        want_mean += loss / 4;
        CHECK(fabs(losses[r] - loss) < 1e-4, "row %d loss %g vs %g", r, losses[r], loss);
        CHECK(fabs(lse[r] - lse_r) < 1e-4, "row %d lse %g vs %g", r, lse[r], lse_r);
        for (int j = 0; j < V; j++) {
            double want = exp(l[r * V + j] - lse_r) * 0.5 - (j == tg[r] ? 0.5 : 0.0);
            d1[r * V + j] = (float)want;
        }
    }
    CHECK(fabs(mean - want_mean) < 1e-4, "mean loss %g vs %g", mean, want_mean);
    crossentropy_backward(d2, l, lse, tg, R, V, 0.5f);
    double worst = 0;
    for (int r = 0; r < R; r++)
        for (int j = 0; j < V; j++) worst = fmax(worst, fabs(d2[r * V + j] - (tg[r] < 0 ? 0.0 : d1[r * V + j])));
    CHECK(worst < 1e-6, "backward with lse: max abs error %g", worst);
    /* without lse, in place (dlogits aliases logits) */
    crossentropy_backward(l, l, NULL, tg, R, V, 0.5f);
    worst = 0;
    for (int i = 0; i < R * V; i++) worst = fmax(worst, fabs(l[i] - d2[i]));
    CHECK(worst < 1e-6, "backward recomputing lse, in place: differs by %g", worst);
    free(l), free(d1), free(d2);
}

int main(void) {
    test_exp();
    test_activations();
    test_crossentropy();
    if (!failures) printf("test_vmath: all passed\n");
    return failures != 0;
}
