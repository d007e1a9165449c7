/* kernels: the numeric building blocks. Each layer is a forward/backward
 * pair over plain float arrays; shapes are in the comment above each one.
 * Row-major throughout; "(B,T,C)" means B*T rows of C floats. Backward
 * functions ACCUMULATE (+=) into parameter gradients and, unless a comment
 * says otherwise, into input gradients, so residual branches just add.
 * Parallelism is OpenMP inside each kernel; callers set the thread count. */
#ifndef JARIP_KERNELS_H
#define JARIP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* Tensor element types. Values are GGML's type ids so GGUF files map 1:1. */
typedef enum {
    DT_F32 = 0, DT_F16 = 1, DT_Q4_0 = 2, DT_Q4_1 = 3, DT_Q5_0 = 6, DT_Q5_1 = 7,
    DT_Q8_0 = 8, DT_Q8_1 = 9, DT_Q2_K = 10, DT_Q3_K = 11, DT_Q4_K = 12, DT_Q5_K = 13,
    DT_Q6_K = 14, DT_Q8_K = 15, DT_BF16 = 30, DT_COUNT = 40,
    /* In memory only, never in a file (beyond DT_COUNT, so a GGUF reader
     * refuses it and a writer too): Q4_0, Q8_0 and Q5_0 rows repacked 16
     * at a time for the VNNI kernels (quant_r16.c, quant_repack_*_r16). */
    DT_Q4_0_R16 = 64,
    DT_Q8_0_R16 = 65,
    DT_Q5_0_R16 = 66
} DType;

const char *dtype_name(int dtype);           /* "f32", "q4_1", ... or NULL */
int dtype_from_name(const char *name);       /* -1 if unknown */
int dtype_block_size(int dtype);             /* elements per block (1 for floats); 0 if unknown */
size_t dtype_block_bytes(int dtype);         /* bytes per block; 0 if unknown */
/* Bytes of a row of n elements; 0 when n is not a multiple of the block. */
size_t dtype_row_bytes(int dtype, int64_t n);

/* ---- instruction sets ----------------------------------------------------
 * Kernels are chosen at run time: the widest set this CPU has (ISA_AVX512:
 * AVX-512 F/BW/VL + VNNI, with AVX2/FMA/F16C; ISA_AVX2: AVX2/FMA/F16C),
 * capped by the environment variable JARIP_ISA=scalar|avx2|avx512, so one
 * machine can run and measure the narrower paths too. Every path gives the
 * same bits where the code says so (the llama.cpp-exact quantized dots). */
enum { ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };
int kernel_isa(void);                 /* the set in use */
int kernel_isa_cap(void);             /* JARIP_ISA's cap (ISA_AVX512 when unset), -1 when unrecognised */
const char *kernel_isa_name(int isa); /* "scalar" | "avx2" | "avx512" */
/* The instruction set oneDNN's GEMMs run ("avx512_core_bf16", ...; its
 * ONEDNN_MAX_CPU_ISA environment variable caps it as JARIP_ISA caps ours). */
const char *gemm_isa_name(void);

/* ---- matmul: the one interface every linear layer goes through ---------- */
/* out (M,N) = inp (M,K) · W(N,K)^T + bias(N). W has dtype wtype (f32 through
 * oneDNN; other types through the quantized kernels). bias may be NULL.
 * Returns 0, or ERR_UNSUPPORTED when no kernel handles wtype. */
int matmul_forward(float *out, const float *inp, const void *W, int wtype, const float *bias,
                   int M, int N, int K);
/* dinp (M,K) += dout (M,N) · W (N,K); dW (N,K) += dout^T · inp;
 * dbias (N) += column sums of dout. Any of dinp/dW/dbias may be NULL. f32 W only. */
void matmul_backward(float *dinp, float *dW, float *dbias, const float *dout, const float *inp,
                     const float *W, int M, int N, int K);
/* dinp (M,K) += dout (M,N) · W (N,K) for W of any type with a dequantizer
 * (the input gradient through a frozen weight): f32 is one GEMM, other
 * types are dequantized a tile of rows at a time into a small buffer (never
 * the whole matrix). Returns 0, ERR_NOMEM or ERR_UNSUPPORTED. */
int matmul_backward_input(float *dinp, const float *dout, const void *W, int wtype, int M, int N, int K);
/* gemm_f32 with op(A) not transposed, its rows (and C's) cut into one
 * contiguous block per thread, each block one single-threaded GEMM: no
 * barrier inside the product, one at its end (matmul_frozen.c). Falls back
 * to gemm_f32 on one thread, inside a parallel region, or when the blocks
 * would be short. */
void gemm_f32_rows(int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                   float beta, float *C, int ldc);
/* Plain row-major GEMM, C (M,N) = alpha·op(A)·op(B) + beta·C. */
void gemm_f32(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);
/* F16-weight GEMM (gemm_f16.c): out (M,N) = x (M,K) · W(N,K)^T, W IEEE
 * halves (row stride K), float32 arithmetic; each output one multiply-add
 * chain over k in order (the same bits at any M, N or thread count).
 * Returns 0, ERR_NOMEM, or ERR_UNSUPPORTED where gemm_f16_available() is 0
 * (the CPU, or JARIP_ISA, lacks AVX-512). */
