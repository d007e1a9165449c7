/* Finite-difference gradient check of every layer, in float64.
 *
 * This program and the model/kernel sources it links are compiled with
 * `float` defined as `double` (CMakeLists.txt, target test_gradcheck64), so
 * the very code that trains runs here in double precision, and central
 * differences are accurate to ~1e-8. For each config (GPT-2: LayerNorm,
 * GELU, learned positions, biases, tied embeddings; Llama: RMSNorm, RoPE in
 * both layouts, SwiGLU, GQA, untied; MoE: router, top-k experts, aux loss)
 * and for every parameter tensor, the analytic gradient is compared with
 * (L(w + h) - L(w - h)) / 2h on sampled elements, and along one random
 * direction over the whole tensor. Ignored targets (-1) are included. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

static int failures = 0;

static double loss_at(Model *m, const int32_t *tok, const int32_t *tgt, int B, int T) {
    Err err = {0};
    double l = model_forward(m, tok, tgt, B, T, &err);
    if (isnan(l)) {
        fprintf(stderr, "forward failed: %s\n", err.msg);
        exit(1);
    }
    return l;
}

static void die(const char *name, const Err *err) {
    fprintf(stderr, "%s: %s\n", name, err->msg);
    exit(1);
}

static void check_model(const char *name, Model *m);

static void check_config(const char *name, const char *json) {
    Config c;
    Err err = {0};
    if (config_from_json(&c, json, &err)) die(name, &err);
    Model m;
    if (model_create(&m, &c, 1, &err)) die(name, &err);
    model_init_weights(&m, 5);
    /* larger-than-init weights so every path carries a sizable gradient */
    uint64_t key = rng_key(11, 0, 0);
    for (size_t i = 0; i < m.n_params; i++) m.params[i] += 0.3 * rng_normal(key, i);
    check_model(name, &m);
    model_free(&m);
}

/* double -> IEEE half, round to nearest (ties away: any rounding will do,
 * the check only needs the base to be stored in half). */
static uint16_t double_to_half(double v) {
    uint16_t sign = v < 0 ? 0x8000 : 0;
    v = fabs(v);
    if (v < ldexp(1, -14)) return sign | (uint16_t)lround(v / ldexp(1, -24));
    int e;
    double f = frexp(v, &e); /* v = f 2^e, f in [0.5, 1) */
    long mant = lround((f * 2 - 1) * 1024);
    if (mant == 1024) mant = 0, e++;
    return sign | (uint16_t)((e + 14) << 10) | (uint16_t)mant;
}

/* LoRA on a frozen base stored in half precision (F16, as a GGUF's): the
 * gradients of A and B by finite differences; the blocks' A/B gradients of
 * early layers flow back through every later frozen weight (dX = dY W from
 * W's own half-precision rows, a few rows at a time in this build's tiles)
 * and the frozen F16 output and embedding weights. dropout > 0: with LoRA
 * dropout on, one fixed mask per adapter (the same pass for every forward),
 * so the adapters' input gradients go through the masks too. f16 0: the
 * base stays float, where training runs each adapter merged into its
 * weight (W + scale B A, lora.c) once the batch's rows pay for it (here
 * 14 rows against 16 x 16 weights, which pay from 8). */
