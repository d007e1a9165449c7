/* Private to kernels/quant_*.c: GGML's block layouts (byte-exact) and the
 * per-format helpers shared by the reference and SIMD code. */
#ifndef JARIP_KERNELS_QUANT_BLOCKS_H
#define JARIP_KERNELS_QUANT_BLOCKS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/quant.h"

#define QK 32   /* elements per block of the 32-formats */
#define QK_K 256

typedef struct { uint16_t d; uint8_t qs[QK / 2]; } BlockQ4_0;               /* 18 bytes */
typedef struct { uint16_t d, m; uint8_t qs[QK / 2]; } BlockQ4_1;            /* 20 */
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[QK / 2]; } BlockQ5_0; /* 22 */
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[QK / 2]; } BlockQ5_1; /* 24 */
typedef struct { uint16_t d; int8_t qs[QK]; } BlockQ8_0;                    /* 34 */
/* K-quants: 256 elements; Q4_K/Q5_K have 8 sub-blocks of 32 with 6-bit
 * scale and min packed in 12 bytes; Q6_K has 16 sub-blocks of 16 with int8 scales. */
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; } BlockQ4_K; /* 144 */
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } BlockQ5_K; /* 176 */
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; } BlockQ6_K; /* 210 */
typedef struct { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } BlockQ8_K; /* 292 */
/* Q2_K: 16 sub-blocks of 16, 2-bit levels, 4-bit scale and min each.
 * Q3_K: 16 sub-blocks of 16, 3-bit levels (2 low bits + a high-bit mask),
 * 6-bit signed scales packed in 12 bytes. */
typedef struct { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; uint16_t d, dmin; } BlockQ2_K; /* 84 */
typedef struct { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; uint16_t d; } BlockQ3_K; /* 110 */

_Static_assert(sizeof(BlockQ4_0) == 18, "q4_0");
_Static_assert(sizeof(BlockQ4_1) == 20, "q4_1");
_Static_assert(sizeof(BlockQ5_0) == 22, "q5_0");
_Static_assert(sizeof(BlockQ5_1) == 24, "q5_1");
_Static_assert(sizeof(BlockQ8_0) == 34, "q8_0");
_Static_assert(sizeof(BlockQ4_K) == 144, "q4_k");
_Static_assert(sizeof(BlockQ5_K) == 176, "q5_k");
_Static_assert(sizeof(BlockQ6_K) == 210, "q6_k");
_Static_assert(sizeof(BlockQ8_K) == 292, "q8_k");
_Static_assert(sizeof(BlockQ2_K) == 84, "q2_k");
_Static_assert(sizeof(BlockQ3_K) == 110, "q3_k");

