/* Memory of the most loaded device: training state from the sharded
 * registry (dryrun.c) by precision and ZeRO stage, activations from
 * Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large
 * Transformer Models", Table 2) generalised to GQA, SwiGLU, d_ff and MoE,
 * with the pipeline's in-flight micro-batches of Megatron-LM's 1F1B and
 * interleaved schedules. A one-process plan on this machine counts what the
 * engine allocates instead (plan_memory). */
#include "plan.h"

#include <string.h>

/* Parts of a layer that sequence parallelism splits over tp (the norms,
 * dropouts and the inputs of the column-parallel matmuls); without it every
 * tensor-parallel rank keeps them whole. */
static double rep(const PlanLayout *l, const PlanRun *r, double bytes) {
    return r->seq_parallel && l->tp > 1 ? bytes / l->tp : bytes;
}

double plan_layer_activation_bytes(const Config *c, const PlanLayout *l, const PlanRun *r) {
    const double e = l->precision == PREC_BF16 ? 2.0 : 4.0; /* activation element */
    const double s = r->seq, b = r->micro_batch, h = c->d_model, t = l->tp;
    const double sb = s * b, sbh = sb * h;
    const double a = c->n_head;
    const double qd = (double)c->n_head * c->head_dim;
    /* kv heads per rank: split, or one replicated head when tp > kv heads */
    const double kv_local = c->n_kv_head % l->tp == 0 ? (double)c->n_kv_head * c->head_dim / t : c->head_dim;
    if (r->recompute == RECOMPUTE_FULL) return rep(l, r, e * sbh); /* only the layer input */
    double bytes = 0;
    /* attention block (Korthikanti: 11sbh + 5as^2b for MHA with dropout) */
    bytes += rep(l, r, e * sbh);                     /* layernorm input */
    bytes += rep(l, r, e * sbh);                     /* QKV matmul input */
    bytes += e * sb * qd / t + 2 * e * sb * kv_local; /* Q, K, V */
    if (r->flash) {
        bytes += 4.0 * sb * a / t;                   /* fused attention keeps only softmax statistics (fp32) */
    } else if (r->recompute != RECOMPUTE_SELECTIVE) { /* selective: the scores are recomputed */
        bytes += e * a * s * s * b / t;              /* softmax output */
        if (r->dropout) bytes += (1 + e) * a * s * s * b / t; /* dropout mask + output */
    }
    bytes += e * sb * qd / t;                        /* output projection input */
    if (r->dropout) bytes += rep(l, r, sbh);         /* attention dropout mask (1 byte) */
    /* MLP block (Korthikanti: 19sbh for a 4h GELU MLP with dropout) */
    bytes += rep(l, r, e * sbh);                     /* layernorm input */
    bytes += rep(l, r, e * sbh);                     /* first matmul input */
    const double k = c->n_expert > 0 ? c->n_expert_active : 1; /* expert slots per token */
    const double f = (c->act == ACT_SWIGLU ? 3.0 : 2.0) * e * sb * c->d_ff / t; /* gate,up,product | in,out */
    bytes += k * f;
    if (c->n_expert > 0) {
        bytes += rep(l, r, 4.0 * sb * c->n_expert);   /* router probabilities (fp32) */
        bytes += rep(l, r, e * sbh * k);              /* tokens permuted to their experts */
    }
    if (r->dropout) bytes += rep(l, r, sbh);         /* MLP dropout mask */
    return bytes;
}

/* Activation sets a stage holds at its peak, in units of (one micro-batch
 * through one model chunk). 1F1B: stage s runs p - s warm-up forwards before
 * its first backward. Interleaved (Megatron-LM): 2(p - s - 1) + (v - 1)p + 1
 * chunks of L/(p v) layers; both capped by the work in the step. */
static double inflight_chunks(const PlanLayout *l, const PlanRun *r, int stage) {
    double m = 1e300; /* unknown global batch: assume enough micro-batches to fill the pipe */
    if (r->global_batch > 0) m = (double)r->global_batch / ((double)l->dp * r->micro_batch);
    int p = l->pp, v = l->vpp;
    if (v == 1) return m < p - stage ? m : p - stage;
    double n = 2.0 * (p - stage - 1) + (double)(v - 1) * p + 1;
    return m * v < n ? m * v : n;
}

double plan_stage_activation_bytes(const Config *c, const PlanLayout *l, const PlanRun *r, int stage) {
    int first, n_layers;
    plan_stage_layers(c, l, stage, 0, &first, &n_layers); /* layers of one chunk */
    const double e = l->precision == PREC_BF16 ? 2.0 : 4.0;
    const double sbh = (double)r->seq * r->micro_batch * c->d_model;
    double per_layer = plan_layer_activation_bytes(c, l, r);
    double chunks = inflight_chunks(l, r, stage);
    double bytes = chunks * n_layers * per_layer;
    if (r->recompute == RECOMPUTE_FULL) {
        /* backward recomputes one layer at a time: its full set is live once */
        PlanRun r2 = *r;
        r2.recompute = RECOMPUTE_NONE;
        bytes += plan_layer_activation_bytes(c, l, &r2);
    }
    /* embedding dropout mask, once per micro-batch in flight (chunks / v) */
    if (stage == 0 && r->dropout) bytes += chunks / l->vpp * rep(l, r, sbh);
    if (stage == l->pp - 1) {
        /* final norm input, output-layer input, fp32 logits split over the
         * vocabulary (Korthikanti: 4sbh/t (1 + v/h)); one micro-batch */
        bytes += 2 * rep(l, r, e * sbh);
        bytes += 4.0 * r->seq * r->micro_batch * (double)c->vocab_size / l->tp;
    }
    return bytes;
}

int plan_memory(const Config *c, const PlanLayout *l, const PlanRun *r, int engine_single, PlanMemory *m,
                int *worst_stage, Err *err) {
    memset(m, 0, sizeof *m);
    if (worst_stage) *worst_stage = 0;
    /* The most loaded device: tp rank 0 and dp rank 0 hold the largest
     * (ceil) slices, so it is enough to compare pipeline stages; the middle
     * stages hold equal parameters and stage 1 the most activations among
     * them, so stages 0, 1 and the last cover every case. */
    int stages[3] = {0, 1, l->pp - 1};
    for (int si = 0; si < 3; si++) {
        int s = stages[si];
        if (s >= l->pp || (si == 2 && s <= 1)) continue;
        int rank = s * l->tp * l->dp;
        RankShard rs;
        int rc = plan_shard_build(c, l, rank, &rs, err);
        if (rc) return rc;
        PlanMemory cur = {0};
        PlanLayout state = *l;
        if (engine_single) {
            size_t act = model_activation_bytes(c, r->micro_batch, r->seq, 1);
            if (act == 0) {
                plan_shard_free(&rs);
                return err_set(err, ERR_NOMEM, "the engine could not plan activations");
            }
            cur.activations = (double)act;
            if (l->precision == PREC_BF16)
                cur.scratch = (double)model_bf16_scratch_bytes(c, r->micro_batch, r->seq, 1);
            state.precision = PREC_FP32; /* the engine's bf16: float32 master weights are the only copy */
        } else {
            cur.activations = plan_stage_activation_bytes(c, l, r, s);
        }
        plan_state_memory(&state, rs.n_dense, rs.n_expert, &cur);
        plan_shard_free(&rs);
        if (cur.total > m->total) {
            *m = cur;
            if (worst_stage) *worst_stage = s;
        }
    }
    return 0;
}
