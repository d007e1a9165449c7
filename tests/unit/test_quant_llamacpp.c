/* The llama.cpp-numerics inference kernels (kernels/quant_llamacpp.c): their
 * portable scalar paths must give the same bits as the AVX2 ones, since
 * results are meant to equal llama.cpp's on any CPU; so must the F16 KV
 * cache's (half keys and values, queries and probabilities rounded to half). (Agreement with
 * llama.cpp itself is checked end to end by test_infer_llamacpp.)
 * The file is included so its static helpers can be compared directly;
 * nothing here links the library's copy of it. */
#include "../../src/kernels/quant_llamacpp.c"

#include <stdio.h>

#include "check.h"

#if HAVE_SIMD_PATH
/* Lanes where the sixteen-lane exp differs from the scalar one, over the
 * range the eight-lane check uses (its own function: AVX-512 code). */
TGT512 static long exp16_mismatches(void) {
    long bad = 0;
    for (long i = 0; i < 200000; i++) {
        float xs[16], v[16];
        for (int l = 0; l < 16; l++) xs[l] = (float)((i * 16 + l) * 6e-5 - 120.0);
        if (i == 0) xs[0] = -INFINITY, xs[1] = 100.f, xs[2] = -100.f, xs[3] = 0.f, xs[9] = -95.f;
        _mm512_storeu_ps(v, exp16(_mm512_loadu_ps(xs)));
        for (int l = 0; l < 16; l++) {
            const float s = exp_ggml(xs[l]);
            bad += memcmp(&s, &v[l], 4) != 0;
        }
    }
    return bad;
}
#endif

