/* Model configuration: JSON schema, defaults by arch, validation. */
#include "model.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int config_defaults(Config *c, const char *arch, Err *err) {
    memset(c, 0, sizeof *c);
    if (strcmp(arch, "gpt2") == 0) {
        c->norm = NORM_LAYERNORM;
        c->norm_eps = 1e-5f;
        c->pos = POS_LEARNED;
        c->act = ACT_GELU;
        c->bias = 1;
        c->tie_embeddings = 1;
        c->context_length = 1024;
        c->vocab_size = 50257;
    } else if (strcmp(arch, "llama") == 0) {
        c->norm = NORM_RMSNORM;
        c->norm_eps = 1e-5f;
        c->pos = POS_ROPE;
        c->rope_theta = 10000.0f;
        c->act = ACT_SWIGLU;
        c->bias = 0;
        c->tie_embeddings = 0;
        c->context_length = 2048;
        c->vocab_size = 32000;
    } else {
        return err_set(err, ERR_INVALID, "config: unknown arch '%s' (expected \"gpt2\" or \"llama\")", arch);
    }
    snprintf(c->arch, sizeof c->arch, "%s", arch);
    c->moe_aux_coef = 0.01f;
    return 0;
}

/* Fill fields derived from others when the user left them at 0. */
static void config_fill_derived(Config *c) {
    if (c->n_kv_head == 0) c->n_kv_head = c->n_head;
    if (c->head_dim == 0 && c->n_head > 0) c->head_dim = c->d_model / c->n_head;
    if (c->d_ff == 0) {
        /* in 64 bits: a hostile d_model near 2^31 must reach config_validate's
         * range check, not overflow here */
        int64_t f;
        if (c->act == ACT_GELU) {
            f = 4 * (int64_t)c->d_model;
        } else { /* Llama: 2/3 of 4d, rounded up to a multiple of 256 */
            f = (int64_t)(8.0 * c->d_model / 3.0);
            f = (f + 255) / 256 * 256;
        }
        c->d_ff = f > INT32_MAX ? INT32_MAX : (int)f;
    }
}

