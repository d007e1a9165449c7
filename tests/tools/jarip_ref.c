/* jarip_ref: drives the engine on given weights and tokens and dumps what a
 * reference implementation (tests/reference/test_model_vs_pytorch.py) needs
 * to compare against: the parameter registry, logits, loss, every gradient,
 * and the weights after a few AdamW steps taken exactly as the trainer
 * (src/train/trainer.c) takes them. A test tool, not a test.
 *
 *   jarip_ref --config FILE --registry-out FILE
 *       only the registry (the reference needs its layout to write weights)
 *   jarip_ref --config FILE --weights FILE --tokens FILE --batch B --seq T
 *       [--targets FILE] [--registry-out FILE] [--logits-out FILE]
 *       [--grads-out FILE] [--result-out FILE] [--weights-out FILE]
 *       [--steps N] [--lr X] [--weight-decay X] [--grad-clip X]
 *       [--beta1 X] [--beta2 X] [--eps X] [--threads N]
 *
 * Files: weights = n_params little-endian f32 at the registry offsets;
 * tokens = B*(T+1) int32 (inputs are columns 0..T-1, targets 1..T); targets
 * (optional) = B*T int32 replacing those targets, < 0 ignored. Outputs:
 * logits (B,T,V) f32 and gradients (n_params) f32 of the first forward and
 * backward; result JSON {loss, aux_loss, count, steps: [{step, loss,
 * grad_norm, clip_scale, lr}]}; final weights (n_params) f32 after --steps
 * AdamW steps (default 3) on the same batch. The lr is held constant: the
 * schedule is tested separately through `jarip train`.
 *
 * LoRA: --config FILE with lora_rank > 0 (the registry is the adapters)
 * plus --base-config FILE --base-weights FILE (the frozen base, n_params of
 * its registry) [--base-type T: the base's matrices quantized to type T, as
 * a GGUF holds them; --base-out FILE: the base as the engine then holds it,
 * dequantized, for the reference]. With lora_dropout > 0 in the config,
 * pass s (0-based) runs with the LoRA dropout masks of seed 1234, global
 * batch s, rows from 0 (model_lora_dropout_pass). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quant.h"
#include "model/model.h"
#include "train/train.h"

static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("jarip_ref: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

typedef struct {
    const char *config, *weights, *tokens, *targets;
    const char *registry_out, *logits_out, *grads_out, *result_out, *weights_out;
    const char *base_config, *base_weights, *base_type, *base_out;
    int batch, seq, steps, threads;
    double lr, weight_decay, grad_clip, beta1, beta2, eps;
} Args;

static int parse_num(const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v != v || v < lo || v > hi)
        return fail("%s: '%s' is not a number in [%g, %g]", flag, s, lo, hi);
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, Args *a) {
    memset(a, 0, sizeof *a);
    TrainOptions o; /* the trainer's defaults, so the two cannot drift apart */
    train_options_default(&o);
    a->steps = 3;
    a->lr = o.lr;
    a->weight_decay = o.weight_decay;
    a->grad_clip = o.grad_clip;
    a->beta1 = o.beta1;
    a->beta2 = o.beta2;
    a->eps = o.eps;
    static const struct {
        const char *flag;
        size_t off;
    } paths[] = {
        {"--config", offsetof(Args, config)},           {"--weights", offsetof(Args, weights)},
        {"--tokens", offsetof(Args, tokens)},           {"--targets", offsetof(Args, targets)},
        {"--registry-out", offsetof(Args, registry_out)}, {"--logits-out", offsetof(Args, logits_out)},
        {"--grads-out", offsetof(Args, grads_out)},     {"--result-out", offsetof(Args, result_out)},
        {"--weights-out", offsetof(Args, weights_out)}, {"--base-config", offsetof(Args, base_config)},
        {"--base-weights", offsetof(Args, base_weights)}, {"--base-type", offsetof(Args, base_type)},
        {"--base-out", offsetof(Args, base_out)},
    };
    static const struct {
        const char *flag;
        size_t off;
        double lo, hi;
    } nums[] = {
        {"--lr", offsetof(Args, lr), 0, 10},
        {"--weight-decay", offsetof(Args, weight_decay), 0, 10},
        {"--grad-clip", offsetof(Args, grad_clip), 0, 1e9},
        {"--beta1", offsetof(Args, beta1), 0, 1},
        {"--beta2", offsetof(Args, beta2), 0, 1},
        {"--eps", offsetof(Args, eps), 0, 1},
    };
    static const struct {
        const char *flag;
        size_t off;
        int lo, hi;
    } ints[] = {
        {"--batch", offsetof(Args, batch), 1, 4096},
        {"--seq", offsetof(Args, seq), 1, 1 << 16},
        {"--steps", offsetof(Args, steps), 0, 1000},
        {"--threads", offsetof(Args, threads), 1, 1024},
    };
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fprintf(stdout, "usage: see the comment at the top of tests/tools/jarip_ref.c\n");
            exit(0);
        }
        if (i + 1 >= argc) return fail("%s needs a value (or is unknown)", f);
        const char *v = argv[++i];
        int found = 0;
        for (size_t k = 0; k < sizeof paths / sizeof paths[0] && !found; k++)
            if (!strcmp(f, paths[k].flag)) {
                *(const char **)((char *)a + paths[k].off) = v;
                found = 1;
            }
        for (size_t k = 0; k < sizeof nums / sizeof nums[0] && !found; k++)
            if (!strcmp(f, nums[k].flag)) {
                if (parse_num(f, v, nums[k].lo, nums[k].hi, (double *)((char *)a + nums[k].off))) return 1;
                found = 1;
            }
        for (size_t k = 0; k < sizeof ints / sizeof ints[0] && !found; k++)
            if (!strcmp(f, ints[k].flag)) {
                double d = 0;
                if (parse_num(f, v, ints[k].lo, ints[k].hi, &d)) return 1;
                if (d != (int)d) return fail("%s: '%s' is not an integer", f, v);
                *(int *)((char *)a + ints[k].off) = (int)d;
                found = 1;
            }
        if (!found) return fail("unknown flag '%s'", f);
    }
    if (!a->config) return fail("--config FILE is required");
    if (!a->weights && !a->registry_out) return fail("nothing to do: give --weights (and --tokens) or --registry-out");
    if (a->weights && (!a->tokens || !a->batch || !a->seq))
        return fail("--weights needs --tokens, --batch and --seq");
    return 0;
}

