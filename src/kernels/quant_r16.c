/* Q4_0, Q5_0 and Q8_0 repacked 16 rows at a time (DT_Q4_0_R16,
 * DT_Q5_0_R16, DT_Q8_0_R16): decode without horizontal sums, the weights
 * read as one stream.
 *
 * GGML's Q4_0 keeps each row's blocks together, so a matvec of one
 * activation row takes a vpdpbusd per row and block and then has to add each
 * row's lanes up: the eight-row matvec (bt_dot8_v, quant_blocksum.c) spends
 * ~22 operations per block of 8 rows on that tree and runs at half the
 * memory's speed. Repacked, one vpdpbusd lane is one weight row, as in the
 * prompt panels, so a block of 16 rows costs 4 loads, 8 masks, 8 vpdpbusd
 * and one float multiply-add of 16 lanes.
 *
 * Layout of an N x K matrix (N % 16 == 0): groups of 16 rows, group g at
 * g * 16 * rb (rb = K/32 * 18, GGML's row bytes: the same bytes, no extra
 * memory); inside a group, per 32-block i at i * 288:
 *   +0    16 half scales d, row r at 2r;
 *   +32   4 vectors of 64 bytes: vector q, bytes 4r..4r+3 = row r's
 *         qs[4q..4q+3], whose low nibbles are elements 4q..4q+3 and high
 *         nibbles elements 16+4q..16+4q+3.
 * Matmul reads such a matrix (quant_r16_forward, from
 * matmul_quant_forward_multi); a row only through quant_r16_dequantize_row
 * (a tied head's embedding lookup), never dequantize_row.
 *
 * Arithmetic: the block-total order of Q4_0 (quant_blocks.h): per block the
 * exact integer total isum = sum (q - 8) a, then
 * acc = fmaf(d_w * d_a, (float)isum, acc) over the blocks in order, so every
 * output has the bits of the scalar reference on GGML's layout (and of
 * every other Q4_0 kernel), at any M and thread count. Decode (M == 1):
 * r16_dot16; prompts and batched serving steps (M >= 2): r16_rows, which
 * unpacks each block's levels once into registers for up to 8 activation
 * rows, as the prompt panels of GGML's layout do after unpacking 16 rows
 * into memory (here nothing is written: hot 1536x576, one thread, M = 2 /
 * 16: 26 / 93 us unpacked into such a panel first, 12 / 83 us read directly;
 * GGML's layout through its panels 47 / 116 us).
 *
 * Q5_0 (DT_Q5_0_R16, i * 352): the same scales and nibble vectors, then at
 * +288 its fifth bits as 8 masks of 64 bits, mask g bit 4r + k = the fifth
 * bit of row r's element 4g + k, added (16) to level vector g under the mask;
 * Q5_0's block-total order (offset 16). SmolLM2's Q4_K file is mostly Q5_0
 * (K = 576 is not a multiple of 256): tg128 one thread 141-144 -> 192-194
 * tok/s on Zen 4 against GGML's layout through the eight-row bt_dot8_v. */
/* Q8_0 repacked the same way (DT_Q8_0_R16), for llama.cpp's Q8_0 numerics.
 * One row at a time, GGML's Q8_0 matvec is bound by its single FMA chain
 * (~6.5 cycles a block on Zen 4, ~21 GB/s), and kernels reading eight
 * GGML rows at once split the read into short streams that run slower still.
 * Repacked, the read is one stream and one vpdpbusd gives 16 rows' lane
 * sums: per 32-block of a group at i * 544:
 *   +0    16 half scales d, row r at 2r;
 *   +32   8 vectors of 64 bytes: vector q, bytes 4r..4r+3 = row r's
 *         qs[4q..4q+3] + 128 (stored XOR 0x80: unsigned for vpdpbusd).
 * Arithmetic: ggml_vec_dot_q8_0_q8_0's (AVX2): per block and row the 8
 * int32 lane sums, lane q = sum over elements 4q..4q+3 of w*a (here
 * vpdpbusd of vector q, started from -128 * the four activations' sum:
 * exact), acc[q] = fmaf(d_w * d_a, (float)lane, acc[q]) over the blocks in
 * order, then ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)): the bits of the
 * single-row kernel and of llama.cpp, at every M and thread count.
 * Measured (one thread, 200000 x 576 random rows in 2 MiB pages, bits equal):
 * 27.6-28.6 GB/s against 20.4-22.1 GB/s for GGML's layout; hot in L2 44 vs
 * ~25 GB/s. */
