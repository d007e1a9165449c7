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
    t->dtype = DT_F32;
    t->offset = rb->offset;
    t->layer = layer;
    t->flags = flags;
    rb->offset += t->numel;
    return 0;
}

/* Order matters only for the checkpoint layout; it follows the forward. */
static int registry_fill(const Config *c, RegBuilder *rb) {
    const int64_t C = c->d_model, F = c->d_ff, V = c->vocab_size, E = c->n_expert;
    const int64_t qdim = (int64_t)c->n_head * c->head_dim, kvdim = (int64_t)c->n_kv_head * c->head_dim;
    const int ln = c->norm == NORM_LAYERNORM, b = c->bias;
    int rc = 0;
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
