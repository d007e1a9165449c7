/* Model lifetime: allocation by the registry, initialisation, and the
 * activation plan (sized once from config, batch and sequence length). */
#include "model_internal.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static Tensor *find(Model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

static Tensor *find_layer(Model *m, int l, const char *suffix) {
    char name[64];
    snprintf(name, sizeof name, "blk.%d.%s", l, suffix);
    return find(m, name);
}

/* Resolve the named views (tok_emb, layers[l].wq, ...) over the registry. */
static int model_bind(Model *m, Err *err) {
    const Config *c = &m->cfg;
    m->layers = calloc((size_t)c->n_layer, sizeof *m->layers);
    if (!m->layers) return err_set(err, ERR_NOMEM, "out of memory");
    m->tok_emb = find(m, "token_embd.weight");
    m->pos_emb = find(m, "position_embd.weight");
    m->out_norm = find(m, "output_norm.weight");
    m->out_norm_b = find(m, "output_norm.bias");
    m->lm_head = c->tie_embeddings ? m->tok_emb : find(m, "output.weight");
    int moe = c->n_expert > 0;
    for (int l = 0; l < c->n_layer; l++) {
        LayerWeights *w = &m->layers[l];
        w->attn_norm = find_layer(m, l, "attn_norm.weight");
        w->attn_norm_b = find_layer(m, l, "attn_norm.bias");
        w->wq = find_layer(m, l, "attn_q.weight");
        w->bq = find_layer(m, l, "attn_q.bias");
        w->wk = find_layer(m, l, "attn_k.weight");
        w->bk = find_layer(m, l, "attn_k.bias");
        w->wv = find_layer(m, l, "attn_v.weight");
        w->bv = find_layer(m, l, "attn_v.bias");
        w->wo = find_layer(m, l, "attn_output.weight");
        w->bo = find_layer(m, l, "attn_output.bias");
        w->ffn_norm = find_layer(m, l, "ffn_norm.weight");
        w->ffn_norm_b = find_layer(m, l, "ffn_norm.bias");
        w->router = moe ? find_layer(m, l, "ffn_gate_inp.weight") : NULL;
        w->w_gate = find_layer(m, l, moe ? "ffn_gate_exps.weight" : "ffn_gate.weight");
        w->w_up = find_layer(m, l, moe ? "ffn_up_exps.weight" : "ffn_up.weight");
        w->b_up = find_layer(m, l, moe ? "ffn_up_exps.bias" : "ffn_up.bias");
        w->w_down = find_layer(m, l, moe ? "ffn_down_exps.weight" : "ffn_down.weight");
        w->b_down = find_layer(m, l, moe ? "ffn_down_exps.bias" : "ffn_down.bias");
    }
    return 0;
}

int model_create(Model *m, const Config *c, int training, Err *err) {
    ModelShard whole;
    model_shard_whole(&whole, c);
    return model_create_shard(m, c, &whole, training, err);
}

int model_create_shard(Model *m, const Config *c, const ModelShard *shard, int training, Err *err) {
    memset(m, 0, sizeof *m);
    int rc = config_validate(c, err);
    if (rc) return rc;
    m->cfg = *c;
    m->shard = *shard;
    /* the engine's rules (the registry also sizes layouts only the planner uses) */
    if ((rc = model_shard_check(c, shard, err))) return rc;
    if ((rc = registry_build_shard(c, shard, &m->tensors, &m->n_tensors, &m->n_params, err))) return rc;
    if ((rc = model_bind(m, err))) goto fail;
    size_t bytes = m->n_params * sizeof(float);
    /* calloc, not xalloc: large zeroed blocks come from fresh pages that are
     * not touched until written, so a buffer that ZeRO sharding replaces
     * (src/train/parallel.c frees it before first use) never becomes
     * resident memory */
    m->params = calloc(1, bytes ? bytes : 1);
    if (!m->params) goto fail_mem;
    if (training) {
        m->grads = calloc(1, bytes ? bytes : 1);
        m->adam_m = calloc(1, bytes ? bytes : 1);
        m->adam_v = calloc(1, bytes ? bytes : 1);
        if (!m->grads || !m->adam_m || !m->adam_v) goto fail_mem;
    }
    /* after calloc, before the first touch: fewer TLB misses in the GEMMs
     * and AdamW's streams; pages stay untouched (and absent) until written */
    mem_hint_hugepages(m->params, bytes);
    mem_hint_hugepages(m->grads, bytes);
    mem_hint_hugepages(m->adam_m, bytes);
    mem_hint_hugepages(m->adam_v, bytes);
    for (int i = 0; i < m->n_tensors; i++) {
        m->tensors[i].data = m->params + m->tensors[i].offset;
        m->tensors[i].grad = training ? m->grads + m->tensors[i].offset : NULL;
    }
    return 0;
fail_mem:
    rc = err_set(err, ERR_NOMEM, "out of memory allocating %zu parameters (%.2f GiB per buffer)", m->n_params,
                 (double)bytes / (1u << 30));
fail:
    model_free(m);
    return rc;
}

