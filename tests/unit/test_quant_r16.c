/* Q4_0, Q5_0 and Q8_0 repacked 16 rows at a time (DT_Q4_0_R16,
 * DT_Q5_0_R16, DT_Q8_0_R16, kernels/quant_r16.c):
 *  - the repacked bytes are the documented layouts;
 *  - the matmul on repacked weights (the decode kernel at M = 1, the row
 *    kernels at M >= 2) gives the bits of the scalar reference of the type
 *    on GGML's rows (Q8_0: llama.cpp's order),
 *    for N = 16..48, K = 32..1536, M = 1..9, one and two threads, one part
 *    and several (q/k/v); raw random levels, +-127 activations, a zero
 *    activation block and a zero weight scale;
 *  - bad shapes are refused; the type never reaches a GGUF file. */
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "kernels/quant_blocks.h"
#include "io/gguf.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define SKIPPED "skipped (no AVX-512 VNNI on this CPU, or capped by JARIP_ISA)"

/* N rows of raw random blocks of type t (every level, -128 included for
 * Q8_0) with sane half scales, one of them zero. */
static uint8_t *random_rows(int t, int N, int64_t K, uint64_t seed) {
    const size_t rb = dtype_row_bytes(t, K), bb = dtype_block_bytes(t);
    uint8_t *Q = malloc(rb * N);
    for (size_t i = 0; i < rb * N; i++) Q[i] = (uint8_t)rng_u64(rng_key(seed, 0, 0), i);
    for (size_t blk = 0; blk < rb * N / bb; blk++) {
        uint16_t d = f32_to_fp16(blk == 3 ? 0.0f : 0.001f * (float)(1 + blk % 13));
        memcpy(Q + blk * bb, &d, 2);
    }
    if (t == DT_Q8_0) Q[2] = 0x80, Q[3] = 0x7F; /* -128 and 127 in the first block */
    return Q;
}

static int repack(int t, void *w, int64_t N, int64_t K) {
    return t == DT_Q8_0 ? quant_repack_q8_0_r16(w, N, K)
           : t == DT_Q5_0 ? quant_repack_q5_0_r16(w, N, K)
                          : quant_repack_q4_0_r16(w, N, K);
}

static int repacked_type(int t) { return t == DT_Q8_0 ? DT_Q8_0_R16 : t == DT_Q5_0 ? DT_Q5_0_R16 : DT_Q4_0_R16; }

/* M rows of K activations: N(0,1), +-1000 (-> +-127) in rows 0 and 1, an all-zero block in row 2. */
static float *activations(int M, int64_t K, uint64_t seed) {
    float *X = malloc((size_t)M * K * sizeof *X);
    for (size_t i = 0; i < (size_t)M * K; i++) X[i] = rng_normal(rng_key(seed, 1, 2), i);
    X[5 % K] = 1000.0f;
    if (M > 1) X[K + 40 % K] = -1000.0f;
    if (M > 2)
        for (int64_t k = 0; k < 32; k++) X[2 * K + (K > 64 ? 64 : 0) + k] = 0;
    return X;
}

/* want (M, N): the reference of type t on GGML's rows: Q4_0's scalar one;
 * for Q8_0 the AVX2 row kernel, llama.cpp's order (its bits are checked
 * against llama.cpp's logits by test_infer_llamacpp; the portable scalar
 * dot sums the blocks in another order). */
static void reference(int t, const uint8_t *Q, const float *X, int M, int N, int64_t K, float *want) {
    const size_t ab = quant_act_bytes(DT_Q8_0, K), rb = dtype_row_bytes(t, K);
    uint8_t *scr = xalloc(ab, NULL);
    QDotFn ref = t == DT_Q8_0 ? quant_dot_fn_avx2(t) : quant_dot_fn_scalar(t);
    for (int m = 0; m < M; m++) {
        QAct a;
        quant_act_row_ref(DT_Q8_0, X + (size_t)m * K, K, scr, &a);
        for (int n = 0; n < N; n++) want[(size_t)m * N + n] = ref(Q + n * rb, &a, NULL, K);
    }
    xfree(scr);
}