static void check_lora(const char *name, const char *json, const char *targets, int rank, double dropout, int f16) {
    Config c;
    Err err = {0};
    if (config_from_json(&c, json, &err)) die(name, &err);
    Model base;
    if (model_create(&base, &c, 0, &err)) die(name, &err);
    model_init_weights(&base, 5);
    uint64_t key = rng_key(11, 0, 0);
    for (size_t i = 0; i < base.n_params; i++) base.params[i] += 0.3 * rng_normal(key, i);
    uint16_t *half = malloc(base.n_params * sizeof *half);
    for (int i = 0; i < base.n_tensors; i++) {
        Tensor *t = &base.tensors[i];
        if (!f16 || t->ndim != 2 || t == base.pos_emb) continue; /* positions are read as floats (GGUF loads them so) */
        uint16_t *h = half + t->offset;
        for (size_t j = 0; j < t->numel; j++) h[j] = double_to_half(((double *)t->data)[j]);
        t->data = h;
        t->dtype = DT_F16;
    }
    Config lc = c;
    lc.lora_rank = rank;
    lc.lora_alpha = 2.0f * rank;
    lc.lora_dropout = dropout;
    if (lora_targets_parse(targets, &lc.lora_targets, &err) || config_validate(&lc, &err)) die(name, &err);
    Model m;
    if (model_create(&m, &lc, 1, &err)) die(name, &err);
    model_init_weights(&m, 6);
    for (size_t i = 0; i < m.n_params; i++) m.params[i] += 0.3 * rng_normal(key, 77 + i); /* B = 0 at init */
    if (model_lora_attach(&m, &base, 1.0f, &err)) die(name, &err);
    model_lora_dropout_pass(&m, 99, 3, 1, 7);
    check_model(name, &m);
    model_free(&m);
    model_free(&base);
    free(half);
}

static void check_model(const char *name, Model *mp) {
    Model m = *mp; /* the model's views; freed by the caller */
    Err err = {0};
    uint64_t key = rng_key(11, 0, 0);
    const Config c = m.cfg;
    const int B = 2, T = 7;
    if (model_plan_activations(&m, B, T, 1, &err)) die(name, &err);
    int32_t tok[B * T], tgt[B * T];
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)(rng_u64(key, 1000 + i) % (uint64_t)c.vocab_size);
        tgt[i] = (i % 5 == 3) ? -1 : (int32_t)(rng_u64(key, 2000 + i) % (uint64_t)c.vocab_size);
    }
    memset(m.grads, 0, m.n_params * sizeof(double));
    loss_at(&m, tok, tgt, B, T);
    model_backward(&m, tok, tgt, 1.0);
    double *g = malloc(m.n_params * sizeof(double));
    memcpy(g, m.grads, m.n_params * sizeof(double));
    const double h = 1e-5;
    double worst = 0.0;
    for (int ti = 0; ti < m.n_tensors; ti++) {
        Tensor *t = &m.tensors[ti];
        double *w = (double *)t->data, *gt = g + t->offset;
        /* a few single elements ... */
        for (int s = 0; s < 3; s++) {
            size_t j = rng_u64(key, 5000 + ti * 10 + s) % t->numel;
            double keep = w[j];
            w[j] = keep + h;
            double lp = loss_at(&m, tok, tgt, B, T);
            w[j] = keep - h;
            double lm = loss_at(&m, tok, tgt, B, T);
            w[j] = keep;
            double fd = (lp - lm) / (2 * h), err_abs = fabs(fd - gt[j]);
            double rel = err_abs / fmax(fabs(fd) + fabs(gt[j]), 1e-6);
            if (rel > worst && fabs(fd) + fabs(gt[j]) > 1e-6) worst = rel;
            if (err_abs > 1e-7 && rel > 1e-4) {
                printf("FAIL %s %s[%zu]: analytic %.10g, finite difference %.10g\n", name, t->name, j, gt[j], fd);
                failures++;
            }
        }
        /* ... and one random direction over the whole tensor */
        double *u = malloc(t->numel * sizeof(double)), dot = 0.0;
        for (size_t j = 0; j < t->numel; j++) {
            u[j] = rng_normal(key, 9000000 + ti * 100000 + j);
            dot += u[j] * gt[j];
        }
        for (size_t j = 0; j < t->numel; j++) w[j] += h * u[j];
        double lp = loss_at(&m, tok, tgt, B, T);
        for (size_t j = 0; j < t->numel; j++) w[j] -= 2 * h * u[j];
        double lm = loss_at(&m, tok, tgt, B, T);
        for (size_t j = 0; j < t->numel; j++) w[j] += h * u[j];
        double fd = (lp - lm) / (2 * h), rel = fabs(fd - dot) / fmax(fabs(fd) + fabs(dot), 1e-6);
        if (rel > worst && fabs(fd) + fabs(dot) > 1e-6) worst = rel;
        if (rel > 1e-5 && fabs(fd - dot) > 1e-8) { /* zero-gradient tensors (k bias) show only noise */
            printf("FAIL %s %s (direction): analytic %.10g, finite difference %.10g\n", name, t->name, dot, fd);
            failures++;
        }
        free(u);
    }
    printf("%-22s %2d tensors, %zu parameters: worst relative error %.2e\n", name, m.n_tensors, m.n_params, worst);
    free(g);
    model_activations_free(&m.act);
    mp->act = m.act;
}

