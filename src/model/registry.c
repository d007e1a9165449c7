/* The parameter registry: the one list of every parameter tensor, its
 * shape, and its offset in the contiguous weight/grad/Adam buffers. */
#include "model.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    Tensor *t;
    int n, cap;
    size_t offset;
} RegBuilder;

static int reg_add(RegBuilder *rb, int layer, const char *name, unsigned flags, int ndim, int64_t d0,
                   int64_t d1, int64_t d2) {
    if (rb->n == rb->cap) {
        int cap = rb->cap ? rb->cap * 2 : 64;
        Tensor *t = realloc(rb->t, (size_t)cap * sizeof *t);
        if (!t) return ERR_NOMEM;
        rb->t = t;
        rb->cap = cap;
    }
    Tensor *t = &rb->t[rb->n++];
    memset(t, 0, sizeof *t);
    if (layer >= 0)
        snprintf(t->name, sizeof t->name, "blk.%d.%s", layer, name);
    else
        snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    int64_t dims[3] = {d0, d1, d2};
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = dims[i];
        t->numel *= (size_t)dims[i];
    }
    for (int i = 0; i < ndim; i++) t->full[i] = dims[i];
    t->dtype = DT_F32;
    t->offset = rb->offset;
    t->layer = layer;
    t->flags = flags;
    rb->offset += t->numel;
    return 0;
}

/* LoRA configs: the adapters alone, A (r, in) and B (out, r) per target
 * weight of each block, in forward order (the base is frozen elsewhere). */
static int registry_fill_lora(const Config *c, RegBuilder *rb) {
    const int64_t C = c->d_model, F = c->d_ff, r = c->lora_rank;
    const int64_t qdim = (int64_t)c->n_head * c->head_dim, kvdim = (int64_t)c->n_kv_head * c->head_dim;
    const int64_t out[7] = {qdim, kvdim, kvdim, C, F, F, C}, in[7] = {C, C, C, qdim, C, C, F};
    for (int l = 0; l < c->n_layer; l++)
        for (int i = 0; i < 7; i++) {
            if (!(c->lora_targets & (1u << i))) continue;
            char name[48];
            int rc;
            snprintf(name, sizeof name, "%s.lora_a", lora_target_weight(i));
            if ((rc = reg_add(rb, l, name, PF_DECAY | PF_LORA_A, 2, r, in[i], 0))) return rc;
            snprintf(name, sizeof name, "%s.lora_b", lora_target_weight(i));
            if ((rc = reg_add(rb, l, name, PF_DECAY | PF_ZEROS, 2, out[i], r, 0))) return rc;
        }
    return 0;
}

/* Order matters only for the checkpoint layout; it follows the forward. */
static int registry_fill(const Config *c, RegBuilder *rb) {
    const int64_t C = c->d_model, F = c->d_ff, V = c->vocab_size, E = c->n_expert;
    const int64_t qdim = (int64_t)c->n_head * c->head_dim, kvdim = (int64_t)c->n_kv_head * c->head_dim;
    const int ln = c->norm == NORM_LAYERNORM, b = c->bias;
    int rc = 0;
    if (c->lora_rank > 0) return registry_fill_lora(c, rb);
#define ADD(...) do { if ((rc = reg_add(rb, __VA_ARGS__))) return rc; } while (0)
    ADD(-1, "token_embd.weight", 0, 2, V, C, 0);
    if (c->pos == POS_LEARNED) ADD(-1, "position_embd.weight", 0, 2, c->context_length, C, 0);
    for (int l = 0; l < c->n_layer; l++) {
        ADD(l, "attn_norm.weight", PF_ONES, 1, C, 0, 0);
        if (ln) ADD(l, "attn_norm.bias", PF_ZEROS, 1, C, 0, 0);
        ADD(l, "attn_q.weight", PF_DECAY, 2, qdim, C, 0);
        if (b) ADD(l, "attn_q.bias", PF_ZEROS, 1, qdim, 0, 0);
        ADD(l, "attn_k.weight", PF_DECAY, 2, kvdim, C, 0);
        if (b) ADD(l, "attn_k.bias", PF_ZEROS, 1, kvdim, 0, 0);
        ADD(l, "attn_v.weight", PF_DECAY, 2, kvdim, C, 0);
        if (b) ADD(l, "attn_v.bias", PF_ZEROS, 1, kvdim, 0, 0);
        ADD(l, "attn_output.weight", PF_DECAY | PF_RESID_PROJ, 2, C, qdim, 0);
        if (b) ADD(l, "attn_output.bias", PF_ZEROS, 1, C, 0, 0);
        ADD(l, "ffn_norm.weight", PF_ONES, 1, C, 0, 0);
        if (ln) ADD(l, "ffn_norm.bias", PF_ZEROS, 1, C, 0, 0);
        if (E > 0) {
            ADD(l, "ffn_gate_inp.weight", PF_DECAY, 2, E, C, 0);
            if (c->act == ACT_SWIGLU) ADD(l, "ffn_gate_exps.weight", PF_DECAY | PF_EXPERT, 3, E, F, C);
            ADD(l, "ffn_up_exps.weight", PF_DECAY | PF_EXPERT, 3, E, F, C);
            if (b) ADD(l, "ffn_up_exps.bias", PF_ZEROS | PF_EXPERT, 2, E, F, 0);
            ADD(l, "ffn_down_exps.weight", PF_DECAY | PF_RESID_PROJ | PF_EXPERT, 3, E, C, F);
            if (b) ADD(l, "ffn_down_exps.bias", PF_ZEROS | PF_EXPERT, 2, E, C, 0);
        } else {
            if (c->act == ACT_SWIGLU) ADD(l, "ffn_gate.weight", PF_DECAY, 2, F, C, 0);
            ADD(l, "ffn_up.weight", PF_DECAY, 2, F, C, 0);
            if (b) ADD(l, "ffn_up.bias", PF_ZEROS, 1, F, 0, 0);
            ADD(l, "ffn_down.weight", PF_DECAY | PF_RESID_PROJ, 2, C, F, 0);
            if (b) ADD(l, "ffn_down.bias", PF_ZEROS, 1, C, 0, 0);
        }
    }
    ADD(-1, "output_norm.weight", PF_ONES, 1, C, 0, 0);
    if (ln) ADD(-1, "output_norm.bias", PF_ZEROS, 1, C, 0, 0);
    if (!c->tie_embeddings) ADD(-1, "output.weight", PF_DECAY, 2, V, C, 0);
#undef ADD
    return 0;
}

