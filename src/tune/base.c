/* The base and what a fine-tuning run exports: float32 copies of a base of
 * any type (--full), merging adapters into it, llama.cpp's adapter GGUF,
 * and the run's record. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/gguf.h"
#include "kernels/quant.h"
#include "train/export.h"
#include "train/train.h"
#include "tune.h"

static const Tensor *find_tensor(const Model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

int tune_copy_weights(Model *dst, const Model *base, Err *err) {
    for (int i = 0; i < dst->n_tensors; i++) {
        Tensor *t = &dst->tensors[i];
        const Tensor *s = find_tensor(base, t->name);
        if (!s || s->numel != t->numel)
            return err_set(err, ERR_FORMAT, "the base has no tensor %s of %zu elements", t->name, t->numel);
        const int64_t K = s->shape[s->ndim - 1], rows = (int64_t)(s->numel / (size_t)K);
        const size_t rb = s->dtype == DT_F32 ? (size_t)K * sizeof(float) : dtype_row_bytes(s->dtype, K);
        int bad = 0;
#pragma omp parallel for reduction(| : bad)
        for (int64_t r = 0; r < rows; r++) {
            const char *src = (const char *)s->data + (size_t)r * rb;
            float *d = (float *)t->data + (size_t)r * K;
            if (s->dtype == DT_F32) memcpy(d, src, rb);
            else bad |= dequantize_row(s->dtype, src, d, K) != 0;
        }
        if (bad || !rb) return err_set(err, ERR_UNSUPPORTED, "%s: type %s cannot be read as float", t->name, dtype_name(s->dtype));
    }
    return 0;
}

int tune_merge(Model *full, const Model *lora, Err *err) {
    const Config *c = &lora->cfg;
    for (int i = 0; i + 1 < lora->n_tensors; i += 2) {
        const Tensor *a = &lora->tensors[i], *b = &lora->tensors[i + 1];
        char wname[48];
        snprintf(wname, sizeof wname, "%.*s", (int)(strlen(a->name) - 7), a->name);
        const Tensor *w = find_tensor(full, wname);
        if (!w || w->dtype != DT_F32 || w->shape[0] != b->shape[0] || w->shape[1] != a->shape[1])
            return err_set(err, ERR_FORMAT, "adapter %s does not fit the base weight %s", a->name, wname);
        const int N = (int)w->shape[0], K = (int)w->shape[1], r = (int)a->shape[0];
        /* W (N,K) += scale B (N,r) A (r,K) */
        gemm_f32(0, 0, N, K, r, c->lora_alpha / (float)r, b->data, r, a->data, K, 1.0f, w->data, K);
    }
    return 0;
}

int tune_write_adapter(const Model *lora, const char *arch, const char *out, Err *err) {
    GGUFWriter *w = gguf_writer_create();
    if (!w) return err_set(err, ERR_NOMEM, "out of memory");
    gguf_writer_set_str(w, "general.architecture", arch);
    gguf_writer_set_str(w, "general.type", "adapter");
    gguf_writer_set_str(w, "general.name", "jarip LoRA");
    gguf_writer_set_str(w, "adapter.type", "lora");
    gguf_writer_set_f32(w, "adapter.lora.alpha", lora->cfg.lora_alpha);
    int rc = 0;
    for (int i = 0; i < lora->n_tensors && !rc; i++) {
        const Tensor *t = &lora->tensors[i];
        int64_t ne[2] = {t->shape[1], t->shape[0]}; /* GGUF: innermost first */
        if (gguf_writer_add_tensor_copy(w, t->name, 2, ne, DT_F32, t->data, t->numel * sizeof(float)))
            rc = err_set(err, ERR_NOMEM, "adding tensor %s", t->name);
    }
    if (!rc) rc = gguf_writer_write(w, out, err);
    gguf_writer_free(w);
    return rc;
}

int tune_run_write(const char *out_dir, const TuneRun *r, const char *tmpl, size_t tlen, Err *err) {
    json_t *o = json_object();
    json_object_set_new(o, "base", json_string(r->base));
    json_object_set_new(o, "base_type", json_string(r->base_is_gguf ? "gguf" : "ckpt"));
    json_object_set_new(o, "mode", json_string(r->lora ? "lora" : "full"));
    json_object_set_new(o, "format", json_string(r->format == TUNE_CHAT ? "chat" : "text"));
    json_object_set_new(o, "chat_template", json_stringn(tmpl ? tmpl : "", tmpl ? tlen : 0));
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!text) return err_set(err, ERR_NOMEM, "out of memory");
    char path[4200];
    snprintf(path, sizeof path, "%s/finetune.json", out_dir);
    int rc = file_write_atomic(path, text, strlen(text), err);
    free(text);
    return rc;
}

int tune_run_read(const char *dir, TuneRun *r, char **tmpl, Err *err) {
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/finetune.json", dir);
    if (stat(path, &st) != 0) snprintf(path, sizeof path, "%s/../finetune.json", dir);
    if (stat(path, &st) != 0) return err_set(err, ERR_IO, "%s is not a fine-tuning run (no finetune.json)", dir);
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    if (!o) return err_set(err, ERR_FORMAT, "%s: %s", path, je.text);
    json_t *b = json_object_get(o, "base"), *bt = json_object_get(o, "base_type"), *md = json_object_get(o, "mode");
    json_t *fm = json_object_get(o, "format"), *ct = json_object_get(o, "chat_template");
    int rc = 0;
    if (!json_is_string(b) || !json_is_string(bt) || !json_is_string(md) || !json_is_string(fm)) {
        rc = err_set(err, ERR_FORMAT, "%s: needs string base, base_type, mode and format", path);
    } else {
        memset(r, 0, sizeof *r);
        snprintf(r->base, sizeof r->base, "%s", json_string_value(b));
        r->base_is_gguf = !strcmp(json_string_value(bt), "gguf");
        r->lora = !strcmp(json_string_value(md), "lora");
        r->format = !strcmp(json_string_value(fm), "chat") ? TUNE_CHAT : TUNE_TEXT;
        if (tmpl) *tmpl = strdup(json_is_string(ct) ? json_string_value(ct) : "");
    }
    json_decref(o);
    return rc;
}
