/* Parallel layout, gradient synchronisation, ZeRO and the optimizer step.
 * See parallel.h for the rank order and the bucket scheme. */
#include "parallel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int parallel_init(Parallel *p, Comm *world, int tp, int pp, int ep, int zero, Err *err) {
    memset(p, 0, sizeof *p);
    if (tp < 1 || pp < 1 || world->size % (tp * pp))
        return err_set(err, ERR_INVALID, "%d processes cannot be split into tp %d x pp %d", world->size, tp, pp);
    if (zero < -1 || zero > 3) return err_set(err, ERR_INVALID, "--zero must be 0..3 (got %d)", zero);
    p->world = world;
    p->tp = tp;
    p->pp = pp;
    p->dp = world->size / (tp * pp);
    p->ep = ep;
    if (ep < 1 || ep > 64 || p->dp % ep)
        return err_set(err, ERR_INVALID, "--ep %d must divide the %d data-parallel ranks (and be <= 64)", ep, p->dp);
    if (zero < 0) zero = p->dp > 1 ? 1 : 0; /* the default: optimizer state sharded */
    p->zero = p->dp > 1 ? zero : 0; /* nothing to shard over one replica */
    p->rank = world->rank;
    p->tp_rank = p->rank % tp;
    p->dp_rank = (p->rank / tp) % p->dp;
    p->pp_rank = p->rank / (tp * p->dp);
    int rc;
    if ((rc = comm_split(world, p->pp_rank * p->dp + p->dp_rank, p->tp_rank, &p->tp_comm, err)) ||
        (rc = comm_split(world, p->pp_rank * tp + p->tp_rank, p->dp_rank, &p->dp_comm, err)) ||
        (rc = comm_split(world, p->dp_rank * tp + p->tp_rank, p->pp_rank, &p->pp_comm, err)))
        return rc;
    p->ep_rank = p->dp_rank % ep;
    if (ep > 1) {
        int base = p->pp_rank * tp + p->tp_rank;
        if ((rc = comm_split(world, base * p->dp + p->dp_rank / ep, p->ep_rank, &p->ep_comm, err)) ||
            (rc = comm_split(world, base * ep + p->ep_rank, p->dp_rank / ep, &p->edp_comm, err)))
            return rc;
    }
    if (pp > 1) {
        int edge = p->pp_rank == 0 || p->pp_rank == pp - 1;
        int color = edge ? p->dp_rank * tp + p->tp_rank : world->size + p->rank;
        if ((rc = comm_split(world, color, p->pp_rank, &p->embed_comm, err))) return rc;
    }
    return 0;
}

void parallel_model_shard(const Parallel *p, const Config *c, ModelShard *s) {
    model_shard_whole(s, c);
    s->tp_rank = p->tp_rank;
    s->tp_size = p->tp;
    s->tp = p->tp > 1 ? p->tp_comm : NULL;
    s->ep_rank = p->ep_rank;
    s->ep_size = p->ep;
    s->ep = p->ep > 1 ? p->ep_comm : NULL;
    int base = c->n_layer / p->pp, extra = c->n_layer % p->pp, r = p->pp_rank;
    s->layer0 = r * base + (r < extra ? r : extra);
    s->layer1 = s->layer0 + base + (r < extra);
    s->first = r == 0;
    s->last = r == p->pp - 1;
}

/* The ranks bucket b is sharded over (see zero.h), this rank's place and their number. */
static Comm *group_of(const Parallel *p, const ZeroBucket *b) { return b->expert ? p->edp_comm : p->dp_comm; }
static int group_rank(const Parallel *p, const ZeroBucket *b) { return b->expert ? p->dp_rank / p->ep : p->dp_rank; }
static size_t group_size(const Parallel *p, const ZeroBucket *b) { return (size_t)(b->expert ? p->dp / p->ep : p->dp); }

/* This rank's chunk [c0, c1) of bucket b (empty when past the end). */
static void my_chunk(const Parallel *p, const ZeroBucket *b, size_t *c0, size_t *c1) {
    size_t a = b->a + (size_t)group_rank(p, b) * b->chunk;
    *c0 = a < b->b ? a : b->b;
    *c1 = a + b->chunk < b->b ? a + b->chunk : b->b;
}

