/* Block formats: round trips, hand-built blocks, float conversions, dot
 * products (SIMD vs scalar vs float reference) and matmul_quant_forward. */
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "kernels/quant_blocks.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static const int TYPES[] = {DT_F16, DT_BF16, DT_Q4_0, DT_Q4_1, DT_Q5_0, DT_Q5_1,
                            DT_Q8_0, DT_Q4_K, DT_Q5_K, DT_Q6_K, DT_Q8_K};
#define NTYPES (int)(sizeof TYPES / sizeof TYPES[0])

/* relative RMS error bound of quantize -> dequantize on N(0,1) data */
static double rt_bound(int t) {
    switch (t) {
    case DT_F16: return 1e-3;
    case DT_BF16: return 5e-3;
    case DT_Q8_0: case DT_Q8_K: return 0.01;
    case DT_Q6_K: return 0.035;
    case DT_Q5_0: case DT_Q5_1: case DT_Q5_K: return 0.07;
    default: return 0.14;
    }
}

static void fill(float *x, int64_t n, uint64_t seed, float scale) {
    uint64_t key = rng_key(seed, 1, 2);
    for (int64_t i = 0; i < n; i++) x[i] = scale * rng_normal(key, (uint64_t)i);
}

static void test_round_trip(void) {
    const int64_t n = 4096;
    float *x = malloc(n * 4), *y = malloc(n * 4);
    void *q = malloc(dtype_row_bytes(DT_Q8_K, n) + dtype_row_bytes(DT_F16, n) * 2);
    for (int ti = 0; ti < NTYPES; ti++) {
        const int t = TYPES[ti];
        fill(x, n, 7 + t, 0.5f);
        x[5] = 3.0f; /* an outlier, as real weights have */
        CHECK(quantize_row(t, x, q, n) == 0, "quantize %s", dtype_name(t));
        CHECK(dequantize_row(t, q, y, n) == 0, "dequantize %s", dtype_name(t));
        {
            float *yr = malloc(n * 4);
            dequantize_row_ref(t, q, yr, n);
            double md = 0, mx = 0;
            for (int64_t i = 0; i < n; i++) md = fmax(md, fabs(yr[i] - y[i])), mx = fmax(mx, fabs(yr[i]));
            CHECK(md <= 1e-6 * mx, "%s: SIMD dequantization differs from the reference by %g", dtype_name(t), md);
            free(yr);
        }
        double se = 0, sx = 0;
        for (int64_t i = 0; i < n; i++) se += (x[i] - y[i]) * (x[i] - y[i]), sx += x[i] * x[i];
        double rel = sqrt(se / sx);
        CHECK(rel < rt_bound(t), "%s round trip rel rms %.4f >= %.4f", dtype_name(t), rel, rt_bound(t));
        /* zeros stay zeros */
        memset(x, 0, n * 4);
        quantize_row(t, x, q, n);
        dequantize_row(t, q, y, n);
        int ok = 1;
        for (int64_t i = 0; i < n; i++) ok &= y[i] == 0.0f;
        CHECK(ok, "%s: zeros do not round trip", dtype_name(t));
        CHECK(dequantize_row(t, q, y, dtype_block_size(t) == 1 ? -1 : 7) == ERR_INVALID, "%s bad n", dtype_name(t));
    }
    CHECK(dequantize_row(DT_Q8_1, q, y, 256) == ERR_UNSUPPORTED, "q8_1 unsupported");
    CHECK(quantize_row(DT_Q2_K, x, q, 256) == ERR_UNSUPPORTED, "q2_k is read-only");
    CHECK(quantize_row(99, x, q, 32) == ERR_UNSUPPORTED, "bad type");
    free(x), free(y), free(q);
}