/* Unpack the 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block. */
static inline void kq_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Round to nearest, ties to even (GGML's nearest_int for |x| < 2^22). */
static inline int nearest_int(float f) { return (int)lrintf(f); }

/* K-quant entry points in quant_kquant.c */
void dequant_q2_K(const void *src, float *y, int64_t nb);
void dequant_q3_K(const void *src, float *y, int64_t nb);
float dot_q2_K_scalar(const void *w, const QAct *a, const float *x, int64_t K);
float dot_q3_K_scalar(const void *w, const QAct *a, const float *x, int64_t K);
void dequant_q4_K(const void *src, float *y, int64_t nb);
void dequant_q5_K(const void *src, float *y, int64_t nb);
void dequant_q6_K(const void *src, float *y, int64_t nb);
void dequant_q8_K(const void *src, float *y, int64_t nb);
void quant_q4_K(const float *x, void *dst, int64_t nb);
void quant_q5_K(const float *x, void *dst, int64_t nb);
void quant_q6_K(const float *x, void *dst, int64_t nb);
void quant_q8_K(const float *x, void *dst, int64_t nb);
float dot_q4_K_scalar(const void *w, const QAct *a, const float *x, int64_t K);
float dot_q5_K_scalar(const void *w, const QAct *a, const float *x, int64_t K);
float dot_q6_K_scalar(const void *w, const QAct *a, const float *x, int64_t K);

/* ---- Q4_0 / Q5_0 in the block-total order (quant_blocksum.c) -------------
 * Every output is acc = fmaf(d_w[i] * d_a[i], (float)isum_i, acc) over the
 * blocks in order from +0 (isum_i the exact integer dot of block i), in
 * every kernel below and in the scalar reference: the same bits from all. */
/* The AVX2 single-row dot and one-row x four-activation-row kernels. */
QDotFn quant_blocksum_dot_fn_avx2(int wtype);
QRows4Fn quant_blocksum_rows4_fn_avx2(int wtype);
/* Eight consecutive weight rows (stride rb) against one activation row:
 * out[0..8). NULL when the type or the CPU has none. */
typedef void (*QDot8Fn)(const uint8_t *w, size_t rb, const QAct *a, int64_t K, float *out);
QDot8Fn quant_dot8_fn_avx2(int wtype);
QDot8Fn quant_dot8_fn_avx512(int wtype);
/* Panels: QPANEL_ROWS weight rows unpacked and interleaved for the panel
 * kernel, quant_panel_bytes(K) bytes (64-byte aligned). pack: rows (1..16)
 * rows from w (stride rb); the rest zero. panel: M activation rows a[0..M)
 * against the panel, out[m * ldo + r] for r < rows; corr: (M, K/32) int32
 * from quant_block_corr (the offset terms -off * sum(a) of each block). */
#define QPANEL_ROWS 16
size_t quant_panel_bytes(int64_t K);
typedef void (*QPanelPackFn)(const uint8_t *w, size_t rb, int rows, int64_t K, uint8_t *panel);
typedef void (*QPanelFn)(const uint8_t *panel, const QAct *a, const int32_t *corr, int M, int64_t K, float *out,
                         size_t ldo, int rows);
QPanelPackFn quant_panel_pack_fn(int wtype);
QPanelFn quant_panel_fn_avx512(int wtype); /* Q4_0, Q5_0, Q4_K */
QPanelFn quant_panel_fn_avx2(int wtype);   /* Q4_0, Q5_0 */
void quant_block_corr(int wtype, const QAct *acts, int M, int64_t nb, int32_t *corr);
/* matmul_quant_forward_multi for DT_Q4_0_R16 / DT_Q8_0_R16 weights
 * (quant_r16.c): every part's N a multiple of 16; the integer path at every
 * M (flags do not apply). 0, ERR_INVALID, ERR_NOMEM, or ERR_UNSUPPORTED
 * without VNNI. */
int quant_r16_forward(int wtype, const float *inp, int M, int K, const QMMPart *parts, int n_parts);

/* Q8_0 prompts on AVX-512 VNNI (quant_avx512.c): four activation rows x four
 * weight rows, out[4*c + r] = activation row r against weight row c, each
 * the single-row dot's bits (llama.cpp's). wsc: the scales of the pairs
 * (w, w + rb) then (w + 2rb, w + 3rb), nb * QTILE42_WSC floats apart, from
 * the QTile42ScalesFn; d4 as for QTile42Fn; corr: the four rows' offset
 * terms from quant_tile44_corr. NULL when the type or the CPU has none. */
typedef void (*QTile44Fn)(const uint8_t *w, size_t rb, const float *wsc, const QAct *a, const float *d4,
                          const float *corr, int64_t K, float *out);
QTile44Fn quant_tile44_fn_avx512(int wtype);
/* corr for the activation rows a[0..4): nb * 32 floats (32-byte aligned),
 * block i's eight floats of row r at corr + (4*i + r) * 8. */
void quant_tile44_corr(const QAct *a, int64_t nb, float *corr);
/* Sixteen activation rows x two weight rows (quant_avx512.c), where
 * quant_q8t_available(wtype) (Q8_0 on AVX-512 VNNI), the single-row dot's
 * bits. acts: rows a[0..16) into ag (nb * 512 bytes) and dg (nb * 16
 * floats), both 64-byte aligned, once per matmul; weight: one weight row
 * into wp (quant_q8t_wbytes(K) bytes, 64-aligned), once per tile; tile:
 * out[16*c + r] = activation row r against weight row c (w, w + rb), wp0
 * and wp1 their packed rows. */
int quant_q8t_available(int wtype);
void quant_q8t_acts(const QAct *a, int64_t nb, uint8_t *ag, float *dg);
#define quant_q8t_wbytes(K) ((((size_t)(K) / 32 * 36) + 63) & ~(size_t)63)
void quant_q8t_weight(const uint8_t *w, int64_t K, int32_t *wp);
void quant_q8t_tile(const uint8_t *w, size_t rb, const int32_t *wp0, const int32_t *wp1, const uint8_t *ag,
                    const float *dg, int64_t K, float *out);

#endif