int main(void) {
    if (sizeof(float) != sizeof(double)) {
        fprintf(stderr, "this test must be compiled with float defined as double\n");
        return 1;
    }
    check_config("gpt2", "{\"arch\": \"gpt2\", \"vocab_size\": 37, \"context_length\": 16, \"n_layer\": 2, "
                         "\"d_model\": 16, \"n_head\": 4}");
    check_config("llama-gqa", "{\"arch\": \"llama\", \"vocab_size\": 37, \"context_length\": 16, \"n_layer\": 2, "
                              "\"d_model\": 16, \"n_head\": 4, \"n_kv_head\": 2, \"d_ff\": 24}");
    check_config("llama-neox-rope", "{\"arch\": \"llama\", \"vocab_size\": 37, \"n_layer\": 1, \"d_model\": 16, "
                                    "\"n_head\": 2, \"d_ff\": 24, \"rope_style\": \"neox\", \"rope_theta\": 500}");
    check_config("moe-1", "{\"arch\": \"gpt2\", \"vocab_size\": 37, \"n_layer\": 1, \"d_model\": 16, \"n_head\": 2, \"d_ff\": 12, \"n_expert\": 1, \"n_expert_active\": 1, \"moe_aux_coef\": 0}");
    check_config("moe", "{\"arch\": \"llama\", \"vocab_size\": 37, \"context_length\": 16, \"n_layer\": 2, "
                        "\"d_model\": 16, \"n_head\": 4, \"n_kv_head\": 2, \"d_ff\": 12, \"n_expert\": 4, "
                        "\"n_expert_active\": 2, \"moe_aux_coef\": 0.5}");
    check_config("moe-gelu-bias", "{\"arch\": \"gpt2\", \"vocab_size\": 37, \"context_length\": 16, \"n_layer\": 1, "
                                  "\"d_model\": 16, \"n_head\": 2, \"d_ff\": 12, \"n_expert\": 3, "
                                  "\"n_expert_active\": 1, \"moe_aux_coef\": 0.3}");
    check_lora("lora-llama-f16-base", "{\"arch\": \"llama\", \"vocab_size\": 37, \"context_length\": 16, \"n_layer\": 2, "
               "\"d_model\": 16, \"n_head\": 4, \"n_kv_head\": 2, \"d_ff\": 24}", "q,k,v,o,gate,up,down", 3, 0.0, 1);
    check_lora("lora-llama-f32-base", "{\"arch\": \"llama\", \"vocab_size\": 37, \"context_length\": 16, \"n_layer\": 2, "
               "\"d_model\": 16, \"n_head\": 4, \"n_kv_head\": 2, \"d_ff\": 24}", "q,k,v,o,gate,up,down", 3, 0.0, 0);
    check_lora("lora-llama-dropout", "{\"arch\": \"llama\", \"vocab_size\": 37, \"context_length\": 16, \"n_layer\": 2, "
               "\"d_model\": 16, \"n_head\": 4, \"n_kv_head\": 2, \"d_ff\": 24}", "q,k,v,o,gate,up,down", 3, 0.3, 1);
    check_lora("lora-gpt2-f16-base", "{\"arch\": \"gpt2\", \"vocab_size\": 37, \"context_length\": 16, \"n_layer\": 2, "
               "\"d_model\": 16, \"n_head\": 4}", "q,v,up,down", 2, 0.0, 1);
    if (failures) {
        printf("%d gradient checks failed\n", failures);
        return 1;
    }
    printf("all gradient checks passed\n");
    return 0;
}