int config_validate(const Config *c, Err *err) {
#define REQ(cond, ...) do { if (!(cond)) return err_set(err, ERR_INVALID, "config: " __VA_ARGS__); } while (0)
    /* Upper bounds far above any real model (405B: 126 layers, d_model
     * 16384; Llama 4: 10M context), so a hostile config.json or GGUF cannot
     * make the registry allocate per-layer tables for 2^31 layers. */
    REQ(c->vocab_size > 0 && c->vocab_size <= (1 << 22), "vocab_size must be in 1..4194304 (got %d)", c->vocab_size);
    REQ(c->context_length > 0 && c->context_length <= (1 << 24), "context_length must be in 1..16777216 (got %d)",
        c->context_length);
    REQ(c->n_layer > 0 && c->n_layer <= 1024, "n_layer must be in 1..1024 (got %d)", c->n_layer);
    REQ(c->d_model > 0 && c->d_model <= (1 << 16), "d_model must be in 1..65536 (got %d)", c->d_model);
    REQ(c->n_head > 0 && c->n_head <= 1024, "n_head must be in 1..1024 (got %d)", c->n_head);
    REQ(c->n_kv_head > 0 && c->n_kv_head <= c->n_head, "n_kv_head must be in 1..n_head (got %d)", c->n_kv_head);
    REQ(c->n_head % c->n_kv_head == 0, "n_head (%d) must be divisible by n_kv_head (%d)", c->n_head, c->n_kv_head);
    REQ(c->head_dim > 0 && c->head_dim <= 1024, "head_dim must be in 1..1024 (got %d)", c->head_dim);
    REQ(c->head_dim * c->n_head == c->d_model || c->head_dim > 0,
        "d_model (%d) must be divisible by n_head (%d)", c->d_model, c->n_head);
    REQ(c->d_ff > 0 && c->d_ff <= (1 << 20), "d_ff must be in 1..1048576 (got %d)", c->d_ff);
    REQ(c->norm_eps > 0 && c->norm_eps < 1, "norm_eps must be in (0, 1)");
    REQ(c->norm == NORM_LAYERNORM || c->norm == NORM_RMSNORM, "norm must be layernorm or rmsnorm");
    REQ(c->pos == POS_LEARNED || c->pos == POS_ROPE, "pos must be learned or rope");
    REQ(c->act == ACT_GELU || c->act == ACT_SWIGLU, "act must be gelu or swiglu");
    if (c->pos == POS_ROPE) {
        REQ(c->head_dim % 2 == 0, "rope needs an even head_dim (got %d)", c->head_dim);
        REQ(c->rope_theta > 0, "rope_theta must be > 0");
    }
    REQ(c->n_expert >= 0 && c->n_expert <= 1024, "n_expert must be in 0..1024 (got %d)", c->n_expert);
    REQ(c->n_expert_active <= 64, "n_expert_active must be <= 64");
    if (c->n_expert > 0) {
        REQ(c->n_expert_active >= 1 && c->n_expert_active <= c->n_expert,
            "n_expert_active must be in 1..n_expert (got %d of %d)", c->n_expert_active, c->n_expert);
    } else {
        REQ(c->n_expert_active == 0, "n_expert_active needs n_expert > 0");
    }
    REQ(c->moe_aux_coef >= 0, "moe_aux_coef must be >= 0");
    REQ(c->lora_rank >= 0, "lora_rank must be > 0 (got %d)", c->lora_rank);
    REQ(c->lora_rank > 0 || c->lora_dropout == 0, "lora_dropout needs lora_rank > 0");
    if (c->lora_rank > 0) {
        const int qdim = c->n_head * c->head_dim, kvdim = c->n_kv_head * c->head_dim;
        const int out[7] = {qdim, kvdim, kvdim, c->d_model, c->d_ff, c->d_ff, c->d_model};
        const int in[7] = {c->d_model, c->d_model, c->d_model, qdim, c->d_model, c->d_model, c->d_ff};
        REQ(c->lora_targets && !(c->lora_targets & ~(unsigned)LORA_ALL), "lora_targets must name at least one of "
            "q,k,v,o,gate,up,down");
        REQ(c->lora_alpha > 0, "lora_alpha must be > 0");
        REQ(c->lora_dropout >= 0 && c->lora_dropout < 1, "lora_dropout must be in [0, 1) (got %g)", c->lora_dropout);
        REQ(!(c->lora_targets & LORA_GATE) || c->act == ACT_SWIGLU, "lora_targets: gate needs a SwiGLU model");
        REQ(c->n_expert == 0 || !(c->lora_targets & (LORA_GATE | LORA_UP | LORA_DOWN)),
            "lora_targets: gate, up and down of MoE experts are not supported (attention targets are)");
        for (int i = 0; i < 7; i++) {
            if (!(c->lora_targets & (1u << i)) || (i == 4 && c->act != ACT_SWIGLU)) continue;
            int lim = out[i] < in[i] ? out[i] : in[i];
            REQ(c->lora_rank <= lim, "lora_rank %d exceeds the smaller side of %s (%d x %d)", c->lora_rank,
                lora_target_weight(i), out[i], in[i]);
        }
    }
    /* keep int32 products in kernels safe */
    REQ((int64_t)c->vocab_size * c->d_model < ((int64_t)1 << 40), "vocab_size x d_model too large");
    return 0;
#undef REQ
}

static const char *const known_keys[] = {
    "arch", "vocab_size", "context_length", "n_layer", "d_model", "n_head", "n_kv_head", "head_dim",
    "d_ff", "norm", "norm_eps", "pos", "rope_theta", "rope_style", "act", "bias", "tie_embeddings",
    "n_expert", "n_expert_active", "moe_aux_coef", "note", "lora_rank", "lora_alpha", "lora_targets",
    "lora_dropout", NULL};

static const char *const lora_names[7] = {"q", "k", "v", "o", "gate", "up", "down"};
static const char *const lora_weights[7] = {"attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
                                            "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"};

const char *lora_target_weight(int i) { return i >= 0 && i < 7 ? lora_weights[i] : ""; }

int lora_targets_parse(const char *s, unsigned *mask, Err *err) {
    *mask = 0;
    while (*s) {
        size_t n = strcspn(s, ",");
        int found = -1;
        for (int i = 0; i < 7; i++)
            if (strlen(lora_names[i]) == n && !strncmp(s, lora_names[i], n)) found = i;
        if (found < 0)
            return err_set(err, ERR_INVALID, "LoRA target '%.*s' is not one of q,k,v,o,gate,up,down", (int)(n > 32 ? 32 : n), s);
        *mask |= 1u << found;
        s += n;
        if (*s == ',') s++;
    }
    if (!*mask) return err_set(err, ERR_INVALID, "no LoRA targets given (q,k,v,o,gate,up,down)");
    return 0;
}

