/* Layouts and the sharded parameter registry: which slice of every tensor of
 * the engine's registry one rank holds under tensor, pipeline, expert and
 * data parallelism (Megatron-LM splits), without allocating anything. The
 * planner's memory model counts these slices, and `jarip train --dry-run`
 * prints them, so both agree by construction. */
#include "plan.h"

#include "dist/zero.h"

#include <stdlib.h>
#include <string.h>

void plan_layout_default(PlanLayout *l) {
    memset(l, 0, sizeof *l);
    l->tp = l->pp = l->dp = l->ep = l->vpp = 1;
    l->precision = PREC_FP32;
    l->grad_bf16 = 0; /* bf16 mode: fp32 gradients, as Megatron-LM (18 B/param) */
}

int plan_layout_check(const Config *c, const PlanLayout *l, int gpus, Err *err) {
#define REQ(cond, ...) do { if (!(cond)) return err_set(err, ERR_INVALID, "layout: " __VA_ARGS__); } while (0)
    REQ(l->tp >= 1 && l->pp >= 1 && l->dp >= 1 && l->ep >= 1 && l->vpp >= 1, "tp, pp, dp, ep and vpp must be >= 1");
    REQ(l->zero >= 0 && l->zero <= 3, "zero stage must be 0..3 (got %d)", l->zero);
    long long prod = (long long)l->tp * l->pp * l->dp;
    REQ(gpus <= 0 || prod == gpus, "tp*pp*dp = %d*%d*%d = %lld does not equal --gpus %d", l->tp, l->pp, l->dp, prod, gpus);
    REQ(c->n_head % l->tp == 0, "attention heads (%d) are not divisible by tp (%d)", c->n_head, l->tp);
    REQ(c->n_kv_head % l->tp == 0 || l->tp % c->n_kv_head == 0,
        "kv heads (%d) and tp (%d): one must divide the other (kv heads are split, or replicated when tp > kv heads)",
        c->n_kv_head, l->tp);
    REQ(c->d_ff % l->tp == 0, "d_ff (%d) is not divisible by tp (%d)", c->d_ff, l->tp);
    if (c->n_expert > 0) {
        REQ(c->n_expert % l->ep == 0, "experts (%d) are not divisible by ep (%d)", c->n_expert, l->ep);
    } else {
        REQ(l->ep == 1, "ep = %d needs a mixture-of-experts model (this one is dense)", l->ep);
    }
    REQ(l->dp % l->ep == 0, "ep (%d) must divide dp (%d): experts are spread inside the data-parallel group", l->ep, l->dp);
    REQ(l->vpp == 1 || l->pp > 1, "vpp = %d needs pp > 1", l->vpp);
    if (l->first_stage_layers || l->last_stage_layers) {
        REQ(l->vpp == 1, "uneven first/last stages cannot be combined with vpp > 1");
        REQ(l->pp > 1, "first/last stage layers need pp > 1");
        int rest_stages = l->pp - (l->first_stage_layers > 0) - (l->last_stage_layers > 0);
        int rest = c->n_layer - l->first_stage_layers - l->last_stage_layers;
        REQ(rest >= 0 && (rest_stages > 0 ? rest % rest_stages == 0 && rest / rest_stages > 0 : rest == 0),
            "layers (%d) minus first (%d) and last (%d) stage layers do not split evenly over the other %d stages",
            c->n_layer, l->first_stage_layers, l->last_stage_layers, rest_stages);
    } else {
        REQ(c->n_layer % (l->pp * l->vpp) == 0, "layers (%d) are not divisible by pp*vpp = %d*%d", c->n_layer, l->pp, l->vpp);
    }
    return 0;
#undef REQ
}

void plan_stage_layers(const Config *c, const PlanLayout *l, int stage, int chunk, int *first, int *count) {
    if (l->first_stage_layers || l->last_stage_layers) {
        int f = l->first_stage_layers, la = l->last_stage_layers;
        int rest_stages = l->pp - (f > 0) - (la > 0);
        int per = rest_stages > 0 ? (c->n_layer - f - la) / rest_stages : 0;
        int f_eff = f > 0 ? f : per; /* a stage without an override gets the even share */
        if (stage == 0) {
            *first = 0;
            *count = f_eff;
        } else if (stage == l->pp - 1) {
            *count = la > 0 ? la : per;
            *first = c->n_layer - *count;
        } else {
            *first = f_eff + (stage - 1) * per;
            *count = per;
        }
        return;
    }
    int cs = c->n_layer / (l->pp * l->vpp);
    *first = (chunk * l->pp + stage) * cs;
    *count = cs;
}