static void test_layout(void) {
    const int N = 32;
    const int64_t K = 96, nb = K / QK;
    const size_t rb = dtype_row_bytes(DT_Q4_0, K);
    uint8_t *Q = random_rows(DT_Q4_0, N, K, 3), *R = malloc(rb * N);
    memcpy(R, Q, rb * N);
    CHECK(quant_repack_q4_0_r16(R, N, K) == 0, "repack");
    int bad = 0;
    for (int n = 0; n < N; n++)
        for (int64_t i = 0; i < nb; i++) {
            const BlockQ4_0 *b = (const BlockQ4_0 *)(Q + n * rb) + i;
            const uint8_t *blk = R + (size_t)(n / 16) * 16 * rb + i * 288; /* group, then block */
            const int r = n % 16;
            bad += memcmp(blk + 2 * r, &b->d, 2) != 0;
            for (int q = 0; q < 4; q++) bad += memcmp(blk + 32 + 64 * q + 4 * r, b->qs + 4 * q, 4) != 0;
        }
    CHECK(bad == 0, "repacked layout: %d pieces out of place", bad);
    free(Q), free(R);
    /* Q8_0: 16 scales, then 8 vectors of 4 bytes per row, stored + 128 */
    const size_t rb8 = dtype_row_bytes(DT_Q8_0, K);
    Q = random_rows(DT_Q8_0, N, K, 4), R = malloc(rb8 * N);
    memcpy(R, Q, rb8 * N);
    CHECK(quant_repack_q8_0_r16(R, N, K) == 0, "repack q8_0");
    bad = 0;
    for (int n = 0; n < N; n++)
        for (int64_t i = 0; i < nb; i++) {
            const BlockQ8_0 *b = (const BlockQ8_0 *)(Q + n * rb8) + i;
            const uint8_t *blk = R + (size_t)(n / 16) * 16 * rb8 + i * 544;
            const int r = n % 16;
            bad += memcmp(blk + 2 * r, &b->d, 2) != 0;
            for (int k = 0; k < 32; k++) bad += blk[32 + 64 * (k / 4) + 4 * r + k % 4] != ((uint8_t)b->qs[k] ^ 0x80);
        }
    CHECK(bad == 0, "repacked q8_0 layout: %d pieces out of place", bad);
    free(Q), free(R);
    /* Q5_0: Q4_0's scales and nibbles, then 8 masks: mask g, bit 4r+k = fifth bit of element 4g+k */
    const size_t rb5 = dtype_row_bytes(DT_Q5_0, K);
    Q = random_rows(DT_Q5_0, N, K, 5), R = malloc(rb5 * N);
    memcpy(R, Q, rb5 * N);
    CHECK(quant_repack_q5_0_r16(R, N, K) == 0, "repack q5_0");
    bad = 0;
    for (int n = 0; n < N; n++)
        for (int64_t i = 0; i < nb; i++) {
            const BlockQ5_0 *b = (const BlockQ5_0 *)(Q + n * rb5) + i;
            const uint8_t *blk = R + (size_t)(n / 16) * 16 * rb5 + i * 352;
            const int r = n % 16;
            uint32_t qh;
            memcpy(&qh, b->qh, 4);
            bad += memcmp(blk + 2 * r, &b->d, 2) != 0;
            for (int q = 0; q < 4; q++) bad += memcmp(blk + 32 + 64 * q + 4 * r, b->qs + 4 * q, 4) != 0;
            for (int e = 0; e < 32; e++) {
                uint64_t m;
                memcpy(&m, blk + 288 + 8 * (e / 4), 8);
                bad += (int)(m >> (4 * r + e % 4) & 1) != (int)(qh >> e & 1);
            }
        }
    CHECK(bad == 0, "repacked q5_0 layout: %d pieces out of place", bad);
    free(Q), free(R);
}

/* One shape, one thread count: every M of 1..9 through one part, and
 * M = 1 and 5 through three parts (the rows split as q, k, v). */
