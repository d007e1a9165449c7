/* bf16 mixed precision against float32, layer by layer through the whole
 * model: the same weights and batch give each layer's output within bf16's
 * rounding (relative 1e-2 of its norm; bf16 keeps 8 significant bits, 2^-8
 * = 0.4% per rounding, and the errors of a sum of products partly cancel),
 * a loss within 1e-2 (measured ~2e-5) and gradients within 5% of float32's
 * per tensor, for a GPT-2, a Llama and a mixture-of-experts config. In the
 * MoE the experts run in bf16 too (checked with them alone in bf16), the
 * router stays float32. Switching back to fp32 gives float32's exact loss
 * again. Skips where oneDNN has no native bf16 kernels (and checks that bf16
 * is then refused). */
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
    const size_t NC = (size_t)B * T * c.d_model;
    float *y32 = malloc((size_t)c.n_layer * NC * sizeof(float)); /* each layer's output in float32 */
    memset(m.grads, 0, m.n_params * sizeof(float));
    const float l32 = model_forward(&m, tok, tgt, B, T, &err);
    for (int l = 0; l < c.n_layer; l++) memcpy(y32 + l * NC, m.act.res_ffn[l], NC * sizeof(float));
    model_backward(&m, tok, tgt, 1.0f);
    memcpy(g32, m.grads, m.n_params * sizeof(float));
    CHECK(model_set_precision(&m, PRECISION_BF16, &err) == 0, "%s", err.msg);
    for (int i = 0; i < m.n_tensors; i++) { /* every float32 matrix of a linear layer or expert; not the router */
        const Tensor *t = &m.tensors[i];
        const int router = strstr(t->name, "ffn_gate_inp") != NULL, matrix = t->flags & PF_EXPERT ? t->ndim == 3 : t->ndim == 2;
        const int linear = matrix && !router && strstr(t->name, "_norm") == NULL && strstr(t->name, "embd") == NULL;
        if (!strcmp(t->name, "token_embd.weight") && m.lm_head == t) continue; /* tied: it is the head */
        CHECK(!!t->bf16 == linear, "%s: %s %s bf16", preset, t->name, t->bf16 ? "runs in" : "does not run in");
    }
    if (c.n_expert > 0) { /* the experts alone in bf16: the loss moves, within tolerance */
        for (int i = 0; i < m.n_tensors; i++)
            if (!(m.tensors[i].flags & PF_EXPERT)) m.tensors[i].bf16 = NULL;
        const float le = model_forward(&m, tok, tgt, B, T, &err);
        CHECK(le != l32 && fabsf(le - l32) <= 1e-2f * fabsf(l32), "%s: experts alone in bf16: loss %.9g vs fp32 %.9g",
              preset, le, l32);
        CHECK(model_set_precision(&m, PRECISION_BF16, &err) == 0, "%s", err.msg);
    }
    memset(m.grads, 0, m.n_params * sizeof(float));
    const float l16 = model_forward(&m, tok, tgt, B, T, &err);
    double worst_layer = 0;
    for (int l = 0; l < c.n_layer; l++) {
        const float *a = y32 + l * NC, *b = m.act.res_ffn[l];
        double d = 0;
        for (size_t j = 0; j < NC; j++) d += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
        const double rel = sqrt(d / dot(a, a, NC));
        CHECK(rel <= 1e-2, "%s: layer %d output differs from float32's by %.3g of its norm", preset, l, rel);
        if (rel > worst_layer) worst_layer = rel;
    }
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
    printf("  %s: loss fp32 %.6f bf16 %.6f, largest relative difference of a layer's output %.3g, of a gradient %.3g\n",
           preset, l32, l16, worst_layer, worst);
    free(g32);
    free(y32);
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
        CHECK(strstr(err.msg, "native bf16") && strstr(err.msg, "--precision fp32") && !strchr(err.msg, '\n'),
              "the refusal is one line that names the problem and the way out: %s", err.msg);
        int any = m.precision != PRECISION_FP32;
        for (int i = 0; i < m.n_tensors; i++) any |= m.tensors[i].bf16 != NULL;
        CHECK(!any, "a refused bf16 leaves the model in fp32");
        model_free(&m);
        printf("test_precision: bf16 comparison skipped: no native bf16 (oneDNN %s)\n", gemm_isa_name());
    } else {
        compare("gpt2-tiny");
        compare("llama-tiny");
        compare("moe-tiny");
    }
    if (!failures) printf("test_precision: ok\n");
    return failures != 0;
}
