/* Time: hardware FLOPs (model FLOPs plus recomputation) and the step-time
 * model used by --search and when no rate is given: compute at a fraction of
 * peak, tensor-parallel all-reduces on the intra-node link, expert all-to-all,
 * pipeline send/receive and bubble (p-1)/(m v), and the data-parallel
 * gradient all-reduce on the network, not overlapped (an upper bound). */
#include "plan.h"

#include <stdlib.h>

/* Parameters outside the blocks (embeddings, final norm, output), from the
 * engine's registry. */
static size_t nonlayer_params(const Config *c) {
    Tensor *t = NULL;
    int n = 0;
    size_t total = 0, out = 0;
    if (registry_build(c, &t, &n, &total, NULL)) return 0;
    for (int i = 0; i < n; i++)
        if (t[i].layer < 0) out += t[i].numel;
    free(t);
    return out;
}

double plan_hw_flops_per_token(const Config *c, int seq, int recompute) {
    double model = model_flops_per_token(c, seq);
    /* forward of the attention core (QK^T and AV): a third of 12 L d T */
    double attn_fwd = 4.0 * c->n_layer * (double)c->d_model * seq;
    if (recompute == RECOMPUTE_SELECTIVE) return model + attn_fwd;
    if (recompute == RECOMPUTE_FULL) {
        double block_active = (double)config_active_param_count(c) - (double)nonlayer_params(c);
        return model + 2.0 * block_active + attn_fwd; /* the blocks' forward again */
    }
    return model;
}

/* Ring all-reduce time of `bytes` over a group of g at bandwidth bw. */
static double allreduce_s(double bytes, int g, double bw) {
    return g > 1 ? 2.0 * (g - 1) / g * bytes / bw : 0.0;
}

int plan_step_time_model(const Config *c, const PlanLayout *l, const PlanRun *r, const Hardware *hw,
                         StepTime *st, Err *err) {
    *st = (StepTime){0};
    const double peak = l->precision == PREC_BF16 ? hw->peak_bf16 : hw->peak_fp32;
    if (peak <= 0)
        return err_set(err, ERR_UNSUPPORTED, "%s has no %s peak to model time with; give a rate (--tflops-per-gpu, --tokens-per-s)",
                       hw->name, l->precision == PREC_BF16 ? "bf16" : "fp32");
    if (r->global_batch <= 0) return err_set(err, ERR_INVALID, "the step-time model needs --global-batch");
    const double m = (double)r->global_batch / ((double)l->dp * r->micro_batch);
    const double tokens_mb = (double)r->micro_batch * r->seq;
    const double e = l->precision == PREC_BF16 ? 2.0 : 4.0;
    const double L = c->n_layer;
    const int node = hw->devices_per_node > 0 ? hw->devices_per_node : 1;

    /* FLOPs per token of one layer and of everything outside the blocks
     * (the output layer, on the last stage). */
    double hw_fpt = plan_hw_flops_per_token(c, r->seq, r->recompute);
    double outside = 6.0 * (double)nonlayer_params(c);
    double per_layer = (hw_fpt - outside) / L;
    int max_layers = 0;
    double max_stage_flops = 0;
    for (int s = 0; s < l->pp; s++) {
        int f, n;
        plan_stage_layers(c, l, s, 0, &f, &n);
        n *= l->vpp;
        double fl = n * per_layer + (s == l->pp - 1 ? outside : 0);
        if (fl > max_stage_flops) max_stage_flops = fl;
        if (n > max_layers) max_layers = n;
    }
    double compute_mb = max_stage_flops * tokens_mb / l->tp / (peak * hw->gemm_efficiency);

    /* tensor parallel: 2 all-reduces forward, 2 backward (+2 recomputed) of
     * the (b, s, h) activations per layer; sequence parallel turns each into
     * a reduce-scatter + all-gather of the same volume */
    double act_bytes = e * tokens_mb * c->d_model;
    double tp_bw = l->tp <= node ? hw->intra_bw : hw->net_bw;
    int n_ar = r->recompute == RECOMPUTE_FULL ? 6 : 4;
    double tp_mb = max_layers * n_ar * allreduce_s(act_bytes, l->tp, tp_bw);

    /* expert parallel: dispatch + combine all-to-all, forward and backward */
    double ep_mb = 0;
    if (l->ep > 1) {
        double bytes = act_bytes * c->n_expert_active * (l->ep - 1) / l->ep;
        double bw = l->tp * l->ep <= node ? hw->intra_bw : hw->net_bw;
        ep_mb = max_layers * (r->recompute == RECOMPUTE_FULL ? 6 : 4) / 2.0 * bytes / bw;
    }

    /* pipeline: each model chunk sends its output forward and receives a
     * gradient backward once per micro-batch */
    double pp_mb = 0;
    if (l->pp > 1) {
        double bytes = r->seq_parallel && l->tp > 1 ? act_bytes / l->tp : act_bytes;
        double bw = l->tp * l->dp * l->pp <= node ? hw->intra_bw : hw->net_bw;
        pp_mb = 2.0 * l->vpp * bytes / bw;
    }
    double t_mb = compute_mb + tp_mb + ep_mb;
    st->compute = m * compute_mb;
    st->tp_comm = m * tp_mb;
    st->ep_comm = m * ep_mb;
    st->pp_comm = m * pp_mb;
    st->bubble = (l->pp - 1.0) / l->vpp * (t_mb + pp_mb);

    /* data parallel: gradient all-reduce (ZeRO 1/2: reduce-scatter + all-gather,
     * the same volume; ZeRO 3: 1.5x, the ZeRO paper's figure) */
    if (l->dp > 1) {
        RankShard rs;
        double worst = 0, worst_e = 0;
        for (int s = 0; s < l->pp; s += (l->pp > 1 ? l->pp - 1 : 1)) {
            int rc = plan_shard_build(c, l, s * l->tp * l->dp, &rs, err);
            if (rc) return rc;
            if ((double)rs.n_dense + rs.n_expert > worst + worst_e) {
                worst = (double)rs.n_dense;
                worst_e = (double)rs.n_expert;
            }
            plan_shard_free(&rs);
        }
        StateBytes sb = plan_state_bytes_per_param(l);
        double bw = l->tp * l->dp <= node ? hw->intra_bw : hw->net_bw;
        double factor = l->zero >= 3 ? 1.5 : 1.0;
        st->dp_comm = factor * (allreduce_s(sb.grads * worst, l->dp, bw) + allreduce_s(sb.grads * worst_e, l->dp / l->ep, bw));
    }
    st->total = st->compute + st->tp_comm + st->ep_comm + st->pp_comm + st->bubble + st->dp_comm;
    return 0;
}
