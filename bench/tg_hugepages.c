/* Does generation gain from 2 MiB pages for the weights? The F16 matvec
 * (the library's kernel, matmul_quant_forward at M=1) over 270 MB of
 * SmolLM2-135M-sized F16 rows, the same bytes once in 4 KiB pages
 * (MADV_NOHUGEPAGE, as the weights are when used straight from the GGUF
 * mmap) and once in 2 MiB pages (MADV_HUGEPAGE anonymous memory, as a copy
 * of the weights in xalloc'd memory would be), alternating; best and mean
 * GB/s of weights. Build and run (after `make jarip_lib`):
 *   gcc -O2 -march=native -fopenmp -Isrc bench/tg_hugepages.c build/libjarip_lib.a -ldnnl -ljansson -lpcre2-8 \
 *       -lz -lm -o /tmp/tg_hugepages && for t in 1 2; do OMP_NUM_THREADS=$t /tmp/tg_hugepages 10; done */
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int main(int argc, char **argv) {
    const int K = 576, N = 4096, reps = argc > 1 ? atoi(argv[1]) : 10;
    const size_t mat = (size_t)N * K * 2, nmat = (size_t)270e6 / mat, bytes = (nmat * mat + (2u << 20)) & ~(size_t)((2u << 20) - 1);
    uint16_t *W[2];
    for (int v = 0; v < 2; v++) {
        W[v] = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (W[v] == MAP_FAILED) return perror("mmap"), 1;
        madvise(W[v], bytes, v ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
        for (size_t i = 0; i < nmat * mat / 2; i++) W[v][i] = (uint16_t)(0x3000 ^ (i & 0x3ff));
    }
    float x[576], *out = malloc((size_t)N * 4);
    for (int i = 0; i < K; i++) x[i] = rng_normal(1, (uint64_t)i);
    double best[2] = {1e9, 1e9}, sum[2] = {0, 0};
    for (int r = 0; r < reps; r++)
        for (int v = 0; v < 2; v++) {
            const double t0 = time_now();
            for (size_t m = 0; m < nmat; m++)
                matmul_quant_forward(out, x, (const char *)W[v] + m * mat, DT_F16, 1, N, K);
            const double dt = time_now() - t0;
            if (dt < best[v]) best[v] = dt;
            sum[v] += dt;
        }
    const double gb = (double)nmat * mat / 1e9;
    for (int v = 0; v < 2; v++)
        printf("threads %d  %s: best %5.2f GB/s  mean %5.2f GB/s\n", omp_get_max_threads(), v ? "2 MiB pages" : "4 KiB pages",
               gb / best[v], gb * reps / sum[v]);
    return 0;
}