int gemm_f16(float *out, const float *x, const uint16_t *W, int M, int N, int K);
int gemm_f16_available(void);
/* log softmax(x)[i] of a row of n logits (expsum.c): vectorised exp (relative
 * error < 2e-7 per term) summed in double, as llama.cpp's log_softmax; n >= 1. */
double log_softmax_at(const float *x, int n, int i);

/* ---- bfloat16 GEMM (mixed precision) -------------------------------------
 * C (M,N) float32 = op(A) (M,K) . op(B) (K,N) [+ C], A and B bfloat16 with
 * row strides lda/ldb (op = transpose when trans*), float32 accumulation,
 * through oneDNN's matmul (AVX512-BF16 or AMX-BF16 kernels). Planned once per
 * shape (the JIT costs milliseconds), run many times. */
typedef struct {
    void *engine, *stream, *prim; /* oneDNN handles */
    int M, N, K;                  /* GEMM_BF16_ROWS: given at each run */
    int transA, transB, lda, ldb, ldc;
} GemmBf16;
/* A value of M or K (not both) for a dimension that changes from run to run
 * (a mixture-of-experts' rows per expert): one plan serves every value,
 * passed to gemm_bf16_run_rows. */
#define GEMM_BF16_ROWS (-1)
/* accumulate: C += product (else C = product). ERR_UNSUPPORTED when oneDNN
 * has no implementation on this CPU. */
int gemm_bf16_plan(GemmBf16 *g, int transA, int transB, int M, int N, int K, int lda, int ldb, int ldc,
                   int accumulate, Err *err);
int gemm_bf16_run(const GemmBf16 *g, const uint16_t *A, const uint16_t *B, float *C);
/* The same for a plan with a GEMM_BF16_ROWS dimension, which is rows (> 0)
 * in this run; the strides stay the planned ones. */
int gemm_bf16_run_rows(const GemmBf16 *g, int rows, const uint16_t *A, const uint16_t *B, float *C);
void gemm_bf16_free(GemmBf16 *g);
/* Whether oneDNN runs bf16 GEMMs on native bf16 units here (AVX512-BF16 or
 * AMX); elsewhere it emulates them, slower than float32. */
int gemm_bf16_available(void);
/* The bf16 GEMM's measured peak in FLOP/s with `threads` threads (0: all):
 * the best of five 2048^3 products through the same oneDNN matmul the
 * engine plans (AMX tiles or AVX512-BF16 dot products, whichever oneDNN
 * picks), the reference for bf16 MFU; 0 where no native bf16 kernel runs. */
double gemm_bf16_peak_flops(int threads);
/* out (M,N) = x (M,K) . W (N,K)^T for a bfloat16 weight (a BF16 GGUF
 * tensor, used as stored): x rounded to bfloat16 as llama.cpp's BF16 path
 * rounds it, float32 accumulation, through oneDNN's bf16 matmul (oneDNN's
 * primitive cache makes the per-call plan cheap). ERR_UNSUPPORTED where
 * the CPU has no native bf16 (the caller widens to float32 instead). */
int gemm_bf16_weights(float *out, const float *x, const uint16_t *W, int M, int N, int K);
/* dst (n) = src rounded to bfloat16, nearest-even (NaN kept a NaN). */
void convert_f32_to_bf16(uint16_t *dst, const float *src, size_t n);

/* ---- embeddings ------------------------------------------------------- */
/* out (N,C) = tok_emb[tokens[i]] (+ pos_emb[pos0 + i % T] when pos_emb). N = B*T. */
void embedding_forward(float *out, const int32_t *tokens, const float *tok_emb, const float *pos_emb,
                       int B, int T, int C, int pos0);
/* Either gradient may be NULL. */
void embedding_backward(float *dtok_emb, float *dpos_emb, const float *dout, const int32_t *tokens,
                        int B, int T, int C);

/* ---- norms -------------------------------------------------------------- */
/* out (N,C) = (x - mean) * rstd * w + b ; saves mean (N), rstd (N). b may be NULL.
 * In the backwards dw and db may be NULL (a frozen norm). */
void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w,
                       const float *b, int N, int C, float eps);
void layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                        const float *w, const float *mean, const float *rstd, int N, int C);
/* out (N,C) = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps); saves rstd (N). */
void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps);
void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                      const float *rstd, int N, int C);

/* ---- activations (elementwise over n) ------------------------------------ */
/* GELU, tanh approximation (GPT-2's). */
void gelu_forward(float *out, const float *x, size_t n);
void gelu_backward(float *dx, const float *x, const float *dout, size_t n);
/* out = silu(g) * u. */
void swiglu_forward(float *out, const float *g, const float *u, size_t n);
void swiglu_backward(float *dg, float *du, const float *g, const float *u, const float *dout, size_t n);

