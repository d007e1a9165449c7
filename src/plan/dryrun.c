/* Layouts and the sharded parameter registry: which slice of every tensor of
 * the engine's registry one rank holds under tensor, pipeline, expert and
 * data parallelism (Megatron-LM splits), without allocating anything. The
 * planner's memory model counts these slices, and `jarip train --dry-run`
 * prints them, so both agree by construction. */
#include "plan.h"

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

/* Rows of n given to part idx of parts: as even as possible, the first
 * n % parts parts one more (the vocabulary need not divide by tp). */
static int64_t part_of(int64_t n, int parts, int idx) { return n / parts + (idx < n % parts ? 1 : 0); }

/* Apply the Megatron split of one registry tensor for (tp_rank, ep_rank). */
static void shard_one(const Config *c, const PlanLayout *l, const Tensor *t, int tp_rank, int ep_rank,
                      ShardTensor *s) {
    const char *base = t->name;
    if (t->layer >= 0) {
        const char *dot = strchr(t->name + 4, '.'); /* "blk.N.<base>" */
        base = dot ? dot + 1 : t->name;
    }
    (void)ep_rank;
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", t->name);
    s->ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) s->global[i] = s->local[i] = t->shape[i];
    s->split_dim = -1;
    const int tp = l->tp;
#define STARTS(p) (strncmp(base, p, strlen(p)) == 0)
    if (t->flags & PF_EXPERT) {
        s->expert = 1;
        s->local[0] = t->shape[0] / l->ep;                 /* experts over ep */
        int tdim = STARTS("ffn_down_exps") ? (t->ndim == 3 ? 2 : -1) : 1; /* F columns over tp */
        if (tdim > 0) {
            s->local[tdim] = t->shape[tdim] / tp;
            s->split_dim = tdim;
        }
    } else if (STARTS("attn_q.") || STARTS("ffn_gate.") || STARTS("ffn_up.")) {
        s->local[0] = t->shape[0] / tp; /* column parallel: output rows */
        s->split_dim = 0;
    } else if (STARTS("attn_k.") || STARTS("attn_v.")) {
        if (c->n_kv_head % tp == 0) {
            s->local[0] = t->shape[0] / tp;
        } else { /* tp > kv heads: each rank keeps the one kv head its q heads read */
            s->local[0] = t->shape[0] / c->n_kv_head;
        }
        s->split_dim = 0;
    } else if ((STARTS("attn_output.") || STARTS("ffn_down.")) && t->ndim == 2) {
        s->local[1] = t->shape[1] / tp; /* row parallel: input columns; its bias stays whole */
        s->split_dim = 1;
    } else if (strcmp(t->name, "token_embd.weight") == 0 || strcmp(t->name, "output.weight") == 0) {
        s->local[0] = part_of(t->shape[0], tp, tp_rank); /* vocabulary parallel */
        s->split_dim = 0;
    }
#undef STARTS
    s->numel = 1;
    for (int i = 0; i < s->ndim; i++) s->numel *= (size_t)s->local[i];
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
    Tensor *t = NULL;
    int n = 0;
    size_t total = 0;
    if ((rc = registry_build(c, &t, &n, &total, err))) return rc;
    rs->t = calloc((size_t)n + 1, sizeof *rs->t);
    if (!rs->t) {
        free(t);
        return err_set(err, ERR_NOMEM, "out of memory sharding the registry");
    }
    const int last = l->pp - 1;
    int *stage_cache = calloc((size_t)c->n_layer, sizeof *stage_cache);
    if (!stage_cache) {
        free(t);
        plan_shard_free(rs);
        return err_set(err, ERR_NOMEM, "out of memory sharding the registry");
    }
    for (int st = 0; st < l->pp; st++) /* layer -> pipeline stage */
        for (int j = 0; j < l->vpp; j++) {
            int f, nl;
            plan_stage_layers(c, l, st, j, &f, &nl);
            for (int i = f; i < f + nl && i < c->n_layer; i++) stage_cache[i] = st;
        }
    for (int i = 0; i < n; i++) {
        int stage;
        if (t[i].layer >= 0) stage = stage_cache[t[i].layer];
        else if (strncmp(t[i].name, "token_embd", 10) == 0 || strncmp(t[i].name, "position_embd", 13) == 0) stage = 0;
        else stage = last; /* output_norm, output */
        int here = stage == rs->pp_rank;
        /* Tied embeddings with pp > 1: the last stage keeps its own copy of
         * the (vocabulary-split) embedding as the output layer, and the two
         * stages all-reduce its gradient (Megatron-LM). */
        int tied_copy = c->tie_embeddings && last > 0 && rs->pp_rank == last && strcmp(t[i].name, "token_embd.weight") == 0;
        if (!here && !tied_copy) continue;
        ShardTensor *s = &rs->t[rs->n++];
        shard_one(c, l, &t[i], rs->tp_rank, rs->ep_rank, s);
        if (tied_copy) {
            snprintf(s->name, sizeof s->name, "output.weight");
            s->tied_copy = 1;
        }
        if (s->expert) rs->n_expert += s->numel;
        else rs->n_dense += s->numel;
    }
    free(stage_cache);
    free(t);
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
    m->total = m->weights + m->grads + m->optimizer + m->activations;
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