/* Hand-built blocks with known values (GGML's definitions). */
static void test_known_blocks(void) {
    float y[256];
    uint8_t b[256];
    /* Q4_0: d = 2.0 (0x4000), byte j = low j&15, high 15-(j&15) */
    memset(b, 0, sizeof b);
    b[0] = 0x00, b[1] = 0x40;
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)((j & 15) | ((15 - j) << 4));
    dequantize_row(DT_Q4_0, b, y, 32);
    for (int j = 0; j < 16; j++) {
        CHECK(y[j] == 2.0f * (j - 8), "q4_0 lo %d: %g", j, y[j]);
        CHECK(y[j + 16] == 2.0f * (15 - j - 8), "q4_0 hi %d: %g", j, y[j + 16]);
    }
    /* Q4_1: d = 1, m = -0.5 (0xB800) */
    b[0] = 0x00, b[1] = 0x3C, b[2] = 0x00, b[3] = 0xB8;
    for (int j = 0; j < 16; j++) b[4 + j] = (uint8_t)(j | (j << 4));
    dequantize_row(DT_Q4_1, b, y, 32);
    CHECK(y[3] == 2.5f && y[19] == 2.5f && y[0] == -0.5f, "q4_1 values %g %g %g", y[3], y[19], y[0]);
    /* Q5_0: d = 1, qh bit j set for j = 1 and j = 17, qs = 0 -> value 16-16=0 there, else -16 */
    memset(b, 0, 22);
    b[1] = 0x3C;
    uint32_t qh = (1u << 1) | (1u << 17);
    memcpy(b + 2, &qh, 4);
    dequantize_row(DT_Q5_0, b, y, 32);
    CHECK(y[1] == 0.0f && y[17] == 0.0f && y[0] == -16.0f && y[16] == -16.0f, "q5_0 %g %g %g %g", y[1], y[17], y[0],
          y[16]);
    /* Q8_0: d = 0.5, qs[j] = j - 16 */
    b[0] = 0x00, b[1] = 0x38;
    for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)(j - 16);
    dequantize_row(DT_Q8_0, b, y, 32);
    CHECK(y[0] == -8.0f && y[31] == 7.5f, "q8_0 %g %g", y[0], y[31]);
    /* Q4_K: d = 1, dmin = 1; sub-block 0 scale 3 min 2; sub-block 5 scale 40 (needs the high bits) min 33 */
    memset(b, 0, 144);
    b[1] = 0x3C, b[3] = 0x3C;
    uint8_t *sc = b + 4;
    sc[0] = 3, sc[4] = 2;
    sc[1] |= (uint8_t)((40 >> 4) << 6), sc[9] = (uint8_t)((40 & 0xF) | ((33 & 0xF) << 4));
    sc[5] |= (uint8_t)((33 >> 4) << 6);
    uint8_t *qs = b + 16;
    qs[0] = 0x07;       /* element 0: sub-block 0, level 7 */
    qs[64 + 3] = 0x50;  /* element 160 + 3: sub-block 5 (high nibble of bytes 64..95), level 5 */
    dequantize_row(DT_Q4_K, b, y, 256);
    CHECK(y[0] == 3.0f * 7 - 2.0f, "q4_k e0 %g", y[0]);
    CHECK(y[163] == 40.0f * 5 - 33.0f, "q4_k e163 %g", y[163]);
    CHECK(y[160] == -33.0f, "q4_k e160 %g", y[160]);
    /* Q6_K: d = 1, scale[k] = k+1, all levels 32 (value 0) except element 200 level 40 */
    memset(b, 0, 210);
    for (int k = 0; k < 16; k++) b[192 + k] = (uint8_t)(k + 1);
    b[208] = 0x00, b[209] = 0x3C;
    for (int l = 0; l < 64; l++) b[128 + l] = 0xAA; /* high bits 2 for every quarter: level 32 */
    /* element 200 = half 1, r = 72 -> quarter 2 (high nibble of ql[64 + 8]), l = 8 */
    b[64 + 8] = (uint8_t)((40 & 0xF) << 4);
    b[128 + 32 + 8] = (uint8_t)((0xAA & ~(3 << 4)) | ((40 >> 4) << 4));
    dequantize_row(DT_Q6_K, b, y, 256);
    CHECK(y[200] == 13.0f * 8, "q6_k e200 %g", y[200]);
    CHECK(y[0] == 0.0f && y[255] == 0.0f, "q6_k zeros %g %g", y[0], y[255]);
}

static void test_float_conversions(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = fp16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        if (f32_to_fp16(f) != h) bad++;
    }
    CHECK(bad == 0, "fp16 round trip: %d halves differ", bad);
    CHECK(f32_to_fp16(65504.0f) == 0x7BFF && f32_to_fp16(65520.0f) == 0x7C00, "fp16 overflow");
    CHECK(f32_to_fp16(1.0f + 1.0f / 2048) == 0x3C00, "fp16 tie to even");
    CHECK(f32_to_fp16(1.0f + 3.0f / 2048) == 0x3C02, "fp16 tie to even up");
    CHECK(fp16_to_f32(0x0001) == ldexpf(1, -24), "fp16 smallest subnormal");
    CHECK(f32_to_fp16(ldexpf(1, -25)) == 0 && f32_to_fp16(ldexpf(1.5f, -25)) == 1, "fp16 subnormal rounding");
    CHECK(f32_to_bf16(1.0f) == 0x3F80 && bf16_to_f32(0xC000) == -2.0f, "bf16");
    CHECK(f32_to_bf16(bf16_to_f32(0x3F81) + ldexpf(1, -8)) == 0x3F82, "bf16 tie to even");
}