void plan_rank_coords(const PlanLayout *l, int rank, int *tp_rank, int *pp_rank, int *dp_rank) {
    *tp_rank = rank % l->tp;
    *dp_rank = (rank / l->tp) % l->dp;
    *pp_rank = rank / (l->tp * l->dp);
}

/* The registry's shard of one rank, as the planner's ShardTensor: the one
 * source of per-rank shapes is registry_build_shard (the engine allocates
 * from it); a tied embedding's copy on the last stage is "output.weight". */
static void shard_tensor(const Tensor *t, int tied_copy, ShardTensor *s) {
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", tied_copy ? "output.weight" : t->name);
    s->ndim = t->ndim;
    s->split_dim = -1;
    for (int i = 0; i < t->ndim; i++) {
        s->global[i] = t->full[i];
        s->local[i] = t->shape[i];
        /* the tensor-parallel cut, or (experts) the expert-parallel one */
        if (t->shape[i] != t->full[i] && (s->split_dim < 0 || (t->flags & PF_EXPERT && i > 0))) s->split_dim = i;
    }
    if (s->split_dim < 0 && (t->tp_split || t->ep_split)) s->split_dim = 0;
    s->expert = (t->flags & PF_EXPERT) != 0;
    s->tied_copy = tied_copy;
    s->numel = t->numel;
}

/* The ModelShard of (tp_rank, ep_rank) for layers [f, f + n) of stage st;
 * first/last: whether this call also takes the embeddings / the head. */
static void model_shard_of(const PlanLayout *l, const RankShard *rs, int f, int n, int first, int last,
                           ModelShard *ms) {
    memset(ms, 0, sizeof *ms);
    ms->tp_rank = rs->tp_rank;
    ms->tp_size = l->tp;
    ms->ep_rank = rs->ep_rank;
    ms->ep_size = l->ep;
    ms->layer0 = f;
    ms->layer1 = f + n;
    ms->first = first;
    ms->last = last;
}

typedef struct {
    int order; /* index in the whole registry */
    ShardTensor s;
} Ordered;

static int by_order(const void *a, const void *b) {
    return ((const Ordered *)a)->order - ((const Ordered *)b)->order;
}

int plan_shard_build(const Config *c, const PlanLayout *l, int rank, RankShard *rs, Err *err) {
    memset(rs, 0, sizeof *rs);
    int rc = plan_layout_check(c, l, 0, err);
    if (rc) return rc;
    int world = l->tp * l->pp * l->dp;
    if (rank < 0 || rank >= world) return err_set(err, ERR_INVALID, "rank %d is outside 0..%d", rank, world - 1);
    rs->rank = rank;
    plan_rank_coords(l, rank, &rs->tp_rank, &rs->pp_rank, &rs->dp_rank);
    rs->ep_rank = rs->dp_rank % l->ep;
    Tensor *whole = NULL;
    int n_whole = 0;
    size_t total = 0;
    if ((rc = registry_build(c, &whole, &n_whole, &total, err))) return rc;
    Ordered *out = calloc((size_t)n_whole + 1, sizeof *out);
    if (!out) {
        free(whole);
        return err_set(err, ERR_NOMEM, "out of memory sharding the registry");
    }
    int n = 0;
    const int last_stage = l->pp - 1;
    /* one registry shard per (virtual) stage chunk: the embeddings come with
     * the first stage's first chunk, the head with the last stage's last */
    for (int j = 0; j < l->vpp && !rc; j++) {
        int f, nl;
        plan_stage_layers(c, l, rs->pp_rank, j, &f, &nl);
        ModelShard ms;
        model_shard_of(l, rs, f, nl, rs->pp_rank == 0 && j == 0, rs->pp_rank == last_stage && j == l->vpp - 1, &ms);
        Tensor *t = NULL;
        int k = 0;
        size_t np = 0;
        if ((rc = registry_build_shard(c, &ms, &t, &k, &np, err))) break;
        for (int i = 0; i < k && n <= n_whole; i++) {
            int order = 0;
            while (order < n_whole && strcmp(whole[order].name, t[i].name)) order++;
            /* Tied embeddings with pp > 1: the last stage keeps its own copy of
             * the (vocabulary-split) embedding as the output layer, and the two
             * stages all-reduce its gradient (Megatron-LM). */
            int tied_copy = !ms.first && strcmp(t[i].name, "token_embd.weight") == 0;
            out[n].order = order;
            shard_tensor(&t[i], tied_copy, &out[n].s);
            n++;
        }
        free(t);
    }
    free(whole);
    if (rc) {
        free(out);
        return rc;
    }
    qsort(out, (size_t)n, sizeof *out, by_order);
    rs->t = calloc((size_t)n + 1, sizeof *rs->t);
    if (!rs->t) {
        free(out);
        return err_set(err, ERR_NOMEM, "out of memory sharding the registry");
    }
    for (int i = 0; i < n; i++) {
        rs->t[rs->n++] = out[i].s;
        if (out[i].s.expert)
            rs->n_expert += out[i].s.numel;
        else
            rs->n_dense += out[i].s.numel;
    }
    free(out);
    return 0;
}