#include "kernels/quant_avx2_inl.h"

#include <omp.h>
#include <stdlib.h>

#define R16_ROWS QPANEL_ROWS                               /* rows per group */
#define R16_BLOCK (R16_ROWS * sizeof(BlockQ4_0))            /* 288 bytes per 32-block of a group */
#define R16Q5_BLOCK (R16_ROWS * sizeof(BlockQ5_0))          /* 352: Q5_0 */
#define R16Q5_MASKS 288                                     /* offset of Q5_0's fifth-bit masks in a block */
#define R16_QS 32                                           /* offset of the nibble vectors in a block */
#define R16_STACK_BYTES (16u << 10)                         /* activation scratch kept on the stack */

int quant_r16_available(void) { return kernel_isa() >= ISA_AVX512; }

/* One group (16 rows of row bytes rb) from src (GGML rows) to dst (R16). */
static void repack_group(const uint8_t *src, size_t rb, int64_t nb, uint8_t *dst) {
    for (int64_t i = 0; i < nb; i++, dst += R16_BLOCK)
        for (int r = 0; r < R16_ROWS; r++) {
            const BlockQ4_0 *b = (const BlockQ4_0 *)(src + r * rb) + i;
            memcpy(dst + 2 * r, &b->d, 2);
            for (int q = 0; q < 4; q++) memcpy(dst + R16_QS + 64 * q + 4 * r, b->qs + 4 * q, 4);
        }
}

/* Q5_0: Q4_0's layout of scales and nibbles, then the fifth bits as 8
 * masks of 64 bits: mask g, bit 4r + k = the fifth bit of row r's element
 * 4g + k (the lanes of level vector g). */
static void repack_group_q5_0(const uint8_t *src, size_t rb, int64_t nb, uint8_t *dst) {
    for (int64_t i = 0; i < nb; i++, dst += R16Q5_BLOCK) {
        uint64_t m[8] = {0};
        for (int r = 0; r < R16_ROWS; r++) {
            const BlockQ5_0 *b = (const BlockQ5_0 *)(src + r * rb) + i;
            uint32_t qh;
            memcpy(&qh, b->qh, 4);
            memcpy(dst + 2 * r, &b->d, 2);
            for (int q = 0; q < 4; q++) memcpy(dst + R16_QS + 64 * q + 4 * r, b->qs + 4 * q, 4);
            for (int e = 0; e < QK; e++) m[e / 4] |= (uint64_t)(qh >> e & 1) << (4 * r + e % 4);
        }
        memcpy(dst + R16Q5_MASKS, m, sizeof m);
    }
}

#define R16Q8_BLOCK (R16_ROWS * sizeof(BlockQ8_0)) /* 544 bytes per 32-block of a Q8_0 group */

static void repack_group_q8_0(const uint8_t *src, size_t rb, int64_t nb, uint8_t *dst) {
    for (int64_t i = 0; i < nb; i++, dst += R16Q8_BLOCK)
        for (int r = 0; r < R16_ROWS; r++) {
            const BlockQ8_0 *b = (const BlockQ8_0 *)(src + r * rb) + i;
            memcpy(dst + 2 * r, &b->d, 2);
            for (int k = 0; k < QK; k++) dst[R16_QS + 64 * (k / 4) + 4 * r + k % 4] = (uint8_t)b->qs[k] ^ 0x80;
        }
}

/* Any of the three in place (t: DT_Q4_0, DT_Q5_0, DT_Q8_0): each thread
 * copies a group aside, then writes it back repacked (the same bytes, so
 * no extra memory beyond one group). */