/* Where bucket b's whole gradients (ZeRO >= 2) or gathered weights (ZeRO 3) live. */
static float *grad_area(const Parallel *p, const ZeroBucket *b) {
    return (b->edge ? p->edge_grad : p->block_grad) + b->soff;
}
static float *param_area(const Parallel *p, const ZeroBucket *b) {
    return (b->edge ? p->edge_param : p->block_param) + b->soff;
}

int parallel_attach(Parallel *p, Model *m, Err *err) {
    int rc = zero_layout_build(m->tensors, m->n_tensors, m->cfg.n_layer, p->dp, p->ep, &p->zl, err);
    if (rc) return rc;
    p->buckets = p->zl.buckets;
    p->n_buckets = p->zl.n_buckets;
    p->opt_len = p->zl.opt_len;
    p->held_block = -1;
    p->bucket_of = malloc((size_t)(m->n_tensors > 0 ? m->n_tensors : 1) * sizeof *p->bucket_of);
    if (!p->bucket_of) return err_set(err, ERR_NOMEM, "out of memory");
    for (int i = 0, k = 0; i < m->n_tensors; i++) {
        while (k < p->n_buckets - 1 && m->tensors[i].offset >= p->buckets[k].b) k++;
        p->bucket_of[i] = k;
    }
    if (p->zero == 0) return 0;
    const ZeroLayout *z = &p->zl;
    p->adam_m = xalloc(z->opt_len * sizeof(float), err);
    p->adam_v = p->adam_m ? xalloc(z->opt_len * sizeof(float), err) : NULL;
    if (!p->adam_v) return err_wrap(err, "ZeRO buffers");
    /* the sharded state replaces the whole-model buffers (model_create_shard
     * leaves them untouched, so they never cost resident memory) */
    xfree(m->adam_m);
    xfree(m->adam_v);
    m->adam_m = m->adam_v = NULL;
    if (p->zero == 1) {
        if (!(p->stage = xalloc(z->max_padded * sizeof(float), err)) ||
            !(p->rs_out = xalloc(z->max_chunk * sizeof(float), err)))
            return err_wrap(err, "ZeRO buffers");
        return 0;
    }
    if (!(p->grad_shard = xalloc(z->opt_len * sizeof(float), err)) ||
        !(p->block_grad = xalloc(z->block_len * sizeof(float), err)) ||
        !(p->edge_grad = xalloc(z->edge_len * sizeof(float), err)) ||
        !(p->rs_out = xalloc(z->max_chunk * sizeof(float), err)))
        return err_wrap(err, "ZeRO-2 buffers");
    xfree(m->grads);
    m->grads = NULL;
    for (int i = 0; i < m->n_tensors; i++) {
        const ZeroBucket *b = &p->buckets[p->bucket_of[i]];
        m->tensors[i].grad = grad_area(p, b) + (m->tensors[i].offset - b->a);
    }
    if (p->zero == 3) {
        if (!(p->param_shard = xalloc(z->opt_len * sizeof(float), err)) ||
            !(p->block_param = xalloc(z->block_len * sizeof(float), err)) ||
            !(p->edge_param = xalloc(z->edge_len * sizeof(float), err)))
            return err_wrap(err, "ZeRO-3 buffers");
        for (int i = 0; i < p->n_buckets; i++) { /* whatever the weights hold now */
            size_t c0, c1;
            my_chunk(p, &p->buckets[i], &c0, &c1);
            memcpy(p->param_shard + p->buckets[i].opt_off, m->params + c0, (c1 - c0) * sizeof(float));
        }
        xfree(m->params);
        m->params = NULL;
        for (int i = 0; i < m->n_tensors; i++) {
            const ZeroBucket *b = &p->buckets[p->bucket_of[i]];
            m->tensors[i].data = param_area(p, b) + (m->tensors[i].offset - b->a);
        }
    }
    m->weights_hook = parallel_weights_hook;
    m->hook_ctx = p;
    return 0;
}