const char *lora_targets_str(unsigned mask, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < 7; i++)
        if (mask & (1u << i)) n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "%s%s", n ? "," : "", lora_names[i]);
    return buf;
}

static int get_int(json_t *o, const char *key, int *out, Err *err) {
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (!json_is_integer(v)) return err_set(err, ERR_INVALID, "config: \"%s\" must be an integer", key);
    json_int_t x = json_integer_value(v);
    if (x < 0 || x > 0x7fffffff) return err_set(err, ERR_INVALID, "config: \"%s\" out of range (%lld)", key, (long long)x);
    *out = (int)x;
    return 0;
}

static int get_float(json_t *o, const char *key, float *out, Err *err) {
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (!json_is_number(v)) return err_set(err, ERR_INVALID, "config: \"%s\" must be a number", key);
    *out = (float)json_number_value(v);
    return 0;
}

static int get_bool(json_t *o, const char *key, int *out, Err *err) {
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (!json_is_boolean(v)) return err_set(err, ERR_INVALID, "config: \"%s\" must be true or false", key);
    *out = json_is_true(v);
    return 0;
}

/* A string key mapped to one of the names; index into *out. */
static int get_enum(json_t *o, const char *key, const char *const *names, int *out, Err *err) {
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (json_is_string(v)) {
        for (int i = 0; names[i]; i++)
            if (strcmp(json_string_value(v), names[i]) == 0) {
                *out = i;
                return 0;
            }
    }
    return err_set(err, ERR_INVALID, "config: \"%s\" must be one of \"%s\", \"%s\"", key, names[0], names[1]);
}