static int repack_r16(void *w, int64_t N, int64_t K, int t) {
    if (!w || N <= 0 || K <= 0 || N % R16_ROWS || K % QK) return ERR_INVALID;
    const int64_t nb = K / QK, groups = N / R16_ROWS;
    const size_t rb = (size_t)nb * dtype_block_bytes(t), gb = R16_ROWS * rb;
    const int nth = groups > 1 && !omp_in_parallel() ? omp_get_max_threads() : 1;
    uint8_t *tmp = malloc((size_t)nth * gb);
    if (!tmp) return ERR_NOMEM;
#pragma omp parallel for schedule(static) num_threads(nth)
    for (int64_t g = 0; g < groups; g++) {
        uint8_t *grp = (uint8_t *)w + (size_t)g * gb, *tmp_g = tmp + (size_t)omp_get_thread_num() * gb;
        memcpy(tmp_g, grp, gb);
        if (t == DT_Q8_0)
            repack_group_q8_0(tmp_g, rb, nb, grp);
        else if (t == DT_Q5_0)
            repack_group_q5_0(tmp_g, rb, nb, grp);
        else
            repack_group(tmp_g, rb, nb, grp);
    }
    free(tmp);
    return 0;
}

/* Row r of a repacked block back in GGML's block layout (the inverse of
 * the repack_group_* functions, one row). */
static void unpack_block(int t, const uint8_t *blk, int r, uint8_t *dst) {
    memcpy(dst, blk + 2 * r, 2);
    if (t == DT_Q8_0) {
        for (int k = 0; k < QK; k++) dst[2 + k] = blk[R16_QS + 64 * (k / 4) + 4 * r + k % 4] ^ 0x80;
        return;
    }
    uint8_t *qs = dst + (t == DT_Q5_0 ? 6 : 2);
    for (int q = 0; q < 4; q++) memcpy(qs + 4 * q, blk + R16_QS + 64 * q + 4 * r, 4);
    if (t == DT_Q5_0) {
        uint32_t qh = 0;
        for (int e = 0; e < QK; e++) {
            uint64_t m;
            memcpy(&m, blk + R16Q5_MASKS + 8 * (e / 4), 8);
            qh |= (uint32_t)(m >> (4 * r + e % 4) & 1) << e;
        }
        memcpy(dst + 2, &qh, 4);
    }
}

int quant_r16_dequantize_row(int wt, const void *w, int64_t row, int64_t K, float *out) {
    const int t = wt == DT_Q4_0_R16 ? DT_Q4_0 : wt == DT_Q5_0_R16 ? DT_Q5_0 : wt == DT_Q8_0_R16 ? DT_Q8_0 : -1;
    if (t < 0 || row < 0 || K <= 0 || K % QK) return ERR_INVALID;
    const int64_t nb = K / QK;
    const size_t bb = dtype_block_bytes(t), rb = (size_t)nb * bb;
    const uint8_t *grp = (const uint8_t *)w + (size_t)(row / R16_ROWS) * R16_ROWS * rb;
    for (int64_t i = 0; i < nb; i++) {
        _Alignas(8) uint8_t b[sizeof(BlockQ8_0)]; /* the largest of the three blocks */
        unpack_block(t, grp + (size_t)i * R16_ROWS * bb, (int)(row % R16_ROWS), b);
        const int rc = dequantize_row(t, b, out + i * QK, QK);
        if (rc) return rc;
    }
    return 0;
}

int quant_repack_q4_0_r16(void *w, int64_t N, int64_t K) { return repack_r16(w, N, K, DT_Q4_0); }
int quant_repack_q5_0_r16(void *w, int64_t N, int64_t K) { return repack_r16(w, N, K, DT_Q5_0); }
int quant_repack_q8_0_r16(void *w, int64_t N, int64_t K) { return repack_r16(w, N, K, DT_Q8_0); }

#if defined(__x86_64__) || defined(__i386__)

TGT512 static inline __m512i bcast4(const int8_t *q) {
    int32_t v;
    memcpy(&v, q, 4);
    return _mm512_set1_epi32(v);
}

/* Q5_0's level vector g: nibbles plus 16 where the fifth bit is set. */
TGT512 static inline __m512i fifth_bits(__m512i nib, const uint8_t *blk, int g) {
    __mmask64 m;
    memcpy(&m, blk + R16Q5_MASKS + 8 * g, 8);
    return _mm512_mask_add_epi8(nib, m, nib, _mm512_set1_epi8(16));
}