/* Read a binary file that must hold exactly n elements of elem bytes. */
static void *read_exact(const char *path, size_t n, size_t elem, const char *what) {
    char *data;
    size_t len;
    Err err = {0};
    if (file_read_all(path, &data, &len, &err)) {
        fail("%s: %s", what, err.msg);
        return NULL;
    }
    if (len != n * elem) {
        fail("%s %s holds %zu bytes; expected %zu (%zu values of %zu bytes)", what, path, len, n * elem, n, elem);
        free(data);
        return NULL;
    }
    return data;
}

static int write_out(const char *path, const void *data, size_t len) {
    Err err = {0};
    if (path && file_write_atomic(path, data, len, &err)) return fail("%s", err.msg);
    return 0;
}

static int write_json(const char *path, json_t *o) {
    char *s = json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(o);
    if (!s) return fail("out of memory");
    int rc = write_out(path, s, strlen(s));
    free(s);
    return rc;
}

static json_t *registry_json(const Model *m) {
    static const struct {
        unsigned bit;
        const char *name;
    } flag_names[] = {{PF_DECAY, "decay"}, {PF_RESID_PROJ, "resid_proj"}, {PF_ONES, "ones"},
                      {PF_ZEROS, "zeros"}, {PF_EXPERT, "expert"}};
    json_t *list = json_array();
    for (int i = 0; i < m->n_tensors; i++) {
        const Tensor *t = &m->tensors[i];
        json_t *shape = json_array(), *flags = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        for (size_t k = 0; k < sizeof flag_names / sizeof flag_names[0]; k++)
            if (t->flags & flag_names[k].bit) json_array_append_new(flags, json_string(flag_names[k].name));
        json_array_append_new(list, json_pack("{s:s, s:o, s:I, s:I, s:o}", "name", t->name, "shape", shape, "offset",
                                              (json_int_t)t->offset, "numel", (json_int_t)t->numel, "flags", flags));
    }
    char *cfg = config_to_json(&m->cfg);
    json_t *c = cfg ? json_loads(cfg, 0, NULL) : NULL;
    free(cfg);
    return json_pack("{s:I, s:o, s:o}", "n_params", (json_int_t)m->n_params, "config", c ? c : json_null(), "tensors",
                     list);
}

