/* Opening a run's base, and exporting a fine-tuning run: the merged model
 * (base + B A alpha / r, or the fully tuned weights) with the base's
 * tokenizer and chat template, or the adapter alone for llama.cpp. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train/export.h"
#include "train/train.h"
#include "tune.h"

int tune_base_open(InferModel *im, const char *path, int is_gguf, Err *err) {
    if (is_gguf) return infer_model_open(im, path, err);
    memset(im, 0, sizeof *im);
    char ckpt[4096], tp[4200];
    Config c;
    int step, rc = checkpoint_resolve(path, ckpt, sizeof ckpt, err);
    if (rc || (rc = checkpoint_load_config(ckpt, &c, err))) return rc;
    if (c.lora_rank > 0) return err_set(err, ERR_INVALID, "%s is a LoRA run: export it (--out merged.gguf) to tune it further", path);
    if ((rc = model_create(&im->model, &c, 0, err)) || (rc = checkpoint_load(ckpt, &im->model, &step, NULL, err))) goto fail;
    struct stat st;
    snprintf(tp, sizeof tp, "%s/tokenizer.json", path);
    if (stat(tp, &st) == 0) {
        if ((rc = tokenizer_load(&im->tok, tp, err))) goto fail;
        im->end_ids[im->n_end++] = tokenizer_eos_id(im->tok);
    } else if (c.vocab_size != 256) {
        rc = err_set(err, ERR_FORMAT, "%s has no tokenizer.json and its vocabulary (%d) is not bytes", path, c.vocab_size);
        goto fail;
    }
    chat_template_init(&im->chat, NULL, 0, NULL, NULL);
    snprintf(im->name, sizeof im->name, "%s", path);
    return 0;
fail:
    infer_model_close(im);
    return rc;
}

const char *tune_base_template(const InferModel *im, size_t *len) {
    GGUFStr s = {NULL, 0};
    if (im->gguf) gguf_get_str(im->gguf, "tokenizer.chat_template", &s, NULL);
    *len = s.ptr ? (size_t)s.len : 0;
    return s.ptr ? s.ptr : "";
}

int tune_export(const char *ckpt_arg, const char *out, const char *lora_out, int dtype, Err *err) {
    char ckpt[4096];
    Config c;
    TuneRun run;
    char *tmpl = NULL;
    int step, rc = checkpoint_resolve(ckpt_arg, ckpt, sizeof ckpt, err);
    if (rc || (rc = checkpoint_load_config(ckpt, &c, err))) return rc;
    if ((rc = tune_run_read(ckpt_arg, &run, &tmpl, err))) return rc;
    if (lora_out && c.lora_rank == 0) {
        free(tmpl);
        return err_set(err, ERR_INVALID, "%s is a full fine-tune: it has no adapter (export it with --out)", ckpt_arg);
    }
    Model tuned, full;
    InferModel base;
    memset(&tuned, 0, sizeof tuned);
    memset(&full, 0, sizeof full);
    memset(&base, 0, sizeof base);
    if ((rc = model_create(&tuned, &c, 0, err)) || (rc = checkpoint_load(ckpt, &tuned, &step, NULL, err))) goto done;
    if (lora_out) {
        if (strcmp(c.arch, "llama"))
            rc = err_set(err, ERR_UNSUPPORTED, "adapters are written for llama-architecture bases (llama.cpp's gpt2 fuses q, k, v)");
        else
            rc = tune_write_adapter(&tuned, c.arch, lora_out, err);
        if (rc) goto done;
    }
    if (!out) goto done;
    if ((rc = tune_base_open(&base, run.base, run.base_is_gguf, err))) {
        err_wrap(err, "the run's base");
        goto done;
    }
    if (!base.tok && (rc = export_byte_tokenizer(&base.tok, err))) goto done; /* a byte-level checkpoint base */
    const Model *w = &tuned;
    if (c.lora_rank) {
        Config bc = base.model.cfg;
        if ((rc = model_create(&full, &bc, 0, err)) || (rc = tune_copy_weights(&full, &base.model, err)) ||
            (rc = tune_merge(&full, &tuned, err)))
            goto done;
        w = &full;
    }
    rc = export_model_gguf(w, base.tok, tmpl, strlen(tmpl), out, dtype, err);
done:
    free(tmpl);
    model_free(&tuned);
    model_free(&full);
    if (base.model.tensors || base.tok) infer_model_close(&base);
    return rc;
}
