/* GGUF -> Model: a Config from the file's metadata and a registry whose
 * tensors point into the mapping. GGUF tensor names are jarip's registry
 * names, and the GGUF "llama" RoPE pair layout is jarip's native layout, so
 * llama-arch q/k weights load as they are (no permutation). */
#include "infer/infer.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quant.h"

/* What model_load_gguf owns beyond the Model (kept in m->owner). */
typedef struct {
    float *f32;       /* f32 copies of non-f32 vectors (norms, biases, positions) */
    size_t used, cap; /* floats */
} GGUFOwned;

/* {arch}.key as an integer; def when absent (def < 0: required). */
static int meta_int(const GGUFFile *g, const char *arch, const char *key, int64_t def, int64_t lo, int64_t hi,
                    int *out, Err *err) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    int64_t v = def;
    if (gguf_find_key(g, full) >= 0) {
        if (gguf_get_int(g, full, &v, err)) return err_wrap(err, "GGUF metadata %s", full);
    } else if (def < 0) {
        return err_set(err, ERR_FORMAT, "GGUF metadata %s is missing", full);
    }
    if (v < lo || v > hi)
        return err_set(err, ERR_FORMAT, "GGUF metadata %s = %lld is out of range %lld..%lld", full, (long long)v,
                       (long long)lo, (long long)hi);
    *out = (int)v;
    return 0;
}

static int meta_float(const GGUFFile *g, const char *arch, const char *key, double def, float *out, Err *err) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    double v = def;
    if (gguf_find_key(g, full) >= 0 && gguf_get_float(g, full, &v, err)) return err_wrap(err, "GGUF metadata %s", full);
    if (!(v > 0 && v < 1e12)) return err_set(err, ERR_FORMAT, "GGUF metadata %s = %g is out of range", full, v);
    *out = (float)v;
    return 0;
}

/* Config from metadata. Features the forward pass does not have (partial
 * rotary, RoPE scaling, ALiBi, ...) are refused rather than run wrongly. */