static void check_shape(int t, int N, int64_t K, int threads) {
    const int MMAX = 9, rt = repacked_type(t);
    const size_t rb = dtype_row_bytes(t, K);
    uint8_t *Q = random_rows(t, N, K, 100 + N + K), *R = malloc(rb * N);
    memcpy(R, Q, rb * N);
    CHECK(repack(t, R, N, K) == 0, "repack %s %dx%lld", dtype_name(t), N, (long long)K);
    float *X = activations(MMAX, K, K), *want = malloc((size_t)MMAX * N * 4), *out = malloc((size_t)MMAX * N * 4);
    reference(t, Q, X, MMAX, N, K, want);
    omp_set_num_threads(threads);
    for (int M = 1; M <= MMAX; M++)
        for (int flags = 0; flags <= QMM_Q8_ACTIVATIONS; flags += QMM_Q8_ACTIVATIONS) {
            memset(out, 0xFF, (size_t)MMAX * N * 4);
            const int rc = matmul_quant_forward_ex(out, X, R, rt, M, N, (int)K, flags);
            int bad = 0;
            for (int i = 0; i < M * N; i++) bad += memcmp(&out[i], &want[i], 4) != 0;
            CHECK(rc == 0 && bad == 0, "%s %dx%lld M=%d flags=%d threads %d: rc %d, %d of %d outputs differ from the scalar reference",
                  dtype_name(rt), N, (long long)K, M, flags, threads, rc, bad, M * N);
        }
    if (N >= 48) { /* three parts of 16 rows each and the rest (q, k, v) */
        for (int M = 1; M <= 5; M += 4) {
            float *o[3];
            QMMPart parts[3];
            const int rows[3] = {N - 32, 16, 16};
            for (int p = 0, n0 = 0; p < 3; n0 += rows[p], p++) {
                o[p] = malloc((size_t)M * rows[p] * 4);
                parts[p] = (QMMPart){o[p], R + (size_t)n0 * rb, rows[p]};
            }
            CHECK(matmul_quant_forward_multi(X, rt, M, (int)K, parts, 3, QMM_Q8_ACTIVATIONS) == 0, "multi");
            int bad = 0;
            for (int p = 0, n0 = 0; p < 3; n0 += rows[p], p++) {
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < rows[p]; n++) bad += memcmp(&o[p][m * rows[p] + n], &want[m * N + n0 + n], 4) != 0;
                free(o[p]);
            }
            CHECK(bad == 0, "%s %dx%lld three parts M=%d threads %d: %d outputs differ", dtype_name(rt), N, (long long)K, M,
                  threads, bad);
        }
    }
    free(Q), free(R), free(X), free(want), free(out);
}

static void test_bits(void) {
    printf("  q4_0_r16, q5_0_r16 and q8_0_r16 decode and row kernels: %s\n", quant_r16_available() ? "tested" : SKIPPED);
    if (!quant_r16_available()) {
        float x[32] = {0}, o[16];
        uint8_t w[16 * 18] = {0};
        CHECK(matmul_quant_forward(o, x, w, DT_Q4_0_R16, 1, 16, 32) == ERR_UNSUPPORTED, "no VNNI: refused");
        CHECK(matmul_quant_forward(o, x, w, DT_Q8_0_R16, 1, 16, 32) == ERR_UNSUPPORTED, "no VNNI: refused (q8_0)");
        CHECK(matmul_quant_forward(o, x, w, DT_Q5_0_R16, 1, 16, 32) == ERR_UNSUPPORTED, "no VNNI: refused (q5_0)");
        return;
    }
    const int Ns[] = {16, 32, 48};
    const int64_t Ks[] = {32, 64, 352, 576, 1536};
    const int max_threads = omp_get_max_threads();
    for (int threads = 1; threads <= 2; threads++)
        for (size_t a = 0; a < sizeof Ns / sizeof Ns[0]; a++)
            for (size_t b = 0; b < sizeof Ks / sizeof Ks[0]; b++) {
                check_shape(DT_Q4_0, Ns[a], Ks[b], threads);
                check_shape(DT_Q8_0, Ns[a], Ks[b], threads);
                check_shape(DT_Q5_0, Ns[a], Ks[b], threads);
            }
    omp_set_num_threads(max_threads);
}