/* One group against one activation row: out[0..16). Low nibbles against
 * activations 4q.., the high nibbles against 16+4q.. in a second chain;
 * Q4_0 keeps them times 16 (one AND, no shift) and shifts the chain back
 * once per block (exact: a multiple of 16); Q5_0 (q5) shifts each and adds
 * its fifth bits. corr: the block offsets -off * sum(a) (quant_block_corr). */
TGT512 static inline __attribute__((always_inline)) void r16_dot16_body(const int q5, const uint8_t *grp, const QAct *a,
                                                                        const int32_t *corr, int64_t nb, float *out) {
    const __m512i lo = _mm512_set1_epi8(0x0F), hi = _mm512_set1_epi8((char)0xF0);
    const size_t bs = q5 ? R16Q5_BLOCK : R16_BLOCK;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *p = grp + i * bs;
        const int8_t *aq = a->qs + i * QK;
        __m512i x0 = _mm512_set1_epi32(corr[i]), x1 = _mm512_setzero_si512();
        for (int q = 0; q < 4; q++) {
            const __m512i v = _mm512_loadu_si512(p + R16_QS + 64 * q);
            if (q5) {
                x0 = _mm512_dpbusd_epi32(x0, fifth_bits(_mm512_and_si512(v, lo), p, q), bcast4(aq + 4 * q));
                x1 = _mm512_dpbusd_epi32(x1, fifth_bits(_mm512_and_si512(_mm512_srli_epi16(v, 4), lo), p, q + 4),
                                         bcast4(aq + 16 + 4 * q));
            } else {
                x0 = _mm512_dpbusd_epi32(x0, _mm512_and_si512(v, lo), bcast4(aq + 4 * q));
                x1 = _mm512_dpbusd_epi32(x1, _mm512_and_si512(v, hi), bcast4(aq + 16 + 4 * q));
            }
        }
        const __m512i isum = _mm512_add_epi32(x0, q5 ? x1 : _mm512_srai_epi32(x1, 4));
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
        acc = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(a->d[i])), _mm512_cvtepi32_ps(isum), acc);
    }
    _mm512_storeu_ps(out, acc);
}
TGT512 static void r16_dot16(const uint8_t *grp, const QAct *a, const int32_t *corr, int64_t nb, float *out) {
    r16_dot16_body(0, grp, a, corr, nb, out);
}
TGT512 static void r16q5_dot16(const uint8_t *grp, const QAct *a, const int32_t *corr, int64_t nb, float *out) {
    r16_dot16_body(1, grp, a, corr, nb, out);
}

/* mr (1..8) activation rows against one group, reading the repacked bytes
 * directly: per block the 4 vectors unpacked once into the 8 level vectors
 * of the prompt panels (vector q: elements 4q..4q+3 of each row), then per
 * row 8 vpdpbusd in two chains and the multiply-add; out row r at out + r*ldo. */
#define R16_MR 8
TGT512 static inline __attribute__((always_inline)) void r16_rows(const int q5, const int mr, const uint8_t *grp,
                                                                  const QAct *a, const int32_t *corr, int64_t nb, float *out,
                                                                  size_t ldo) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const size_t bs = q5 ? R16Q5_BLOCK : R16_BLOCK;
    __m512 acc[R16_MR];
    for (int r = 0; r < mr; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *p = grp + i * bs;
        __m512i wq[8];
        for (int q = 0; q < 4; q++) {
            const __m512i v = _mm512_loadu_si512(p + R16_QS + 64 * q);
            wq[q] = _mm512_and_si512(v, m4), wq[q + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        }
        if (q5)
            for (int g = 0; g < 8; g++) wq[g] = fifth_bits(wq[g], p, g);
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
        for (int r = 0; r < mr; r++) {
            const int8_t *aq = a[r].qs + i * QK;
            __m512i x0 = _mm512_set1_epi32(corr[r * nb + i]), x1 = _mm512_setzero_si512();
            for (int q = 0; q < 8; q += 2) {
                x0 = _mm512_dpbusd_epi32(x0, wq[q], bcast4(aq + 4 * q));
                x1 = _mm512_dpbusd_epi32(x1, wq[q + 1], bcast4(aq + 4 * q + 4));
            }
            acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(a[r].d[i])), _mm512_cvtepi32_ps(_mm512_add_epi32(x0, x1)), acc[r]);
        }
    }
    for (int r = 0; r < mr; r++) _mm512_storeu_ps(out + r * ldo, acc[r]);
}

