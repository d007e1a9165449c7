#!/usr/bin/env bash
# Quantized matmul kernels on SmolLM2-135M shapes (30 layers of q,k,v,o,
# gate,up,down at d=576, ff=1536, kv=192, plus the 49152-row output layer in
# q8_0 as the published Q4_1 file has it; K-quant rows of 576 fall back to
# q5_0/q5_1/q8_0 as in a real file): time of one token's worth of
# matvecs (M=1, the generation path) and of a 512-row batch (M=512, prompt
# processing) per weight type; weights GB/s and GFLOP/s.
# Usage: bench/quant_matmul.sh [threads...]   (default: 1 2)
#   MPP=N     prompt rows (default 512);  Q8ACT=1  force the Q8-activation
#             integer path for the prompt too (llama.cpp's numerics)
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"
[ -f "$BUILD/libjarip_lib.a" ] || { echo "build jarip_lib first (cd build && make jarip_lib)" >&2; exit 1; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
cat > "$TMP/qbench.c" <<'CEOF'
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
typedef struct { int N, K; } Shape;
static double thread_cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
/* Kernel cost per 32 weights on one thread, weights resident in L2, timed in
 * thread CPU time: robust to other processes on the machine. */
static void kernel_costs(void) {
    const int types[] = {DT_F16, DT_BF16, DT_Q8_0, DT_Q4_0, DT_Q4_1, DT_Q5_0, DT_Q5_1, DT_Q4_K, DT_Q5_K, DT_Q6_K};
    const int N = 128, K = 1536;
    float *x = malloc(K * 4), *w = malloc((size_t)N * K * 4), *out = malloc(N * 4);
    for (int i = 0; i < K; i++) x[i] = rng_normal(1, i);
    for (int i = 0; i < N * K; i++) w[i] = rng_normal(2, i);
    printf("kernel cost, 1 thread, weights in L2 (thread CPU time):\n");
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        const int ty = types[t];
        const size_t rb = dtype_row_bytes(ty, K);
        unsigned char *W = malloc(rb * N);
        for (int n = 0; n < N; n++) quantize_row(ty, w + (size_t)n * K, W + n * rb, K);
        double best = 1e9;
        for (int r = 0; r < 40; r++) {
            double t0 = thread_cpu();
            for (int it = 0; it < 5; it++) matmul_quant_forward(out, x, W, ty, 1, N, K);
            double dt = (thread_cpu() - t0) / 5;
            if (dt < best) best = dt;
        }
        printf("  %-5s %5.2f ns per 32 weights  %6.1f GB/s of weights\n", dtype_name(ty), best * 1e9 / (N * K / 32.0),
               rb * N / best / 1e9);
        free(W);
    }
    free(x), free(w), free(out);
}
/* as `jarip quantize` (and llama.cpp) do: rows that do not fit 256-blocks fall back */
static int fit(int t, int K) {
    if (K % dtype_block_size(t) == 0) return t;
    return t == DT_Q4_K ? DT_Q5_0 : t == DT_Q5_K ? DT_Q5_1 : t == DT_Q6_K ? DT_Q8_0 : DT_F16;
}
static const Shape L[] = {{576, 576}, {192, 576}, {192, 576}, {576, 576}, {1536, 576}, {1536, 576}, {576, 1536}};
int main(int argc, char **argv) {
    const int types[] = {DT_F16, DT_Q8_0, DT_Q4_0, DT_Q4_1, DT_Q5_0, DT_Q5_1, DT_Q4_K, DT_Q5_K, DT_Q6_K};
    const int layers = 30, Mpp = argc > 1 ? atoi(argv[1]) : 512, flags = argc > 2 ? atoi(argv[2]) : 0;
    if (omp_get_max_threads() == 1) kernel_costs();
    float *x = malloc((size_t)Mpp * 1536 * 4), *out = malloc((size_t)Mpp * 49152 * 4);
    for (size_t i = 0; i < (size_t)Mpp * 1536; i++) x[i] = rng_normal(1, i);
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        int ty = types[t];
        /* distinct weights per layer so they stream from memory, as in a model */
        void *W[30][7];
        size_t bytes = 0;
        float *tmp = malloc(1536 * 576 * 4);
        for (int i = 0; i < 1536 * 576; i++) tmp[i] = 0.05f * rng_normal(2, i);
        for (int l = 0; l < layers; l++)
            for (int j = 0; j < 7; j++) {
                const int tj = fit(ty, L[j].K);
                size_t rb = dtype_row_bytes(tj, L[j].K);
                W[l][j] = xalloc(rb * L[j].N, NULL);
                for (int n = 0; n < L[j].N; n++) quantize_row(tj, tmp + (size_t)n * L[j].K % (1536 * 576 - 1536), (char *)W[l][j] + n * rb, L[j].K);
                bytes += rb * L[j].N;
            }
        size_t orb = dtype_row_bytes(DT_Q8_0, 576);
        void *Wout = xalloc(orb * 49152, NULL);
        for (int n = 0; n < 49152; n++) quantize_row(DT_Q8_0, tmp + (n % 1000) * 576, (char *)Wout + n * orb, 576);
        double flops = 0;
        for (int j = 0; j < 7; j++) flops += 2.0 * L[j].N * L[j].K * layers;
        /* M = 1 */
        double best = 1e9;
        for (int rep = 0; rep < 15; rep++) {
            double t0 = time_now();
            for (int l = 0; l < layers; l++)
                for (int j = 0; j < 7; j++) if (matmul_quant_forward(out, x, W[l][j], fit(ty, L[j].K), 1, L[j].N, L[j].K)) return 1;
            matmul_quant_forward(out, x, Wout, DT_Q8_0, 1, 49152, 576);
            double dt = time_now() - t0;
            if (dt < best) best = dt;
        }
        double tb = (double)bytes + (double)orb * 49152;
        printf("%-5s threads %d  M=1: %7.3f ms/token  %6.1f GB/s  (=> %5.0f tok/s matmul-only)", dtype_name(ty),
               omp_get_max_threads(), best * 1e3, tb / best / 1e9, 1 / best);
        /* M = Mpp, layers only (llama-bench pp computes the output row for the last token only) */
        double bpp = 1e9;
        for (int rep = 0; rep < 2; rep++) {
            double t0 = time_now();
            for (int l = 0; l < layers; l++)
                for (int j = 0; j < 7; j++) if (matmul_quant_forward_ex(out, x, W[l][j], fit(ty, L[j].K), Mpp, L[j].N, L[j].K, flags)) return 1;
            double dt = time_now() - t0;
            if (dt < bpp) bpp = dt;
        }
        printf("   M=%d: %7.1f ms  %6.1f GFLOP/s (=> %5.0f tok/s matmul-only)\n", Mpp, bpp * 1e3, flops * Mpp / bpp / 1e9,
               Mpp / bpp);
        fflush(stdout);
        for (int l = 0; l < layers; l++)
            for (int j = 0; j < 7; j++) xfree(W[l][j]);
        xfree(Wout);
        free(tmp);
    }
    return 0;
}
CEOF
LIBS="$BUILD/libjarip_lib.a -fopenmp -ldnnl -ljansson -lpcre2-8 -lz -lm"
gcc -O2 -march=native -I"$ROOT/src" "$TMP/qbench.c" $LIBS -o "$TMP/qbench"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), load: $(cut -d' ' -f1-3 /proc/loadavg)"
for t in ${@:-1 2}; do
    OMP_NUM_THREADS=$t "$TMP/qbench" "${MPP:-512}" "${Q8ACT:-0}"
done
