/* The tiny model of the fuzz targets that need one (serve_http, sft_chat):
 * a llama of 1 layer, d_model 32, 64 positions, the byte vocabulary (256)
 * and no chat template (ChatML), random weights; made once per process, in
 * the process's scratch directory. Inputs are long enough to overflow its
 * context, so the checks for that are reached too. */
#ifndef JARIP_FUZZ_MODEL_H
#define JARIP_FUZZ_MODEL_H

#include "fuzz_util.h"
#include "train/export.h"

/* Write the model to DIR/name as a GGUF; its path goes to out (512 bytes).
 * Aborts on failure (the harness cannot run without it). */
static inline void fuzz_tiny_gguf(const char *name, char *out) {
    static const char cfg_json[] = "{\"arch\": \"llama\", \"vocab_size\": 256, \"context_length\": 64, \"n_layer\": 1,"
                                   " \"d_model\": 32, \"n_head\": 2, \"n_kv_head\": 1, \"d_ff\": 32, \"tie_embeddings\": true}";
    Err e = {0};
    Config c;
    Model m;
    Tokenizer *tok = NULL;
    snprintf(out, 512, "%s/%s", fuzz_dir(), name);
    if (config_from_json(&c, cfg_json, &e) || model_create(&m, &c, 0, &e)) goto fail;
    model_init_weights(&m, 1);
    if (export_byte_tokenizer(&tok, &e) || export_model_gguf(&m, tok, NULL, 0, out, DT_F32, &e)) goto fail;
    tokenizer_free(tok);
    model_free(&m);
    return;
fail:
    fprintf(stderr, "fuzz: cannot make the tiny model: %s\n", e.msg);
    abort();
}

#endif
