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
    if (zero < 0 || zero > 3) return err_set(err, ERR_INVALID, "--zero must be 0..3 (got %d)", zero);
    p->world = world;
    p->tp = tp;
    p->pp = pp;
    p->dp = world->size / (tp * pp);
    p->ep = ep;
    if (ep < 1 || ep > 64 || p->dp % ep)
        return err_set(err, ERR_INVALID, "--ep %d must divide the %d data-parallel ranks (and be <= 64)", ep, p->dp);
    if (ep > 1 && zero > 0) return err_set(err, ERR_UNSUPPORTED, "--zero with --ep > 1 is not supported yet");
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

int parallel_attach(Parallel *p, Model *m, Err *err) {
    p->buckets = calloc((size_t)m->n_tensors, sizeof *p->buckets);
    if (!p->buckets) return err_set(err, ERR_NOMEM, "out of memory");
    size_t max_chunk = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const Tensor *t = &m->tensors[i];
        int layer = t->layer >= 0 ? t->layer : (i == 0 || m->tensors[i - 1].layer < 0 ? -1 : m->cfg.n_layer);
        ZeroBucket *b = p->n_buckets ? &p->buckets[p->n_buckets - 1] : NULL;
        if (!b || b->layer != layer) {
            b = &p->buckets[p->n_buckets++];
            b->a = t->offset;
            b->layer = layer;
        }
        b->b = t->offset + t->numel;
    }
    for (int i = 0; i < p->n_buckets; i++) {
        ZeroBucket *b = &p->buckets[i];
        b->chunk = (b->b - b->a + p->dp - 1) / p->dp;
        b->opt_off = p->opt_len;
        p->opt_len += b->chunk;
        if (b->chunk > max_chunk) max_chunk = b->chunk;
    }
    if (p->zero >= 1) {
        p->stage = xalloc(max_chunk * p->dp * sizeof(float), err);
        p->adam_m = p->stage ? xalloc(p->opt_len * sizeof(float), err) : NULL;
        p->adam_v = p->adam_m ? xalloc(p->opt_len * sizeof(float), err) : NULL;
        if (!p->adam_v) return err_wrap(err, "ZeRO buffers");
        /* the sharded state replaces the whole-model Adam buffers */
        xfree(m->adam_m);
        xfree(m->adam_v);
        m->adam_m = m->adam_v = NULL;
    }
    return 0;
}

void parallel_free(Parallel *p) {
    comm_destroy(p->tp_comm);
    comm_destroy(p->dp_comm);
    comm_destroy(p->pp_comm);
    comm_destroy(p->embed_comm);
    comm_destroy(p->ep_comm);
    comm_destroy(p->edp_comm);
    free(p->buckets);
    xfree(p->stage);
    xfree(p->adam_m);
    xfree(p->adam_v);
    memset(p, 0, sizeof *p);
}