/* FNV-1a: a tensor's random stream is keyed by its name, not its index, so
 * a pipeline stage holding a subset of tensors draws the same values. */
static uint64_t tensor_name_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* Around each run of tensors of one layer (-1 outside the blocks) the
 * weights hook is told, as around the forward's use: under ZeRO-3 the
 * tensors' data is a gather buffer and the hook keeps this rank's part. */
static void init_hook(Model *m, int layer, int acquire) {
    if (m->weights_hook) (void)m->weights_hook(m->hook_ctx, m, layer < 0 ? -1 : layer, acquire, NULL);
}

void model_init_weights(Model *m, uint64_t seed) {
    const float std = 0.02f, resid_std = 0.02f / sqrtf(2.0f * (float)m->cfg.n_layer);
    for (int i = 0; i < m->n_tensors; i++) {
        Tensor *t = &m->tensors[i];
        int lt = t->layer < 0 ? -1 : t->layer;
        if (i == 0 || lt != (m->tensors[i - 1].layer < 0 ? -1 : m->tensors[i - 1].layer)) {
            if (i > 0) init_hook(m, m->tensors[i - 1].layer, 0);
            init_hook(m, lt, 1);
        }
        float *p = t->data;
        if (t->flags & PF_ONES) {
            for (size_t j = 0; j < t->numel; j++) p[j] = 1.0f;
        } else if (t->flags & PF_ZEROS) {
            memset(p, 0, t->numel * sizeof(float));
        } else if (t->flags & PF_LORA_A) {
            /* PEFT: kaiming_uniform_(a=sqrt(5)), bound = 1/sqrt(fan_in) */
            uint64_t key = rng_key(seed, 0x6c6f7261ULL, tensor_name_hash(t->name));
            const float bound = 1.0f / sqrtf((float)t->shape[1]);
#pragma omp parallel for
            for (size_t e = 0; e < t->numel; e++) p[e] = bound * (2.0f * rng_uniform(key, e) - 1.0f);
        } else {
            /* one stream per tensor, so adding a tensor never shifts another's values */
            uint64_t key = rng_key(seed, 0x696e6974ULL, tensor_name_hash(t->name));
            float s = (t->flags & PF_RESID_PROJ) ? resid_std : std;
            /* the draw depends on the element's index in the whole tensor, so
             * any sharding starts from the same weights as one process */
#pragma omp parallel for
            for (size_t e = 0; e < t->numel; e++) {
                uint64_t rem = e, g = 0, stride = 1;
                for (int d = t->ndim - 1; d >= 0; d--) {
                    uint64_t i = rem % (uint64_t)t->shape[d];
                    rem /= (uint64_t)t->shape[d];
                    g += (i + (uint64_t)t->start[d]) * stride;
                    stride *= (uint64_t)t->full[d];
                }
                p[e] = s * rng_normal(key, g);
            }
        }
    }
    if (m->n_tensors) init_hook(m, m->tensors[m->n_tensors - 1].layer, 0);
}

/* ---- activation plan ---------------------------------------------------------
 * One bump allocation walk serves both counting (base == NULL) and binding,
 * so the reported size is by construction what gets allocated. */
typedef struct {
    float *base;
    size_t off;
} Bump;

static float *bump(Bump *b, size_t n) {
    float *p = b->base ? b->base + b->off : NULL;
    b->off += (n + 15) & ~(size_t)15; /* 64-byte aligned pieces */
    return p;
}