/* SIMD activation quantization is bit-identical to the portable one. */
static void test_act(void) {
    const int64_t K = 4096;
    float *x = malloc(K * 4);
    fill(x, K, 77, 3.0f);
    for (int j = 0; j < 32; j++) x[64 + j] = 0.0f;        /* an all-zero block */
    for (int j = 0; j < 32; j++) x[128 + j] = 0.5f + j;   /* ties at x*id = k + 0.5 */
    for (int j = 0; j < 256; j++) x[512 + j] = 0.0f;      /* an all-zero q8_k block */
    x[1024 + 5] = -50.0f, x[1024 + 9] = 50.0f;            /* equal magnitudes: the first decides */
    for (int act = DT_Q8_0; act <= DT_Q8_K; act += DT_Q8_K - DT_Q8_0) {
        size_t nb = quant_act_bytes(act, K);
        void *s1 = xalloc(nb, NULL), *s2 = xalloc(nb, NULL);
        QAct a1, a2;
        quant_act_row(act, x, K, s1, &a1);
        quant_act_row_ref(act, x, K, s2, &a2);
        CHECK(memcmp(a1.qs, a2.qs, K) == 0, "act %s: qs differ", dtype_name(act));
        int nblk = act == DT_Q8_0 ? (int)(K / 32) : (int)(K / 256);
        CHECK(memcmp(a1.d, a2.d, nblk * 4) == 0, "act %s: d differ", dtype_name(act));
        if (act == DT_Q8_0) CHECK(memcmp(a1.s, a2.s, nblk * 4) == 0, "act q8_0: s differ");
        if (act == DT_Q8_0) CHECK(memcmp(a1.qsum, a2.qsum, nblk * 4) == 0, "act q8_0: qsum differ");
        if (act == DT_Q8_K) CHECK(memcmp(a1.bsums, a2.bsums, K / 16 * 2) == 0, "act q8_k: bsums differ");
        xfree(s1), xfree(s2);
    }
    free(x);
}

static const int MM_TYPES[] = {DT_F16, DT_BF16, DT_Q4_0, DT_Q4_1, DT_Q5_0, DT_Q5_1, DT_Q8_0, DT_Q4_K, DT_Q5_K, DT_Q6_K};
#define NMM (int)(sizeof MM_TYPES / sizeof MM_TYPES[0])

/* Dots: SIMD == scalar (to rounding), and both close to the float dot of the
 * dequantized weights (the gap is the activation quantization). */
static void test_dots(void) {
    const int64_t K = 1536;
    float *w = malloc(K * 4), *x = malloc(K * 4), *wd = malloc(K * 4);
    void *q = malloc(K * 4);
    for (int ti = 0; ti < NMM; ti++) {
        const int t = MM_TYPES[ti];
        for (int rep = 0; rep < 20; rep++) {
            fill(w, K, 100 + rep, 0.05f);
            fill(x, K, 200 + rep, 1.0f + rep);
            quantize_row(t, w, q, K);
            dequantize_row(t, q, wd, K);
            double ref = 0, mag = 0;
            for (int64_t i = 0; i < K; i++) ref += (double)wd[i] * x[i], mag += fabs(wd[i] * x[i]);
            float got;
            CHECK(quant_vec_dot(t, q, x, K, &got) == 0, "%s vec_dot", dtype_name(t));
            CHECK(fabs(got - ref) <= 0.01 * mag, "%s dot %g vs %g (mag %g)", dtype_name(t), got, ref, mag);
            QDotFn simd = quant_dot_fn_avx2(t), scal = quant_dot_fn_scalar(t);
            if (simd) {
                int act = quant_act_type(t);
                void *scr = xalloc(quant_act_bytes(act, K), NULL);
                QAct a;
                quant_act_row(act, x, K, scr, &a);
                float s1 = simd(q, &a, x, K), s2 = scal(q, &a, x, K);
                CHECK(fabsf(s1 - s2) <= 1e-5f * (float)mag + 1e-6f, "%s simd %g vs scalar %g", dtype_name(t), s1, s2);
                QDot4Fn d4 = quant_dot4_fn_avx2(t);
                if (d4) { /* same row four times, then compare each output */
                    const size_t rb = dtype_row_bytes(t, K);
                    uint8_t *q4 = malloc(4 * rb);
                    for (int r = 0; r < 4; r++) memcpy(q4 + r * rb, q, rb);
                    float o4[4];
                    d4(q4, rb, &a, K, o4);
                    for (int r = 0; r < 4; r++)
                        CHECK(fabsf(o4[r] - s2) <= 1e-5f * (float)mag + 1e-6f, "%s dot4[%d] %g vs %g", dtype_name(t), r,
                              o4[r], s2);
                    free(q4);
                }
                xfree(scr);
            }
        }
    }
    free(w), free(x), free(wd), free(q);
}

/* matmul_quant_forward against dequantize + naive matmul, for the dot path
 * (M = 1, 3), the GEMM path (M = 20) and forced Q8 activations. */