int main(void) {
#if HAVE_SIMD_PATH
    if (!have_avx2()) {
        printf("SKIP test_quant_llamacpp: no AVX2/FMA\n");
        return 0;
    }
    /* vector exp: every lane equal to the scalar version, over the normal
     * range, both out-of-range branches and -inf (masked scores) */
    long bad = 0;
    for (long i = 0; i < 400000; i++) {
        float xs[8], v[8];
        for (int l = 0; l < 8; l++) xs[l] = (float)((i * 8 + l) * 6e-5 - 120.0);
        if (i == 0) xs[0] = -INFINITY, xs[1] = 100.f, xs[2] = -100.f, xs[3] = 0.f;
        _mm256_storeu_ps(v, exp8(_mm256_loadu_ps(xs)));
        for (int l = 0; l < 8; l++) {
            const float s = exp_ggml(xs[l]);
            bad += memcmp(&s, &v[l], 4) != 0;
        }
    }
    CHECK(bad == 0, "vector exp differs from the scalar one in %ld lanes", bad);
    if (kernel_isa() >= ISA_AVX512) { /* the sixteen-lane exp of the AVX-512 softmax, the same inputs */
        bad = exp16_mismatches();
        CHECK(bad == 0, "sixteen-lane exp differs from the scalar one in %ld lanes", bad);
        printf("  exp, sixteen lanes (AVX-512): same bits as the scalar exp\n");
    } else {
        printf("  exp, sixteen lanes (AVX-512): skipped (no AVX-512 on this CPU, or capped by JARIP_ISA)\n");
    }
    CHECK(exp_ggml(-INFINITY) == 0.0f, "exp(-inf) = %g", exp_ggml(-INFINITY));
    CHECK(fabsf(exp_ggml(1.0f) - 2.7182817f) < 1e-6f, "exp(1) = %.9g", exp_ggml(1.0f));

    float a[256], b[256];
    for (int i = 0; i < 256; i++) a[i] = sinf(i * 1.3f) * 3, b[i] = cosf(i * 0.7f);
    const float d1 = dot_vecdot_scalar(a, b, 256), d2 = dot_vecdot_avx2(a, NULL, b, 256);
    CHECK(memcmp(&d1, &d2, 4) == 0, "vec_dot order: scalar %.9g simd %.9g", d1, d2);
    /* half keys: rounding (F16C vs the portable converter, subnormals and
     * overflow included), then both score orders (32 and 8 lanes) */
    static float big[4096], r1[4096], r2[4096];
    static uint16_t h1[4096], h2[4096];
    for (int i = 0; i < 4096; i++) big[i] = ldexpf(sinf(i * 0.77f), i % 48 - 30); /* 2^-30 .. 2^17 */
    kv_store_f16(h1, big, 4096);
    for (int i = 0; i < 4096; i++) h2[i] = f32_to_fp16(big[i]);
    CHECK(memcmp(h1, h2, sizeof h1) == 0, "half stores: F16C and the portable rounding differ");
    kv_load_f16(r1, h1, 4096);
    for (int i = 0; i < 4096; i++) r2[i] = fp16_to_f32(h1[i]);
    CHECK(memcmp(r1, r2, sizeof r1) == 0, "half loads: F16C and the portable widening differ");
    memcpy(r1, big, sizeof r1);
    memcpy(r2, big, sizeof r2);
    round_half_avx2(r1, 4096);
    round_half_scalar(r2, 4096);
    CHECK(memcmp(r1, r2, sizeof r1) == 0, "rounding to half: scalar and simd differ");
    uint16_t ah[256];
    kv_store_f16(ah, a, 256);
    for (int lanes8 = 0; lanes8 <= 1; lanes8++) {
        const float e1 = dot_key_scalar(NULL, ah, b, 256, lanes8), e2 = dot_key_avx2(NULL, ah, b, 256, lanes8);
        CHECK(memcmp(&e1, &e2, 4) == 0, "half key score (%s): scalar %.9g simd %.9g", lanes8 ? "8 lanes" : "32 lanes", e1,
              e2);
    }

    /* weighted value sums in both lane layouts, with zero (masked) weights */
    static float vv[40 * 64], acc[32 * 64];
    float p[40], o1[64], o2[64];
    for (int j = 0; j < 40; j++) p[j] = j % 7 ? 0.01f * j : 0;
    for (int i = 0; i < 40 * 64; i++) vv[i] = sinf(i * 0.37f);
    static uint16_t vh[40 * 64];
    kv_store_f16(vh, vv, 40 * 64);
    for (int n = 37; n <= 40; n += 3) /* a partial last group of 8, and whole ones */
        for (int lanes = 8; lanes <= 32; lanes *= 4) {
            weighted_sum_avx2(o1, p, vv, NULL, 64, n, 64, lanes, acc);
            weighted_sum_scalar(o2, p, vv, NULL, 64, n, 64, lanes, acc);
            CHECK(memcmp(o1, o2, sizeof o1) == 0, "weighted sum (%d lanes, n %d): scalar and simd differ", lanes, n);
            weighted_sum_avx2(o1, p, NULL, vh, 64, n, 64, lanes, acc);
            weighted_sum_scalar(o2, p, NULL, vh, 64, n, 64, lanes, acc);
            CHECK(memcmp(o1, o2, sizeof o1) == 0, "half weighted sum (%d lanes, n %d): scalar and simd differ", lanes, n);
        }
    float w1[64], w2[64];
    for (int i = 0; i < 64; i++) w1[i] = w2[i] = i < 40 ? sinf((float)i) * 5 : -INFINITY;
    softmax_avx2(w1, 64, 5.0f);
    softmax_scalar(w2, 64, 5.0f);
    CHECK(memcmp(w1, w2, sizeof w1) == 0, "softmax: scalar and simd differ");
    double sum = 0;
    for (int i = 0; i < 64; i++) sum += w1[i];
    CHECK(fabs(sum - 1.0) < 1e-5 && w1[63] == 0.0f, "softmax sums to %g, masked %g", sum, w1[63]);

    /* one (query, head) over a half cache: the whole scalar path gives the
     * AVX2 path's bits, for a batch (8 lanes) and a single query (32) */
    {
        static float scr1[HEAD_STACK_FLOATS], scr2[HEAD_STACK_FLOATS], qq[64], x1[64], x2[64];
        static uint16_t kh[40 * 64];
        for (int i = 0; i < 64; i++) qq[i] = cosf(i * 0.41f) * 2;
        for (int i = 0; i < 40 * 64; i++) kh[i] = f32_to_fp16(cosf(i * 0.29f) * 3);
        const HeadKV c = {NULL, NULL, kh, vh, 64}; /* 40 positions of 64 halves */
        for (int batched = 0; batched <= 1; batched++) {
            one_head(x1, qq, &c, 40, 64, 0.125f, batched, scr1, 1);
            one_head(x2, qq, &c, 40, 64, 0.125f, batched, scr2, 0);
            CHECK(memcmp(x1, x2, sizeof x1) == 0, "half-cache attention head (batched %d): scalar and simd differ", batched);
        }
    }

    /* the batched half-cache attention (several queries per pass over the
     * keys) against one_head's batched path, query by query: same bits for
     * ragged blocks of positions, a cache already holding pos0 positions,
     * GQA groups that do and do not fill the 4-query kernel, an odd
     * number of keys, and a four of queries whose first one ends at 32
     * positions and the others at 33 (pos0 5, group 3: its probabilities
     * past 32 must be zeroed for the shared pass); then several work items
     * of 16 positions (run in parallel) and D = 128. Both paths: AVX-512's
     * 3 x 16 outer-form tile and sixteen-lane softmax where the CPU has them,
     * AVX2's 2 x 4 dot-form tile (JARIP_ISA=avx2). */
    for (int wide = 1; wide >= 0; wide--) {
        if (wide && kernel_isa() < ISA_AVX512) {
            printf("  batched half attention, AVX-512 path: skipped (no AVX-512 on this CPU, or capped by JARIP_ISA)\n");
            continue;
        }
        const char *cap = getenv("JARIP_ISA");
        char saved[32] = "";
        if (cap) snprintf(saved, sizeof saved, "%s", cap);
        if (!wide) setenv("JARIP_ISA", "avx2", 1);
        static const int shapes[][4] = {{2, 0, 2, 2}, {5, 3, 3, 1}, {13, 0, 9, 3}, {17, 37, 4, 2}, {9, 2, 1, 1},
                                        {3, 30, 6, 3}, {30, 5, 9, 3}, {70, 11, 9, 3}, {33, 0, 8, 2}};
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (int Dh = 32; Dh <= 128; Dh *= 2) {
                const int Tn = shapes[s][0], p0 = shapes[s][1], Hq = shapes[s][2], Hk = shapes[s][3], S = p0 + Tn;
                float *qb = malloc((size_t)Tn * Hq * Dh * sizeof(float)), *o1 = malloc((size_t)Tn * Hq * Dh * sizeof(float)),
                      *o2 = malloc((size_t)Tn * Hq * Dh * sizeof(float));
                uint16_t *kb = malloc((size_t)S * Hk * Dh * 2), *vb = malloc((size_t)S * Hk * Dh * 2);
                CHECK(qb && o1 && o2 && kb && vb, "out of memory");
                if (!(qb && o1 && o2 && kb && vb)) break;
                for (int i = 0; i < Tn * Hq * Dh; i++) qb[i] = sinf(i * 0.37f + s) * 2;
                for (int i = 0; i < S * Hk * Dh; i++) kb[i] = f32_to_fp16(cosf(i * 0.29f) * 3), vb[i] = f32_to_fp16(sinf(i * 0.13f + 1));
                CHECK(lcpp_attention_half_batched(o1, qb, kb, vb, Tn, p0, Hq, Hk, Dh) == 0, "batched half attention failed");
                CHECK(attention_any(o2, qb, NULL, NULL, kb, vb, Tn, p0, Hq, Hk, Dh) == 0, "attention failed");
                CHECK(memcmp(o1, o2, (size_t)Tn * Hq * Dh * sizeof(float)) == 0,
                      "batched half attention (%s, T %d, pos0 %d, Hq %d, Hkv %d, D %d): bits differ from one query at a time",
                      wide ? "avx512" : "avx2", Tn, p0, Hq, Hk, Dh);
                free(qb), free(o1), free(o2), free(kb), free(vb);
            }
        if (cap) setenv("JARIP_ISA", saved, 1); else unsetenv("JARIP_ISA");
        printf("  batched half attention, %s tile: same bits as one query at a time\n", wide ? "AVX-512 3x16 outer" : "AVX2 2x4 dot");
    }

    /* the decoding attention (the query heads of a kv head sharing each
     * key and value load, split over keys and over slices of D) against
     * one_head's single-query path: same bits for groups of 1, 3 and 4
     * (3 + 1) heads, contexts of 1 to 300 positions (several key blocks, in parallel with 2 threads,
     * a short last group of four keys) and D of 32 to 128 */
    {
        static const int shapes[][3] = {{0, 2, 2}, {5, 3, 1}, {130, 9, 3}, {300, 8, 2}, {37, 1, 1}, {200, 4, 1}, {600, 9, 3}}; /* the last one runs in parallel */
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (int Dh = 32; Dh <= 128; Dh *= 2) {
                const int p0 = shapes[s][0], Hq = shapes[s][1], Hk = shapes[s][2], S = p0 + 1;
                float *qb = malloc((size_t)Hq * Dh * sizeof(float)), *o1 = malloc((size_t)Hq * Dh * sizeof(float)),
                      *o2 = malloc((size_t)Hq * Dh * sizeof(float));
                uint16_t *kb = malloc((size_t)S * Hk * Dh * 2), *vb = malloc((size_t)S * Hk * Dh * 2);
                CHECK(qb && o1 && o2 && kb && vb, "out of memory");
                if (!(qb && o1 && o2 && kb && vb)) break;
                for (int i = 0; i < Hq * Dh; i++) qb[i] = sinf(i * 0.31f + s) * 2;
                for (int i = 0; i < S * Hk * Dh; i++) kb[i] = f32_to_fp16(cosf(i * 0.17f) * 3), vb[i] = f32_to_fp16(sinf(i * 0.07f + 2));
                CHECK(attention_half_decode(o1, qb, kb, vb, p0, Hq, Hk, Dh) == 0, "decoding attention failed");
                CHECK(attention_any(o2, qb, NULL, NULL, kb, vb, 1, p0, Hq, Hk, Dh) == 0, "attention failed");
                CHECK(memcmp(o1, o2, (size_t)Hq * Dh * sizeof(float)) == 0,
                      "decoding attention (pos0 %d, Hq %d, Hkv %d, D %d): bits differ from one head at a time", p0, Hq, Hk, Dh);
                free(qb), free(o1), free(o2), free(kb), free(vb);
            }
    }

    /* attention of a batch equals per-position single queries up to the
     * value-sum order only: a causal row sees exactly its prefix */
    enum { T = 5, H = 2, D = 32 };
    static float q[T * H * D], kc[T * H * D], vc[T * H * D], out[T * H * D], one[H * D];
    for (int i = 0; i < T * H * D; i++) q[i] = sinf(i * 0.1f), kc[i] = cosf(i * 0.23f), vc[i] = sinf(i * 0.05f + 1);
    CHECK(lcpp_attention(out, q, kc, vc, T, 0, H, H, D) == 0, "attention failed");
    CHECK(lcpp_attention(one, q, kc, vc, 1, 0, H, H, D) == 0, "attention failed"); /* position 0 sees only itself: softmax 1 */
    for (int i = 0; i < H * D; i++) CHECK(one[i] == vc[i] && out[i] == vc[i], "position 0 attends only to itself: %g %g vs %g", one[i], out[i], vc[i]);
    /* RMSNorm, rows four at a time: every row the sequential double sum of
     * ggml (a scalar copy here), for 1..9 rows (short last groups) and in
     * parallel (N >= 16) */
    {
        enum { C = 96, NMAX = 37 };
        static float xs[NMAX * C], ws[C], got[NMAX * C];
        for (int i = 0; i < NMAX * C; i++) xs[i] = sinf(i * 0.731f) * (1 + i % 7);
        for (int j = 0; j < C; j++) ws[j] = 0.5f + cosf(j * 0.1f);
        int bad = 0;
        for (int N = 1; N <= NMAX; N += N < 9 ? 1 : 28) {
            lcpp_rmsnorm(got, xs, ws, N, C, 1e-5f);
            for (int i = 0; i < N; i++) {
                double ss = 0;
                for (int j = 0; j < C; j++) ss += (double)(xs[i * C + j] * xs[i * C + j]);
                const float scale = 1.0f / sqrtf((float)(ss / C) + 1e-5f);
                for (int j = 0; j < C; j++) {
                    const float y = xs[i * C + j] * scale, want = y * ws[j];
                    bad += memcmp(&want, &got[i * C + j], 4) != 0;
                }
            }
        }
        CHECK(bad == 0, "rmsnorm: %d values differ from the sequential double sum", bad);
    }
#else
    printf("SKIP test_quant_llamacpp: not x86\n");
#endif
    if (failures) return fprintf(stderr, "test_quant_llamacpp: %d failure(s)\n", failures), 1;
    printf("test_quant_llamacpp: ok\n");
    return 0;
}