/* ep > 1: a rank's experts may receive rows from every rank of its group. */
static void plan_walk(Activations *a, const Config *c, int ep, int tp, int lora_r, int B, int T, int training, Bump *b) {
    const size_t N = (size_t)B * T, C = c->d_model, V = c->vocab_size, F = c->d_ff;
    const size_t QD = (size_t)c->n_head * c->head_dim, KVD = (size_t)c->n_kv_head * c->head_dim;
    const size_t E = c->n_expert, K = (E ? (size_t)c->n_expert_active : 1) * (size_t)ep;
    const int swiglu = c->act == ACT_SWIGLU;
    const int L = c->n_layer;
    /* inference reuses one layer's buffers for every layer, and within a
     * layer a buffer whose value is dead: ln1, the attention output and ln2
     * share one (ln1 is read only by the q/k/v projections, the attention
     * output only by the output projection, before ln2 is written); the
     * activated FFN values overwrite the gate (SwiGLU) or up (GELU) values
     * (both element-wise, in place); the embeddings are the residual
     * stream's buffer (the first layer reads them before it writes its
     * output); the final norm is of the last row */
    for (int l = 0; l < L; l++) {
        if (!training && l > 0) {
#define SAME(f) a->f[l] = a->f[0]
            SAME(ln1); SAME(ln1_mean); SAME(ln1_rstd); SAME(q); SAME(k); SAME(v); SAME(att); SAME(atty);
            SAME(res_att); SAME(ln2); SAME(ln2_mean); SAME(ln2_rstd); SAME(ffn_h); SAME(ffn_g); SAME(ffn_a);
            SAME(router_probs); SAME(expert_idx); SAME(expert_w); SAME(moe_row); SAME(moe_off); SAME(ffn_y);
            SAME(res_ffn);
#undef SAME
            continue;
        }
        a->ln1[l] = bump(b, N * (training || C >= QD ? C : QD));
        a->ln1_mean[l] = bump(b, N);
        a->ln1_rstd[l] = bump(b, N);
        a->q[l] = bump(b, N * QD);
        a->k[l] = bump(b, N * KVD);
        a->v[l] = bump(b, N * KVD);
        a->att[l] = training ? bump(b, (size_t)B * c->n_head * T * T) : NULL;
        a->atty[l] = training ? bump(b, N * QD) : a->ln1[l];
        a->res_att[l] = bump(b, N * C);
        a->ln2[l] = training ? bump(b, N * C) : a->ln1[l];
        a->ln2_mean[l] = training ? bump(b, N) : a->ln1_mean[l];
        a->ln2_rstd[l] = training ? bump(b, N) : a->ln1_rstd[l];
        a->ffn_h[l] = bump(b, N * K * F);
        a->ffn_g[l] = swiglu ? bump(b, N * K * F) : NULL;
        a->ffn_a[l] = training ? bump(b, N * K * F) : swiglu ? a->ffn_g[l] : a->ffn_h[l];
        if (E) {
            const size_t Ka = K / (size_t)ep; /* slots per token */
            a->router_probs[l] = bump(b, N * E);
            a->expert_idx[l] = (int32_t *)bump(b, N * Ka);
            a->expert_w[l] = bump(b, N * Ka);
            a->moe_row[l] = (int32_t *)bump(b, N * Ka);
            a->moe_off[l] = (int32_t *)bump(b, E + 1);
            a->ffn_y[l] = bump(b, N * Ka * C);
        }
        a->res_ffn[l] = bump(b, N * C);
    }
    a->embed = training ? bump(b, N * C) : a->res_ffn[0];
    a->lnf = bump(b, (training ? N : 1) * C);
    a->lnf_mean = bump(b, training ? N : 1);
    a->lnf_rstd = bump(b, training ? N : 1);
    a->logits = bump(b, (training ? N : 1) * V);
    a->losses = bump(b, N);
    a->ce_max = bump(b, N);
    a->ce_sum = bump(b, N);
    a->ce_gather = tp > 1 ? bump(b, N * (size_t)tp) : NULL;
    if (E) {
        const size_t Ka = K / (size_t)ep;
        a->moe_x = bump(b, N * Ka * C);
        a->moe_dy = training ? bump(b, N * Ka * C) : NULL;
        a->d_router = training ? bump(b, N * E) : NULL;
        if (ep > 1) {
            a->moe_recv = bump(b, N * K * C);
            a->moe_xe = bump(b, N * K * C);
            a->moe_ye = bump(b, N * K * C);
            a->moe_dxe = training ? bump(b, N * K * C) : NULL;
        }
    }
    if (lora_r > 0) {
        a->lora_u = bump(b, N * (size_t)lora_r);
        a->lora_du = training ? bump(b, N * (size_t)lora_r) : NULL;
        size_t widest = C > QD ? C : QD;
        if (F > widest) widest = F;
        a->lora_x = training && c->lora_dropout > 0 ? bump(b, N * widest) : NULL;
        a->lora_w = training ? bump(b, (QD > F ? QD : F) * C) : NULL; /* (QD|F, C) or (C, QD|F) */
    }
    if (training) {
        a->d_res = bump(b, N * C);
        a->d_tmp = bump(b, N * C);
        a->d_ln = bump(b, N * C);
        a->d_q = bump(b, N * QD);
        a->d_k = bump(b, N * KVD);
        a->d_v = bump(b, N * KVD);
        a->d_atty = bump(b, N * QD);
        a->d_att = bump(b, (size_t)omp_get_max_threads() * T * T);
        a->d_ffn_h = bump(b, N * K * F);
        a->d_ffn_g = swiglu ? bump(b, N * K * F) : NULL;
        a->d_ffn_a = bump(b, N * K * F);
    }
}