int registry_build(const Config *c, Tensor **tensors, int *n_tensors, size_t *n_params, Err *err) {
    RegBuilder rb = {0};
    if (registry_fill(c, &rb)) {
        free(rb.t);
        return err_set(err, ERR_NOMEM, "out of memory building the parameter registry");
    }
    *tensors = rb.t;
    *n_tensors = rb.n;
    *n_params = rb.offset;
    return 0;
}

size_t config_param_count(const Config *c) {
    Tensor *t = NULL;
    int n = 0;
    size_t total = 0;
    if (registry_build(c, &t, &n, &total, NULL)) return 0;
    free(t);
    return total;
}

size_t config_active_param_count(const Config *c) {
    Tensor *t = NULL;
    int n = 0;
    size_t total = 0;
    if (registry_build(c, &t, &n, &total, NULL)) return 0;
    size_t active = 0;
    for (int i = 0; i < n; i++) {
        if (t[i].flags & PF_EXPERT)
            active += t[i].numel / (size_t)c->n_expert * (size_t)c->n_expert_active;
        else
            active += t[i].numel;
    }
    free(t);
    return active;
}

/* ---- sharding ------------------------------------------------------------------ */

void model_shard_whole(ModelShard *s, const Config *c) {
    memset(s, 0, sizeof *s);
    s->tp_size = s->ep_size = 1;
    s->layer0 = 0;
    s->layer1 = c->n_layer;
    s->first = s->last = 1;
}

/* kv_replicas: accept tp > kv heads (tp a multiple of them), each rank then
 * holding the one kv head its query heads read (Megatron-LM); the planner
 * sizes such layouts, the engine's forward does not run them. */
static int shard_check(const Config *c, const ModelShard *s, int kv_replicas, Err *err) {
    const int tp = s->tp_size;
    if (tp < 1 || s->ep_size < 1 || s->tp_rank < 0 || s->tp_rank >= tp || s->ep_rank < 0 || s->ep_rank >= s->ep_size)
        return err_set(err, ERR_INVALID, "bad shard ranks");
    if (c->n_head % tp) return err_set(err, ERR_INVALID, "attention heads (%d) are not divisible by tp (%d)", c->n_head, tp);
    if (c->n_kv_head % tp && !(kv_replicas && tp % c->n_kv_head == 0))
        return err_set(err, ERR_INVALID, "kv heads (%d) are not divisible by tp (%d)", c->n_kv_head, tp);
    if (c->d_ff % tp) return err_set(err, ERR_INVALID, "d_ff (%d) is not divisible by tp (%d)", c->d_ff, tp);
    if (c->vocab_size < tp) return err_set(err, ERR_INVALID, "vocabulary smaller than tp");
    if (s->ep_size > 1 && (c->n_expert == 0 || c->n_expert % s->ep_size))
        return err_set(err, ERR_INVALID, "experts (%d) are not divisible by ep (%d)", c->n_expert, s->ep_size);
    if (s->layer0 < 0 || s->layer1 > c->n_layer || s->layer0 > s->layer1)
        return err_set(err, ERR_INVALID, "bad layer range %d..%d", s->layer0, s->layer1);
    return 0;
}