void parallel_free(Parallel *p) {
    comm_destroy(p->tp_comm);
    comm_destroy(p->dp_comm);
    comm_destroy(p->pp_comm);
    comm_destroy(p->embed_comm);
    comm_destroy(p->ep_comm);
    comm_destroy(p->edp_comm);
    zero_layout_free(&p->zl);
    free(p->bucket_of);
    free(p->bw_seen);
    free(p->reduced);
    float *bufs[] = {p->stage, p->adam_m, p->adam_v, p->grad_shard, p->block_grad, p->edge_grad, p->rs_out,
                     p->param_shard, p->block_param, p->edge_param};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) xfree(bufs[i]);
    memset(p, 0, sizeof *p);
}

size_t parallel_state_bytes(const Parallel *p, const Model *m) {
    const ZeroLayout *z = &p->zl;
    const size_t n = m->n_params;
    size_t f = (m->params ? n : 0) + (m->grads ? n : 0) + (m->adam_m ? n : 0) + (m->adam_v ? n : 0);
    f += (p->stage ? z->max_padded : 0) + (p->adam_m ? z->opt_len : 0) + (p->adam_v ? z->opt_len : 0);
    f += (p->grad_shard ? z->opt_len : 0) + (p->block_grad ? z->block_len : 0) + (p->edge_grad ? z->edge_len : 0);
    f += (p->rs_out ? z->max_chunk : 0) + (p->param_shard ? z->opt_len : 0) + (p->block_param ? z->block_len : 0);
    f += p->edge_param ? z->edge_len : 0;
    return f * sizeof(float);
}

int parallel_reduce_in_backward(Parallel *p, Model *m, int passes, Err *err) {
    /* pipeline stages sum tied embeddings before dp (kept at the step);
     * ZeRO 0 with experts reduces per tensor over two groups (likewise) */
    if (p->zero >= 2 || p->dp < 2 || p->pp > 1 || (p->zero == 0 && p->ep > 1) || passes < 1) return 0;
    free(p->bw_seen);
    free(p->reduced);
    p->bw_seen = calloc((size_t)m->cfg.n_layer + 1, sizeof *p->bw_seen);
    p->reduced = calloc((size_t)p->n_buckets + 1, 1);
    if (!p->bw_seen || !p->reduced) return err_set(err, ERR_NOMEM, "out of memory");
    p->bw_passes = passes;
    m->weights_hook = parallel_weights_hook;
    m->hook_ctx = p;
    return 0;
}

void parallel_zero_grad(Parallel *p, Model *m) {
    if (p->bw_passes) {
        memset(p->bw_seen, 0, ((size_t)m->cfg.n_layer + 1) * sizeof *p->bw_seen);
        memset(p->reduced, 0, (size_t)p->n_buckets);
        p->reduce_grads = 1;
    }
    if (p->zero >= 2) {
        /* the staging areas are clean: each is cleared after its reduce-scatter */
        memset(p->grad_shard, 0, p->opt_len * sizeof(float));
        p->reduce_grads = 1;
    } else {
        mem_zero(m->grads, m->n_params * sizeof(float));
    }
}

/* ZeRO >= 2: sum bucket b's staged gradients over dp, add the own chunk to
 * the gradient shard, clear the staging for the next bucket. */
static int reduce_bucket(Parallel *p, const ZeroBucket *b, Err *err) {
    float *s = grad_area(p, b);
    int rc = comm_reduce_scatter_sum(group_of(p, b), s, p->rs_out, b->chunk * group_size(p, b), err);
    if (rc) return rc;
    float *g = p->grad_shard + b->opt_off;
    const float *r = p->rs_out;
    for (size_t i = 0; i < b->chunk; i++) g[i] += r[i];
    memset(s, 0, (b->b - b->a) * sizeof(float));
    return 0;
}

/* ZeRO 0: bucket b's gradients summed over dp in place. ZeRO 1: summed
 * over its group, only this rank's chunk kept (at its place in m->grads). */