/* M activation rows against one group, R16_MR at a time. */
TGT512 static inline __attribute__((always_inline)) void r16_group_rows_body(const int q5, const uint8_t *grp,
                                                                             const QAct *a, const int32_t *corr, int M,
                                                                             int64_t nb, float *out, size_t ldo) {
    int m = 0;
#define ROWS(mr) r16_rows(q5, mr, grp, a + m, corr + (size_t)m * nb, nb, out + m * ldo, ldo)
    for (; m + R16_MR <= M; m += R16_MR) ROWS(R16_MR);
    switch (M - m) {
    case 7: ROWS(7); break;
    case 6: ROWS(6); break;
    case 5: ROWS(5); break;
    case 4: ROWS(4); break;
    case 3: ROWS(3); break;
    case 2: ROWS(2); break;
    case 1: ROWS(1); break;
    default: break;
    }
#undef ROWS
}
TGT512 static void r16_group_rows(const uint8_t *grp, const QAct *a, const int32_t *corr, int M, int64_t nb, float *out,
                                  size_t ldo) {
    r16_group_rows_body(0, grp, a, corr, M, nb, out, ldo);
}
TGT512 static void r16q5_group_rows(const uint8_t *grp, const QAct *a, const int32_t *corr, int M, int64_t nb, float *out,
                                    size_t ldo) {
    r16_group_rows_body(1, grp, a, corr, M, nb, out, ldo);
}
/* Q8_0, one group against one activation row: out[0..16). corr8: per
 * block the 8 lane offsets -128 * sum(a[4q..4q+3]). */
TGT512 static void r16q8_dot16(const uint8_t *grp, const QAct *a, const int32_t *corr8, int64_t nb, float *out) {
    __m512 acc[8];
    for (int q = 0; q < 8; q++) acc[q] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *p = grp + i * R16Q8_BLOCK;
        const int8_t *aq = a->qs + i * QK;
        const __m512 dd = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)), _mm512_set1_ps(a->d[i]));
#pragma GCC unroll 8
        for (int q = 0; q < 8; q++) {
            const __m512i lane = _mm512_dpbusd_epi32(_mm512_set1_epi32(corr8[8 * i + q]),
                                                     _mm512_loadu_si512(p + R16_QS + 64 * q), bcast4(aq + 4 * q));
            acc[q] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(lane), acc[q]);
        }
    }
    _mm512_storeu_ps(out, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[4]), _mm512_add_ps(acc[2], acc[6])),
                                        _mm512_add_ps(_mm512_add_ps(acc[1], acc[5]), _mm512_add_ps(acc[3], acc[7]))));
}

/* Q8_0, mr (1..2) activation rows against one group: each block's 8
 * vectors loaded once for both rows (8 lane accumulators per row: two rows
 * fill 16 of the 32 registers, the weights 8 more). */
#define R16Q8_MR 2
TGT512 static inline __attribute__((always_inline)) void r16q8_rows(const int mr, const uint8_t *grp, const QAct *a,
                                                                    const int32_t *corr8, int64_t nb, float *out,
                                                                    size_t ldo) {
    __m512 acc[R16Q8_MR][8];
    for (int r = 0; r < mr; r++)
        for (int q = 0; q < 8; q++) acc[r][q] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *p = grp + i * R16Q8_BLOCK;
        __m512i wq[8];
        for (int q = 0; q < 8; q++) wq[q] = _mm512_loadu_si512(p + R16_QS + 64 * q);
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
        for (int r = 0; r < mr; r++) {
            const int8_t *aq = a[r].qs + i * QK;
            const int32_t *c = corr8 + ((size_t)r * nb + i) * 8;
            const __m512 dd = _mm512_mul_ps(dw, _mm512_set1_ps(a[r].d[i]));
#pragma GCC unroll 8
            for (int q = 0; q < 8; q++)
                acc[r][q] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_set1_epi32(c[q]), wq[q], bcast4(aq + 4 * q))),
                                            acc[r][q]);
        }
    }
    for (int r = 0; r < mr; r++)
        _mm512_storeu_ps(out + r * ldo,
                         _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(acc[r][0], acc[r][4]), _mm512_add_ps(acc[r][2], acc[r][6])),
                                       _mm512_add_ps(_mm512_add_ps(acc[r][1], acc[r][5]), _mm512_add_ps(acc[r][3], acc[r][7]))));
}

