/* The frozen weights' products of LoRA training (matmul_frozen.c) against a
 * float64 product of the same operands: gemm_f32_rows, whose rows are cut
 * into one single-threaded GEMM per thread (1, 2 and 3 threads; a row count
 * that does not divide; a leading dimension wider than the matrix; both
 * transposes of B; overwrite and accumulate), and matmul_backward_input for
 * a float32 weight and for a Q8_0 weight (its rows dequantized a tile at a
 * time) with row counts on both sides of the block threshold. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/core.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*s >> 40) / (double)(1 << 24)) * 2.0f - 1.0f;
}

/* C (M,N) = alpha A (M,K) op(B) + beta C in float64; B (N,K) when tB, else (K,N) */
static void ref(int tB, int M, int N, int K, double alpha, const float *A, int lda, const float *B, int ldb,
                double beta, double *C, const float *C0, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) acc += (double)A[(size_t)i * lda + k] * (tB ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
            C[(size_t)i * N + j] = alpha * acc + beta * C0[(size_t)i * ldc + j];
        }
}

/* worst |got - want| / max |want| over the (M,N) block of got (leading dimension ldc) */
static double rel_err(const float *got, int ldc, const double *want, int M, int N) {
    double worst = 0.0, scale = 1e-30;
    for (size_t i = 0; i < (size_t)M * N; i++) scale = fmax(scale, fabs(want[i]));
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) worst = fmax(worst, fabs(got[(size_t)i * ldc + j] - want[(size_t)i * N + j]));
    return worst / scale;
}

static void test_rows(int threads, int tB, int M, int N, int K, float beta) {
    const int lda = K + 3, ldb = (tB ? K : N) + 1, ldc = N + 2, brows = tB ? N : K;
    float *A = malloc((size_t)M * lda * 4), *B = malloc((size_t)brows * ldb * 4), *C = malloc((size_t)M * ldc * 4);
    float *C0 = malloc((size_t)M * ldc * 4);
    double *want = malloc((size_t)M * N * 8);
    uint64_t s = 11 + (uint64_t)M * 7 + (uint64_t)tB;
    for (size_t i = 0; i < (size_t)M * lda; i++) A[i] = frand(&s);
    for (size_t i = 0; i < (size_t)brows * ldb; i++) B[i] = frand(&s);
    for (size_t i = 0; i < (size_t)M * ldc; i++) C0[i] = C[i] = frand(&s);
    ref(tB, M, N, K, 0.5, A, lda, B, ldb, beta, want, C0, ldc);
    omp_set_num_threads(threads);
    gemm_f32_rows(tB, M, N, K, 0.5f, A, lda, B, ldb, beta, C, ldc);
    double e = rel_err(C, ldc, want, M, N);
    CHECK(e < 1e-5, "gemm_f32_rows threads %d tB %d M %d N %d K %d beta %g: relative error %.3g", threads, tB, M, N, K,
          beta, e);
    /* the padding between rows stays untouched */
    int pad = 0;
    for (int i = 0; i < M; i++) pad += C[(size_t)i * ldc + N] != C0[(size_t)i * ldc + N];
    CHECK(pad == 0, "gemm_f32_rows threads %d M %d: %d padding elements written", threads, M, pad);
    free(A), free(B), free(C), free(C0), free(want);
}

static void test_backward_input(int threads, int wtype, int M, int N, int K) {
    const size_t rb = dtype_row_bytes(wtype, K);
    float *W = malloc((size_t)N * K * 4), *Wd = malloc((size_t)N * K * 4), *dy = malloc((size_t)M * N * 4);
    float *dx = malloc((size_t)M * K * 4), *dx0 = malloc((size_t)M * K * 4);
    char *Wq = malloc(rb * N);
    double *want = malloc((size_t)M * K * 8);
    uint64_t s = 5 + (uint64_t)M;
    for (size_t i = 0; i < (size_t)N * K; i++) W[i] = frand(&s);
    for (size_t i = 0; i < (size_t)M * N; i++) dy[i] = frand(&s);
    for (size_t i = 0; i < (size_t)M * K; i++) dx0[i] = dx[i] = frand(&s);
    const void *Wt = W;
    if (wtype != DT_F32) { /* the reference takes the weight as the kernel sees it: dequantized */
        for (int n = 0; n < N; n++) {
            quantize_row(wtype, W + (size_t)n * K, Wq + (size_t)n * rb, K);
            dequantize_row(wtype, Wq + (size_t)n * rb, Wd + (size_t)n * K, K);
        }
        Wt = Wq;
    } else {
        memcpy(Wd, W, (size_t)N * K * 4);
    }
    ref(0, M, K, N, 1.0, dy, N, Wd, K, 1.0, want, dx0, K);
    omp_set_num_threads(threads);
    int rc = matmul_backward_input(dx, dy, Wt, wtype, M, N, K);
    CHECK(rc == 0, "matmul_backward_input %s: rc %d", dtype_name(wtype), rc);
    double e = rel_err(dx, K, want, M, K);
    CHECK(e < 1e-5, "matmul_backward_input %s threads %d M %d N %d K %d: relative error %.3g", dtype_name(wtype),
          threads, M, N, K, e);
    free(W), free(Wd), free(dy), free(dx), free(dx0), free(Wq), free(want);
}

int main(void) {
    for (int t = 1; t <= 3; t++) {
        test_rows(t, 1, 1001, 40, 33, 0.0f);
        test_rows(t, 0, 1001, 40, 33, 1.0f);
        test_rows(t, 1, 600, 17, 64, 1.0f);
        test_rows(t, 0, 100, 9, 20, 0.0f); /* too few rows to cut */
        test_backward_input(t, DT_F32, 777, 48, 64);
        test_backward_input(t, DT_F32, 30, 48, 64);
        test_backward_input(t, DT_Q8_0, 520, 40, 64);
    }
    if (failures) printf("%d checks failed\n", failures);
    else printf("matmul_frozen: all checks passed\n");
    return failures != 0;
}