/* One optimizer step as src/train/trainer.c does it: global norm over every
 * gradient, clip scale, AdamW per tensor with decay only on PF_DECAY. */
static void adamw_step(Model *m, const Args *a, int t, double *norm_out, float *scale_out) {
    double norm = sqrt(sumsq(m->grads, m->n_params));
    float scale = (a->grad_clip > 0 && norm > a->grad_clip) ? (float)(a->grad_clip / norm) : 1.0f;
    for (int i = 0; i < m->n_tensors; i++) {
        Tensor *tn = &m->tensors[i];
        adamw_update(tn->data, tn->grad, m->adam_m + tn->offset, m->adam_v + tn->offset, tn->numel, (float)a->lr,
                     (float)a->beta1, (float)a->beta2, (float)a->eps,
                     (tn->flags & PF_DECAY) ? (float)a->weight_decay : 0.0f, scale, t);
    }
    *norm_out = norm;
    *scale_out = scale;
}

static int run(const Args *a, Model *m) {
    const int B = a->batch, T = a->seq, V = m->cfg.vocab_size;
    const size_t N = (size_t)B * T;
    Err err = {0};
    float *w = read_exact(a->weights, m->n_params, sizeof(float), "weights");
    if (!w) return 1;
    memcpy(m->params, w, m->n_params * sizeof(float));
    free(w);
    int32_t *tok = read_exact(a->tokens, (size_t)B * (T + 1), sizeof(int32_t), "tokens");
    if (!tok) return 1;
    int32_t *inp = malloc(N * sizeof *inp), *tgt = malloc(N * sizeof *tgt);
    json_t *steps = json_array();
    int rc = 1;
    if (!inp || !tgt) {
        fail("out of memory");
        goto done;
    }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            inp[(size_t)b * T + t] = tok[(size_t)b * (T + 1) + t];
            tgt[(size_t)b * T + t] = tok[(size_t)b * (T + 1) + t + 1];
        }
    if (a->targets) {
        int32_t *tg = read_exact(a->targets, N, sizeof(int32_t), "targets");
        if (!tg) goto done;
        memcpy(tgt, tg, N * sizeof *tgt);
        free(tg);
    }
    if (model_plan_activations(m, B, T, 1, &err)) {
        fail("%s", err.msg);
        goto done;
    }
    int count = 0;
    for (size_t i = 0; i < N; i++) count += tgt[i] >= 0;
    double loss0 = 0, aux0 = 0;
    const int passes = a->steps > 0 ? a->steps : 1;
    for (int s = 0; s < passes; s++) {
        /* pass s computes the gradient that AdamW step s+1 uses; pass 0's
         * logits and gradients are the ones compared */
        memset(m->grads, 0, m->n_params * sizeof(float));
        model_lora_dropout_pass(m, 1234, (uint64_t)s, 0, T);
        float loss = model_forward(m, inp, tgt, B, T, &err);
        if (isnan(loss)) {
            fail("forward: %s", err.code ? err.msg : "loss is NaN");
            goto done;
        }
        if (s == 0) {
            loss0 = loss;
            aux0 = m->aux_loss;
            /* logits are overwritten by the backward (they become dlogits) */
            if (write_out(a->logits_out, m->act.logits, N * V * sizeof(float))) goto done;
        }
        model_backward(m, inp, tgt, 1.0f);
        if (s == 0 && write_out(a->grads_out, m->grads, m->n_params * sizeof(float))) goto done;
        if (s >= a->steps) break; /* --steps 0: gradients only */
        double norm;
        float scale;
        adamw_step(m, a, s + 1, &norm, &scale);
        json_array_append_new(steps, json_pack("{s:i, s:f, s:f, s:f, s:f, s:f}", "step", s + 1, "loss", (double)loss,
                                               "aux_loss", m->aux_loss, "grad_norm", norm, "clip_scale",
                                               (double)scale, "lr", a->lr));
    }
    if (write_out(a->weights_out, m->params, m->n_params * sizeof(float))) goto done;
    if (a->result_out) {
        json_t *r = json_pack("{s:f, s:f, s:i, s:i, s:O}", "loss", loss0, "aux_loss", aux0, "count", count, "threads",
                              omp_get_max_threads(), "steps", steps);
        if (write_json(a->result_out, r)) goto done;
    }
    rc = 0;