TGT512 static void r16q8_group_rows(const uint8_t *grp, const QAct *a, const int32_t *corr8, int M, int64_t nb, float *out,
                                    size_t ldo) {
    int m = 0;
    for (; m + R16Q8_MR <= M; m += R16Q8_MR) r16q8_rows(R16Q8_MR, grp, a + m, corr8 + (size_t)m * nb * 8, nb, out + m * ldo, ldo);
    if (m < M) r16q8_rows(1, grp, a + m, corr8 + (size_t)m * nb * 8, nb, out + m * ldo, ldo);
}
#else
static void r16q8_dot16(const uint8_t *grp, const QAct *a, const int32_t *corr8, int64_t nb, float *out) {
    (void)grp, (void)a, (void)corr8, (void)nb, (void)out;
}
static void r16q8_group_rows(const uint8_t *grp, const QAct *a, const int32_t *corr8, int M, int64_t nb, float *out,
                             size_t ldo) {
    (void)grp, (void)a, (void)corr8, (void)M, (void)nb, (void)out, (void)ldo;
}
static void r16_dot16(const uint8_t *grp, const QAct *a, const int32_t *corr, int64_t nb, float *out) {
    (void)grp, (void)a, (void)corr, (void)nb, (void)out;
}
static void r16_group_rows(const uint8_t *grp, const QAct *a, const int32_t *corr, int M, int64_t nb, float *out,
                           size_t ldo) {
    (void)grp, (void)a, (void)corr, (void)M, (void)nb, (void)out, (void)ldo;
}
static void r16q5_dot16(const uint8_t *grp, const QAct *a, const int32_t *corr, int64_t nb, float *out) {
    (void)grp, (void)a, (void)corr, (void)nb, (void)out;
}
static void r16q5_group_rows(const uint8_t *grp, const QAct *a, const int32_t *corr, int M, int64_t nb, float *out,
                             size_t ldo) {
    (void)grp, (void)a, (void)corr, (void)M, (void)nb, (void)out, (void)ldo;
}
#endif

typedef struct {
    const QAct *acts;
    const int32_t *corr;  /* (M, nb) block offsets; Q8_0: (M, nb, 8) lane offsets */
    const QMMPart *parts;
    const int *first;     /* first[p]: groups of the parts before p */
    int64_t nb;
    size_t group_bytes; /* 16 rows of K */
    int M, wt;          /* wt: DT_Q4_0_R16, DT_Q5_0_R16 or DT_Q8_0_R16 */
} R16Job;

/* Flat group t of all parts. */
static void run_group(const R16Job *j, int t) {
    int p = 0;
    while (t >= j->first[p + 1]) p++;
    const int g = t - j->first[p];
    const uint8_t *grp = (const uint8_t *)j->parts[p].W + (size_t)g * j->group_bytes;
    float *out = j->parts[p].out + (size_t)g * R16_ROWS;
    const size_t ldo = (size_t)j->parts[p].N;
    switch (j->wt) {
    case DT_Q8_0_R16:
        if (j->M == 1) r16q8_dot16(grp, &j->acts[0], j->corr, j->nb, out);
        else r16q8_group_rows(grp, j->acts, j->corr, j->M, j->nb, out, ldo);
        break;
    case DT_Q5_0_R16:
        if (j->M == 1) r16q5_dot16(grp, &j->acts[0], j->corr, j->nb, out);
        else r16q5_group_rows(grp, j->acts, j->corr, j->M, j->nb, out, ldo);
        break;
    default:
        if (j->M == 1) r16_dot16(grp, &j->acts[0], j->corr, j->nb, out);
        else r16_group_rows(grp, j->acts, j->corr, j->M, j->nb, out, ldo);
    }
}