int config_from_json(Config *c, const char *text, Err *err) {
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    if (!o) return err_set(err, ERR_FORMAT, "config: invalid JSON at line %d: %s", je.line, je.text);
    int rc = 0;
    if (!json_is_object(o)) {
        rc = err_set(err, ERR_FORMAT, "config: top level must be a JSON object");
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(o, key, val) {
        int ok = 0;
        for (int i = 0; known_keys[i]; i++) ok |= strcmp(key, known_keys[i]) == 0;
        if (!ok) {
            rc = err_set(err, ERR_INVALID, "config: unknown key \"%s\"", key);
            goto done;
        }
    }
    json_t *a = json_object_get(o, "arch");
    const char *arch = a && json_is_string(a) ? json_string_value(a) : NULL;
    if (!arch) {
        rc = err_set(err, ERR_INVALID, "config: \"arch\" (\"gpt2\" or \"llama\") is required");
        goto done;
    }
    if ((rc = config_defaults(c, arch, err))) goto done;
    static const char *const norms[] = {"layernorm", "rmsnorm", NULL};
    static const char *const poss[] = {"learned", "rope", NULL};
    static const char *const acts[] = {"gelu", "swiglu", NULL};
    static const char *const styles[] = {"gguf", "neox", NULL};
    if ((rc = get_int(o, "vocab_size", &c->vocab_size, err)) || (rc = get_int(o, "context_length", &c->context_length, err)) ||
        (rc = get_int(o, "n_layer", &c->n_layer, err)) || (rc = get_int(o, "d_model", &c->d_model, err)) ||
        (rc = get_int(o, "n_head", &c->n_head, err)) || (rc = get_int(o, "n_kv_head", &c->n_kv_head, err)) ||
        (rc = get_int(o, "head_dim", &c->head_dim, err)) || (rc = get_int(o, "d_ff", &c->d_ff, err)) ||
        (rc = get_enum(o, "norm", norms, &c->norm, err)) || (rc = get_float(o, "norm_eps", &c->norm_eps, err)) ||
        (rc = get_enum(o, "pos", poss, &c->pos, err)) || (rc = get_float(o, "rope_theta", &c->rope_theta, err)) ||
        (rc = get_enum(o, "rope_style", styles, &c->rope_neox, err)) || (rc = get_enum(o, "act", acts, &c->act, err)) ||
        (rc = get_bool(o, "bias", &c->bias, err)) || (rc = get_bool(o, "tie_embeddings", &c->tie_embeddings, err)) ||
        (rc = get_int(o, "n_expert", &c->n_expert, err)) || (rc = get_int(o, "n_expert_active", &c->n_expert_active, err)) ||
        (rc = get_float(o, "moe_aux_coef", &c->moe_aux_coef, err)) || (rc = get_int(o, "lora_rank", &c->lora_rank, err)) ||
        (rc = get_float(o, "lora_alpha", &c->lora_alpha, err)) ||
        (rc = get_float(o, "lora_dropout", &c->lora_dropout, err)))
        goto done;
    json_t *lt = json_object_get(o, "lora_targets");
    if (lt && (!json_is_string(lt) || (rc = lora_targets_parse(json_string_value(lt), &c->lora_targets, err)))) {
        if (!rc) rc = err_set(err, ERR_INVALID, "config: \"lora_targets\" must be a string like \"q,k,v,o\"");
        goto done;
    }
    json_t *note = json_object_get(o, "note");
    if (note && json_is_string(note)) snprintf(c->note, sizeof c->note, "%s", json_string_value(note));
    if (c->pos == POS_ROPE && c->rope_theta == 0) c->rope_theta = 10000.0f;
    if (c->n_head > 0 && c->head_dim == 0 && c->d_model % c->n_head != 0) {
        rc = err_set(err, ERR_INVALID, "config: d_model (%d) must be divisible by n_head (%d)", c->d_model, c->n_head);
        goto done;
    }
    config_fill_derived(c);
    rc = config_validate(c, err);
done:
    json_decref(o);
    return rc;
}

int config_load(Config *c, const char *path, Err *err) {
    char *text;
    size_t len;
    int rc = file_read_all(path, &text, &len, err);
    if (rc) return rc;
    rc = config_from_json(c, text, err);
    free(text);
    if (rc) err_wrap(err, "%s", path);
    return rc;
}

char *config_to_json(const Config *c) {
    json_t *o = json_object();
    json_object_set_new(o, "arch", json_string(c->arch));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(o, "context_length", json_integer(c->context_length));
    json_object_set_new(o, "n_layer", json_integer(c->n_layer));
    json_object_set_new(o, "d_model", json_integer(c->d_model));
    json_object_set_new(o, "n_head", json_integer(c->n_head));
    json_object_set_new(o, "n_kv_head", json_integer(c->n_kv_head));
    json_object_set_new(o, "head_dim", json_integer(c->head_dim));
    json_object_set_new(o, "d_ff", json_integer(c->d_ff));
    json_object_set_new(o, "norm", json_string(c->norm == NORM_RMSNORM ? "rmsnorm" : "layernorm"));
    json_object_set_new(o, "norm_eps", json_real(c->norm_eps));
    json_object_set_new(o, "pos", json_string(c->pos == POS_ROPE ? "rope" : "learned"));
    if (c->pos == POS_ROPE) {
        json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
        json_object_set_new(o, "rope_style", json_string(c->rope_neox ? "neox" : "gguf"));
    }
    json_object_set_new(o, "act", json_string(c->act == ACT_SWIGLU ? "swiglu" : "gelu"));
    json_object_set_new(o, "bias", json_boolean(c->bias));
    json_object_set_new(o, "tie_embeddings", json_boolean(c->tie_embeddings));
    json_object_set_new(o, "n_expert", json_integer(c->n_expert));
    json_object_set_new(o, "n_expert_active", json_integer(c->n_expert_active));
    if (c->n_expert) json_object_set_new(o, "moe_aux_coef", json_real(c->moe_aux_coef));
    if (c->note[0]) json_object_set_new(o, "note", json_string(c->note));
    if (c->lora_rank > 0) {
        char t[64];
        json_object_set_new(o, "lora_rank", json_integer(c->lora_rank));
        json_object_set_new(o, "lora_alpha", json_real(c->lora_alpha));
        json_object_set_new(o, "lora_targets", json_string(lora_targets_str(c->lora_targets, t, sizeof t)));
        if (c->lora_dropout > 0) json_object_set_new(o, "lora_dropout", json_real(c->lora_dropout));
    }
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    json_decref(o);
    return s;
}

double model_flops_per_token(const Config *c, int T) {
    return 6.0 * (double)config_active_param_count(c) + 12.0 * c->n_layer * (double)c->d_model * T;
}