static void test_matmul(void) {
    const int N = 37, K = 512, Ms[] = {1, 3, 20};
    float *W = malloc((size_t)N * K * 4), *Wd = malloc((size_t)N * K * 4), *X = malloc(20 * K * 4);
    float *out = malloc(20 * N * 4), *ref = malloc(20 * N * 4);
    uint8_t *Q = malloc((size_t)N * K * 4);
    fill(W, (int64_t)N * K, 5, 0.1f);
    fill(X, 20 * K, 6, 1.0f);
    for (int ti = 0; ti < NMM; ti++) {
        const int t = MM_TYPES[ti];
        const size_t rb = dtype_row_bytes(t, K);
        for (int n = 0; n < N; n++) {
            quantize_row(t, W + (size_t)n * K, Q + n * rb, K);
            dequantize_row(t, Q + n * rb, Wd + (size_t)n * K, K);
        }
        for (int mi = 0; mi < 3; mi++)
            for (int flags = 0; flags < 2; flags++) {
                const int M = Ms[mi];
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < N; n++) {
                        double s = 0;
                        for (int k = 0; k < K; k++) s += (double)X[m * K + k] * Wd[(size_t)n * K + k];
                        ref[m * N + n] = (float)s;
                    }
                int rc = matmul_quant_forward_ex(out, X, Q, t, M, N, K, flags);
                CHECK(rc == 0, "%s matmul rc %d", dtype_name(t), rc);
                double maxd = 0;
                for (int i = 0; i < M * N; i++) maxd = fmax(maxd, fabs(out[i] - ref[i]));
                CHECK(maxd < 0.05, "%s matmul M=%d flags=%d max diff %g", dtype_name(t), M, flags, maxd);
            }
        CHECK(matmul_forward(out, X, Q, t, NULL, 1, N, K) == 0, "%s via matmul_forward", dtype_name(t));
    }
    CHECK(matmul_quant_forward(out, X, Q, DT_Q4_0, 1, N, 100) == ERR_INVALID, "K not a block multiple");
    CHECK(matmul_quant_forward(out, X, Q, DT_Q4_K, 1, N, 288) == ERR_INVALID, "K not a 256 multiple");
    CHECK(matmul_quant_forward(out, X, Q, DT_Q8_1, 1, N, 256) == ERR_UNSUPPORTED, "q8_1 unsupported");
    free(W), free(Wd), free(X), free(out), free(ref), free(Q);
}

/* Read-only Q2_K / Q3_K: random blocks (sane half scales), dots and matmul
 * against the float dot of the dequantized rows. Exactness of the
 * dequantization itself is checked against gguf-py in tests/reference. */
static void test_low_kquants(void) {
    const int N = 9, K = 512, types[2] = {DT_Q2_K, DT_Q3_K};
    float *X = malloc(3 * K * 4), *Wd = malloc((size_t)N * K * 4), out[3 * 9];
    fill(X, 3 * K, 8, 1.0f);
    for (int ti = 0; ti < 2; ti++) {
        const int t = types[ti];
        const size_t rb = dtype_row_bytes(t, K), bb = dtype_block_bytes(t);
        uint8_t *Q = malloc(rb * N);
        uint64_t key = rng_key(99, t, 0);
        for (size_t i = 0; i < rb * N; i++) Q[i] = (uint8_t)rng_u64(key, i);
        for (size_t blk = 0; blk < rb * N / bb; blk++) { /* d (and dmin) at the end of the block */
            uint8_t *b = Q + blk * bb;
            uint16_t d = f32_to_fp16(0.01f + 0.001f * (float)(blk % 7)), dm = f32_to_fp16(0.02f);
            if (t == DT_Q2_K) memcpy(b + 80, &d, 2), memcpy(b + 82, &dm, 2);
            else memcpy(b + 108, &d, 2);
        }
        for (int n = 0; n < N; n++) CHECK(dequantize_row(t, Q + n * rb, Wd + (size_t)n * K, K) == 0, "dequant %s", dtype_name(t));
        CHECK(matmul_quant_forward(out, X, Q, t, 3, N, K) == 0, "%s matmul", dtype_name(t));
        double maxd = 0, mag = 0;
        for (int m = 0; m < 3; m++)
            for (int n = 0; n < N; n++) {
                double r = 0, a = 0;
                for (int k = 0; k < K; k++) r += (double)X[m * K + k] * Wd[(size_t)n * K + k], a += fabs(X[m * K + k] * Wd[(size_t)n * K + k]);
                maxd = fmax(maxd, fabs(out[m * N + n] - r) / (a + 1e-9));
                mag = fmax(mag, a);
            }
        CHECK(maxd < 0.01 && mag > 0, "%s: matmul vs float reference rel diff %g", dtype_name(t), maxd);
        free(Q);
    }
    free(X), free(Wd);
}