static int reduce_bucket_whole(Parallel *p, Model *m, const ZeroBucket *b, Err *err) {
    const size_t len = b->b - b->a;
    if (p->zero == 0) return comm_allreduce_sum(p->dp_comm, m->grads + b->a, len, err);
    /* reduce-scatter, not all-reduce: each rank needs only the sums of its
     * chunks (the same volume as the all-reduce's first half; the
     * all-gather of the updated weights is its second) */
    size_t c0, c1, padded = b->chunk * group_size(p, b);
    my_chunk(p, b, &c0, &c1);
    /* no padding: the sums land in place, on this rank's own slice of the
     * bucket (one 4-bytes-per-parameter copy less a step) */
    if (padded == len) return comm_reduce_scatter_sum(group_of(p, b), m->grads + b->a, m->grads + c0, padded, err);
    /* the last chunk is short: pad a copy, and keep only the real part of
     * this rank's sums */
    memcpy(p->stage, m->grads + b->a, len * sizeof(float));
    memset(p->stage + len, 0, (padded - len) * sizeof(float));
    int rc = comm_reduce_scatter_sum(group_of(p, b), p->stage, p->rs_out, padded, err);
    if (rc) return rc;
    memcpy(m->grads + c0, p->rs_out, (c1 - c0) * sizeof(float));
    return 0;
}

/* ZeRO 0/1 in the backward: reduce the buckets of `layer` (-1: the edge)
 * once the step's last backward pass has finished with them. */
static int reduce_after_passes(Parallel *p, Model *m, int layer, Err *err) {
    const int slot = layer < 0 ? m->cfg.n_layer : layer;
    if (++p->bw_seen[slot] != p->bw_passes) return 0;
    for (int i = 0; i < p->n_buckets; i++) {
        const ZeroBucket *b = &p->buckets[i];
        if (p->reduced[i] || (layer < 0 ? !b->edge : (b->edge || b->layer != layer))) continue;
        int rc = reduce_bucket_whole(p, m, b, err);
        if (rc) return rc;
        p->reduced[i] = 1;
    }
    return 0;
}

/* Forward: hook(-1, 1), then each block (l, 1) (l, 0) upwards. Backward:
 * each block (l, 1) (l, 0) downwards, then (-1, 0). A block released
 * outside a forward is a backward block, done with its gradients. */
int parallel_weights_hook(void *ctx, Model *m, int layer, int acquire, Err *err) {
    Parallel *p = ctx;
    int rc = 0;
    if (layer < 0) {
        if (acquire) {
            p->in_forward = 1;
            return parallel_gather_layer(p, m, -1, err);
        }
        p->in_forward = 0;
        if (p->zero < 2) return p->reduce_grads && p->bw_passes ? reduce_after_passes(p, m, -1, err) : 0;
        for (int i = 0; i < p->n_buckets && p->reduce_grads && !rc; i++)
            if (p->buckets[i].edge) rc = reduce_bucket(p, &p->buckets[i], err);
        parallel_release_layer(p, m, -1);
        return rc;
    }
    if (acquire) return parallel_gather_layer(p, m, layer, err);
    int backward = !p->in_forward;
    if (p->in_forward && layer == m->shard.layer1 - 1) p->in_forward = 0;
    if (p->zero < 2) return backward && p->reduce_grads && p->bw_passes ? reduce_after_passes(p, m, layer, err) : 0;
    for (int i = 0; i < p->n_buckets && backward && p->reduce_grads && !rc; i++)
        if (p->buckets[i].layer == layer && !p->buckets[i].edge) rc = reduce_bucket(p, &p->buckets[i], err);
    parallel_release_layer(p, m, layer);
    return rc;
}

int parallel_gather_layer(Parallel *p, Model *m, int layer, Err *err) {
    (void)m;
    if (p->zero < 3 || (layer < 0 ? p->edge_held : p->held_block == layer)) return 0;
    for (int i = 0; i < p->n_buckets; i++) {
        const ZeroBucket *b = &p->buckets[i];
        if (layer < 0 ? !b->edge : (b->edge || b->layer != layer)) continue;
        int rc = comm_allgather(group_of(p, b), p->param_shard + b->opt_off, param_area(p, b), b->chunk, err);
        if (rc) return rc;
    }
    if (layer < 0)
        p->edge_held = 1;
    else
        p->held_block = layer;
    return 0;
}