/* Q8_0's lane offsets: corr8[(m * nb + i) * 8 + q] = -128 * the sum of
 * row m's activations 4q..4q+3 of block i (exact integers). */
static void lane_corr_q8(const QAct *acts, int M, int64_t nb, int32_t *corr8) {
    for (int m = 0; m < M; m++)
        for (int64_t k = 0; k < nb * 8; k++) {
            const int8_t *q = acts[m].qs + 4 * k;
            corr8[(size_t)m * nb * 8 + k] = -128 * (q[0] + q[1] + q[2] + q[3]);
        }
}

int quant_r16_forward(int wtype, const float *inp, int M, int K, const QMMPart *parts, int n_parts) {
    if (M <= 0) return 0;
    if (n_parts < 1 || n_parts > QMM_MAX_PARTS || K <= 0 || K % QK) return ERR_INVALID;
    if (!quant_r16_available()) return ERR_UNSUPPORTED;
    int first[QMM_MAX_PARTS + 1] = {0}; /* groups of the parts before p */
    for (int p = 0; p < n_parts; p++) {
        if (parts[p].N < 0 || parts[p].N % R16_ROWS) return ERR_INVALID;
        first[p + 1] = first[p] + parts[p].N / R16_ROWS;
    }
    const int64_t nb = K / QK;
    const int q8 = wtype == DT_Q8_0_R16;
    if (!q8 && wtype != DT_Q4_0_R16 && wtype != DT_Q5_0_R16) return ERR_INVALID;
    const size_t ab = quant_act_bytes(DT_Q8_0, K), cb = (size_t)M * nb * (q8 ? 8 : 1) * sizeof(int32_t);
    const size_t bytes = (size_t)M * ab + ((cb + 63) & ~(size_t)63);
    /* the activations (M rows, Q8) and their block offsets (M, nb); on the
     * stack for a decoding step (an allocation costs as much as a small matvec) */
    _Alignas(64) uint8_t stack_scr[R16_STACK_BYTES];
    QAct stack_act, *acts = M == 1 ? &stack_act : calloc((size_t)M, sizeof *acts);
    uint8_t *scr = bytes <= sizeof stack_scr ? stack_scr : xalloc(bytes, NULL);
    const double work = (double)M * first[n_parts] * R16_ROWS * K;
    const int nth = work > 32768.0 && omp_get_max_threads() > 1 && !omp_in_parallel() ? omp_get_max_threads() : 1;
    int rc = !acts || !scr ? ERR_NOMEM : 0;
    if (!rc) {
        int32_t *corr = (int32_t *)(scr + (size_t)M * ab);
        if (M == 1) {
            quant_act_row(DT_Q8_0, inp, K, scr, &acts[0]);
        } else {
#pragma omp parallel for schedule(static) if (M >= 8 && nth > 1)
            for (int m = 0; m < M; m++) quant_act_row(DT_Q8_0, inp + (size_t)m * K, K, scr + (size_t)m * ab, &acts[m]);
        }
        if (q8)
            lane_corr_q8(acts, M, nb, corr);
        else
            quant_block_corr(wtype == DT_Q5_0_R16 ? DT_Q5_0 : DT_Q4_0, acts, M, nb, corr);
        R16Job j = {acts, corr, parts, first, nb, R16_ROWS * dtype_row_bytes(wtype, K), M, wtype};
        if (nth == 1) { /* no team of one: entering a parallel region costs ~1 us */
            for (int t = 0; t < first[n_parts]; t++) run_group(&j, t);
        } else { /* whole groups, a contiguous share per thread; all parts' groups in one range (q, k and v of a
                  * step in one fork/join) */
#pragma omp parallel for schedule(static) num_threads(nth)
            for (int t = 0; t < first[n_parts]; t++) run_group(&j, t);
        }
    }
    if (scr != stack_scr) xfree(scr);
    if (acts != &stack_act) free(acts);
    return rc;
}