/* The prompt-batch kernels (4 activation rows x 1, 2 or 4 weight rows, 16 x 2) give the
 * single-row dot's bits for every output; and the matmul with Q8
 * activations, over ragged M and N (tails the 4x4 and 4x2 kernels do not cover),
 * gives the single-row dot's bits everywhere. Outlier values and a -128
 * weight (only reachable from a hand-made file) are included. */
#define SKIPPED_CPU "skipped (not on this CPU, or capped by JARIP_ISA)"
#define MAXM 37
static void test_batch_kernels(void) {
    const int types[] = {DT_Q8_0, DT_Q4_1, DT_Q4_0, DT_Q5_0};
    const int K = 96 * 32 + 64; /* more blocks than one scale chunk of the 4x2 kernel */
    const int Ms[] = {4, 5, 7, 8, 13, 16, 37}, Ns[] = {2, 3, 5, 7, 9, 64}; /* M = 37: two groups of 16, 4 + 1 rows; N = 7: 4x4 + 4x2 + 1 */
    float *W = malloc((size_t)64 * K * 4), *X = malloc((size_t)MAXM * K * 4), *out = malloc(MAXM * 64 * 4);
    fill(W, (int64_t)64 * K, 31, 0.1f);
    fill(X, (int64_t)MAXM * K, 32, 1.0f);
    W[7] = 3.0f, X[K + 3] = -40.0f, X[2 * K + 100] = 0.0f;
    for (int ti = 0; ti < 4; ti++) {
        const int t = types[ti];
        const size_t rb = dtype_row_bytes(t, K), ab = quant_act_bytes(DT_Q8_0, K);
        uint8_t *Q = malloc(rb * 64), *scr = xalloc(ab * MAXM, NULL);
        for (int n = 0; n < 64; n++) quantize_row(t, W + (size_t)n * K, Q + n * rb, K);
        if (t == DT_Q8_0) ((int8_t *)Q)[rb + 2 + 5] = -128; /* row 1, block 0, element 5 */
        QAct a[MAXM];
        for (int m = 0; m < MAXM; m++) quant_act_row(DT_Q8_0, X + (size_t)m * K, K, scr + m * ab, &a[m]);
        QDotFn dot = quant_dot_fn(t);
        static float ref[MAXM][64];
        for (int m = 0; m < MAXM; m++)
            for (int n = 0; n < 64; n++) ref[m][n] = dot(Q + n * rb, &a[m], X + (size_t)m * K, K);
        QRows4Fn r4 = quant_rows4_fn_avx2(t);
        QTile42Fn t42s_[2] = {quant_tile42_fn_avx2(t), quant_tile42_fn_avx512(t)};
        if (r4) {
            float o[4];
            r4(Q + rb, a, K, o);
            for (int r = 0; r < 4; r++) CHECK(memcmp(&o[r], &ref[r][1], 4) == 0, "%s rows4[%d] %.9g vs %.9g", dtype_name(t), r, o[r], ref[r][1]);
        }
        for (int isa = 0; isa < 2; isa++) {
            QTile42Fn t42 = t42s_[isa];
            const char *isa_name = isa ? "avx512" : "avx2";
            printf("  %s tile42 %s: %s\n", dtype_name(t), isa_name,
                   t42 ? "tested" : t == DT_Q4_0 || t == DT_Q5_0 ? "none (panels: test_blocksum_paths)"
                                  : "skipped (not on this CPU, or capped by JARIP_ISA)");
            if (!t42) continue;
            float *d4 = xalloc((size_t)K / 32 * 4 * 4, NULL), *s4 = xalloc((size_t)K / 32 * 4 * 4, NULL), o[8];
            for (int i = 0; i < K / 32; i++)
                for (int r = 0; r < 4; r++) d4[4 * i + r] = a[4 + r].d[i], s4[4 * i + r] = a[4 + r].s[i];
            float *wsc = xalloc((size_t)K / 32 * QTILE42_WSC * 4, NULL);
            QTile42ScalesFn t42s = quant_tile42_scales_fn_avx2(t);
            CHECK(t42s != NULL, "%s: a tile42 kernel without its scales function", dtype_name(t));
            for (int n = 0; t42s && n + 2 <= 64; n += 2) {
                t42s(Q + n * rb, rb, K, wsc);
                t42(Q + n * rb, rb, wsc, &a[4], d4, s4, K, o);
                for (int c = 0; c < 2; c++)
                    for (int r = 0; r < 4; r++)
                        CHECK(memcmp(&o[4 * c + r], &ref[4 + r][n + c], 4) == 0, "%s tile42 %s row %d col %d: %.9g vs %.9g",
                              dtype_name(t), isa_name, 4 + r, n + c, o[4 * c + r], ref[4 + r][n + c]);
            }
            xfree(d4), xfree(s4), xfree(wsc);
        }
        /* the VNNI 4x4 tile (Q8_0): rows 4..7 against every quad of weight rows */
        QTile44Fn t44 = quant_tile44_fn_avx512(t);
        printf("  %s tile44 avx512: %s\n", dtype_name(t), t44 ? "tested" : t != DT_Q8_0 ? "none for this type" : SKIPPED_CPU);
        if (t44) {
            const int nb = K / 32;
            float *d4 = xalloc((size_t)nb * 4 * 4, NULL), *corr = xalloc((size_t)nb * 32 * 4, NULL), o[16];
            float *wsc = xalloc((size_t)2 * nb * QTILE42_WSC * 4, NULL);
            for (int i = 0; i < nb; i++)
                for (int r = 0; r < 4; r++) d4[4 * i + r] = a[4 + r].d[i];
            quant_tile44_corr(&a[4], nb, corr);
            QTile42ScalesFn t42s = quant_tile42_scales_fn_avx2(t);
            for (int n = 0; t42s && n + 4 <= 64; n += 4) {
                t42s(Q + n * rb, rb, K, wsc);
                t42s(Q + (n + 2) * rb, rb, K, wsc + (size_t)nb * QTILE42_WSC);
                t44(Q + n * rb, rb, wsc, &a[4], d4, corr, K, o);
                for (int c = 0; c < 4; c++)
                    for (int r = 0; r < 4; r++)
                        CHECK(memcmp(&o[4 * c + r], &ref[4 + r][n + c], 4) == 0, "%s tile44 row %d col %d: %.9g vs %.9g",
                              dtype_name(t), 4 + r, n + c, o[4 * c + r], ref[4 + r][n + c]);
            }
            xfree(d4), xfree(corr), xfree(wsc);
        }
        /* the VNNI 16x2 kernel (Q8_0): rows 0..15 against every pair of weight rows */
        printf("  %s tile16x2 avx512: %s\n", dtype_name(t),
               quant_q8t_available(t) ? "tested" : t != DT_Q8_0 ? "none for this type" : SKIPPED_CPU);
        if (quant_q8t_available(t)) {
            const int nb = K / 32;
            uint8_t *ag = xalloc((size_t)nb * 512, NULL);
            float *dg = xalloc((size_t)nb * 16 * 4, NULL), o[32];
            int32_t *wp = xalloc(2 * quant_q8t_wbytes(K), NULL), *wp1 = wp + quant_q8t_wbytes(K) / 4;
            quant_q8t_acts(a, nb, ag, dg);
            for (int n = 0; n + 2 <= 64; n += 2) {
                quant_q8t_weight(Q + n * rb, K, wp);
                quant_q8t_weight(Q + (n + 1) * rb, K, wp1);
                quant_q8t_tile(Q + n * rb, rb, wp, wp1, ag, dg, K, o);
                for (int c = 0; c < 2; c++)
                    for (int r = 0; r < 16; r++)
                        CHECK(memcmp(&o[16 * c + r], &ref[r][n + c], 4) == 0, "%s tile16x2 row %d col %d: %.9g vs %.9g",
                              dtype_name(t), r, n + c, o[16 * c + r], ref[r][n + c]);
            }
            xfree(ag), xfree(dg), xfree(wp);
        }
        for (int mi = 0; mi < 7; mi++)
            for (int ni = 0; ni < 6; ni++) {
                const int M = Ms[mi], N = Ns[ni];
                CHECK(matmul_quant_forward_ex(out, X, Q, t, M, N, K, QMM_Q8_ACTIVATIONS) == 0, "%s matmul", dtype_name(t));
                int bad = 0;
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < N; n++) bad += memcmp(&out[m * N + n], &ref[m][n], 4) != 0;
                CHECK(bad == 0, "%s matmul M=%d N=%d: %d outputs differ from the single-row dot", dtype_name(t), M, N, bad);
            }
        /* called from inside a parallel region (no nested team): each caller
         * thread gets the same bits in its own output */
        int nested_bad = 0;
#pragma omp parallel num_threads(2) reduction(+ : nested_bad)
        {
            float *o = malloc(MAXM * 64 * 4);
            if (!o || matmul_quant_forward_ex(o, X, Q, t, MAXM, 64, K, QMM_Q8_ACTIVATIONS)) nested_bad++;
            else
                for (int m = 0; m < MAXM; m++)
                    for (int n = 0; n < 64; n++) nested_bad += memcmp(&o[m * 64 + n], &ref[m][n], 4) != 0;
            free(o);
        }
        CHECK(nested_bad == 0, "%s matmul inside a parallel region: %d outputs differ", dtype_name(t), nested_bad);
        free(Q), xfree(scr);
    }
    free(W), free(X), free(out);
}