static int config_from_gguf(Config *c, const GGUFFile *g, Err *err) {
    GGUFStr as;
    char arch[32];
    if (gguf_get_str(g, "general.architecture", &as, err)) return err_wrap(err, "GGUF model");
    gguf_str_copy(as, arch, sizeof arch);
    int llama = !strcmp(arch, "llama"), gpt2 = !strcmp(arch, "gpt2");
    if (!llama && !gpt2)
        return err_set(err, ERR_UNSUPPORTED, "GGUF architecture '%s' is not supported (llama or gpt2)", arch);
    int rc = config_defaults(c, arch, err);
    const int BIG = 1 << 24;
    if (rc || (rc = meta_int(g, arch, "block_count", -1, 1, 4096, &c->n_layer, err)) ||
        (rc = meta_int(g, arch, "embedding_length", -1, 1, BIG, &c->d_model, err)) ||
        (rc = meta_int(g, arch, "attention.head_count", -1, 1, 4096, &c->n_head, err)) ||
        (rc = meta_int(g, arch, "attention.head_count_kv", c->n_head, 1, 4096, &c->n_kv_head, err)) ||
        (rc = meta_int(g, arch, "feed_forward_length", -1, 1, BIG, &c->d_ff, err)) ||
        (rc = meta_int(g, arch, "context_length", 2048, 1, BIG, &c->context_length, err)))
        return rc;
    c->head_dim = c->n_head > 0 ? c->d_model / c->n_head : 0;
    if ((rc = meta_int(g, arch, "attention.key_length", c->head_dim, 1, 1024, &c->head_dim, err))) return rc;
    int vlen = c->head_dim;
    if ((rc = meta_int(g, arch, "attention.value_length", c->head_dim, 1, 1024, &vlen, err))) return rc;
    if (vlen != c->head_dim)
        return err_set(err, ERR_UNSUPPORTED, "value head size %d differs from key head size %d", vlen, c->head_dim);
    if (llama) {
        int rdim = c->head_dim;
        if ((rc = meta_int(g, arch, "rope.dimension_count", c->head_dim, 1, 4096, &rdim, err)) ||
            (rc = meta_float(g, arch, "rope.freq_base", 10000.0, &c->rope_theta, err)) ||
            (rc = meta_float(g, arch, "attention.layer_norm_rms_epsilon", 1e-5, &c->norm_eps, err)) ||
            (rc = meta_int(g, arch, "expert_count", 0, 0, 1024, &c->n_expert, err)) ||
            (rc = meta_int(g, arch, "expert_used_count", 0, 0, 64, &c->n_expert_active, err)))
            return rc;
        if (rdim != c->head_dim)
            return err_set(err, ERR_UNSUPPORTED, "partial rotary embedding (%d of %d dimensions) is not supported", rdim,
                           c->head_dim);
        GGUFStr st;
        char key[96];
        snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
        if (gguf_find_key(g, key) >= 0 && !gguf_get_str(g, key, &st, NULL) && !gguf_str_eq(st, "none"))
            return err_set(err, ERR_UNSUPPORTED, "RoPE scaling '%.*s' is not supported", (int)(st.len > 32 ? 32 : st.len),
                           st.ptr);
        if (c->n_expert == 0) c->n_expert_active = 0;
        c->rope_neox = 0;
    } else {
        if ((rc = meta_float(g, arch, "attention.layer_norm_epsilon", 1e-5, &c->norm_eps, err))) return rc;
    }
    /* vocabulary and tying come from the tensors themselves */
    const GGUFTensorInfo *emb = gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->ndim != 2) return err_set(err, ERR_FORMAT, "GGUF model has no 2-D token_embd.weight");
    if (emb->ne[1] < 1 || emb->ne[1] > (1 << 30)) return err_set(err, ERR_FORMAT, "token_embd.weight: bad vocabulary size");
    c->vocab_size = (int)emb->ne[1];
    c->tie_embeddings = gguf_find_tensor(g, "output.weight") == NULL;
    GGUFStr nm;
    if (!gguf_get_str(g, "general.name", &nm, NULL)) {
        char name[96];
        snprintf(c->note, sizeof c->note, "GGUF: %s", gguf_str_copy(nm, name, sizeof name));
    }
    return config_validate(c, err);
}

/* The LayerWeights field each block tensor name binds to. */
static const struct {
    const char *suffix;
    size_t off;
} layer_fields[] = {
    {"attn_norm.weight", offsetof(LayerWeights, attn_norm)}, {"attn_norm.bias", offsetof(LayerWeights, attn_norm_b)},
    {"attn_q.weight", offsetof(LayerWeights, wq)},           {"attn_q.bias", offsetof(LayerWeights, bq)},
    {"attn_k.weight", offsetof(LayerWeights, wk)},           {"attn_k.bias", offsetof(LayerWeights, bk)},
    {"attn_v.weight", offsetof(LayerWeights, wv)},           {"attn_v.bias", offsetof(LayerWeights, bv)},
    {"attn_output.weight", offsetof(LayerWeights, wo)},      {"attn_output.bias", offsetof(LayerWeights, bo)},
    {"ffn_norm.weight", offsetof(LayerWeights, ffn_norm)},   {"ffn_norm.bias", offsetof(LayerWeights, ffn_norm_b)},
    {"ffn_gate_inp.weight", offsetof(LayerWeights, router)}, {"ffn_gate.weight", offsetof(LayerWeights, w_gate)},
    {"ffn_gate_exps.weight", offsetof(LayerWeights, w_gate)}, {"ffn_up.weight", offsetof(LayerWeights, w_up)},
    {"ffn_up_exps.weight", offsetof(LayerWeights, w_up)},    {"ffn_up.bias", offsetof(LayerWeights, b_up)},
    {"ffn_up_exps.bias", offsetof(LayerWeights, b_up)},      {"ffn_down.weight", offsetof(LayerWeights, w_down)},
    {"ffn_down_exps.weight", offsetof(LayerWeights, w_down)}, {"ffn_down.bias", offsetof(LayerWeights, b_down)},
    {"ffn_down_exps.bias", offsetof(LayerWeights, b_down)},
};

