/* kernels/quant: GGML block formats (F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
 * Q8_0, Q4_K, Q5_K, Q6_K, Q8_K), conversions, and dot products of a
 * quantized weight row with activations quantized on the fly, as llama.cpp
 * does: 32-element formats dot with Q8 blocks (d, and d*sum for the formats
 * with a min), K-quants dot with Q8_K blocks (float d, 16-element sums).
 *
 * Layouts are bit-exact with GGML (see the block structs in quant_ref.c);
 * the reference quantizers for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/F16/BF16 reproduce
 * llama.cpp's reference rounding byte for byte. The K-quant quantizers are
 * jarip's own (least-squares refined scale/min per sub-block). */
#ifndef JARIP_KERNELS_QUANT_H
#define JARIP_KERNELS_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

/* dst (n floats) = src (n elements of dtype). n must be a multiple of the
 * block. Returns 0, ERR_INVALID (bad n) or ERR_UNSUPPORTED (type). */
int dequantize_row(int dtype, const void *src, float *dst, int64_t n);
/* dst (dtype_row_bytes(dtype, n) bytes) = src quantized. Same returns. */
int quantize_row(int dtype, const float *src, void *dst, int64_t n);
/* The portable reference version of dequantize_row (tests compare). */
int dequantize_row_ref(int dtype, const void *src, float *dst, int64_t n);
/* Row dequantizer of this CPU's SIMD level (n a block multiple), or NULL. */
typedef void (*QDequantFn)(const void *src, float *dst, int64_t n);
QDequantFn quant_dequant_fn_avx2(int dtype);
/* Whether dequantize_row / quantize_row / matmul handle dtype. */
int quant_can_dequantize(int dtype);
int quant_can_quantize(int dtype);
int quant_can_matmul(int dtype);

/* IEEE half and bfloat16 <-> float, round to nearest even (as GGML). */
float fp16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);

/* ---- activations quantized for the dot products ---------------------------
 * One row of K activations: qs (K int8), and per 32-block d (fp16-rounded
 * scale), s (fp16-rounded d * sum(qs)) and sum(qs), or for K-quants per 256-block a
 * float d and per 16-block int16 sums. */
typedef struct {
    int8_t *qs;
    float *d;      /* K/32 (q8) or K/256 (q8_K) */
    float *s;      /* K/32, q8 only */
    float *qsum;   /* K/32, q8 only: sum(qs) of the block, exact (for offset formats) */
    int16_t *bsums; /* K/16, q8_K only */
} QAct;

/* SIMD Q8 activation quantizer (bit-identical to the scalar one) or NULL. */
typedef void (*QActQ8Fn)(const float *x, int64_t K, int8_t *qs, float *d, float *s, float *qsum);
QActQ8Fn quant_act_q8_fn_avx2(void);
typedef void (*QActQ8KFn)(const float *x, int64_t K, int8_t *qs, float *d, int16_t *bsums);
QActQ8KFn quant_act_q8_K_fn_avx2(void);
/* Activation format a weight type dots with: DT_Q8_0 (32-blocks), DT_Q8_K,
 * DT_F32 (float weights: no quantization), or -1 when unsupported. */
int quant_act_type(int wtype);
/* Bytes of scratch for one row of K activations of act type (64-aligned parts). */
size_t quant_act_bytes(int act_type, int64_t K);
/* Lay out a QAct over scratch (quant_act_bytes) and quantize x (K floats). */
void quant_act_row(int act_type, const float *x, int64_t K, void *scratch, QAct *a);
/* The same with the portable code only (tests compare). */
void quant_act_row_ref(int act_type, const float *x, int64_t K, void *scratch, QAct *a);

/* Dot of one weight row (K elements of wtype) with a quantized activation
 * row (or the float row x for F16/BF16/F32 weights). */