void parallel_release_layer(Parallel *p, Model *m, int layer) {
    (void)m;
    if (p->zero < 3 || (layer < 0 ? !p->edge_held : p->held_block != layer)) return;
    /* the buffer stays valid until the next gather or update; the own chunk
     * goes back to the shard (it changed only when the weights were being
     * initialised through the buffer) */
    for (int i = 0; i < p->n_buckets; i++) {
        const ZeroBucket *b = &p->buckets[i];
        if (layer < 0 ? !b->edge : (b->edge || b->layer != layer)) continue;
        size_t c0, c1;
        my_chunk(p, b, &c0, &c1);
        memcpy(p->param_shard + b->opt_off, param_area(p, b) + (c0 - b->a), (c1 - c0) * sizeof(float));
    }
}

/* A tied embedding's copy on the last pipeline stage mirrors the first's. */
static int is_tied_copy(const Parallel *p, const Model *m, const Tensor *t) {
    return p->pp > 1 && !m->shard.first && m->cfg.tie_embeddings && strcmp(t->name, "token_embd.weight") == 0;
}

/* Whether this rank speaks for tensor t among tp/pp replicas. */
static int owns_tensor(const Parallel *p, const Model *m, const Tensor *t) {
    return (t->tp_split || p->tp_rank == 0) && !is_tied_copy(p, m, t);
}

/* Without ZeRO every data-parallel replica holds the same values: the first
 * replica speaks (for experts, the first ep group, which holds them all). */
static int first_replica(const Parallel *p, const Tensor *t) {
    return t->ep_split ? p->dp_rank / p->ep == 0 : p->dp_rank == 0;
}

/* Apply f to each (tensor, [x0, x1)) piece of the flat range [r0, r1). */
typedef void (*PieceFn)(void *ctx, Model *m, const Tensor *t, size_t x0, size_t x1);
static void for_pieces(Model *m, size_t r0, size_t r1, PieceFn f, void *ctx) {
    for (int i = 0; i < m->n_tensors; i++) {
        const Tensor *t = &m->tensors[i];
        size_t x0 = t->offset > r0 ? t->offset : r0, x1 = t->offset + t->numel < r1 ? t->offset + t->numel : r1;
        if (x0 < x1) f(ctx, m, t, x0, x1);
    }
}

/* The step's view of one bucket chunk: flat range [c0, ...) of the local
 * layout maps to offset opt_off of the compact buffers. */
typedef struct {
    Parallel *p;
    const ZeroBucket *b; /* NULL: whole-model buffers */
    size_t c0;
} View;

static float *grad_at(const View *v, Model *m, size_t x) {
    return v->b && v->p->zero >= 2 ? v->p->grad_shard + v->b->opt_off + (x - v->c0) : m->grads + x;
}
static float *param_at(const View *v, Model *m, size_t x) {
    return v->b && v->p->zero == 3 ? v->p->param_shard + v->b->opt_off + (x - v->c0) : m->params + x;
}

typedef struct {
    View v;
    double sum;
    int replicas; /* 1: count only the first data-parallel replica */
} NormCtx;

static void norm_piece(void *ctx, Model *m, const Tensor *t, size_t x0, size_t x1) {
    NormCtx *n = ctx;
    if (owns_tensor(n->v.p, m, t) && (!n->replicas || first_replica(n->v.p, t)))
        n->sum += sumsq(grad_at(&n->v, m, x0), x1 - x0);
}

typedef struct {
    View v;
    const AdamOptions *o;
    float scale;
} AdamCtx;

