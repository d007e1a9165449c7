/* bf16 mixed precision against float32, layer by layer through the whole
 * model: the same weights and batch give a loss within bf16's rounding
 * (relative 1e-2; measured ~2e-5) and gradients within 5% of float32's per
 * tensor, for a GPT-2 and a Llama config; switching
 * back to fp32 gives float32's exact loss again. Skips where oneDNN has no
 * native bf16 kernels (and checks that bf16 is then refused). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "model/model.h"

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static void compare(const char *preset) {
    Config c;
    Err err = {0};
    CHECK(config_preset(&c, preset, &err) == 0, "%s", err.msg);
    Model m;
    CHECK(model_create(&m, &c, 1, &err) == 0, "%s", err.msg);
    model_init_weights(&m, 3);
    const int B = 2, T = 32;
    CHECK(model_plan_activations(&m, B, T, 1, &err) == 0, "%s", err.msg);
    int32_t tok[64], tgt[64];
    for (int i = 0; i < B * T; i++) tok[i] = (i * 37 + 11) % c.vocab_size, tgt[i] = (i * 53 + 5) % c.vocab_size;
    float *g32 = malloc(m.n_params * sizeof(float));
    memset(m.grads, 0, m.n_params * sizeof(float));
    const float l32 = model_forward(&m, tok, tgt, B, T, &err);
    model_backward(&m, tok, tgt, 1.0f);
    memcpy(g32, m.grads, m.n_params * sizeof(float));
    CHECK(model_set_precision(&m, PRECISION_BF16, &err) == 0, "%s", err.msg);
    memset(m.grads, 0, m.n_params * sizeof(float));
    const float l16 = model_forward(&m, tok, tgt, B, T, &err);
    model_backward(&m, tok, tgt, 1.0f);
    CHECK(fabsf(l16 - l32) <= 1e-2f * fabsf(l32), "%s: bf16 loss %.6f vs fp32 %.6f", preset, l16, l32);
    CHECK(l16 != l32, "%s: bf16 gave float32's exact loss (%.9g): were bf16 products used?", preset, l16);
    /* per tensor: |g16 - g32| <= 5% of |g32|, plus 1e-4 of the whole
     * gradient's norm for tensors whose true gradient is ~0 (the key bias:
     * softmax ignores a shift common to all keys, so both are noise) */
    const double G = sqrt(dot(g32, g32, m.n_params));
    int n_bad = 0;
    double worst = 0;
    for (int i = 0; i < m.n_tensors; i++) {
        const Tensor *t = &m.tensors[i];
        const float *a = g32 + t->offset, *b = m.grads + t->offset;
        double d = 0;
        for (size_t j = 0; j < t->numel; j++) d += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
        d = sqrt(d);
        const double na = sqrt(dot(a, a, t->numel)), rel = d / (na + 1e-30);
        if (na > 1e-3 * G && rel > worst) worst = rel;
        if (d > 0.05 * na + 1e-4 * G) {
            n_bad++;
            fprintf(stderr, "  %s %s: |g16 - g32| %.3g, |g32| %.3g\n", preset, t->name, d, na);
        }
    }
    CHECK(n_bad == 0, "%s: %d tensors' bf16 gradients stray from float32's", preset, n_bad);
    CHECK(model_set_precision(&m, PRECISION_FP32, &err) == 0, "%s", err.msg);
    const float again = model_forward(&m, tok, tgt, B, T, &err);
    CHECK(again == l32, "%s: back to fp32, loss %.9g vs %.9g", preset, again, l32);
    printf("  %s: loss fp32 %.6f bf16 %.6f, largest relative gradient difference %.3g\n", preset, l32, l16, worst);
    free(g32);
    model_free(&m);
}

int main(void) {
    if (!gemm_bf16_available()) {
        Config c;
        Model m;
        Err err = {0};
        config_preset(&c, "gpt2-tiny", &err);
        model_create(&m, &c, 1, &err);
        CHECK(model_set_precision(&m, PRECISION_BF16, &err) == ERR_UNSUPPORTED, "bf16 must be refused without native units");
        model_free(&m);
        printf("test_precision: bf16 comparison skipped: no native bf16 (oneDNN %s)\n", gemm_isa_name());
    } else {
        compare("gpt2-tiny");
        compare("llama-tiny");
    }
    if (!failures) printf("test_precision: ok\n");
    return failures != 0;
}