void plan_shard_free(RankShard *rs) {
    free(rs->t);
    memset(rs, 0, sizeof *rs);
}

StateBytes plan_state_bytes_per_param(const PlanLayout *l) {
    StateBytes b;
    if (l->precision == PREC_BF16) {
        b.weights = 2;                      /* bf16 working copy */
        b.grads = l->grad_bf16 ? 2 : 4;
        b.optimizer = 12;                   /* fp32 master weights + Adam m + v */
    } else {
        b.weights = 4;
        b.grads = 4;
        b.optimizer = 8;                    /* Adam m + v */
    }
    return b;
}

static double ceil_div(size_t n, int g) { return (double)((n + (size_t)g - 1) / (size_t)g); }

void plan_state_memory(const PlanLayout *l, size_t n_dense, size_t n_expert, PlanMemory *m) {
    StateBytes b = plan_state_bytes_per_param(l);
    int dpe = l->dp / l->ep; /* expert weights are replicated over dp/ep ranks */
    double full = (double)n_dense + (double)n_expert;
    double shard = ceil_div(n_dense, l->dp) + ceil_div(n_expert, dpe > 0 ? dpe : 1);
    m->weights = b.weights * (l->zero >= 3 ? shard : full);
    m->grads = b.grads * (l->zero >= 2 ? shard : full);
    m->optimizer = b.optimizer * (l->zero >= 1 ? shard : full);
    m->total = m->weights + m->grads + m->optimizer + m->activations + m->scratch;
}

/* What `jarip train` allocates on this rank for weights, gradients and the
 * optimizer (fp32, the engine's layouts: no vpp, no uneven stages, kv heads
 * split): the ZeRO buckets of the rank's registry
 * shard, as src/train/parallel.c builds them. Returns 1 when filled, 0 when
 * the layout is one only the planner sizes. */
static int engine_floats(const Config *c, const PlanLayout *l, const RankShard *rs, ZeroFloats *f, ZeroLayout *z,
                         Err *err) {
    memset(z, 0, sizeof *z);
    if (l->precision != PREC_FP32 || l->vpp != 1 || l->first_stage_layers || l->last_stage_layers ||
        c->n_kv_head % l->tp)
        return 0;
    int first, count;
    plan_stage_layers(c, l, rs->pp_rank, 0, &first, &count);
    ModelShard ms;
    model_shard_of(l, rs, first, count, rs->pp_rank == 0, rs->pp_rank == l->pp - 1, &ms);
    Tensor *t = NULL;
    int n = 0;
    size_t np = 0;
    if (registry_build_shard(c, &ms, &t, &n, &np, err)) return -1;
    int rc = zero_layout_build(t, n, c->n_layer, l->dp, l->ep, z, err);
    free(t);
    if (rc) return -1;
    *f = zero_floats(z, np, l->dp > 1 ? l->zero : 0);
    return 1;
}

