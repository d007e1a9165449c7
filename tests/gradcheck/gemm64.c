/* The model's matmul interface in double precision for the float64 gradient
 * check (this directory is compiled with float defined as double; see
 * CMakeLists.txt). Plain loops: exactness matters here, not speed. */
#include <math.h>
#include <stdlib.h>

#include "kernels/kernels.h"

void gemm_f32(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
              int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            long double s = 0;
            for (int k = 0; k < K; k++) {
                float a = transA ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                float b = transB ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += (long double)a * b;
            }
            float *c = &C[(size_t)i * ldc + j];
            *c = (float)(alpha * s + (beta != 0 ? beta * *c : 0));
        }
}

int dequantize_row(int dtype, const void *src, float *dst, int64_t n);

int matmul_forward(float *out, const float *inp, const void *W, int wtype, const float *bias, int M, int N, int K) {
    float *wf = NULL;
    if (wtype != DT_F32) { /* a frozen half-precision base weight (the LoRA check): widened, exactly */
        if (!(wf = malloc((size_t)N * K * sizeof(float)))) return ERR_NOMEM;
        for (int j = 0; j < N; j++)
            if (dequantize_row(wtype, (const uint16_t *)W + (size_t)j * K, wf + (size_t)j * K, K)) {
                free(wf);
                return ERR_UNSUPPORTED;
            }
        W = wf;
    }
    gemm_f32(0, 1, M, N, K, 1, inp, K, W, K, 0, out, N);
    free(wf);
    if (bias)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) out[(size_t)i * N + j] += bias[j];
    return 0;
}

void matmul_backward(float *dinp, float *dW, float *dbias, const float *dout, const float *inp, const float *W, int M,
                     int N, int K) {
    if (dinp) gemm_f32(0, 0, M, K, N, 1, dout, N, W, K, 1, dinp, K);
    if (dW) gemm_f32(1, 0, N, K, M, 1, dout, N, inp, K, 1, dW, K);
    if (dbias)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) dbias[j] += dout[(size_t)i * N + j];
}

/* IEEE half -> double (exact), for frozen F16 weights. */
static double half_to_double(uint16_t h) {
    int e = (h >> 10) & 31, f = h & 1023;
    double v = e == 0 ? ldexp(f, -24) : ldexp(1024 + f, e - 25);
    return (h & 0x8000) ? -v : v;
}

/* This build has no quantized kernels; F16 (the LoRA check's frozen base)
 * is widened exactly, other types are unsupported. */
int dequantize_row(int dtype, const void *src, float *dst, int64_t n) {
    if (dtype != DT_F16) return ERR_UNSUPPORTED;
    for (int64_t i = 0; i < n; i++) dst[i] = half_to_double(((const uint16_t *)src)[i]);
    return 0;
}

int matmul_quant_forward(float *out, const float *inp, const void *W, int wtype, int M, int N, int K) {
    (void)out; (void)inp; (void)W; (void)wtype; (void)M; (void)N; (void)K;
    return ERR_UNSUPPORTED;
}

/* The llama.cpp-numerics inference path never runs here: report every
 * quantized type as unmatched and the kernels as unavailable. */
#include "kernels/quant.h"

int quant_matches_llamacpp(int t) { (void)t; return 0; }
int quant_batch_dots_fast(int t) { (void)t; return 0; }
int quant_r16_dequantize_row(int wt, const void *w, int64_t row, int64_t K, float *out) {
    (void)wt; (void)w; (void)row; (void)K; (void)out;
    return ERR_UNSUPPORTED;
}
int lcpp_attention_ok(int D) { (void)D; return 0; }
int matmul_quant_forward_ex(float *out, const float *inp, const void *W, int wtype, int M, int N, int K, int flags) {
    (void)flags;
    return matmul_quant_forward(out, inp, W, wtype, M, N, K);
}
int matmul_quant_forward_multi(const float *inp, int wtype, int M, int K, const QMMPart *parts, int n_parts, int flags) {
    (void)inp; (void)wtype; (void)M; (void)K; (void)parts; (void)n_parts; (void)flags;
    return ERR_UNSUPPORTED;
}
void lcpp_rmsnorm(float *out, const float *x, const float *w, int N, int C, float eps) {
    (void)out; (void)x; (void)w; (void)N; (void)C; (void)eps;
}
void lcpp_rope(float *x, int T, int H, int D, int pos0, float base, int neox) {
    (void)x; (void)T; (void)H; (void)D; (void)pos0; (void)base; (void)neox;
}
void lcpp_swiglu(float *out, const float *g, const float *u, size_t n) { (void)out; (void)g; (void)u; (void)n; }
int lcpp_attention(float *out, const float *q, const float *kc, const float *vc, int T, int pos0, int Hq, int Hkv,
                   int D) {
    (void)out; (void)q; (void)kc; (void)vc; (void)T; (void)pos0; (void)Hq; (void)Hkv; (void)D;
    return ERR_UNSUPPORTED;
}
/* The half-precision KV cache is inference only: never used here (the
 * conversions are stubs; the cache's callers report the stub attention). */
void kv_store_f16(uint16_t *dst, const float *src, size_t n) {
    (void)src;
    for (size_t i = 0; i < n; i++) dst[i] = 0;
}
void kv_load_f16(float *dst, const uint16_t *src, size_t n) {
    (void)src;
    for (size_t i = 0; i < n; i++) dst[i] = 0;
}
int lcpp_attention_f16(float *out, const float *q, const uint16_t *kc, const uint16_t *vc, int T, int pos0, int Hq,
                       int Hkv, int D) {
    (void)out; (void)q; (void)kc; (void)vc; (void)T; (void)pos0; (void)Hq; (void)Hkv; (void)D;
    return ERR_UNSUPPORTED;
}

/* No bf16 in the float64 check: model_set_precision refuses bf16 here. */
int gemm_bf16_available(void) { return 0; }
const char *gemm_isa_name(void) { return "none (float64 check)"; }
int gemm_bf16_plan(GemmBf16 *g, int transA, int transB, int M, int N, int K, int lda, int ldb, int ldc, int accumulate,
                   Err *err) {
    (void)g, (void)transA, (void)transB, (void)M, (void)N, (void)K, (void)lda, (void)ldb, (void)ldc, (void)accumulate;
    (void)err;
    return ERR_UNSUPPORTED;
}
int gemm_bf16_run(const GemmBf16 *g, const uint16_t *A, const uint16_t *B, float *C) {
    (void)g, (void)A, (void)B, (void)C;
    return ERR_UNSUPPORTED;
}
int gemm_bf16_run_rows(const GemmBf16 *g, int rows, const uint16_t *A, const uint16_t *B, float *C) {
    (void)g, (void)rows, (void)A, (void)B, (void)C;
    return ERR_UNSUPPORTED;
}
void gemm_bf16_free(GemmBf16 *g) { (void)g; }
void convert_f32_to_bf16(uint16_t *dst, const float *src, size_t n) { (void)dst, (void)src, (void)n; }
