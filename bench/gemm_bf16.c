/* float32 vs bfloat16 GEMM throughput through the engine's two GEMMs
 * (gemm_f32: oneDNN sgemm; gemm_bf16: oneDNN matmul with bf16 inputs and
 * float32 accumulation) on GPT-2 small's training shapes (B*T = 2048 rows),
 * alternating, best of REPS. Build and run (after `make jarip_lib`):
 *   gcc -O2 -march=native -fopenmp -Isrc bench/gemm_bf16.c build/libjarip_lib.a -ldnnl -ljansson -lpcre2-8 -lz -lm \
 *       -o /tmp/gemm_bf16 && for t in 1 2; do OMP_NUM_THREADS=$t /tmp/gemm_bf16; done */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/kernels.h"

typedef struct { int M, N, K; const char *what; } Shape;
static const Shape S[] = {{2048, 2304, 768, "qkv"}, {2048, 768, 768, "attn out"}, {2048, 3072, 768, "fc"},
                          {2048, 768, 3072, "proj"}, {2048, 50304, 768, "lm head"}};

int main(void) {
    const int reps = getenv("REPS") ? atoi(getenv("REPS")) : 5;
    double f32_total = 0, bf16_total = 0, flops_total = 0;
    printf("threads %d, oneDNN %s, native bf16: %s\n", omp_get_max_threads(), gemm_isa_name(),
           gemm_bf16_available() ? "yes" : "no (emulated)");
    for (size_t s = 0; s < sizeof S / sizeof S[0]; s++) {
        const int M = S[s].M, N = S[s].N, K = S[s].K;
        float *A = malloc((size_t)M * K * 4), *B = malloc((size_t)N * K * 4), *C = malloc((size_t)M * N * 4);
        uint16_t *Ah = malloc((size_t)M * K * 2), *Bh = malloc((size_t)N * K * 2);
        for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)(i % 17) * 0.01f;
        for (size_t i = 0; i < (size_t)N * K; i++) B[i] = (float)(i % 13) * 0.01f;
        convert_f32_to_bf16(Ah, A, (size_t)M * K);
        convert_f32_to_bf16(Bh, B, (size_t)N * K);
        GemmBf16 g;
        Err err = {0};
        if (gemm_bf16_plan(&g, 0, 1, M, N, K, K, K, N, 0, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
        double bf = 1e9, bb = 1e9;
        for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
            double t0 = omp_get_wtime();
            gemm_f32(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
            double t1 = omp_get_wtime();
            gemm_bf16_run(&g, Ah, Bh, C);
            double t2 = omp_get_wtime();
            if (r >= 0 && t1 - t0 < bf) bf = t1 - t0;
            if (r >= 0 && t2 - t1 < bb) bb = t2 - t1;
        }
        const double fl = 2.0 * M * N * K;
        printf("%-9s %5dx%5dx%5d  f32 %7.1f GFLOP/s  bf16 %7.1f GFLOP/s  bf16/f32 %.2f\n", S[s].what, M, N, K, fl / bf / 1e9,
               fl / bb / 1e9, bf / bb);
        f32_total += bf, bf16_total += bb, flops_total += fl;
        gemm_bf16_free(&g);
        free(A), free(B), free(C), free(Ah), free(Bh);
    }
    printf("all       f32 %.1f GFLOP/s  bf16 %.1f GFLOP/s  bf16/f32 %.2f\n", flops_total / f32_total / 1e9,
           flops_total / bf16_total / 1e9, f32_total / bf16_total);
    return 0;
}