done:
    json_decref(steps);
    free(tok);
    free(inp);
    free(tgt);
    return rc;
}

/* The frozen base of a LoRA run: weights from a file, matrices (2-D) held
 * in type `type` (quantized as a GGUF would hold them), written back out
 * dequantized. *q: the quantized storage (caller frees). */
static int load_base(const Args *a, Model *base, void **q) {
    Err err = {0};
    Config bc;
    if (config_load(&bc, a->base_config, &err) || model_create(base, &bc, 0, &err)) return fail("%s", err.msg);
    float *w = read_exact(a->base_weights, base->n_params, sizeof(float), "base weights");
    if (!w) return 1;
    memcpy(base->params, w, base->n_params * sizeof(float));
    free(w);
    int type = a->base_type ? dtype_from_name(a->base_type) : DT_F32;
    if (type < 0) return fail("--base-type %s: unknown type", a->base_type);
    *q = type == DT_F32 ? NULL : calloc(1, base->n_params * sizeof(float) + 4096);
    size_t at = 0;
    for (int i = 0; i < base->n_tensors && type != DT_F32; i++) {
        Tensor *t = &base->tensors[i];
        if (t->ndim != 2) continue;
        const int64_t K = t->shape[1];
        const size_t rb = dtype_row_bytes(type, K);
        if (!rb) return fail("%s: rows of %lld do not fit %s blocks", t->name, (long long)K, a->base_type);
        char *dst = (char *)*q + at;
        for (int64_t r = 0; r < t->shape[0]; r++)
            if (quantize_row(type, (float *)t->data + r * K, dst + r * rb, K) ||
                dequantize_row(type, dst + r * rb, (float *)t->data + r * K, K))
                return fail("%s: type %s", t->name, a->base_type);
        t->data = dst;
        t->dtype = type;
        at += (size_t)t->shape[0] * rb;
    }
    return write_out(a->base_out, base->params, base->n_params * sizeof(float));
}

int main(int argc, char **argv) {
    Args a;
    if (parse_args(argc, argv, &a)) return 2;
    if (a.threads) omp_set_num_threads(a.threads);
    Err err = {0};
    Config c;
    if (config_load(&c, a.config, &err)) return fail("%s", err.msg);
    Model m, base;
    void *q = NULL;
    memset(&base, 0, sizeof base);
    if (model_create(&m, &c, 1, &err)) return fail("%s", err.msg);
    int rc = 0;
    if (c.lora_rank > 0 && a.weights) {
        if (!a.base_config || !a.base_weights) rc = fail("a LoRA config needs --base-config and --base-weights");
        if (!rc) rc = load_base(&a, &base, &q);
        if (!rc && model_lora_attach(&m, &base, 1.0f, &err)) rc = fail("%s", err.msg);
    }
    if (!rc && a.registry_out) rc = write_json(a.registry_out, registry_json(&m));
    if (!rc && a.weights) rc = run(&a, &m);
    model_free(&m);
    model_free(&base);
    free(q);
    return rc;
}