/* Q4_0 / Q5_0 keep one summation order (quant_blocks.h) in every kernel:
 * the scalar reference, the AVX2 dot / rows4 / dot8, the VNNI dot8 and the
 * VNNI panels all give the same bits per output. Raw random blocks (every
 * level and fifth-bit pattern), activations with +-127 and zero blocks;
 * panels of 16 rows and of a ragged tail, 1..9 activation rows. */
#define SKIPPED "skipped (none for this type, or not on this CPU / capped by JARIP_ISA)"
static void test_blocksum_paths(void) {
    const int types[] = {DT_Q4_0, DT_Q5_0, DT_Q4_K}, N = 21, M = 9;
    const int64_t KMAX = 3 * 256;
    float *X = malloc((size_t)M * KMAX * 4);
    for (int ti = 0; ti < 3; ti++) {
        const int t = types[ti], act = quant_act_type(t);
        const int64_t K = t == DT_Q4_K ? KMAX : 19 * 32; /* more blocks than a chunk: test_batch_kernels' K */
        fill(X, (int64_t)M * K, 41, 1.0f);
        X[5] = 1000.0f, X[K + 40] = -1000.0f;          /* +-127 after quantization */
        for (int k = 64; k < 96; k++) X[2 * K + k] = 0; /* an all-zero activation block */
        const size_t rb = dtype_row_bytes(t, K), bb = dtype_block_bytes(t), ab = quant_act_bytes(act, K);
        uint8_t *Q = malloc(rb * N), *scr = xalloc(ab * M, NULL);
        uint64_t key = rng_key(77, t, 0);
        for (size_t i = 0; i < rb * N; i++) Q[i] = (uint8_t)rng_u64(key, i);
        for (size_t blk = 0; blk < rb * N / bb; blk++) { /* sane half scales (and Q4_K mins), one zero */
            uint16_t d = f32_to_fp16(blk == 3 ? 0.0f : 0.001f * (float)(1 + blk % 13));
            memcpy(Q + blk * bb, &d, 2);
            if (t == DT_Q4_K) memcpy(Q + blk * bb + 2, &d, 2);
        }
        QAct a[9];
        for (int m = 0; m < M; m++) quant_act_row(act, X + (size_t)m * K, K, scr + m * ab, &a[m]);
        QDotFn ref = quant_dot_fn_scalar(t);
        float want[9][21];
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) want[m][n] = ref(Q + n * rb, &a[m], NULL, K);
        int bad = 0;
        QDotFn dot = quant_dot_fn_avx2(t);
        printf("  %s dot avx2: %s\n", dtype_name(t), dot ? "tested" : SKIPPED);
        for (int m = 0; dot && m < M; m++)
            for (int n = 0; n < N; n++) {
                const float g = dot(Q + n * rb, &a[m], NULL, K);
                bad += memcmp(&g, &want[m][n], 4) != 0;
            }
        CHECK(bad == 0, "%s dot avx2: %d outputs differ from the scalar reference", dtype_name(t), bad);
        QRows4Fn r4 = quant_rows4_fn_avx2(t);
        printf("  %s rows4 avx2: %s\n", dtype_name(t), r4 ? "tested" : SKIPPED);
        for (int n = 0, bad4 = 0; r4 && n < N; n++) {
            float o[4];
            r4(Q + n * rb, &a[2], K, o);
            for (int r = 0; r < 4; r++) bad4 += memcmp(&o[r], &want[2 + r][n], 4) != 0;
            CHECK(bad4 == 0, "%s rows4 avx2 col %d differs from the scalar reference", dtype_name(t), n);
        }
        QDot8Fn d8s[2] = {quant_dot8_fn_avx2(t), quant_dot8_fn_avx512(t)};
        for (int isa = 0; isa < 2; isa++) {
            printf("  %s dot8 %s: %s\n", dtype_name(t), isa ? "avx512" : "avx2", d8s[isa] ? "tested" : SKIPPED);
            int bad8 = 0;
            for (int m = 0; d8s[isa] && m < M; m++)
                for (int n = 0; n + 8 <= N; n += 5) {
                    float o[8];
                    d8s[isa](Q + n * rb, rb, &a[m], K, o);
                    for (int r = 0; r < 8; r++) bad8 += memcmp(&o[r], &want[m][n + r], 4) != 0;
                }
            CHECK(bad8 == 0, "%s dot8 %s: %d outputs differ from the scalar reference", dtype_name(t), isa ? "avx512" : "avx2", bad8);
        }
        QPanelFn panels[2] = {quant_panel_fn_avx2(t), quant_panel_fn_avx512(t)};
        QPanelPackFn pack = quant_panel_pack_fn(t);
        for (int isa = 0; isa < 2; isa++) {
            QPanelFn panel = panels[isa];
            printf("  %s panel %s: %s\n", dtype_name(t), isa ? "avx512" : "avx2", panel && pack ? "tested" : SKIPPED);
            if (!panel || !pack) continue;
            uint8_t *pan = xalloc(quant_panel_bytes(K), NULL);
            int32_t *corr = malloc((size_t)M * (size_t)(K / 32) * 4);
            quant_block_corr(t, a, M, K / 32, corr);
            float out[9 * 21];
            for (int mm = 1; mm <= M; mm++)
                for (int n0 = 0; n0 < N; n0 += QPANEL_ROWS) { /* 16 rows, then a tail of 5 */
                    const int rows = N - n0 < QPANEL_ROWS ? N - n0 : QPANEL_ROWS;
                    memset(out, 0xFF, sizeof out);
                    pack(Q + n0 * rb, rb, rows, K, pan);
                    panel(pan, a, corr, mm, K, out, (size_t)N, rows);
                    int badp = 0;
                    for (int m = 0; m < mm; m++)
                        for (int r = 0; r < rows; r++) badp += memcmp(&out[m * N + r], &want[m][n0 + r], 4) != 0;
                    for (int r = rows; r < N; r++) badp += out[r] == out[r]; /* columns past the panel stay untouched (NaN) */
                    CHECK(badp == 0, "%s panel M=%d rows=%d: %d outputs wrong", dtype_name(t), mm, rows, badp);
                }
            xfree(pan), free(corr);
        }
        for (int mm = 1; mm <= M; mm += mm == 1 ? 2 : M - 3) { /* the matmul: dot8 + dot (M = 1), panels where present (M = 3, 9) */
            float out[9 * 21];
            CHECK(matmul_quant_forward_ex(out, X, Q, t, mm, N, (int)K, QMM_Q8_ACTIVATIONS) == 0, "%s matmul", dtype_name(t));
            int badm = 0;
            for (int m = 0; m < mm; m++)
                for (int n = 0; n < N; n++) badm += memcmp(&out[m * N + n], &want[m][n], 4) != 0;
            CHECK(badm == 0, "%s matmul M=%d: %d outputs differ from the scalar reference", dtype_name(t), mm, badm);
        }
        free(Q), xfree(scr);
    }
    free(X);
}