static void fmt_shape(char *buf, size_t n, const int64_t *s, int nd) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < nd && o < n; i++) o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)s[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

int plan_dry_run(const Config *c, const PlanLayout *layout, int rank, FILE *out, Err *err) {
    RankShard rs;
    int rc = plan_shard_build(c, layout, rank, &rs, err);
    if (rc) return rc;
    const PlanLayout *l = layout;
    StateBytes b = plan_state_bytes_per_param(l);
    fprintf(out, "rank %d of %d: tp %d/%d  pp %d/%d  dp %d/%d  ep %d/%d   (zero %d, %s%s)\n", rank,
            l->tp * l->pp * l->dp, rs.tp_rank, l->tp, rs.pp_rank, l->pp, rs.dp_rank, l->dp, rs.ep_rank, l->ep,
            l->zero, l->precision == PREC_BF16 ? "bf16 mixed precision" : "fp32",
            l->precision == PREC_BF16 ? (l->grad_bf16 ? ", bf16 grads" : ", fp32 grads") : "");
    for (int j = 0; j < l->vpp; j++) {
        int f, nl;
        plan_stage_layers(c, l, rs.pp_rank, j, &f, &nl);
        fprintf(out, "  layers %d..%d%s\n", f, f + nl - 1, l->vpp > 1 ? " (virtual stage)" : "");
    }
    fprintf(out, "  %-34s %-22s %-22s %14s %16s\n", "tensor", "global shape", "local shape", "elements", "weight bytes");
    for (int i = 0; i < rs.n; i++) {
        const ShardTensor *s = &rs.t[i];
        char g[64], lo[64];
        fmt_shape(g, sizeof g, s->global, s->ndim);
        fmt_shape(lo, sizeof lo, s->local, s->ndim);
        fprintf(out, "  %-34s %-22s %-22s %14zu %16.0f%s\n", s->name, g, lo, s->numel, s->numel * b.weights,
                s->tied_copy ? "  (copy of token_embd, tied)" : "");
    }
    PlanMemory m = {0};
    plan_state_memory(l, rs.n_dense, rs.n_expert, &m);
    fprintf(out, "  parameters on this rank: %zu (dense %zu, expert %zu)\n", rs.n_dense + rs.n_expert, rs.n_dense,
            rs.n_expert);
    ZeroFloats ef;
    ZeroLayout z;
    int engine = engine_floats(c, l, &rs, &ef, &z, err);
    if (engine < 0) {
        plan_shard_free(&rs);
        return err->code ? err->code : ERR_INVALID;
    }
    if (engine) {
        const int zs = l->dp > 1 ? l->zero : 0;
        if (zs > 0) {
            int expert_buckets = 0;
            for (int i = 0; i < z.n_buckets; i++) expert_buckets += z.buckets[i].expert;
            fprintf(out, "  zero-%d shard (%s): own chunk of each of %d buckets, %zu elements (padding included); dense "
                         "chunk %d of dp %d",
                    zs, zs == 1 ? "optimizer" : zs == 2 ? "optimizer, grads" : "optimizer, grads, weights", z.n_buckets,
                    z.opt_len, rs.dp_rank, l->dp);
            if (expert_buckets)
                fprintf(out, ", expert chunk %d of dp/ep %d (%d buckets)", rs.dp_rank / l->ep, l->dp / l->ep,
                        expert_buckets);
            fprintf(out, "\n");
        }
        /* ZeRO-1's gather staging serves the weights; ZeRO >= 2 stage in the gradient buffers */
        double w = 4.0 * (double)(ef.weights + ef.staging), g = 4.0 * (double)ef.grads, o = 4.0 * (double)ef.optimizer;
        fprintf(out, "  bytes: weights %.0f  grads %.0f  optimizer %.0f  total %.0f  (as jarip train allocates them", w,
                g, o, w + g + o);
        if (zs >= 2)
            fprintf(out, "; staging: one block %zu + edge tensors %zu elements", z.block_len, z.edge_len);
        fprintf(out, ")\n");
        zero_layout_free(&z);
        plan_shard_free(&rs);
        return 0;
    }
    if (l->zero > 0) {
        int dpe = l->dp / l->ep, ei = rs.dp_rank / l->ep;
        size_t sd = (rs.n_dense + (size_t)l->dp - 1) / (size_t)l->dp, se = (rs.n_expert + (size_t)dpe - 1) / (size_t)dpe;
        size_t d0 = sd * (size_t)rs.dp_rank, e0 = se * (size_t)ei;
        size_t d1 = d0 + sd < rs.n_dense ? d0 + sd : rs.n_dense, e1 = e0 + se < rs.n_expert ? e0 + se : rs.n_expert;
        if (d0 > rs.n_dense) d0 = rs.n_dense;
        if (e0 > rs.n_expert) e0 = rs.n_expert;
        fprintf(out, "  zero-%d shard (%s): dense elements [%zu, %zu) of %zu over dp %d", l->zero,
                l->zero == 1 ? "optimizer" : l->zero == 2 ? "optimizer, grads" : "optimizer, grads, weights", d0, d1,
                rs.n_dense, l->dp);
        if (rs.n_expert) fprintf(out, "; expert [%zu, %zu) of %zu over dp/ep %d", e0, e1, rs.n_expert, dpe);
        fprintf(out, "\n");
    }
    fprintf(out, "  bytes: weights %.0f  grads %.0f  optimizer %.0f  total %.0f\n", m.weights, m.grads, m.optimizer,
            m.weights + m.grads + m.optimizer);
    plan_shard_free(&rs);
    return 0;
}

int plan_dry_run_all(const Config *c, const PlanLayout *layout, FILE *out, Err *err) {
    int world = layout->tp * layout->pp * layout->dp;
    for (int r = 0; r < world; r++) {
        int rc = plan_dry_run(c, layout, r, out, err);
        if (rc) return rc;
    }
    return 0;
}