typedef float (*QDotFn)(const void *w, const QAct *a, const float *x, int64_t K);
/* Best available implementation on this CPU (AVX2 or scalar), NULL if none. */
QDotFn quant_dot_fn(int wtype);
/* The AVX2 F16 row dot (gemm_f16.c) that quant_dot_fn gives for F16; NULL
 * where the CPU (or JARIP_ISA) has no AVX2. */
QDotFn quant_dot_f16_fn(void);
/* Scalar reference implementation (tests compare the SIMD ones to it). */
QDotFn quant_dot_fn_scalar(int wtype);
/* AVX2 implementation or NULL (no kernel, or the CPU lacks AVX2/FMA/F16C). */
QDotFn quant_dot_fn_avx2(int wtype);

/* Four consecutive weight rows (row stride rb bytes) against one activation
 * row: out[0..4). Only for the hottest types; NULL otherwise. */
typedef void (*QDot4Fn)(const uint8_t *w, size_t rb, const QAct *a, int64_t K, float *out);
QDot4Fn quant_dot4_fn_avx2(int wtype);

/* One weight row against four activation rows: out[0..4), each bit-identical
 * to the single-row QDotFn of the type (prompt batches). NULL if none. */
typedef void (*QRows4Fn)(const void *w, const QAct *a, int64_t K, float *out);
QRows4Fn quant_rows4_fn_avx2(int wtype);

/* Four activation rows a[0..4) x two weight rows (w, w + rb):
 * out[4*c + r] = row r against weight row c, each bit-identical to the
 * single-row QDotFn of the type. wsc: the pair's scales from the type's
 * QTile42ScalesFn (32-byte aligned). d4[4*i + r] = a[r].d[i] and s4[4*i + r]
 * = a[r].s[i]: the rows' block scales interleaved (16-byte aligned). NULL if
 * there is no such kernel for the type. */
typedef void (*QTile42Fn)(const uint8_t *w, size_t rb, const float *wsc, const QAct *a, const float *d4,
                          const float *s4, int64_t K, float *out);
QTile42Fn quant_tile42_fn_avx2(int wtype);
/* The AVX-512 VNNI version (quant_avx512.c; same bits, same scales) or NULL. */
QTile42Fn quant_tile42_fn_avx512(int wtype);
/* wsc (at most QTILE42_WSC floats per 32-block of K) for the weight rows w
 * and w + rb, as the tile42 kernel of the type reads them. */
#define QTILE42_WSC 16
typedef void (*QTile42ScalesFn)(const uint8_t *w, size_t rb, int64_t K, float *wsc);
QTile42ScalesFn quant_tile42_scales_fn_avx2(int wtype);

/* Convenience for tests: dot of a weight row with float activations x,
 * quantizing x the way matmul does. Returns 0 or ERR_UNSUPPORTED. */
int quant_vec_dot(int wtype, const void *w, const float *x, int64_t K, float *out);

/* out (M,N) = inp (M,K) · W(N,K)^T for W rows of dtype_row_bytes(wtype,K)
 * bytes. OpenMP over output rows. Overrides the weak symbol of matmul.c. */
int matmul_quant_forward(float *out, const float *inp, const void *W, int wtype, int M, int N, int K);
/* Same, with flags: QMM_Q8_ACTIVATIONS makes every M use quantized
 * activations and integer dots (llama.cpp's numerics) instead of the
 * dequantize + f32 GEMM path taken by default for M >= 16. */
#define QMM_Q8_ACTIVATIONS 1
int matmul_quant_forward_ex(float *out, const float *inp, const void *W, int wtype, int M, int N, int K, int flags);
/* Several weight matrices of one type applied to the same input inp (M,K)
 * -- q/k/v, or gate/up: the activations are quantized once and all the
 * products run in one parallel region. parts[i].out (M, parts[i].N). */
#define QMM_MAX_PARTS 4
typedef struct {
    float *out;
    const void *W;
    int N;
} QMMPart;
int matmul_quant_forward_multi(const float *inp, int wtype, int M, int K, const QMMPart *parts, int n_parts, int flags);
/* gemm_f16 (kernels.h) of one x against several F16 matrices (parts[i].W,
 * N_i rows each): x packed once, every part in one parallel region; the
 * same bits as one gemm_f16 per part. */