/* Point the named views (tok_emb, layers[l].wq, ...) at registry entries. */
static int bind_views(Model *m, Err *err) {
    m->layers = calloc((size_t)m->cfg.n_layer, sizeof *m->layers);
    if (!m->layers) return err_set(err, ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->n_tensors; i++) {
        Tensor *t = &m->tensors[i];
        if (t->layer < 0) {
            if (!strcmp(t->name, "token_embd.weight")) m->tok_emb = t;
            else if (!strcmp(t->name, "position_embd.weight")) m->pos_emb = t;
            else if (!strcmp(t->name, "output_norm.weight")) m->out_norm = t;
            else if (!strcmp(t->name, "output_norm.bias")) m->out_norm_b = t;
            else if (!strcmp(t->name, "output.weight")) m->lm_head = t;
            continue;
        }
        const char *suffix = strchr(t->name + 4, '.') + 1; /* "blk.N." */
        for (size_t f = 0; f < sizeof layer_fields / sizeof layer_fields[0]; f++)
            if (!strcmp(suffix, layer_fields[f].suffix))
                *(Tensor **)((char *)&m->layers[t->layer] + layer_fields[f].off) = t;
    }
    if (m->cfg.tie_embeddings) m->lm_head = m->tok_emb;
    return 0;
}

/* An f32 copy of a non-f32 vector tensor in the owned arena. */
static float *owned_f32(GGUFOwned *o, const GGUFTensorInfo *ti, size_t n, size_t elem0, Err *err) {
    if (o->used + n > o->cap) {
        err_set(err, ERR_INVALID, "internal: f32 arena exhausted");
        return NULL;
    }
    float *dst = o->f32 + o->used;
    int bs = dtype_block_size(ti->type);
    if (bs <= 0 || elem0 % (size_t)bs || n % (size_t)bs ||
        dequantize_row(ti->type, (const char *)ti->data + elem0 / (size_t)bs * dtype_block_bytes(ti->type), dst,
                       (int64_t)n)) {
        err_set(err, ERR_UNSUPPORTED, "%.*s: cannot convert type %s to f32", (int)ti->name.len, ti->name.ptr,
                dtype_name(ti->type) ? dtype_name(ti->type) : "?");
        return NULL;
    }
    o->used += n;
    return dst;
}

/* Bind registry tensor t to GGUF tensor ti, or to rows [row0, row0 + rows)
 * of it (GPT-2's fused attn_qkv). */
static int bind_tensor(Tensor *t, const GGUFTensorInfo *ti, int64_t row0, int64_t rows_total, GGUFOwned *o, Err *err) {
    const char *nm = t->name;
    /* expected GGUF ne: the registry shape reversed (ne[0] fastest) */
    int64_t want[4] = {1, 1, 1, 1}, have[4] = {1, 1, 1, 1};
    for (int d = 0; d < t->ndim; d++) want[d] = t->shape[t->ndim - 1 - d];
    if (rows_total) want[t->ndim - 1] = rows_total;
    for (int d = 0; d < ti->ndim; d++) have[d] = ti->ne[d];
    if (memcmp(want, have, sizeof want) != 0)
        return err_set(err, ERR_FORMAT,
                       "tensor %.*s has shape [%lld, %lld, %lld] but the config (from the metadata) needs [%lld, %lld, %lld]",
                       (int)ti->name.len, ti->name.ptr, (long long)have[0], (long long)have[1], (long long)have[2],
                       (long long)want[0], (long long)want[1], (long long)want[2]);
    if (!dtype_name(ti->type) || !dtype_block_size(ti->type))
        return err_set(err, ERR_UNSUPPORTED, "tensor %s: type %d is not supported", nm, ti->type);
    t->dtype = ti->type;
    if (t->ndim == 1) { /* norms and biases are read as floats; row0 counts elements here */
        if (ti->type == DT_F32) t->data = (float *)ti->data + row0;
        else if (!(t->data = owned_f32(o, ti, t->numel, (size_t)row0, err))) return err->code;
        t->dtype = DT_F32;
        return 0;
    }
    const size_t rb = dtype_row_bytes(ti->type, want[0]);
    if (!rb)
        return err_set(err, ERR_UNSUPPORTED, "tensor %s: rows of %lld elements do not fit type %s's blocks", nm,
                       (long long)want[0], dtype_name(ti->type));
    t->data = (void *)((const char *)ti->data + (size_t)row0 * rb);
    return 0;
}