static void adam_piece(void *ctx, Model *m, const Tensor *t, size_t x0, size_t x1) {
    AdamCtx *a = ctx;
    const AdamOptions *o = a->o;
    float *mm, *vv;
    if (a->v.b) {
        mm = a->v.p->adam_m + a->v.b->opt_off + (x0 - a->v.c0);
        vv = a->v.p->adam_v + a->v.b->opt_off + (x0 - a->v.c0);
    } else {
        mm = m->adam_m + x0;
        vv = m->adam_v + x0;
    }
    adamw_update(param_at(&a->v, m, x0), grad_at(&a->v, m, x0), mm, vv, x1 - x0, o->lr, o->beta1, o->beta2, o->eps,
                 (t->flags & PF_DECAY) ? o->weight_decay : 0.0f, a->scale, o->t);
}

/* ZeRO 1/2: gather bucket b's updated chunks from every dp rank into the
 * weights: in place, or through `stage` when the last chunk is padded
 * (padded bucket size; left zero under ZeRO 2, where it is the gradient
 * staging that the next backward accumulates into). */
static int gather_bucket(Parallel *p, Model *m, const ZeroBucket *b, float *stage, Err *err) {
    size_t c0, c1;
    my_chunk(p, b, &c0, &c1);
    if (b->b - b->a == b->chunk * group_size(p, b)) /* no padding: in place, own chunk where it is */
        return comm_allgather(group_of(p, b), m->params + c0, m->params + b->a, b->chunk, err);
    float *mine = stage + (size_t)group_rank(p, b) * b->chunk;
    memcpy(mine, m->params + c0, (c1 - c0) * sizeof(float));
    int rc = comm_allgather(group_of(p, b), mine, stage, b->chunk, err);
    if (rc) return rc;
    memcpy(m->params + b->a, stage, (b->b - b->a) * sizeof(float));
    if (p->zero >= 2) memset(stage, 0, b->chunk * group_size(p, b) * sizeof(float));
    return 0;
}

int parallel_optimizer_step(Parallel *p, Model *m, const AdamOptions *o, double *norm, Err *err) {
    int rc;
    p->reduce_grads = 0;
    /* tied embeddings across pipeline stages: both copies get the sum (its
     * own bucket, so under ZeRO >= 2 the shards line up on both stages) */
    if (p->embed_comm && m->cfg.tie_embeddings && (m->shard.first || m->shard.last)) {
        const ZeroBucket *b = &p->buckets[p->bucket_of[m->tok_emb - m->tensors]];
        if (p->zero >= 2)
            rc = comm_allreduce_sum(p->embed_comm, p->grad_shard + b->opt_off, b->chunk, err);
        else
            rc = comm_allreduce_sum(p->embed_comm, m->tok_emb->grad, m->tok_emb->numel, err);
        if (rc) return rc;
    }
    NormCtx nc = {{p, NULL, 0}, 0.0, p->zero == 0}; /* ZeRO: each rank counts its own chunks */
    if (p->zero >= 2) { /* reduced by the backward already */
        for (int i = 0; i < p->n_buckets; i++) {
            size_t c0, c1;
            my_chunk(p, &p->buckets[i], &c0, &c1);
            nc.v.b = &p->buckets[i];
            nc.v.c0 = c0;
            for_pieces(m, c0, c1, norm_piece, &nc);
        }
    } else if (p->zero == 1) {
        for (int i = 0; i < p->n_buckets; i++) {
            const ZeroBucket *b = &p->buckets[i];
            size_t c0, c1;
            if (!(p->reduced && p->reduced[i]) && (rc = reduce_bucket_whole(p, m, b, err))) return rc;
            my_chunk(p, b, &c0, &c1);
            nc.v.b = b;
            nc.v.c0 = c0;
            for_pieces(m, c0, c1, norm_piece, &nc);
        }
    } else if (p->ep > 1) {
        /* experts are summed over the ranks holding the same experts */
        for (int i = 0; i < m->n_tensors && p->dp > 1; i++) {
            Tensor *t = &m->tensors[i];
            Comm *g = t->ep_split ? p->edp_comm : p->dp_comm;
            if (g->size > 1 && (rc = comm_allreduce_sum(g, t->grad, t->numel, err))) return rc;
        }
        for_pieces(m, 0, m->n_params, norm_piece, &nc);
    } else {
        if (p->dp > 1 && !p->bw_passes && (rc = comm_allreduce_sum(p->dp_comm, m->grads, m->n_params, err)))
            return rc;
        for (int i = 0; i < p->n_buckets && p->bw_passes; i++) /* any the backward did not reach */
            if (!p->reduced[i] && (rc = reduce_bucket_whole(p, m, &p->buckets[i], err))) return rc;
        /* every replica holds the sums: each counts its chunks of the norm,
         * so the ranks share that work instead of the first doing it all */
        nc.replicas = 0;
        for (int i = 0; i < p->n_buckets; i++) {
            size_t c0, c1;
            my_chunk(p, &p->buckets[i], &c0, &c1);
            for_pieces(m, c0, c1, norm_piece, &nc);
        }
    }
    double sq = nc.sum;
    if (p->world->size > 1 && (rc = comm_allreduce_sum_f64(p->world, &sq, 1, err))) return rc;
    /* gradients are sums over dp ranks of per-rank means: average them */
    *norm = sqrt(sq) / p->dp;
    /* a NaN/Inf gradient would poison every weight it touches */
    if (o->skip || !isfinite(*norm)) return 0;
    float clip = (o->grad_clip > 0 && *norm > o->grad_clip) ? (float)(o->grad_clip / *norm) : 1.0f;
    AdamCtx ac = {{p, NULL, 0}, o, clip / (float)p->dp};
    if (p->zero == 0) {
        for_pieces(m, 0, m->n_params, adam_piece, &ac);
        return 0;
    }
    for (int i = 0; i < p->n_buckets; i++) {
        const ZeroBucket *b = &p->buckets[i];
        size_t c0, c1;
        my_chunk(p, b, &c0, &c1);
        ac.v.b = b;
        ac.v.c0 = c0;
        for_pieces(m, c0, c1, adam_piece, &ac);
        if (p->zero < 3 && (rc = gather_bucket(p, m, b, p->zero == 1 ? p->stage : grad_area(p, b), err))) return rc;
    }
    if (p->zero == 3) { /* the gathered copies are stale now */
        p->held_block = -1;
        p->edge_held = 0;
    }
    return 0;
}