int gemm_f16_parts(const float *x, int M, int K, const QMMPart *parts, int n_parts);

/* ---- Q4_0 repacked for the VNNI kernels (DT_Q4_0_R16, quant_r16.c) ---------
 * 16 rows interleaved per 32-block (the layout is in quant_r16.c), the same
 * bytes as GGML's rows. Matmul reads such a matrix, and one row at a time
 * only quant_r16_dequantize_row (not dequantize_row, not a file writer); its
 * outputs have the bits of DT_Q4_0's at every M and thread count. */
/* Whether this CPU, under JARIP_ISA, runs DT_Q4_0_R16 (AVX-512 VNNI). */
int quant_r16_available(void);
/* w (N x K Q4_0 in GGML's layout, N % 16 == 0, K % 32 == 0) rearranged in
 * place into DT_Q4_0_R16. Returns 0, ERR_INVALID (shape) or ERR_NOMEM
 * (16 rows of scratch per thread). */
int quant_repack_q4_0_r16(void *w, int64_t N, int64_t K);
/* The same for Q8_0 into DT_Q8_0_R16, whose outputs have the bits of
 * DT_Q8_0's (llama.cpp's order) at every M and thread count. */
int quant_repack_q8_0_r16(void *w, int64_t N, int64_t K);
/* The same for Q5_0 into DT_Q5_0_R16 (the bits of DT_Q5_0's block-total
 * order). */
int quant_repack_q5_0_r16(void *w, int64_t N, int64_t K);
/* Row `row` of a repacked matrix w (type wt, K columns) dequantized into
 * out (K floats): the values dequantize_row gives for that row before the
 * repack (an embedding lookup in a tied head). 0 or ERR_INVALID. */
int quant_r16_dequantize_row(int wt, const void *w, int64_t row, int64_t K, float *out);

/* ---- inference kernels with llama.cpp's CPU numerics (quant_llamacpp.c) ----
 * The operations of a Llama block around its matmuls, computed in the order
 * and precision of llama.cpp's CPU backend (AVX2 build), so that GGUF
 * models give its logits bit for bit (see the file's comment for why). The
 * results do not depend on the thread count. Inference only. */
/* out (N,C) = x / rms(x) * w: sum of squares in double, as ggml. */
void lcpp_rmsnorm(float *out, const float *x, const float *w, int N, int C, float eps);
/* In place on x (T,H,D) at positions pos0.. (adjacent pairs, or neox halves). */
void lcpp_rope(float *x, int T, int H, int D, int pos0, float base, int neox);
/* out = silu(g) * u over n values. */
void lcpp_swiglu(float *out, const float *g, const float *u, size_t n);
/* Whether the matmul of weight type t with QMM_Q8_ACTIVATIONS gives
 * llama.cpp's results bit for bit (checked: Q4_1, Q8_0). */
int quant_matches_llamacpp(int t);
/* Whether prompt batches of weight type t are faster through the integer
 * kernels (QMM_Q8_ACTIVATIONS) than through dequantize + f32 GEMM on this
 * CPU (measured per type: the Q4_0/Q5_0/Q4_K panels of quant_blocksum.c). */
int quant_batch_dots_fast(int t);
/* Whether lcpp_attention handles head size D (a multiple of 32). */
int lcpp_attention_ok(int D);
/* Causal attention of T queries q (T,Hq*D) at positions pos0.. over a cache
 * kc/vc (positions 0..pos0+T-1, rows of Hkv*D floats); GQA: head h reads
 * kv head h/(Hq/Hkv). T >= 2 sums the values as llama.cpp's batched path
 * (tinyBLAS), T == 1 as its vector dot. out (T,Hq*D). 0 or ERR_NOMEM. */
int lcpp_attention(float *out, const float *q, const float *kc, const float *vc, int T, int pos0, int Hq, int Hkv,
                   int D);

#endif
