/* Hot paths of GGUF inference on SmolLM2-135M shapes, timed apart from the
 * model. Build and run (after `make jarip_lib`):
 *   gcc -O2 -march=native -fopenmp -Isrc bench/qmm_hot.c build/libjarip_lib.a -ldnnl -ljansson -lpcre2-8 -lz -lm \
 *       -o /tmp/qmm_hot && for t in 1 2; do OMP_NUM_THREADS=$t /tmp/qmm_hot [pp|tg|all]; done
 *  pp   prompt processing with llama.cpp's numerics: M=512 rows of Q8
 *       activations through the 7 matmuls of a layer (integer dot path,
 *       QMM_Q8_ACTIVATIONS), per weight type in QMM_PP_TYPES (default
 *       "q8_0 q4_1"; QMM_M sets M); thread CPU time of one thread
 *       (robust to other load on the machine), scaled to 30 layers;
 *  tg   one token's matvecs (30 layers + the tied 49152x576 head) of each
 *       type in QMM_TG_TYPES (default "f16"; e.g. "q8_0 q4_1"; "q4_0_r16":
 *       Q4_0 repacked at load, quant_r16.c), best wall time (thread CPU
 *       time at one thread), with the weights' bytes/s;
 *  bw   a read-only stream over as many bytes, the bandwidth ceiling for tg.
 * Timings are the best of QMM_REPS repetitions (default 3) for pp, 10 for tg. */
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <immintrin.h>