/* quant_r16_dequantize_row: every row of each type gives dequantize_row's
 * values on the original row (the lookup of a tied, repacked head). */
static void test_rows(void) {
    const int N = 32, types[3] = {DT_Q4_0, DT_Q5_0, DT_Q8_0};
    const int64_t K = 96;
    float want[96], got[96];
    for (int ti = 0; ti < 3; ti++) {
        const int t = types[ti];
        const size_t rb = dtype_row_bytes(t, K);
        uint8_t *Q = random_rows(t, N, K, 9 + t), *R = malloc(rb * N);
        memcpy(R, Q, rb * N);
        CHECK(repack(t, R, N, K) == 0, "repack %s", dtype_name(t));
        int bad = 0;
        for (int n = 0; n < N; n++) {
            CHECK(dequantize_row(t, Q + n * rb, want, K) == 0, "dequantize_row");
            CHECK(quant_r16_dequantize_row(repacked_type(t), R, n, K, got) == 0, "quant_r16_dequantize_row");
            bad += memcmp(want, got, sizeof want) != 0;
        }
        CHECK(bad == 0, "%s: %d repacked rows dequantize differently", dtype_name(t), bad);
        free(Q), free(R);
    }
    CHECK(quant_r16_dequantize_row(DT_Q8_0, NULL, 0, K, got) == ERR_INVALID, "not a repacked type");
    printf("  rows of repacked matrices (a tied head's embedding lookup): tested\n");
}

static void test_refusals(void) {
    uint8_t w[48 * 18 * 2] = {0};
    float x[64] = {0}, o[64];
    CHECK(quant_repack_q4_0_r16(w, 20, 64) == ERR_INVALID, "N not a multiple of 16");
    CHECK(quant_repack_q4_0_r16(w, 16, 40) == ERR_INVALID, "K not a multiple of 32");
    if (quant_r16_available()) CHECK(matmul_quant_forward(o, x, w, DT_Q4_0_R16, 1, 20, 64) == ERR_INVALID, "matmul N=20");
    CHECK(!strcmp(dtype_name(DT_Q4_0_R16), "q4_0_r16"), "name %s", dtype_name(DT_Q4_0_R16));
    CHECK(dtype_row_bytes(DT_Q4_0_R16, 64) == dtype_row_bytes(DT_Q4_0, 64), "row bytes");
    CHECK(dtype_from_name("q4_0_r16") == -1, "no file or flag names the in-memory type");
    CHECK(quant_repack_q8_0_r16(w, 20, 64) == ERR_INVALID, "q8_0: N not a multiple of 16");
    CHECK(quant_repack_q8_0_r16(w, 16, 40) == ERR_INVALID, "q8_0: K not a multiple of 32");
    CHECK(!strcmp(dtype_name(DT_Q8_0_R16), "q8_0_r16") && dtype_from_name("q8_0_r16") == -1, "q8_0_r16 name");
    CHECK(dtype_row_bytes(DT_Q8_0_R16, 64) == dtype_row_bytes(DT_Q8_0, 64), "q8_0 row bytes");
    CHECK(quant_repack_q5_0_r16(w, 20, 64) == ERR_INVALID, "q5_0: N not a multiple of 16");
    CHECK(!strcmp(dtype_name(DT_Q5_0_R16), "q5_0_r16") && dtype_from_name("q5_0_r16") == -1, "q5_0_r16 name");
    CHECK(dtype_row_bytes(DT_Q5_0_R16, 64) == dtype_row_bytes(DT_Q5_0, 64), "q5_0 row bytes");
    GGUFWriter *gw = gguf_writer_create();
    const int64_t ne[2] = {64, 16};
    CHECK(gguf_writer_add_tensor(gw, "w", 2, ne, DT_Q4_0_R16, w, 16 * 36) == ERR_INVALID, "a GGUF writer takes q4_0_r16");
    gguf_writer_free(gw);
}

int main(void) {
    test_layout();
    test_bits();
    test_rows();
    test_refusals();
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("test_quant_r16: ok\n");
    return 0;
}
