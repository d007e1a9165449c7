/* Run-time LoRA adapters (llama.cpp's adapter GGUF: general.type "adapter",
 * adapter.type "lora", adapter.lora.alpha, tensors "<weight>.lora_a" with
 * GGUF ne {in, r} and ".lora_b" {r, out}): read into a model whose registry
 * is the adapters, linked to the base's linear weights, so the one forward
 * adds scale * alpha / r * (x A^T) B^T after each adapted product, as
 * llama.cpp's build_lora_mm does. Nothing is merged. */
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"
#include "kernels/quant.h"

/* "blk.N.<weight>.lora_a|b" -> LORA_* bit of <weight>, or -1. */
static int target_bit(const GGUFStr *name, int *is_a) {
    const char *p = name->ptr;
    size_t n = (size_t)name->len;
    if (n < 12 || strncmp(p, "blk.", 4)) return -1;
    *is_a = !strncmp(p + n - 7, ".lora_a", 7);
    if (!*is_a && strncmp(p + n - 7, ".lora_b", 7)) return -1;
    const char *w = memchr(p + 4, '.', n - 4);
    if (!w) return -1;
    w++;
    const size_t wl = (size_t)(p + n - 7 - w);
    for (int i = 0; i < 7; i++)
        if (strlen(lora_target_weight(i)) == wl && !strncmp(w, lora_target_weight(i), wl)) return i;
    return -1;
}

static int adapter_config(const GGUFFile *g, const Config *base, Config *c, const char *path, Err *err) {
    GGUFStr s;
    char buf[64];
    if (gguf_get_str(g, "general.type", &s, NULL) || !gguf_str_eq(s, "adapter") ||
        gguf_get_str(g, "adapter.type", &s, NULL) || !gguf_str_eq(s, "lora"))
        return err_set(err, ERR_FORMAT, "%s is not a LoRA adapter (general.type \"adapter\", adapter.type \"lora\")", path);
    if (gguf_get_str(g, "general.architecture", &s, NULL) || !gguf_str_eq(s, base->arch))
        return err_set(err, ERR_INVALID, "%s is an adapter for architecture '%s', the model is '%s'", path,
                       gguf_get_str(g, "general.architecture", &s, NULL) ? "?" : gguf_str_copy(s, buf, sizeof buf), base->arch);
    double alpha = 0;
    if (gguf_find_key(g, "adapter.lora.alpha") >= 0 && gguf_get_float(g, "adapter.lora.alpha", &alpha, err))
        return err_wrap(err, "%s", path);
    *c = *base;
    c->lora_targets = 0;
    c->lora_rank = 0;
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const GGUFTensorInfo *t = gguf_tensor(g, i);
        int is_a = 0, bit = target_bit(&t->name, &is_a);
        if (bit < 0 || t->ndim != 2)
            return err_set(err, ERR_FORMAT, "%s: tensor %.*s is not the LoRA A or B of a weight jarip adapts", path,
                           (int)(t->name.len > 64 ? 64 : t->name.len), t->name.ptr);
        c->lora_targets |= 1u << bit;
        if (is_a && !c->lora_rank) c->lora_rank = (int)t->ne[1];
    }
    if (!c->lora_rank) return err_set(err, ERR_FORMAT, "%s holds no LoRA tensors", path);
    /* llama.cpp: alpha 0 means scale 1 (no alpha / r) */
    c->lora_alpha = alpha > 0 ? (float)alpha : (float)c->lora_rank;
    if (config_validate(c, err)) return err_wrap(err, "%s", path);
    return 0;
}

int infer_model_add_lora(InferModel *im, const char *path, float scale, Err *err) {
    if (im->lora) return err_set(err, ERR_INVALID, "one LoRA adapter at a time");
    GGUFFile *g = NULL;
    Model *lm = calloc(1, sizeof *lm);
    Config c;
    int rc = lm ? gguf_open(&g, path, err) : err_set(err, ERR_NOMEM, "out of memory");
    if (rc || (rc = adapter_config(g, &im->model.cfg, &c, path, err)) || (rc = model_create(lm, &c, 0, err))) goto fail;
    if (gguf_n_tensors(g) != lm->n_tensors) {
        rc = err_set(err, ERR_FORMAT, "%s: %lld tensors, but its targets in every layer make %d (a layer without an adapter?)",
                     path, (long long)gguf_n_tensors(g), lm->n_tensors);
        goto fail;
    }
    for (int i = 0; i < lm->n_tensors; i++) {
        Tensor *t = &lm->tensors[i];
        const GGUFTensorInfo *ti = gguf_find_tensor(g, t->name);
        if (!ti) {
            rc = err_set(err, ERR_FORMAT, "%s lacks %s (the model has %d layers)", path, t->name, c.n_layer);
            goto fail;
        }
        if (ti->ne[0] != t->shape[1] || ti->ne[1] != t->shape[0]) {
            rc = err_set(err, ERR_INVALID, "%s: %s is %lld x %lld but the model needs %lld x %lld (another base model?)", path,
                         t->name, (long long)ti->ne[1], (long long)ti->ne[0], (long long)t->shape[0], (long long)t->shape[1]);
            goto fail;
        }
        const size_t rb = dtype_row_bytes(ti->type, ti->ne[0]);
        for (int64_t r = 0; r < ti->ne[1] && !rc; r++) {
            float *dst = (float *)t->data + (size_t)r * ti->ne[0];
            if (ti->type == DT_F32) memcpy(dst, (const char *)ti->data + (size_t)r * rb, rb);
            else if (!rb || dequantize_row(ti->type, (const char *)ti->data + (size_t)r * rb, dst, ti->ne[0]))
                rc = err_set(err, ERR_UNSUPPORTED, "%s: %s has type %s, which jarip cannot read", path, t->name,
                             dtype_name(ti->type) ? dtype_name(ti->type) : "?");
        }
        if (rc) goto fail;
    }
    if ((rc = model_lora_attach(lm, &im->model, scale, err))) {
        err_wrap(err, "%s", path);
        goto fail;
    }
    gguf_close(g);
    im->lora = lm;
    return 0;
fail:
    gguf_close(g);
    if (lm) model_free(lm);
    free(lm);
    return rc;
}