/* Matrices the forward reads as plain floats (learned positions, biases of
 * experts) must be f32; linear weights need a matmul kernel. */
static int check_types(const Model *m, GGUFOwned *o, const GGUFFile *g, Err *err) {
    for (int i = 0; i < m->n_tensors; i++) {
        Tensor *t = &m->tensors[i];
        int as_float = t == m->pos_emb || (t->ndim == 2 && (t->flags & PF_EXPERT) && (t->flags & PF_ZEROS));
        if (as_float && t->dtype != DT_F32) {
            const GGUFTensorInfo *ti = gguf_find_tensor(g, t->name);
            if (!ti || !(t->data = owned_f32(o, ti, t->numel, 0, err))) return err->code ? err->code : ERR_FORMAT;
            t->dtype = DT_F32;
            continue;
        }
        if (t->ndim >= 2 && t != m->tok_emb && t != m->pos_emb && !as_float && t->dtype != DT_F32 &&
            !quant_can_matmul(t->dtype))
            return err_set(err, ERR_UNSUPPORTED, "tensor %s: no matmul kernel for type %s", t->name, dtype_name(t->dtype));
    }
    if (m->tok_emb->dtype != DT_F32 && !quant_can_dequantize(m->tok_emb->dtype))
        return err_set(err, ERR_UNSUPPORTED, "token_embd.weight: type %s cannot be read", dtype_name(m->tok_emb->dtype));
    if (m->lm_head->dtype != DT_F32 && !quant_can_matmul(m->lm_head->dtype))
        return err_set(err, ERR_UNSUPPORTED, "output weight: no matmul kernel for type %s", dtype_name(m->lm_head->dtype));
    return 0;
}

/* GPT-2 GGUFs fuse q, k, v into blk.N.attn_qkv.{weight,bias}: q/k/v are row
 * ranges of it. Returns the fused tensor and the row range for name. */
static const GGUFTensorInfo *fused_qkv(const GGUFFile *g, const Config *c, const Tensor *t, int64_t *row0,
                                       int64_t *rows_total) {
    const char *suffix = strchr(t->name + 4, '.') + 1;
    int which = !strncmp(suffix, "attn_q.", 7) ? 0 : !strncmp(suffix, "attn_k.", 7) ? 1 : !strncmp(suffix, "attn_v.", 7) ? 2 : -1;
    if (which < 0) return NULL;
    char name[64];
    snprintf(name, sizeof name, "blk.%d.attn_qkv.%s", t->layer, suffix + 7);
    const int64_t q = (int64_t)c->n_head * c->head_dim, kv = (int64_t)c->n_kv_head * c->head_dim;
    *row0 = which == 0 ? 0 : which == 1 ? q : q + kv;
    *rows_total = q + 2 * kv;
    return gguf_find_tensor(g, name);
}