/* ---- checkpoints: whole tensors, one at a time ---------------------------- */

static float *kind_base(Parallel *p, Model *m, int k, int sharded) {
    if (k == 0) return sharded ? p->param_shard : m->params;
    if (k == 1) return sharded ? p->adam_m : m->adam_m;
    return sharded ? p->adam_v : m->adam_v;
}

/* Kind k (0 weights, 1 Adam m, 2 Adam v) of local tensor i: whether this
 * rank stores it sharded, and its chunk [x0, x1) then. */
static int kind_sharded(const Parallel *p, int k) { return k == 0 ? p->zero == 3 : p->zero >= 1; }

static void chunk_of_tensor(const Parallel *p, const Model *m, int i, size_t *x0, size_t *x1, size_t *at) {
    const Tensor *t = &m->tensors[i];
    const ZeroBucket *b = &p->buckets[p->bucket_of[i]];
    size_t c0, c1;
    my_chunk(p, b, &c0, &c1);
    *x0 = t->offset > c0 ? t->offset : c0;
    *x1 = t->offset + t->numel < c1 ? t->offset + t->numel : c1;
    if (*x1 < *x0) *x1 = *x0;
    *at = b->opt_off + (*x0 - c0);
}

/* out (the tensor's local layout) = the values this rank speaks for, zeros elsewhere. */
static void owned_values(Parallel *p, Model *m, int i, int k, float *out) {
    const Tensor *t = &m->tensors[i];
    memset(out, 0, t->numel * sizeof(float));
    if (!owns_tensor(p, m, t)) return;
    int sharded = kind_sharded(p, k);
    const float *base = kind_base(p, m, k, sharded);
    if (!sharded) {
        if (first_replica(p, t)) memcpy(out, base + t->offset, t->numel * sizeof(float));
        return;
    }
    size_t x0, x1, at;
    chunk_of_tensor(p, m, i, &x0, &x1, &at);
    memcpy(out + (x0 - t->offset), base + at, (x1 - x0) * sizeof(float));
}

