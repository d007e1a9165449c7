/* The input gradient through a weight of any type: what fine-tuning needs
 * from a frozen (e.g. quantized) base weight. The weight stays in its own
 * type; tiles of its rows are dequantized into a small float buffer, each
 * tile one GEMM, so the whole matrix never exists in float. */
#include <omp.h>
#include <stdlib.h>

#include "kernels.h"
#include "quant.h"

/* Floats of one dequantized tile: 1 MiB (it stays in L2 while the GEMM
 * reads it). The float64 gradient check takes tiles of a few rows, so its
 * tiny matrices cross several tiles too. */
#ifdef JARIP_GRADCHECK64
#define TILE_FLOATS 40
#else
#define TILE_FLOATS (1 << 18)
#endif

/* Rows of a block below which one GEMM over all threads is kept: the
 * blocks' GEMMs each pack all of B, which pays only on enough rows. */
#define ROWS_MIN 256

void gemm_f32_rows(int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                   float beta, float *C, int ldc) {
    const int nt = omp_get_max_threads();
    if (nt < 2 || omp_in_parallel() || M < 2 * ROWS_MIN) {
        gemm_f32(0, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    const int parts = M / ROWS_MIN < nt ? M / ROWS_MIN : nt;
    /* oneDNN runs single-threaded inside a parallel region; the blocks
     * write disjoint rows of C */
#pragma omp parallel num_threads(parts)
    {
        const int p = omp_get_thread_num(), m0 = (int)((long)M * p / parts), m1 = (int)((long)M * (p + 1) / parts);
        gemm_f32(0, transB, m1 - m0, N, K, alpha, A + (size_t)m0 * lda, lda, B, ldb, beta, C + (size_t)m0 * ldc, ldc);
    }
}

int matmul_backward_input(float *dinp, const float *dout, const void *W, int wtype, int M, int N, int K) {
    if (wtype == DT_F32) {
        gemm_f32_rows(0, M, K, N, 1.0f, dout, N, (const float *)W, K, 1.0f, dinp, K);
        return 0;
    }
    const size_t rb = dtype_row_bytes(wtype, K);
    if (!rb) return ERR_UNSUPPORTED;
    int rows = TILE_FLOATS / K;
    if (rows < 1) rows = 1;
    if (rows > N) rows = N;
    float *tile = malloc((size_t)rows * K * sizeof(float)); /* (rows, K) */
    if (!tile) return ERR_NOMEM;
    int rc = 0;
    for (int j0 = 0; j0 < N && !rc; j0 += rows) {
        const int nr = rows < N - j0 ? rows : N - j0;
        int bad = 0;
#pragma omp parallel for reduction(| : bad)
        for (int j = 0; j < nr; j++)
            bad |= dequantize_row(wtype, (const char *)W + (size_t)(j0 + j) * rb, tile + (size_t)j * K, K) != 0;
        if (bad) rc = ERR_UNSUPPORTED;
        else gemm_f32(0, 0, M, K, nr, 1.0f, dout + j0, N, tile, K, 1.0f, dinp, K); /* dinp += dout[:, j0:j0+nr] tile */
    }
    free(tile);
    return rc;
}
