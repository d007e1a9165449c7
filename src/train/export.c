/* Checkpoint -> GGUF. Llama-style configs export as llama.cpp's "llama"
 * architecture (jarip's native RoPE layout is GGUF's, so q/k weights go out
 * as they are; MoE as Mixtral's expert tensors), GPT-2 configs as "gpt2"
 * (q, k, v fused into attn_qkv as llama.cpp expects). The file is written as
 * f32, then quantized by the same code as `jarip quantize`. */
#include "export.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/gguf.h"
#include "kernels/kernels.h"
#include "tokenizer/tokenizer.h"
#include "train.h"

/* GPT-2's byte -> printable code point map: the tokens of a byte-level BPE
 * vocabulary are spelled with these characters. */
static int byte_char(int b) {
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
    int n = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) n++;
    return 256 + n;
}

int export_byte_tokenizer(Tokenizer **out, Err *err) {
    json_t *vocab = json_object();
    for (int b = 0; b < 256; b++) {
        int cp = byte_char(b);
        char s[4];
        int n = cp < 0x80 ? (s[0] = (char)cp, 1) : (s[0] = (char)(0xC0 | (cp >> 6)), s[1] = (char)(0x80 | (cp & 0x3F)), 2);
        char key[4];
        memcpy(key, s, (size_t)n);
        key[n] = 0;
        json_object_set_new(vocab, key, json_integer(b));
    }
    json_t *root = json_pack("{s:{s:s, s:o, s:[]}, s:{s:s, s:b, s:b, s:b}}", "model", "type", "BPE", "vocab", vocab, "merges",
                             "pre_tokenizer", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1);
    if (!root) return err_set(err, ERR_NOMEM, "out of memory building the byte tokenizer");
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    int rc = text ? tokenizer_from_json(out, text, strlen(text), err) : err_set(err, ERR_NOMEM, "out of memory");
    free(text);
    return rc;
}

static int add_f32(GGUFWriter *w, const char *name, const Tensor *t, const float *data, Err *err) {
    int64_t ne[4];
    for (int d = 0; d < t->ndim; d++) ne[d] = t->shape[t->ndim - 1 - d]; /* GGUF: innermost first */
    if (gguf_writer_add_tensor_copy(w, name, t->ndim, ne, DT_F32, data, t->numel * sizeof(float)))
        return err_set(err, ERR_NOMEM, "adding tensor %s", name);
    return 0;
}

int export_model_gguf(const Model *m, const Tokenizer *tok, const char *chat_template, size_t tlen, const char *out,
                      int dtype, Err *err) {
    const Config *c = &m->cfg;
    int rc = 0;
    GGUFWriter *w = NULL;
    float *qkv = NULL;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.f32.%d", out, (int)getpid());
    if (!dtype_name(dtype)) return err_set(err, ERR_INVALID, "unknown tensor type %d", dtype);
    const int llama = c->pos == POS_ROPE && c->norm == NORM_RMSNORM && c->act == ACT_SWIGLU && !c->bias;
    const int gpt2 = c->pos == POS_LEARNED && c->norm == NORM_LAYERNORM && c->act == ACT_GELU && c->bias && c->n_expert == 0;
    if (!llama && !gpt2) {
        rc = err_set(err, ERR_UNSUPPORTED, "this config mixes gpt2 and llama features; GGUF (llama.cpp) has no architecture for it");
        goto done;
    }
    if (llama && c->rope_neox) {
        rc = err_set(err, ERR_UNSUPPORTED, "rope_style \"neox\" models are not exported (llama.cpp's llama uses the gguf pair layout)");
        goto done;
    }
    const char *arch = llama ? "llama" : "gpt2";
    char key[128];
    w = gguf_writer_create();
    if (!w) {
        rc = err_set(err, ERR_NOMEM, "out of memory");
        goto done;
    }
#define KEY(k) (snprintf(key, sizeof key, "%s." k, arch), key)
    gguf_writer_set_str(w, "general.architecture", arch);
    gguf_writer_set_str(w, "general.name", "jarip");
    gguf_writer_set_u32(w, "general.file_type", 0);
    gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)c->context_length);
    gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)c->d_model);
    gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)c->n_layer);
    gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->d_ff);
    gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_head);
    gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_head);
    if (llama) {
        gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->norm_eps);
        gguf_writer_set_f32(w, KEY("rope.freq_base"), c->rope_theta);
        gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)c->head_dim);
        gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim);
        gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim);
        gguf_writer_set_u32(w, KEY("vocab_size"), (uint32_t)c->vocab_size);
        if (c->n_expert) {
            gguf_writer_set_u32(w, KEY("expert_count"), (uint32_t)c->n_expert);
            gguf_writer_set_u32(w, KEY("expert_used_count"), (uint32_t)c->n_expert_active);
        }
    } else {
        gguf_writer_set_f32(w, KEY("attention.layer_norm_epsilon"), c->norm_eps);
    }