static double now(int cpu) {
    struct timespec t;
    clock_gettime(cpu ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
typedef struct { int N, K; } Shape;
static const Shape L[] = {{576, 576}, {192, 576}, {192, 576}, {576, 576}, {1536, 576}, {1536, 576}, {576, 1536}};

/* N x K weights of type ty, at dst (NULL: a new allocation). */
static void *make_at(int ty, int N, int K, unsigned seed, void *dst) {
    const int qt = ty == DT_Q4_0_R16 ? DT_Q4_0 : ty; /* quantized as Q4_0, then repacked */
    const size_t rb = dtype_row_bytes(qt, K);
    unsigned char *W = dst ? dst : xalloc(rb * N, NULL);
    float *row = malloc((size_t)K * 4);
    for (int n = 0; n < N; n++) {
        for (int k = 0; k < K; k++) row[k] = 0.05f * rng_normal(seed, (uint64_t)n * K + k);
        quantize_row(qt, row, W + n * rb, K);
    }
    free(row);
    if (ty == DT_Q4_0_R16) quant_repack_q4_0_r16(W, N, K);
    return W;
}

static void *make(int ty, int N, int K, unsigned seed) { return make_at(ty, N, K, seed, NULL); }

static int type_from_name(const char *t) { return !strcmp(t, "q4_0_r16") ? DT_Q4_0_R16 : dtype_from_name(t); }

static void pp(int ty, int M, int reps) {
    void *W[7];
    double macs = 0;
    for (int j = 0; j < 7; j++) W[j] = make(ty, L[j].N, L[j].K, 10 + j), macs += (double)L[j].N * L[j].K;
    float *x = malloc((size_t)M * 1536 * 4), *out = malloc((size_t)M * 1536 * 4);
    for (size_t i = 0; i < (size_t)M * 1536; i++) x[i] = rng_normal(1, i);
    double best = 1e9;
    for (int r = 0; r < reps; r++) {
        double t0 = now(omp_get_max_threads() == 1);
        for (int j = 0; j < 7; j++) matmul_quant_forward_ex(out, x, W[j], ty, M, L[j].N, L[j].K, QMM_Q8_ACTIVATIONS);
        double dt = now(omp_get_max_threads() == 1) - t0;
        if (dt < best) best = dt;
    }
    printf("pp %-5s threads %d M=%d: %7.2f ms/layer  %6.1f GMAC/s  (=> %5.0f tok/s for 30 layers, matmuls only)\n",
           dtype_name(ty), omp_get_max_threads(), M, best * 1e3, macs * M / best / 1e9, M / (30 * best));
    for (int j = 0; j < 7; j++) xfree(W[j]);
    free(x), free(out);
}

/* The weights in one allocation, as inference copies them (2 MiB pages:
 * separate allocations of a few hundred KiB got 4 KiB pages, which cost
 * the repacked Q4_0 matvec 40% of its speed). */
static void tg(int ty, int reps) {
    const int layers = 30;
    void *W[30][7];
    size_t bytes = 0;
    for (int l = 0; l < layers; l++)
        for (int j = 0; j < 7; j++) bytes += dtype_row_bytes(ty, L[j].K) * L[j].N;
    bytes += dtype_row_bytes(ty, 576) * 49152;
    unsigned char *arena = xalloc(bytes, NULL), *at = arena;
    for (int l = 0; l < layers; l++)
        for (int j = 0; j < 7; j++) W[l][j] = make_at(ty, L[j].N, L[j].K, 100 + j + l, at), at += dtype_row_bytes(ty, L[j].K) * L[j].N;
    void *H = make_at(ty, 49152, 576, 7, at);
    float *x = malloc(1536 * 4), *out = malloc(49152 * 4);
    for (int i = 0; i < 1536; i++) x[i] = rng_normal(1, i);
    double best = 1e9;
    for (int r = 0; r < reps; r++) {
        double t0 = now(omp_get_max_threads() == 1);
        for (int l = 0; l < layers; l++)
            for (int j = 0; j < 7; j++) matmul_quant_forward_ex(out, x, W[l][j], ty, 1, L[j].N, L[j].K, QMM_Q8_ACTIVATIONS);
        matmul_quant_forward_ex(out, x, H, ty, 1, 49152, 576, QMM_Q8_ACTIVATIONS);
        double dt = now(omp_get_max_threads() == 1) - t0;
        if (dt < best) best = dt;
    }
    printf("tg %-5s threads %d: %7.3f ms/token  %6.2f GB/s of weights  (=> %5.1f tok/s matmuls only)\n",
           dtype_name(ty), omp_get_max_threads(), best * 1e3, bytes / best / 1e9, 1 / best);
    /* bandwidth ceiling: the same bytes read once, 8 accumulators */
    const size_t n = bytes / 32;
    __attribute__((aligned(64))) float dummy[8] = {0};
    float *buf = xalloc(n * 32, NULL);
    memset(buf, 1, n * 32);
    double bb = 1e9;
    for (int r = 0; r < reps; r++) {
        double t0 = now(0);
        float s = 0;
#pragma omp parallel reduction(+ : s)
        {
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
#pragma omp for schedule(static)
            for (size_t i = 0; i < n / 4; i++) {
                const float *p = buf + i * 32;
                a0 = _mm256_add_ps(a0, _mm256_load_ps(p)), a1 = _mm256_add_ps(a1, _mm256_load_ps(p + 8));
                a2 = _mm256_add_ps(a2, _mm256_load_ps(p + 16)), a3 = _mm256_add_ps(a3, _mm256_load_ps(p + 24));
            }
            float t[8];
            _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
            s += t[0] + t[7];
        }
        dummy[0] += s;
        double dt = now(0) - t0;
        if (dt < bb) bb = dt;
    }
    printf("bw       threads %d: %7.3f ms per %.0f MB  %6.2f GB/s read  (%.0g)\n", omp_get_max_threads(), bb * 1e3,
           bytes / 1e6, bytes / bb / 1e9, dummy[0]);
    xfree(buf);
    xfree(arena), free(x), free(out);
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "all";
    if (!strcmp(what, "pp") || !strcmp(what, "all")) {
        const int reps = getenv("QMM_REPS") ? atoi(getenv("QMM_REPS")) : 3;
        const int M = getenv("QMM_M") ? atoi(getenv("QMM_M")) : 512;
        char buf[256];
        snprintf(buf, sizeof buf, "%s", getenv("QMM_PP_TYPES") ? getenv("QMM_PP_TYPES") : "q8_0 q4_1");
        for (char *t = strtok(buf, " ,"); t; t = strtok(NULL, " ,")) pp(type_from_name(t), M, reps);
    }
    if (!strcmp(what, "tg") || !strcmp(what, "all")) {
        const char *types = getenv("QMM_TG_TYPES") ? getenv("QMM_TG_TYPES") : "f16";
        char buf[256];
        snprintf(buf, sizeof buf, "%s", types);
        for (char *t = strtok(buf, " ,"); t; t = strtok(NULL, " ,")) tg(type_from_name(t), 10);
    }
    return 0;
}
