/* The F16-weight GEMM (gemm_f16.c) bit for bit against its stated order:
 * every output one fused multiply-add chain over k = 0..K-1 from 0, computed
 * here with scalar fmaf. Ragged shapes cover the partial micro-tiles (M not
 * a multiple of 12, N not of 32), the 16 x 16 transposes' tails (K not a
 * multiple of 16) and several weight blocks per thread (large N); one and
 * two threads must agree, and the prompt matmul of an F16 weight
 * (matmul_quant_forward, M >= 16) must be this GEMM. Skips where the CPU
 * (or JARIP_ISA) has no AVX-512, saying so. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/core.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"

static void fill(float *x, uint16_t *w, int M, int N, int K, uint64_t seed) {
    for (size_t i = 0; i < (size_t)M * K; i++) x[i] = rng_normal(seed, i);
    for (size_t i = 0; w && i < (size_t)N * K; i++) w[i] = f32_to_fp16(0.1f * rng_normal(seed + 1, i));
}

/* Outputs that differ from the sequential fmaf chain. */
static int mismatches(const float *out, const float *x, const uint16_t *w, int M, int N, int K) {
    int bad = 0;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float acc = 0.0f;
            for (int k = 0; k < K; k++) acc = fmaf(x[(size_t)m * K + k], fp16_to_f32(w[(size_t)n * K + k]), acc);
            bad += memcmp(&acc, &out[(size_t)m * N + n], sizeof acc) != 0;
        }
    return bad;
}

static void test_shape(int M, int N, int K) {
    float *x = malloc((size_t)M * K * 4), *out = malloc((size_t)M * N * 4), *out2 = malloc((size_t)M * N * 4);
    uint16_t *w = malloc((size_t)N * K * 2);
    fill(x, w, M, N, K, 100 + (uint64_t)M * 31 + N * 7 + K);
    for (size_t i = 0; i < (size_t)M * N; i++) out[i] = NAN; /* every output must be written */
    const int nth = omp_get_max_threads();
    omp_set_num_threads(1);
    int rc = gemm_f16(out, x, w, M, N, K);
    CHECK(rc == 0, "gemm_f16 %dx%dx%d: rc %d", M, N, K, rc);
    int bad = mismatches(out, x, w, M, N, K);
    CHECK(bad == 0, "gemm_f16 %dx%dx%d, 1 thread: %d of %d outputs differ from the fmaf chain", M, N, K, bad, M * N);
    omp_set_num_threads(2);
    rc = gemm_f16(out2, x, w, M, N, K);
    CHECK(rc == 0 && !memcmp(out, out2, (size_t)M * N * 4), "gemm_f16 %dx%dx%d: 2 threads differ from 1", M, N, K);
    omp_set_num_threads(nth);
    free(x), free(out), free(out2), free(w);
}

/* The prompt path of an F16 weight goes through gemm_f16 (same bits), and
 * its rows do not depend on the batch: row m of a 40-row product equals the
 * same row in a 17-row one. */
static void test_dispatch(void) {
    enum { M = 40, N = 70, K = 96 };
    float *x = malloc(M * K * 4), *a = malloc(M * N * 4), *b = malloc(M * N * 4);
    uint16_t *w = malloc(N * K * 2);
    fill(x, w, M, N, K, 9);
    int rc = matmul_quant_forward(a, x, w, DT_F16, M, N, K);
    CHECK(rc == 0, "matmul_quant_forward F16: rc %d", rc);
    CHECK(mismatches(a, x, w, M, N, K) == 0, "matmul_quant_forward F16 (M=%d) is not gemm_f16's order", M);
    rc = matmul_quant_forward(b, x + 20 * K, w, DT_F16, 17, N, K);
    CHECK(rc == 0 && !memcmp(a + 20 * N, b, 17 * N * 4), "F16 prompt rows depend on the batch they are in");
    free(x), free(a), free(b), free(w);
}

/* Several F16 matrices against one x (q, k, v: x packed once,
 * matmul_quant_forward_multi's prompt path): each part the fmaf chain, at
 * one and two threads, an empty part included. */
static void test_parts(void) {
    enum { M = 29, K = 80 };
    const int Ns[4] = {70, 33, 0, 64};
    float *x = malloc(M * K * 4), *o[4];
    uint16_t *w[4];
    QMMPart parts[4];
    fill(x, NULL, M, 0, K, 5);
    for (int i = 0; i < 4; i++) {
        w[i] = malloc((size_t)(Ns[i] + 1) * K * 2), o[i] = malloc((size_t)M * (Ns[i] + 1) * 4);
        fill(x, w[i], 0, Ns[i], K, 20 + i);
        parts[i] = (QMMPart){o[i], w[i], Ns[i]};
    }
    const int nth = omp_get_max_threads();
    for (int t = 1; t <= 2; t++) {
        omp_set_num_threads(t);
        for (int i = 0; i < 4; i++)
            for (size_t j = 0; j < (size_t)M * Ns[i]; j++) o[i][j] = NAN;
        CHECK(matmul_quant_forward_multi(x, DT_F16, M, K, parts, 4, 0) == 0, "multi F16");
        int bad = 0;
        for (int i = 0; i < 4; i++) bad += mismatches(o[i], x, w[i], M, Ns[i], K);
        CHECK(bad == 0, "F16 parts, %d threads: %d outputs differ from the fmaf chain", t, bad);
    }
    omp_set_num_threads(nth);
    for (int i = 0; i < 4; i++) free(w[i]), free(o[i]);
    free(x);
}

int main(void) {
    if (!gemm_f16_available()) {
        printf("SKIP gemm_f16: no AVX-512 on this CPU (or JARIP_ISA caps it); the dequantize + sgemm path runs\n");
        return 0;
    }
    const int shapes[][3] = {{1, 1, 1}, {12, 32, 16}, {13, 33, 17}, {25, 70, 48}, {7, 5, 576},
                             {16, 200, 31}, {37, 1000, 64}, {64, 576, 40}, {3, 200, 1536}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) test_shape(shapes[i][0], shapes[i][1], shapes[i][2]);
    test_dispatch();
    test_parts();
    CHECK(gemm_f16(NULL, NULL, NULL, 0, 5, 5) == 0, "an empty product must be a no-op");
    printf("gemm_f16: avx512 path checked, %d failures\n", failures);
    return failures != 0;
}
