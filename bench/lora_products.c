/* The frozen products of a LoRA step on SmolLM2-135M shapes (bench/
 * finetune_vs_peft.sh: B=8 x T=256, so M = 2048 rows), timed apart from the
 * model: each layer's 7 products forward (x W^T) and backward (dy W), and
 * the tied 49152 x 576 head's, as one oneDNN GEMM over all threads
 * (gemm_f32) against one single-threaded GEMM per thread over its block of
 * rows (gemm_f32_rows, what LoRA training runs). Best wall time of REPS
 * (default 5) each, alternating, with GFLOP/s. Build and run (after
 * `cmake --build build --target jarip_lib`):
 *   gcc -O2 -march=native -fopenmp -Isrc bench/lora_products.c build/libjarip_lib.a -ldnnl -ljansson -lpcre2-8 \
 *       -lz -lm -o /tmp/lora_products && OMP_NUM_THREADS=2 /tmp/lora_products [REPS] [M]
 * On a loaded machine the wall times say little: run it quiet. */
#include "kernels/kernels.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const int reps = argc > 1 ? atoi(argv[1]) : 5, M = argc > 2 ? atoi(argv[2]) : 2048;
    /* (out, in) of q, k, v, o, gate, up, down and the head */
    static const int S[][2] = {{576, 576}, {192, 576}, {192, 576}, {576, 576}, {1536, 576}, {1536, 576}, {576, 1536},
                               {49152, 576}};
    const size_t big = (size_t)49152 * 1536;
    float *x = malloc((size_t)M * 49152 * 4), *W = malloc(big * 4), *y = malloc((size_t)M * 49152 * 4);
    if (!x || !W || !y) return 1;
    for (size_t i = 0; i < (size_t)M * 49152; i++) x[i] = (float)(i % 7) * 0.1f, y[i] = 0.0f;
    for (size_t i = 0; i < big; i++) W[i] = (float)(i % 5) * 0.01f;
    printf("M %d, %d threads, best of %d\n", M, omp_get_max_threads(), reps);
    double tot[2][2] = {{0}};
    for (int s = 0; s < 8; s++) {
        const int N = S[s][0], K = S[s][1];
        const double flops = 2.0 * M * N * K;
        for (int dir = 0; dir < 2; dir++) { /* 0: y (M,N) = x W^T; 1: dx (M,K) += dy (M,N) W */
            double best[2] = {1e9, 1e9};
            for (int r = 0; r < reps; r++)
                for (int v = 0; v < 2; v++) {
                    double t = now();
                    if (dir == 0 && v == 0) gemm_f32(0, 1, M, N, K, 1.0f, x, K, W, K, 0.0f, y, N);
                    if (dir == 0 && v == 1) gemm_f32_rows(1, M, N, K, 1.0f, x, K, W, K, 0.0f, y, N);
                    if (dir == 1 && v == 0) gemm_f32(0, 0, M, K, N, 1.0f, x, N, W, K, 1.0f, y, K);
                    if (dir == 1 && v == 1) gemm_f32_rows(0, M, K, N, 1.0f, x, N, W, K, 1.0f, y, K);
                    t = now() - t;
                    if (t < best[v]) best[v] = t;
                }
            const int layer = s < 7 ? 30 : 1; /* per step: 30 layers, one head */
            for (int v = 0; v < 2; v++) tot[dir][v] += best[v] * layer;
            printf("%-8s %5d x %5d: gemm_f32 %8.2f ms %5.0f GFLOP/s   gemm_f32_rows %8.2f ms %5.0f GFLOP/s\n",
                   dir ? "backward" : "forward", N, K, best[0] * 1e3, flops / best[0] * 1e-9, best[1] * 1e3,
                   flops / best[1] * 1e-9);
        }
    }
    printf("per step (30 layers + head): forward %.2f s vs %.2f s, backward %.2f s vs %.2f s\n", tot[0][0], tot[0][1],
           tot[1][0], tot[1][1]);
    free(x), free(W), free(y);
    return 0;
}