#define ACT_ARRAYS(X) X(ln1) X(ln1_mean) X(ln1_rstd) X(q) X(k) X(v) X(att) X(atty) X(res_att) X(ln2) \
    X(ln2_mean) X(ln2_rstd) X(ffn_h) X(ffn_g) X(ffn_a) X(router_probs) X(expert_w) X(ffn_y) X(res_ffn)

void model_activations_free(Activations *a) {
#define FREE(f) free(a->f);
    ACT_ARRAYS(FREE)
#undef FREE
    free(a->expert_idx);
    free(a->moe_row);
    free(a->moe_off);
    xfree(a->mem);
    memset(a, 0, sizeof *a);
}

static int activations_arrays(Activations *a, int L) {
    int ok = 1;
#define ALLOC(f) ok &= (a->f = calloc((size_t)L, sizeof *a->f)) != NULL;
    ACT_ARRAYS(ALLOC)
#undef ALLOC
    ok &= (a->expert_idx = calloc((size_t)L, sizeof *a->expert_idx)) != NULL;
    ok &= (a->moe_row = calloc((size_t)L, sizeof *a->moe_row)) != NULL;
    ok &= (a->moe_off = calloc((size_t)L, sizeof *a->moe_off)) != NULL;
    return ok;
}

Config model_local_config(const Config *c, const ModelShard *s) {
    Config lc = *c;
    lc.n_head /= s->tp_size;
    lc.n_kv_head /= s->tp_size;
    lc.d_ff /= s->tp_size;
    int v0;
    vocab_part(c->vocab_size, s->tp_size, s->tp_rank, &v0, &lc.vocab_size);
    return lc;
}

size_t model_activation_bytes(const Config *c, int B, int T, int training) {
    Activations a;
    memset(&a, 0, sizeof a);
    if (!activations_arrays(&a, c->n_layer)) return 0;
    Bump b = {NULL, 0};
    plan_walk(&a, c, 1, 1, c->lora_rank, B, T, training, &b);
    model_activations_free(&a);
    return b.off * sizeof(float);
}

int model_plan_activations(Model *m, int B, int T, int training, Err *err) {
    const Config lc = model_local_config(&m->cfg, &m->shard), *c = &lc;
    if (B <= 0 || T <= 0) return err_set(err, ERR_INVALID, "batch and sequence length must be positive");
    if (T > c->context_length)
        return err_set(err, ERR_INVALID, "sequence length %d exceeds the model's context_length %d", T,
                       c->context_length);
    /* gradients may live outside m->grads (ZeRO staging): ask the tensors */
    if (training && (!m->n_tensors || !m->tensors[0].grad))
        return err_set(err, ERR_INVALID, "model was created without gradients");
    model_activations_free(&m->act);
    Activations *a = &m->act;
    if (!activations_arrays(a, c->n_layer)) return err_set(err, ERR_NOMEM, "out of memory");
    Bump b = {NULL, 0};
    plan_walk(a, c, m->shard.ep_size, m->shard.tp_size, m->lora_r, B, T, training, &b);
    a->mem = xalloc(b.off * sizeof(float), err);
    if (!a->mem) {
        model_activations_free(a);
        return err_wrap(err, "activations for batch %d x seq %d", B, T);
    }
    b.base = a->mem;
    b.off = 0;
    plan_walk(a, c, m->shard.ep_size, m->shard.tp_size, m->lora_r, B, T, training, &b);
    lora_bind_scratch(m);
    a->B = B;
    a->T = T;
    a->training = training;
    a->n_floats = b.off;
    return model_precision_plan(m, err);
}

void model_free(Model *m) {
    model_precision_free(m); /* it walks m->tensors: before they are freed */
    model_activations_free(&m->act);
    xfree(m->params);
    xfree(m->grads);
    xfree(m->adam_m);
    xfree(m->adam_v);
    free(m->tensors);
    free(m->layers);
    free(m->lora_links);
    memset(m, 0, sizeof *m);
}