int model_load_gguf(Model *m, GGUFFile *g, Err *err) {
    memset(m, 0, sizeof *m);
    Config c;
    int rc = config_from_gguf(&c, g, err);
    if (rc) return rc;
    m->cfg = c;
    model_shard_whole(&m->shard, &c);
    if ((rc = registry_build(&c, &m->tensors, &m->n_tensors, &m->n_params, err))) return rc;
    GGUFOwned *o = calloc(1, sizeof *o);
    m->owner = o;
    if (!o || (rc = bind_views(m, err))) goto fail_mem;
    /* room for every vector converted to f32 (norms, biases; positions) */
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].ndim == 1 || &m->tensors[i] == m->pos_emb || (m->tensors[i].flags & PF_ZEROS))
            o->cap += m->tensors[i].numel;
    if (o->cap && !(o->f32 = malloc(o->cap * sizeof(float)))) goto fail_mem;
    const int64_t nt = gguf_n_tensors(g);
    char *used = calloc((size_t)nt + 1, 1);
    if (!used) goto fail_mem;
    for (int i = 0; i < m->n_tensors && !rc; i++) {
        Tensor *t = &m->tensors[i];
        const GGUFTensorInfo *ti = gguf_find_tensor(g, t->name);
        int64_t row0 = 0, rows_total = 0;
        if (!ti && t->layer >= 0 && !strcmp(c.arch, "gpt2")) ti = fused_qkv(g, &c, t, &row0, &rows_total);
        if (!ti) {
            rc = err_set(err, ERR_FORMAT, "GGUF model lacks tensor %s (arch %s, %d layers)", t->name, c.arch, c.n_layer);
            break;
        }
        for (int64_t j = 0; j < nt; j++)
            if (gguf_tensor(g, j) == ti) used[j] = 1;
        rc = bind_tensor(t, ti, row0, rows_total, o, err);
    }
    for (int64_t i = 0; i < nt && !rc; i++) {
        const GGUFTensorInfo *ti = gguf_tensor(g, i);
        if (!used[i])
            rc = err_set(err, ERR_UNSUPPORTED, "GGUF tensor %.*s is not part of a %s model jarip runs (unsupported feature)",
                         (int)(ti->name.len > 64 ? 64 : ti->name.len), ti->name.ptr, c.arch);
    }
    free(used);
    if (!rc) rc = check_types(m, o, g, err);
    if (rc) goto fail;
    return 0;
fail_mem:
    rc = err_set(err, ERR_NOMEM, "out of memory loading the GGUF model");
fail:
    model_free_gguf(m);
    return rc;
}

void model_free_gguf(Model *m) {
    GGUFOwned *o = m->owner;
    if (o) free(o->f32);
    free(o);
    m->owner = NULL;
    model_free(m);
}

/* ---- a model file opened for inference ------------------------------------------ */
/* NUL-terminated text of token id into buf ("" when none or too long). */
static void token_text(const Tokenizer *t, int32_t id, char *buf, size_t cap) {
    size_t len = 0;
    const uint8_t *p = id >= 0 ? tokenizer_token_bytes(t, id, &len) : NULL;
    if (!p || len >= cap) len = 0;
    if (p) memcpy(buf, p, len);
    buf[len] = 0;
}

int infer_model_open(InferModel *im, const char *path, Err *err) {
    memset(im, 0, sizeof *im);
    GGUFFile *g;
    int rc = gguf_open(&g, path, err);
    if (rc) return rc;
    if ((rc = infer_model_load_weights(g, path, err))) {
        gguf_close(g);
        return err_wrap(err, "%s", path);
    }
    return infer_model_from_gguf(im, g, path, err);
}