/* Activations holding Inf or NaN (a hostile GGUF's weights produce them)
 * go through every matmul path with defined arithmetic (the sanitizer
 * build checks); Inf comes out non-finite, and rows without either stay
 * finite. The fuzzer found a signed overflow in the Q4_0 panels' offset
 * correction from such a row. */
static void test_nonfinite_activations(void) {
    const int N = 21, M = 3;
    const int64_t K = 256;
    float *X = malloc((size_t)M * K * 4), *out = malloc((size_t)M * N * 4);
    for (size_t ti = 0; ti < sizeof MM_TYPES / sizeof MM_TYPES[0]; ti++) {
        const int t = MM_TYPES[ti];
        const size_t rb = dtype_row_bytes(t, K);
        float *W = malloc((size_t)N * K * 4);
        uint8_t *Q = malloc(rb * N);
        fill(W, (int64_t)N * K, 5, 0.1f);
        for (int n = 0; n < N; n++) CHECK(quantize_row(t, W + (size_t)n * K, Q + n * rb, K) == 0, "quantize %s", dtype_name(t));
        for (int v = 0; v < 3; v++) {
            fill(X, (int64_t)M * K, 9, 1.0f);
            X[K + 7] = v == 0 ? INFINITY : v == 1 ? -INFINITY : NAN; /* row 1 only */
            for (int mm = 1; mm <= M; mm += 2) { /* M = 1: the dots; M = 3: the panels */
                const float *x = mm == 1 ? X + K : X;
                CHECK(matmul_quant_forward_ex(out, x, Q, t, mm, N, (int)K, QMM_Q8_ACTIVATIONS) == 0, "%s matmul", dtype_name(t));
                int finite_bad = 0, nonfinite = 0;
                for (int m = 0; m < mm; m++)
                    for (int n = 0; n < N; n++) {
                        const int row1 = mm == 1 || m == 1;
                        if (row1) nonfinite += !isfinite(out[m * N + n]);
                        else finite_bad += !isfinite(out[m * N + n]);
                    }
                CHECK(finite_bad == 0, "%s M=%d: a row without Inf/NaN came out non-finite", dtype_name(t), mm);
                /* an Inf makes the block's scale Inf; a NaN quantizes to -128 as in llama.cpp's
                 * SIMD code (its output may be finite garbage: only defined arithmetic is asked) */
                CHECK(v == 2 || nonfinite > 0, "%s M=%d: a row with Inf came out finite", dtype_name(t), mm);
            }
        }
        free(W), free(Q);
    }
    free(X), free(out);
}

int main(void) {
    test_round_trip();
    test_known_blocks();
    test_float_conversions();
    test_act();
    test_dots();
    test_matmul();
    test_low_kquants();
    test_batch_kernels();
    test_blocksum_paths();
    test_nonfinite_activations();
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("test_quant: ok\n");
    return 0;
}