int model_shard_check(const Config *c, const ModelShard *s, Err *err) { return shard_check(c, s, 0, err); }

void vocab_part(int V, int tp, int r, int *v0, int *n) {
    int base = V / tp, extra = V % tp;
    *n = base + (r < extra);
    *v0 = r * base + (r < extra ? r : extra);
}

/* Split dimension d of t into parts, keep part idx (even split). */
static void split_dim(Tensor *t, int d, int parts, int idx) {
    int64_t n = t->full[d] / parts;
    t->shape[d] = n;
    t->start[d] = n * idx;
}

/* Base name without "blk.N." */
static const char *base_name(const Tensor *t) {
    if (t->layer < 0) return t->name;
    const char *dot = strchr(t->name + 4, '.');
    return dot ? dot + 1 : t->name;
}

static int starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

int registry_build_shard(const Config *c, const ModelShard *s, Tensor **tensors, int *n_tensors, size_t *n_params,
                         Err *err) {
    int rc = shard_check(c, s, 1, err);
    if (rc) return rc;
    Tensor *all = NULL;
    int n = 0;
    size_t total = 0;
    if ((rc = registry_build(c, &all, &n, &total, err))) return rc;
    int k = 0;
    size_t offset = 0;
    const int tp = s->tp_size, tr = s->tp_rank;
    for (int i = 0; i < n; i++) {
        Tensor t = all[i];
        const char *b = base_name(&t);
        int embed = strcmp(t.name, "token_embd.weight") == 0, pos = strcmp(t.name, "position_embd.weight") == 0;
        int head = starts(t.name, "output");
        int keep = t.layer >= 0 ? (t.layer >= s->layer0 && t.layer < s->layer1)
                                : ((embed && (s->first || (s->last && c->tie_embeddings))) || (pos && s->first) ||
                                   (head && s->last));
        if (!keep) continue;
        for (int d = 0; d < 4; d++) {
            t.full[d] = d < t.ndim ? t.shape[d] : 0;
            t.start[d] = 0;
        }
        if (t.flags & PF_EXPERT) {
            if (s->ep_size > 1) {
                split_dim(&t, 0, s->ep_size, s->ep_rank);
                t.ep_split = 1;
            }
            int fdim = starts(b, "ffn_down_exps") ? (t.ndim == 3 ? 2 : -1) : 1;
            if (tp > 1 && fdim > 0) {
                split_dim(&t, fdim, tp, tr);
                t.tp_split = 1;
            }
        } else if (tp > 1) {
            if ((starts(b, "attn_k.") || starts(b, "attn_v.")) && c->n_kv_head % tp) {
                /* tp > kv heads: the kv head of this rank's query heads, replicated */
                const int64_t rows = t.full[0] / c->n_kv_head;
                t.shape[0] = rows;
                t.start[0] = rows * (tr / (tp / c->n_kv_head));
                t.tp_split = 1;
            } else if (starts(b, "attn_q.") || starts(b, "attn_k.") || starts(b, "attn_v.") || starts(b, "ffn_gate.") ||
                       starts(b, "ffn_up.")) {
                split_dim(&t, 0, tp, tr); /* column parallel: output rows (whole heads) */
                t.tp_split = 1;
            } else if ((starts(b, "attn_output.") || starts(b, "ffn_down.")) && t.ndim == 2) {
                split_dim(&t, 1, tp, tr); /* row parallel: input columns */
                t.tp_split = 1;
            } else if (embed || strcmp(t.name, "output.weight") == 0) {
                int v0, nv;
                vocab_part(c->vocab_size, tp, tr, &v0, &nv);
                t.shape[0] = nv;
                t.start[0] = v0;
                t.tp_split = 1;
            }
        }
        t.numel = 1;
        for (int d = 0; d < t.ndim; d++) t.numel *= (size_t)t.shape[d];
        t.offset = offset;
        offset += t.numel;
        all[k++] = t;
    }
    *tensors = all;
    *n_tensors = k;
    *n_params = offset;
    return 0;
}

void tensor_block_copy(const Tensor *t, float *whole, float *local, int to_full) {
    int64_t L[3] = {1, 1, 1}, F[3] = {1, 1, 1}, S[3] = {0, 0, 0};
    int off = 3 - t->ndim; /* right-align into 3 dims */
    for (int d = 0; d < t->ndim; d++) {
        L[d + off] = t->shape[d];
        F[d + off] = t->full[d];
        S[d + off] = t->start[d];
    }
    for (int64_t i = 0; i < L[0]; i++)
        for (int64_t j = 0; j < L[1]; j++) {
            float *w = whole + ((i + S[0]) * F[1] + (j + S[1])) * F[2] + S[2];
            float *l = local + (i * L[1] + j) * L[2];
            if (to_full)
                memcpy(w, l, (size_t)L[2] * sizeof(float));
            else
                memcpy(l, w, (size_t)L[2] * sizeof(float));
        }
}
