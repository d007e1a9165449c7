/* The bf16 GEMM (oneDNN matmul, float32 accumulation) against a float64
 * product of the same bf16-rounded operands, every transpose combination,
 * overwrite and accumulate, ragged shapes and leading dimensions wider than
 * the matrices, with fixed shapes and with the rows a run-time dimension; and the f32 -> bf16 conversion against the scalar rounding
 * of the GGUF code (round to nearest even). Skips the GEMM where oneDNN has
 * no native bf16 kernel (it would emulate: correct but not what we ship). */
#include <math.h>
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

static void test_convert(void) {
    const float special[] = {0.0f, -0.0f, 1.0f, 1.00390625f, 1.01171875f, 3.4e38f, -3.4e38f, 1e-40f, INFINITY, -INFINITY};
    /* past 4 blocks of 16 Ki (the threaded, 16-lane path) with a ragged end */
    enum { N = 5 * 16384 + 4096 + 10 };
    float *x = malloc(N * 4);
    uint16_t *y = malloc(N * 2);
    uint64_t s = 7;
    for (int i = 0; i < N; i++) x[i] = i < 10 ? special[i] : frand(&s) * powf(2.0f, (float)(i % 60 - 30));
    /* NaNs inside the vector lanes: quiet, signalling, negative, payloads at the rounding bit */
    const uint32_t nans[] = {0x7FC00000u, 0x7F800001u, 0xFFC00000u, 0x7F80FFFFu, 0x7FFF8000u, 0xFF800001u};
    for (int k = 0; k < 6; k++) memcpy(&x[20 + 7 * k], &nans[k], 4);
    for (int k = 0; k < 6; k++) memcpy(&x[N - 3 - k], &nans[k], 4); /* and in the scalar tail */
    for (int i = 70; i < 90; i++) x[i] = (float)(i - 80) * 1e-41f; /* subnormals, both signs */
    convert_f32_to_bf16(y, x, N);
    int bad = 0;
    for (int i = 0; i < N; i++) bad += y[i] != f32_to_bf16(x[i]);
    CHECK(bad == 0, "convert_f32_to_bf16: %d of %d values differ from f32_to_bf16", bad, N);
    x[0] = NAN;
    convert_f32_to_bf16(y, x, 1);
    CHECK(isnan(bf16_to_f32(y[0])), "NaN did not stay a NaN (0x%04x)", y[0]);
    free(x), free(y);
}

/* rows: plan with M (or, transposing A, K) as a run-time dimension
 * (GEMM_BF16_ROWS), as the MoE experts do, and run it at its value here. */
