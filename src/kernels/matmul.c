/* The one matmul interface. f32 goes to oneDNN's sgemm (measured fastest
 * fp32 GEMM on this class of CPU, see README); other weight types go to the
 * quantized kernels in quant_*.c which work on blocks directly. */
#include "kernels.h"

#include <dnnl.h>
#include <omp.h>
#include <string.h>

void gemm_f32(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    dnnl_sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

#include "quant.h"

int matmul_forward(float *out, const float *inp, const void *W, int wtype, const float *bias, int M, int N,
                   int K) {
    if (wtype == DT_F32) {
        /* the bias goes in first and the GEMM accumulates onto it (beta 1):
         * one pass over out fewer than adding it afterwards */
        if (bias) {
#pragma omp parallel for
            for (int i = 0; i < M; i++) memcpy(out + (size_t)i * N, bias, (size_t)N * sizeof(float));
        }
        gemm_f32(0, 1, M, N, K, 1.0f, inp, K, (const float *)W, K, bias ? 1.0f : 0.0f, out, N);
        return 0;
    } else {
        int rc = matmul_quant_forward(out, inp, W, wtype, M, N, K);
        if (rc) return rc;
    }
    if (bias) {
#pragma omp parallel for
        for (int i = 0; i < M; i++) {
            float *o = out + (size_t)i * N;
            for (int j = 0; j < N; j++) o[j] += bias[j];
        }
    }
    return 0;
}

void matmul_backward(float *dinp, float *dW, float *dbias, const float *dout, const float *inp, const float *W,
                     int M, int N, int K) {
    /* With two threads, the two products run side by side, one thread
     * each (oneDNN runs single-threaded inside a parallel region): the same
     * flops, but no barrier inside either GEMM, so a thread the host
     * preempts delays only its own product. Measured on the gpt2-small
     * backward shapes (M 2048): 1.15x the two 2-thread GEMMs in turn. */
    if (dinp && dW && omp_get_max_threads() == 2 && !omp_in_parallel()) {
#pragma omp parallel num_threads(2)
        {
            if (omp_get_thread_num() == 0)
                gemm_f32(0, 0, M, K, N, 1.0f, dout, N, W, K, 1.0f, dinp, K);
            else
                gemm_f32(1, 0, N, K, M, 1.0f, dout, N, inp, K, 1.0f, dW, K);
        }
    } else {
        if (dinp) gemm_f32(0, 0, M, K, N, 1.0f, dout, N, W, K, 1.0f, dinp, K);
        if (dW) gemm_f32(1, 0, N, K, M, 1.0f, dout, N, inp, K, 1.0f, dW, K);
    }
    if (dbias) {
        /* column sums: parallel over column blocks, rows inner for locality */
#pragma omp parallel for
        for (int j0 = 0; j0 < N; j0 += 64) {
            int j1 = j0 + 64 < N ? j0 + 64 : N;
            float acc[64] = {0};
            for (int i = 0; i < M; i++) {
                const float *d = dout + (size_t)i * N;
                for (int j = j0; j < j1; j++) acc[j - j0] += d[j];
            }
            for (int j = j0; j < j1; j++) dbias[j] += acc[j - j0];
        }
    }
}

const char *gemm_isa_name(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
    }
}