/* This rank's chunk [c0, c1) of bucket b (empty when past the end). */
static void my_chunk(const Parallel *p, const ZeroBucket *b, size_t *c0, size_t *c1) {
    size_t a = b->a + (size_t)p->dp_rank * b->chunk;
    *c0 = a < b->b ? a : b->b;
    *c1 = a + b->chunk < b->b ? a + b->chunk : b->b;
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

typedef struct {
    Parallel *p;
    double sum;
    int replicas; /* 1: count only the first data-parallel replica */
} NormCtx;

static void norm_piece(void *ctx, Model *m, const Tensor *t, size_t x0, size_t x1) {
    NormCtx *n = ctx;
    if (owns_tensor(n->p, m, t) && (!n->replicas || first_replica(n->p, t))) n->sum += sumsq(m->grads + x0, x1 - x0);
}

typedef struct {
    Parallel *p;
    const AdamOptions *o;
    float scale;
    const ZeroBucket *b;
    size_t c0;
} AdamCtx;

static void adam_piece(void *ctx, Model *m, const Tensor *t, size_t x0, size_t x1) {
    AdamCtx *a = ctx;
    const AdamOptions *o = a->o;
    float *mm, *vv;
    if (a->b) {
        mm = a->p->adam_m + a->b->opt_off + (x0 - a->c0);
        vv = a->p->adam_v + a->b->opt_off + (x0 - a->c0);
    } else {
        mm = m->adam_m + x0;
        vv = m->adam_v + x0;
    }
    adamw_update(m->params + x0, m->grads + x0, mm, vv, x1 - x0, o->lr, o->beta1, o->beta2, o->eps,
                 (t->flags & PF_DECAY) ? o->weight_decay : 0.0f, a->scale, o->t);
}

/* Gather bucket b's chunks from every dp rank into the parameters. */
static int gather_bucket(Parallel *p, Model *m, const ZeroBucket *b, Err *err) {
    size_t c0, c1;
    my_chunk(p, b, &c0, &c1);
    float *mine = p->stage + (size_t)p->dp_rank * b->chunk;
    memset(mine, 0, b->chunk * sizeof(float));
    memcpy(mine, m->params + c0, (c1 - c0) * sizeof(float));
    int rc = comm_allgather(p->dp_comm, mine, p->stage, b->chunk, err);
    if (rc) return rc;
    memcpy(m->params + b->a, p->stage, (b->b - b->a) * sizeof(float));
    return 0;
}

int parallel_optimizer_step(Parallel *p, Model *m, const AdamOptions *o, double *norm, Err *err) {
    int rc;
    /* tied embeddings across pipeline stages: both copies get the sum */
    if (p->embed_comm && m->cfg.tie_embeddings && (m->shard.first || m->shard.last) &&
        (rc = comm_allreduce_sum(p->embed_comm, m->tok_emb->grad, m->tok_emb->numel, err)))
        return rc;
    NormCtx nc = {p, 0.0, p->zero < 2};
    if (p->zero >= 2) {
        for (int i = 0; i < p->n_buckets; i++) {
            const ZeroBucket *b = &p->buckets[i];
            size_t c0, c1, len = b->b - b->a;
            memcpy(p->stage, m->grads + b->a, len * sizeof(float));
            memset(p->stage + len, 0, (b->chunk * p->dp - len) * sizeof(float));
            float *mine = p->stage + (size_t)p->dp_rank * b->chunk;
            if ((rc = comm_reduce_scatter_sum(p->dp_comm, p->stage, mine, b->chunk * p->dp, err))) return rc;
            my_chunk(p, b, &c0, &c1);
            memcpy(m->grads + c0, mine, (c1 - c0) * sizeof(float));
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
        if (p->dp > 1 && (rc = comm_allreduce_sum(p->dp_comm, m->grads, m->n_params, err))) return rc;
        for_pieces(m, 0, m->n_params, norm_piece, &nc);
    }
    double sq = nc.sum;
    if (p->world->size > 1 && (rc = comm_allreduce_sum_f64(p->world, &sq, 1, err))) return rc;
    /* gradients are sums over dp ranks of per-rank means: average them */
    *norm = sqrt(sq) / p->dp;
    float clip = (o->grad_clip > 0 && *norm > o->grad_clip) ? (float)(o->grad_clip / *norm) : 1.0f;
    AdamCtx ac = {p, o, clip / (float)p->dp, NULL, 0};
    if (p->zero == 0) {
        for_pieces(m, 0, m->n_params, adam_piece, &ac);
        return 0;
    }
    for (int i = 0; i < p->n_buckets; i++) {
        const ZeroBucket *b = &p->buckets[i];
        size_t c0, c1;
        my_chunk(p, b, &c0, &c1);
        ac.b = b;
        ac.c0 = c0;
        for_pieces(m, c0, c1, adam_piece, &ac);
        if (p->zero < 3 && (rc = gather_bucket(p, m, b, err))) return rc;
    }
    if (p->zero == 3)
        for (int i = 0; i < p->n_buckets; i++) parallel_release_layer(p, m, p->buckets[i].layer);
    return 0;
}

int parallel_gather_layer(Parallel *p, Model *m, int layer, Err *err) {
    if (p->zero < 3) return 0;
    for (int i = 0; i < p->n_buckets; i++) {
        const ZeroBucket *b = &p->buckets[i];
        int match = layer == -1 ? (b->layer < 0 || b->layer >= m->cfg.n_layer) : b->layer == layer;
        if (match) {
            int rc = gather_bucket(p, m, b, err);
            if (rc) return rc;
        }
    }
    return 0;
}

void parallel_release_layer(Parallel *p, Model *m, int layer) {
    if (p->zero < 3) return;
    for (int i = 0; i < p->n_buckets; i++) {
        const ZeroBucket *b = &p->buckets[i];
        int match = layer == -1 ? (b->layer < 0 || b->layer >= m->cfg.n_layer) : b->layer == layer;
        if (!match) continue;
        size_t c0, c1;
        my_chunk(p, b, &c0, &c1);
        /* only this rank's chunk stays: the rest is gathered again when needed */
        memset(m->params + b->a, 0, (c0 - b->a) * sizeof(float));
        memset(m->params + c1, 0, (b->b - c1) * sizeof(float));
    }
}

/* Offsets of each local tensor in the whole-model registry. */
static int whole_offsets(const Model *m, size_t *off, size_t *n_whole, Err *err) {
    Tensor *all;
    int n;
    int rc = registry_build(&m->cfg, &all, &n, n_whole, err);
    if (rc) return rc;
    for (int i = 0; i < m->n_tensors; i++) {
        off[i] = (size_t)-1;
        for (int j = 0; j < n; j++)
            if (strcmp(all[j].name, m->tensors[i].name) == 0) off[i] = all[j].offset;
    }
    free(all);
    return 0;
}

/* dst (local layout) = the elements of src this rank owns, zeros elsewhere.
 * src_compact: src is the compact ZeRO layout instead of the local one. */
static void owned_elements(Parallel *p, Model *m, const float *src, int src_compact, int by_chunk, float *dst) {
    memset(dst, 0, m->n_params * sizeof(float));
    for (int i = 0; i < p->n_buckets; i++) {
        const ZeroBucket *b = &p->buckets[i];
        size_t r0 = b->a, r1 = b->b;
        if (by_chunk) my_chunk(p, b, &r0, &r1);
        for (int k = 0; k < m->n_tensors; k++) {
            const Tensor *t = &m->tensors[k];
            size_t x0 = t->offset > r0 ? t->offset : r0, x1 = t->offset + t->numel < r1 ? t->offset + t->numel : r1;
            if (x0 >= x1 || !owns_tensor(p, m, t) || (!by_chunk && !first_replica(p, t))) continue;
            const float *s = src_compact ? src + b->opt_off + (x0 - r0) : src + x0;
            memcpy(dst + x0, s, (x1 - x0) * sizeof(float));
        }
    }
}

int parallel_gather_full(Parallel *p, Model *m, float *full_params, float *full_m, float *full_v, Err *err) {
    size_t n_whole, *off = malloc((size_t)m->n_tensors * sizeof *off);
    float *tmp = xalloc(m->n_params * sizeof(float), err);
    int rc = off && tmp ? whole_offsets(m, off, &n_whole, err) : err_set(err, ERR_NOMEM, "out of memory");
    float *src[3] = {m->params, p->zero ? p->adam_m : m->adam_m, p->zero ? p->adam_v : m->adam_v};
    float *dst[3] = {full_params, full_m, full_v};
    for (int k = 0; k < 3 && !rc; k++) {
        if (!dst[k]) continue;
        memset(dst[k], 0, n_whole * sizeof(float));
        /* weights: ZeRO-3 ranks own their chunks, otherwise dp rank 0 speaks;
         * Adam state: chunks under ZeRO, dp rank 0 otherwise */
        int by_chunk = k == 0 ? p->zero == 3 : p->zero >= 1;
        owned_elements(p, m, src[k], k > 0 && p->zero >= 1, by_chunk, tmp);
        for (int i = 0; i < m->n_tensors; i++)
            if (off[i] != (size_t)-1) tensor_block_copy(&m->tensors[i], dst[k] + off[i], tmp + m->tensors[i].offset, 1);
        if (p->world->size > 1) rc = comm_allreduce_sum(p->world, dst[k], n_whole, err);
    }
    free(off);
    xfree(tmp);
    return rc;
}

void parallel_scatter_full(Parallel *p, Model *m, const float *full_params, const float *full_m, const float *full_v) {
    size_t n_whole, *off = malloc((size_t)m->n_tensors * sizeof *off);
    if (!off || whole_offsets(m, off, &n_whole, NULL)) {
        free(off);
        return;
    }
    const float *src[3] = {full_params, full_m, full_v};
    float *tmp = xalloc(m->n_params * sizeof(float), NULL);
    for (int k = 0; k < 3 && tmp; k++) {
        if (!src[k]) continue;
        float *local = k == 0 ? m->params : (p->zero ? tmp : (k == 1 ? m->adam_m : m->adam_v));
        if (!local) continue;
        for (int i = 0; i < m->n_tensors; i++)
            if (off[i] != (size_t)-1) tensor_block_copy(&m->tensors[i], (float *)src[k] + off[i], local + m->tensors[i].offset, 0);
        if (k > 0 && p->zero) {
            float *compact = k == 1 ? p->adam_m : p->adam_v;
            for (int i = 0; i < p->n_buckets; i++) {
                size_t c0, c1;
                my_chunk(p, &p->buckets[i], &c0, &c1);
                memcpy(compact + p->buckets[i].opt_off, tmp + c0, (c1 - c0) * sizeof(float));
            }
        }
    }
    if (p->zero == 3)
        for (int i = 0; i < p->n_buckets; i++) parallel_release_layer(p, m, p->buckets[i].layer);
    xfree(tmp);
    free(off);
}
