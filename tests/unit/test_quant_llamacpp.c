/* The llama.cpp-numerics inference kernels (kernels/quant_llamacpp.c): their
 * portable scalar paths must give the same bits as the AVX2 ones, since
 * results are meant to equal llama.cpp's on any CPU. (Agreement with
 * llama.cpp itself is checked end to end by test_infer_llamacpp.)
 * The file is included so its static helpers can be compared directly;
 * nothing here links the library's copy of it. */
#include "../../src/kernels/quant_llamacpp.c"

#include <stdio.h>

#include "check.h"

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
    CHECK(exp_ggml(-INFINITY) == 0.0f, "exp(-inf) = %g", exp_ggml(-INFINITY));
    CHECK(fabsf(exp_ggml(1.0f) - 2.7182817f) < 1e-6f, "exp(1) = %.9g", exp_ggml(1.0f));

    float a[256], b[256];
    for (int i = 0; i < 256; i++) a[i] = sinf(i * 1.3f) * 3, b[i] = cosf(i * 0.7f);
    const float d1 = dot_vecdot_scalar(a, b, 256), d2 = dot_vecdot_avx2(a, b, 256);
    CHECK(memcmp(&d1, &d2, 4) == 0, "vec_dot order: scalar %.9g simd %.9g", d1, d2);

    /* weighted value sums in both lane layouts, with zero (masked) weights */
    static float vv[40 * 64], acc[32 * 64];
    float p[40], o1[64], o2[64];
    for (int j = 0; j < 40; j++) p[j] = j % 7 ? 0.01f * j : 0;
    for (int i = 0; i < 40 * 64; i++) vv[i] = sinf(i * 0.37f);
    for (int lanes = 8; lanes <= 32; lanes *= 4) {
        weighted_sum_avx2(o1, p, vv, 64, 40, 64, lanes, acc);
        weighted_sum_scalar(o2, p, vv, 64, 40, 64, lanes, acc);
        CHECK(memcmp(o1, o2, sizeof o1) == 0, "weighted sum (%d lanes): scalar and simd differ", lanes);
    }
    float w1[64], w2[64];
    for (int i = 0; i < 64; i++) w1[i] = w2[i] = i < 40 ? sinf((float)i) * 5 : -INFINITY;
    softmax_avx2(w1, 64, 5.0f);
    softmax_scalar(w2, 64, 5.0f);
    CHECK(memcmp(w1, w2, sizeof w1) == 0, "softmax: scalar and simd differ");
    double sum = 0;
    for (int i = 0; i < 64; i++) sum += w1[i];
    CHECK(fabs(sum - 1.0) < 1e-5 && w1[63] == 0.0f, "softmax sums to %g, masked %g", sum, w1[63]);

    /* attention of a batch equals per-position single queries up to the
     * value-sum order only: a causal row sees exactly its prefix */
    enum { T = 5, H = 2, D = 32 };
    static float q[T * H * D], kc[T * H * D], vc[T * H * D], out[T * H * D], one[H * D];
    for (int i = 0; i < T * H * D; i++) q[i] = sinf(i * 0.1f), kc[i] = cosf(i * 0.23f), vc[i] = sinf(i * 0.05f + 1);
    CHECK(lcpp_attention(out, q, kc, vc, T, 0, H, H, D) == 0, "attention failed");
    CHECK(lcpp_attention(one, q, kc, vc, 1, 0, H, H, D) == 0, "attention failed"); /* position 0 sees only itself: softmax 1 */
    for (int i = 0; i < H * D; i++) CHECK(one[i] == vc[i] && out[i] == vc[i], "position 0 attends only to itself: %g %g vs %g", one[i], out[i], vc[i]);
#else
    printf("SKIP test_quant_llamacpp: not x86\n");
#endif
    if (failures) return fprintf(stderr, "test_quant_llamacpp: %d failure(s)\n", failures), 1;
    printf("test_quant_llamacpp: ok\n");
    return 0;
}