/* Store a tensor's values (local layout) wherever this rank keeps kind k. */
static void put_values(Parallel *p, Model *m, int i, int k, const float *vals) {
    const Tensor *t = &m->tensors[i];
    int sharded = kind_sharded(p, k);
    float *base = kind_base(p, m, k, sharded);
    if (!base) return;
    if (!sharded) {
        memcpy(base + t->offset, vals, t->numel * sizeof(float));
        return;
    }
    size_t x0, x1, at;
    chunk_of_tensor(p, m, i, &x0, &x1, &at);
    memcpy(base + at, vals + (x0 - t->offset), (x1 - x0) * sizeof(float));
}

/* The whole registry, and for each of its tensors the local index (-1: not here). */
static int whole_map(const Model *m, Tensor **all, int *n, int **local, Err *err) {
    size_t total;
    int rc = registry_build(&m->cfg, all, n, &total, err);
    if (rc) return rc;
    *local = malloc((size_t)(*n > 0 ? *n : 1) * sizeof **local);
    if (!*local) {
        free(*all);
        return err_set(err, ERR_NOMEM, "out of memory");
    }
    for (int j = 0; j < *n; j++) {
        (*local)[j] = -1;
        for (int i = 0; i < m->n_tensors; i++)
            if (strcmp((*all)[j].name, m->tensors[i].name) == 0) (*local)[j] = i;
    }
    return 0;
}

int parallel_gather_full(Parallel *p, Model *m, float *full_params, float *full_m, float *full_v, Err *err) {
    Tensor *all = NULL;
    int n = 0, *local = NULL;
    int rc = whole_map(m, &all, &n, &local, err);
    if (rc) return rc;
    size_t max_whole = 1, max_local = 1;
    for (int j = 0; j < n; j++) max_whole = all[j].numel > max_whole ? all[j].numel : max_whole;
    for (int i = 0; i < m->n_tensors; i++) max_local = m->tensors[i].numel > max_local ? m->tensors[i].numel : max_local;
    float *whole = xalloc(max_whole * sizeof(float), err), *part = whole ? xalloc(max_local * sizeof(float), err) : NULL;
    if (!part) rc = err->code ? err->code : ERR_NOMEM;
    float *dst[3] = {full_params, full_m, full_v};
    /* each element comes from exactly one rank (zeros elsewhere): the sum is exact */
    for (int k = 0; k < 3 && !rc; k++)
        for (int j = 0; j < n && !rc; j++) {
            memset(whole, 0, all[j].numel * sizeof(float));
            if (local[j] >= 0) {
                owned_values(p, m, local[j], k, part);
                tensor_block_copy(&m->tensors[local[j]], whole, part, 1);
            }
            if (p->world->size > 1) rc = comm_allreduce_sum(p->world, whole, all[j].numel, err);
            if (!rc && dst[k]) memcpy(dst[k] + all[j].offset, whole, all[j].numel * sizeof(float));
        }
    xfree(whole);
    xfree(part);
    free(local);
    free(all);
    return rc;
}

void parallel_scatter_full(Parallel *p, Model *m, const float *full_params, const float *full_m, const float *full_v) {
    Tensor *all = NULL;
    int n = 0, *local = NULL;
    if (whole_map(m, &all, &n, &local, NULL)) return;
    size_t max_local = 1;
    for (int i = 0; i < m->n_tensors; i++) max_local = m->tensors[i].numel > max_local ? m->tensors[i].numel : max_local;
    float *part = xalloc(max_local * sizeof(float), NULL);
    const float *src[3] = {full_params, full_m, full_v};
    for (int k = 0; k < 3 && part; k++)
        for (int j = 0; j < n && src[k]; j++) {
            if (local[j] < 0) continue;
            tensor_block_copy(&m->tensors[local[j]], (float *)src[k] + all[j].offset, part, 0);
            put_values(p, m, local[j], k, part);
        }
    p->held_block = -1; /* ZeRO 3: gathered copies are stale */
    p->edge_held = 0;
    xfree(part);
    free(local);
    free(all);
}