static void test_gemm(int tA, int tB, int M, int N, int K, int accumulate, int rows) {
    const int lda = (tA ? M : K) + 3, ldb = (tB ? K : N) + 5, ldc = N + 2;
    const int arows = tA ? K : M, brows = tB ? N : K;
    float *A = malloc((size_t)arows * lda * 4), *B = malloc((size_t)brows * ldb * 4), *C = malloc((size_t)M * ldc * 4);
    uint16_t *Ah = malloc((size_t)arows * lda * 2), *Bh = malloc((size_t)brows * ldb * 2);
    uint64_t s = 1234 + M * 7 + N * 13 + K;
    for (size_t i = 0; i < (size_t)arows * lda; i++) A[i] = frand(&s);
    for (size_t i = 0; i < (size_t)brows * ldb; i++) B[i] = frand(&s);
    for (size_t i = 0; i < (size_t)M * ldc; i++) C[i] = frand(&s);
    convert_f32_to_bf16(Ah, A, (size_t)arows * lda);
    convert_f32_to_bf16(Bh, B, (size_t)brows * ldb);
    float *C0 = malloc((size_t)M * ldc * 4);
    memcpy(C0, C, (size_t)M * ldc * 4);
    GemmBf16 g;
    Err err = {0};
    const int pM = rows && !tA ? GEMM_BF16_ROWS : M, pK = rows && tA ? GEMM_BF16_ROWS : K;
    int rc = gemm_bf16_plan(&g, tA, tB, pM, N, pK, lda, ldb, ldc, accumulate, &err);
    CHECK(rc == 0, "plan %d%d %dx%dx%d: %s", tA, tB, pM, N, pK, err.msg);
    if (rc) goto out;
    if (rows) {
        CHECK(gemm_bf16_run(&g, Ah, Bh, C) == ERR_INVALID, "a plan with run-time rows needs them");
        CHECK(gemm_bf16_run_rows(&g, tA ? K : M, Ah, Bh, C) == 0, "run with rows");
    } else {
        CHECK(gemm_bf16_run(&g, Ah, Bh, C) == 0, "run");
    }
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double ref = accumulate ? C0[(size_t)i * ldc + j] : 0, mag = fabs(ref);
            for (int k = 0; k < K; k++) {
                const double a = bf16_to_f32(Ah[tA ? (size_t)k * lda + i : (size_t)i * lda + k]);
                const double b = bf16_to_f32(Bh[tB ? (size_t)j * ldb + k : (size_t)k * ldb + j]);
                ref += a * b, mag += fabs(a * b);
            }
            const double e = fabs(C[(size_t)i * ldc + j] - ref) / (mag + 1e-30);
            if (e > worst) worst = e;
        }
    /* float32 accumulation of K exact products: relative to the sum of
     * magnitudes, a few K x 2^-24 at worst */
    CHECK(worst < 4e-7 * K, "bf16 GEMM %d%d %dx%dx%d acc %d rows %d: error %.3g of the magnitude", tA, tB, M, N, K,
          accumulate, rows, worst);
    int pad_bad = 0; /* columns between N and ldc are not written */
    for (int i = 0; i < M; i++)
        for (int j = N; j < ldc; j++) pad_bad += C[(size_t)i * ldc + j] != C0[(size_t)i * ldc + j];
    CHECK(pad_bad == 0, "bf16 GEMM wrote %d values outside the matrix", pad_bad);
    gemm_bf16_free(&g);
out:
    free(A), free(B), free(C), free(C0), free(Ah), free(Bh);
}

int main(void) {
    test_convert();
    if (!gemm_bf16_available()) {
        printf("test_gemm_bf16: GEMM skipped: no native bf16 on this CPU (oneDNN %s)\n", gemm_isa_name());
    } else {
        const int shapes[][3] = {{1, 1, 1}, {7, 13, 29}, {64, 48, 96}, {130, 70, 257}};
        for (int si = 0; si < 4; si++)
            for (int t = 0; t < 4; t++)
                for (int acc = 0; acc < 4; acc++)
                    test_gemm(t & 1, t >> 1, shapes[si][0], shapes[si][1], shapes[si][2], acc & 1, acc >> 1);
        printf("test_gemm_bf16: GEMM tested on oneDNN %s\n", gemm_isa_name());
    }
    /* the MFU reference: a rate where the bf16 units run, 0 where they do not */
    const double peak = gemm_bf16_peak_flops(1);
    CHECK(gemm_bf16_available() ? peak > 1e9 : peak == 0.0, "bf16 peak %.3g FLOP/s with native bf16 %d", peak,
          gemm_bf16_available());
    GemmBf16 g;
    Err err = {0};
    CHECK(gemm_bf16_plan(&g, 0, 0, 0, 4, 4, 4, 4, 4, 0, &err) == ERR_INVALID, "an empty shape is refused");
    CHECK(gemm_bf16_plan(&g, 0, 0, GEMM_BF16_ROWS, 4, GEMM_BF16_ROWS, 4, 4, 4, 0, &err) == ERR_INVALID,
          "two run-time dimensions are refused");
    if (!failures) printf("test_gemm_bf16: ok\n");
    return failures != 0;
}