int infer_model_from_gguf(InferModel *im, GGUFFile *g, const char *path, Err *err) {
    memset(im, 0, sizeof *im);
    im->gguf = g;
    int rc;
    if ((rc = model_load_gguf(&im->model, im->gguf, err))) {
        err_wrap(err, "%s", path);
        goto fail;
    }
    if (gguf_find_key(im->gguf, "tokenizer.ggml.model") >= 0) {
        if ((rc = tokenizer_from_gguf(&im->tok, im->gguf, err))) {
            err_wrap(err, "%s: tokenizer", path);
            goto fail;
        }
        if (tokenizer_vocab_size(im->tok) > im->model.cfg.vocab_size) {
            rc = err_set(err, ERR_FORMAT, "%s: tokenizer has %d tokens but the model's vocabulary is %d", path,
                         tokenizer_vocab_size(im->tok), im->model.cfg.vocab_size);
            goto fail;
        }
    } else if (im->model.cfg.vocab_size != 256) {
        rc = err_set(err, ERR_FORMAT, "%s: no tokenizer in the file (tokenizer.ggml.* keys) and the vocabulary (%d) is not bytes (256)",
                     path, im->model.cfg.vocab_size);
        goto fail;
    }
    GGUFStr tmpl = {NULL, 0};
    gguf_get_str(im->gguf, "tokenizer.chat_template", &tmpl, NULL);
    char bos[64] = "", eos[64] = "";
    if (im->tok) {
        static const char *const ends[] = {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "</s>", "<|eom_id|>"};
        token_text(im->tok, tokenizer_bos_id(im->tok), bos, sizeof bos);
        token_text(im->tok, tokenizer_eos_id(im->tok), eos, sizeof eos);
        im->end_ids[im->n_end++] = tokenizer_eos_id(im->tok);
        for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
            int32_t id = tokenizer_special_id(im->tok, ends[i]);
            if (id >= 0 && im->n_end < 8) im->end_ids[im->n_end++] = id;
        }
    }
    chat_template_init(&im->chat, tmpl.ptr, (size_t)tmpl.len, bos, eos);
    GGUFStr nm;
    if (!gguf_get_str(im->gguf, "general.name", &nm, NULL)) gguf_str_copy(nm, im->name, sizeof im->name);
    else snprintf(im->name, sizeof im->name, "%s", path);
    return 0;
fail:
    infer_model_close(im);
    return rc;
}

void infer_model_close(InferModel *im) {
    if (im->lora) model_free(im->lora);
    free(im->lora);
    if (im->model.tensors) model_free_gguf(&im->model);
    tokenizer_free(im->tok);
    gguf_close(im->gguf);
    memset(im, 0, sizeof *im);
}

int infer_tokenize(const InferModel *im, const char *text, size_t len, int add_bos, int32_t **ids, size_t *n, Err *err) {
    *ids = NULL;
    *n = 0;
    if (!im->tok) { /* byte-level model without a tokenizer: ids are the bytes */
        *ids = malloc((len + 1) * sizeof **ids);
        if (!*ids) return err_set(err, ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < len; i++) (*ids)[i] = (unsigned char)text[i];
        *n = len;
        return 0;
    }
    int32_t *raw = NULL;
    size_t nr = 0;
    int rc = tokenizer_encode(im->tok, text, len, 1, &raw, &nr, err);
    if (rc) return rc;
    int32_t bos = tokenizer_bos_id(im->tok);
    int prepend = add_bos && bos >= 0 && tokenizer_add_bos(im->tok) && !(nr > 0 && raw[0] == bos);
    *ids = malloc((nr + 1) * sizeof **ids);
    if (!*ids) {
        free(raw);
        return err_set(err, ERR_NOMEM, "out of memory");
    }
    if (prepend) (*ids)[0] = bos;
    if (nr) memcpy(*ids + prepend, raw, nr * sizeof *raw); /* an empty text: raw is NULL, and memcpy from NULL is UB */
    *n = nr + (size_t)prepend;
    free(raw);
    return 0;
}

const uint8_t *infer_token_bytes(const InferModel *im, int32_t id, size_t *len) {
    static const uint8_t bytes[256] = {
#define B4(i) i, i + 1, i + 2, i + 3
#define B16(i) B4(i), B4(i + 4), B4(i + 8), B4(i + 12)
#define B64(i) B16(i), B16(i + 16), B16(i + 32), B16(i + 48)
        B64(0), B64(64), B64(128), B64(192)
#undef B64
#undef B16
#undef B4
    };
    if (im->tok) return tokenizer_token_bytes(im->tok, id, len);
    if (id < 0 || id > 255) return NULL;
    *len = 1;
    return &bytes[id];
}

int infer_is_end(const InferModel *im, int32_t id) {
    for (int i = 0; i < im->n_end; i++)
        if (id == im->end_ids[i] && id >= 0) return 1;
    return 0;
}