/* ---- rotary position embedding ------------------------------------------- */
/* In place on x (B,T,H,D), position pos0 + t, frequency theta^(-2i/D).
 * neox = 0: rotate adjacent pairs (x[2i], x[2i+1]) -- GGUF "llama" layout,
 *           which is jarip's native layout, so GGUF files load as they are.
 * neox = 1: rotate (x[i], x[i + D/2]) -- Hugging Face / GPT-NeoX layout. */
void rope_forward(float *x, int B, int T, int H, int D, int pos0, float theta, int neox);
/* The inverse rotation applied to the gradient (rotations are orthogonal). */
void rope_backward(float *dx, int B, int T, int H, int D, int pos0, float theta, int neox);

/* ---- causal self-attention with grouped-query heads ----------------------
 * q   (B,T,Hq*D)     queries for positions pos0 .. pos0+T-1
 * k,v (B,S,Hkv*D)    keys/values for positions 0 .. S-1, S >= pos0+T (a KV
 *                    cache in inference, the current batch in training: S=T)
 * att (B,Hq,T,S)     softmax probabilities, kept for backward (may be NULL in
 *                    inference; then a per-thread scratch row is used)
 * out (B,T,Hq*D)     query head h reads kv head h / (Hq/Hkv). */
void attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                       int B, int T, int S, int pos0, int Hq, int Hkv, int D);
/* attention_forward (B = 1, att = NULL) over a KV cache stored as IEEE
 * half: k, v (S, Hkv*D) uint16_t. The result equals attention_forward on the
 * same keys and values widened to float (the widening is exact; only the
 * rounding to half when they were stored differs from an f32 cache).
 * Returns 0, or ERR_NOMEM (scratch for the widened positions 0..pos0+T-1). */
int attention_forward_kv16(float *out, const float *q, const uint16_t *k, const uint16_t *v, int T, int S, int pos0,
                           int Hq, int Hkv, int D);
/* Training only (pos0 = 0, S = T). dq, dk, dv are accumulated. scratch:
 * (omp_get_max_threads(), T, T) floats, planned by the caller. */
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att,
                        const float *q, const float *k, const float *v, int B, int T, int Hq, int Hkv,
                        int D, float *scratch);

/* ---- half-precision KV cache (quant_llamacpp.c) ----------------------------
 * dst[i] = src[i] rounded to IEEE half, to nearest even (F16C when the CPU
 * has it, else the portable f32_to_fp16: same bits), as ggml stores keys
 * and values in an F16 cache. */
void kv_store_f16(uint16_t *dst, const float *src, size_t n);
/* dst[i] = src[i] widened to float (exact). */
void kv_load_f16(float *dst, const uint16_t *src, size_t n);
/* lcpp_attention (quant.h) over an F16 cache kc/vc (rows of Hkv*D halves),
 * with llama.cpp's arithmetic for type_k = type_v = F16, flash attention
 * off: each query rounded to half (ggml converts mul_mat's f32 operand to
 * the F16 weight's type), scores over half keys, the softmax probabilities
 * rounded to half before the weighted sum of half values; T >= 2 in
 * tinyBLAS's order (8 lanes for scores and sums), T == 1 in
 * ggml_vec_dot_f16's (32 lanes). out (T,Hq*D). 0 or ERR_NOMEM. */
int lcpp_attention_f16(float *out, const float *q, const uint16_t *kc, const uint16_t *vc, int T, int pos0, int Hq,
                       int Hkv, int D);

/* ---- loss ---------------------------------------------------------------- */
/* Softmax cross-entropy per row of logits (N,V). targets < 0 are ignored.
 * losses (N) gets each row's loss (0 for ignored); lse (N), when not NULL,
 * each counted row's log-sum-exp for the backward. Returns the mean over
 * counted rows (0 if none); *count gets their number. */
double crossentropy_forward(float *losses, float *lse, const float *logits, const int32_t *targets, int N, int V,
                            int *count);
/* dlogits (N,V) = (softmax - onehot) * scale for counted rows, 0 otherwise.
 * lse: the forward's log-sum-exp per row, or NULL to recompute it. Overwrites
 * dlogits (it may alias logits to save memory). */
void crossentropy_backward(float *dlogits, const float *logits, const float *lse, const int32_t *targets, int N, int V,
                           float scale);

/* ---- optimizer --------------------------------------------------------------- */
/* AdamW with decoupled weight decay on n parameters; t is the 1-based step.
 * grad_scale multiplies every gradient first (clipping, accumulation). */
void adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, float grad_scale, int t);

/* Peak fp32 FLOP/s of this CPU with `threads` threads, measured by a short
 * loop of independent fused multiply-adds (~0.1 s): the MFU denominator. */
double cpu_peak_flops(int threads);

/* Sum of squares of x in double, OpenMP-parallel. */
double sumsq(const float *x, size_t n);

#endif