#undef KEY
    if ((rc = tokenizer_to_gguf(tok, w, err))) goto done;
    if (chat_template && tlen) gguf_writer_set_strn(w, "tokenizer.chat_template", chat_template, tlen);
    /* tensors in registry order; GPT-2's q, k, v become one attn_qkv */
    for (int i = 0; i < m->n_tensors && !rc; i++) {
        const Tensor *t = &m->tensors[i];
        const char *b = t->layer >= 0 ? strchr(t->name + 4, '.') + 1 : t->name;
        if (gpt2 && (!strncmp(b, "attn_k.", 7) || !strncmp(b, "attn_v.", 7))) continue;
        if (gpt2 && !strncmp(b, "attn_q.", 7)) {
            const LayerWeights *lw = &m->layers[t->layer];
            int is_w = t->ndim == 2;
            const Tensor *parts[3] = {is_w ? lw->wq : lw->bq, is_w ? lw->wk : lw->bk, is_w ? lw->wv : lw->bv};
            size_t n = parts[0]->numel + parts[1]->numel + parts[2]->numel;
            free(qkv);
            qkv = malloc(n * sizeof(float));
            if (!qkv) {
                rc = err_set(err, ERR_NOMEM, "out of memory");
                break;
            }
            size_t o = 0;
            for (int k = 0; k < 3; k++) {
                memcpy(qkv + o, parts[k]->data, parts[k]->numel * sizeof(float));
                o += parts[k]->numel;
            }
            Tensor fused = *t;
            fused.shape[0] = t->shape[0] + parts[1]->shape[0] + parts[2]->shape[0];
            fused.numel = n;
            snprintf(key, sizeof key, "blk.%d.attn_qkv.%s", t->layer, is_w ? "weight" : "bias");
            rc = add_f32(w, key, &fused, qkv, err);
            continue;
        }
        rc = add_f32(w, t->name, t, t->data, err);
    }
    if (rc) goto done;
    if (dtype == DT_F32) {
        rc = gguf_writer_write(w, out, err);
    } else {
        if ((rc = gguf_writer_write(w, tmp, err))) goto done;
        rc = gguf_quantize_file(tmp, out, dtype, 0, NULL, NULL, err);
        unlink(tmp);
    }
done:
    free(qkv);
    gguf_writer_free(w);
    return rc;
}

int export_gguf(const char *ckpt_arg, const char *tok_path, const char *out, int dtype, Err *err) {
    char ckpt[4096];
    Config c;
    int rc = checkpoint_resolve(ckpt_arg, ckpt, sizeof ckpt, err);
    if (rc || (rc = checkpoint_load_config(ckpt, &c, err))) return rc;
    if (c.lora_rank > 0)
        return err_set(err, ERR_INVALID, "%s is a LoRA run without its finetune.json (the base it adapts)", ckpt_arg);
    if (!dtype_name(dtype)) return err_set(err, ERR_INVALID, "unknown tensor type %d", dtype);
    Model m;
    if ((rc = model_create(&m, &c, 0, err))) return rc;
    int step;
    Tokenizer *tok = NULL;
    if ((rc = checkpoint_load(ckpt, &m, &step, NULL, err))) goto done;
    /* the tokenizer: given, saved with the run, or the byte vocabulary */
    char guess[4300];
    struct stat st;
    snprintf(guess, sizeof guess, "%s/tokenizer.json", ckpt_arg);
    if (tok_path)
        rc = tokenizer_load(&tok, tok_path, err);
    else if (stat(guess, &st) == 0)
        rc = tokenizer_load(&tok, guess, err);
    else if (c.vocab_size == 256)
        rc = export_byte_tokenizer(&tok, err);
    else
        rc = err_set(err, ERR_INVALID, "the model has %d tokens: pass the tokenizer it was trained with (--tokenizer FILE)",
                     c.vocab_size);
    if (rc) goto done;
    if (tokenizer_vocab_size(tok) > c.vocab_size) {
        rc = err_set(err, ERR_INVALID, "the tokenizer has %d tokens but the model only %d", tokenizer_vocab_size(tok), c.vocab_size);
        goto done;
    }
    rc = export_model_gguf(&m, tok, NULL, 0, out, dtype, err);
done:
    tokenizer_free(tok);
    model_free(&m);
    return rc;
}
