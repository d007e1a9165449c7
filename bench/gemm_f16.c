/* F16 prompt GEMM (src/kernels/gemm_f16.c) against dequantize + oneDNN
 * sgemm, the path it replaced, on SmolLM2-135M's layer shapes (and, with
 * `head`, the 49152 x 576 output projection). Build and run (after
 * `cmake --build build --target jarip_lib`):
 *   gcc -O2 -march=native -fopenmp -Isrc bench/gemm_f16.c build/libjarip_lib.a -ldnnl -ljansson -lpcre2-8 -lz -lm \
 *       -o /tmp/gemm_f16 && OMP_NUM_THREADS=1 /tmp/gemm_f16 [M] [head]
 * Times are the best of GF_REPS (default 5) repetitions, in thread CPU time
 * at one thread (robust to other load on the machine), wall time otherwise;
 * the old path's time includes its dequantization of the whole matrix (it
 * did it per 1 MiB panel). Also prints the measured fp32 FMA peak of one
 * core (CPU time) and the largest difference between the two results,
 * relative to the sum of |products|. */
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(omp_get_max_threads() == 1 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* 12 independent zmm FMA chains: the FMA units' throughput, flop/s. */
__attribute__((target("avx512f"))) static double peak(void) {
    __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    /* distinct starting values, or the compiler merges the identical chains */
#define S(i) _mm512_set1_ps((float)(i))
    __m512 c0 = S(1), c1 = S(2), c2 = S(3), c3 = S(4), c4 = S(5), c5 = S(6), c6 = S(7), c7 = S(8), c8 = S(9), c9 = S(10),
           c10 = S(11), c11 = S(12);
#undef S
    const long it = 20000000;
    double t = now();
    for (long i = 0; i < it; i++) {
#define F(x) x = _mm512_fmadd_ps(x, a, b);
        F(c0) F(c1) F(c2) F(c3) F(c4) F(c5) F(c6) F(c7) F(c8) F(c9) F(c10) F(c11)
#undef F
    }
    t = now() - t;
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                             _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)),
                                           _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11))));
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return it * 12 * 32.0 / t;
}

typedef struct { int N, K; } Shape;
static const Shape L[] = {{576, 576}, {192, 576}, {192, 576}, {576, 576}, {1536, 576}, {1536, 576}, {576, 1536}, {49152, 576}};

int main(int argc, char **argv) {
    const int M = argc > 1 ? atoi(argv[1]) : 512, ns = argc > 2 && !strcmp(argv[2], "head") ? 8 : 7;
    const int reps = getenv("GF_REPS") ? atoi(getenv("GF_REPS")) : 5;
    if (!gemm_f16_available()) return printf("no AVX-512: gemm_f16 does not run here\n"), 0;
    if (omp_get_max_threads() == 1) printf("fp32 FMA peak, one core: %.1f GFLOP/s\n", peak() / 1e9);
    float *x = malloc((size_t)M * 1536 * 4), *a = malloc((size_t)M * 49152 * 4), *b = malloc((size_t)M * 49152 * 4);
    for (size_t i = 0; i < (size_t)M * 1536; i++) x[i] = rng_normal(1, i);
    double ta = 0, tb = 0, fl = 0;
    for (int j = 0; j < ns; j++) {
        const int N = L[j].N, K = L[j].K;
        float *W = malloc((size_t)N * K * 4);
        uint16_t *H = malloc((size_t)N * K * 2);
        for (size_t i = 0; i < (size_t)N * K; i++) W[i] = 0.05f * rng_normal(7, i);
        quantize_row(DT_F16, W, H, (int64_t)N * K);
        double ba = 1e9, bb = 1e9;
        for (int r = 0; r < reps; r++) {
            double t = now();
            dequantize_row(DT_F16, H, W, (int64_t)N * K);
            gemm_f32(0, 1, M, N, K, 1.0f, x, K, W, K, 0.0f, a, N);
            t = now() - t;
            ba = t < ba ? t : ba;
            t = now();
            if (gemm_f16(b, x, H, M, N, K)) return printf("gemm_f16 failed\n"), 1;
            t = now() - t;
            bb = t < bb ? t : bb;
        }
        double worst = 0;
        for (int m = 0; m < M; m += 7)
            for (int n = 0; n < N; n += 13) {
                double s = 0;
                for (int k = 0; k < K; k++) s += fabs((double)W[(size_t)n * K + k] * x[(size_t)m * K + k]);
                const double e = fabs((double)a[(size_t)m * N + n] - b[(size_t)m * N + n]) / (s + 1e-30);
                worst = e > worst ? e : worst;
            }
        const double f = 2.0 * M * N * K;
        if (j < 7) fl += f, ta += ba, tb += bb;
        printf("M=%d N=%5d K=%4d: dequantize+sgemm %6.1f GFLOP/s, gemm_f16 %6.1f GFLOP/s (%.2fx), max diff %.1e\n", M, N,
               K, f / ba / 1e9, f / bb / 1e9, ba / bb, worst);
        free(W), free(H);
    }
    printf("one layer (7 matmuls), %d threads: dequantize+sgemm %.1f GFLOP/s, gemm_f16 %.1f GFLOP/s (%.2fx)\n",
           omp_get_max_threads(), fl / ta / 1e9, fl / tb / 1e9, ta / tb);
    free(x), free(a), free(b);
    return 0;
}
