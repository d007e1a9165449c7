/* The whole plan (counts, FLOPs, memory, fit, time, energy) and the layout
 * search: enumerate the layouts of N devices that the model allows, keep
 * those that fit, rank them by modelled step time. */
#include "plan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void plan_request_default(PlanRequest *q) {
    memset(q, 0, sizeof *q);
    plan_layout_default(&q->layout);
    q->run.micro_batch = 1;
    q->run.recompute = RECOMPUTE_NONE;
    q->run.dropout = -1;
    q->pue = 1.1;
    q->max_candidates = 10;
}

/* A default global batch of about 4M tokens (GPT-3 175B used 3.2M, Llama 3
 * 405B 4M then 16M); on the cpu one micro-batch per data-parallel rank. */
static long long default_global_batch(const Hardware *hw, const PlanRequest *q) {
    if (strcmp(hw->name, "cpu") == 0)
        return (long long)q->run.micro_batch * (q->gpus > 0 ? q->gpus : q->layout.dp);
    long long gb = ((1LL << 22) + q->run.seq - 1) / q->run.seq;
    return gb < 1 ? 1 : gb;
}

void plan_run_defaults(const Config *c, const Hardware *hw, PlanRequest *q) {
    if (q->run.seq <= 0) q->run.seq = c->context_length;
    if (q->run.micro_batch <= 0) q->run.micro_batch = 1;
    /* Megatron's GPT recipes train with dropout 0.1; Llama-style models without */
    if (q->run.dropout < 0) q->run.dropout = strcmp(c->arch, "gpt2") == 0;
    if (q->run.global_batch <= 0) q->run.global_batch = default_global_batch(hw, q);
}

static double peak_of(const Hardware *hw, const PlanLayout *l) {
    return l->precision == PREC_BF16 ? hw->peak_bf16 : hw->peak_fp32;
}

/* Checks of a run against a layout: batch divisibility and sequence length. */
static int run_check(const Config *c, const PlanLayout *l, const PlanRun *r, Err *err) {
    if (r->seq < 1) return err_set(err, ERR_INVALID, "--seq must be >= 1");
    if (c->pos == POS_LEARNED && r->seq > c->context_length)
        return err_set(err, ERR_INVALID, "--seq %d exceeds the learned position table (%d)", r->seq, c->context_length);
    long long per = (long long)l->dp * r->micro_batch;
    if (r->global_batch % per != 0)
        return err_set(err, ERR_INVALID, "global batch %lld is not divisible by dp*micro-batch = %d*%d", r->global_batch,
                       l->dp, r->micro_batch);
    long long m = r->global_batch / per;
    if (l->vpp > 1 && m % l->pp != 0)
        return err_set(err, ERR_INVALID, "interleaved schedule: micro-batches per step (%lld) must be a multiple of pp (%d)",
                       m, l->pp);
    return 0;
}

/* One process on this machine: jarip train itself, in either precision. */
static int engine_single(const Hardware *hw, const PlanLayout *l) {
    return strcmp(hw->name, "cpu") == 0 && l->tp * l->pp * l->dp == 1;
}

int plan_compute(const Config *c, const Hardware *hw, const PlanRequest *q, PlanResult *res, Err *err) {
    memset(res, 0, sizeof *res);
    const PlanLayout *l = &q->layout;
    res->layout = *l;
    res->run = q->run;
    int rc = plan_layout_check(c, l, q->gpus, err);
    if (rc) return rc;
    if ((rc = run_check(c, l, &q->run, err))) return rc;
    res->params_total = config_param_count(c);
    res->params_active = config_active_param_count(c);
    res->flops_per_token = model_flops_per_token(c, q->run.seq);
    res->hw_flops_per_token = plan_hw_flops_per_token(c, q->run.seq, q->run.recompute);
    res->tokens = q->tokens > 0 ? q->tokens : 20.0 * (double)res->params_total;
    res->train_flops = 6.0 * (double)res->params_active * res->tokens;
    res->devices = l->tp * l->pp * l->dp;
    res->engine = engine_single(hw, l);
    if ((rc = plan_memory(c, l, &q->run, res->engine, &res->mem, &res->worst_stage, err))) return rc;
    res->fits = res->mem.total <= hw->memory * hw->usable_fraction;

    const double peak = peak_of(hw, l), n = res->devices;
    const double tokens_step = (double)q->run.global_batch * q->run.seq;
    double tps = 0;
    switch (q->rate_kind) {
    case RATE_MFU:
        if (peak <= 0) return err_set(err, ERR_UNSUPPORTED, "--mfu: %s has no published peak for this precision", hw->name);
        tps = q->rate * peak * n / res->flops_per_token;
        break;
    case RATE_TFLOPS: tps = q->rate * 1e12 * n / res->hw_flops_per_token; break;
    case RATE_TOKENS_PER_S: tps = q->rate; break;
    case RATE_STEP_TIME: tps = tokens_step / q->rate; break;
    default:
        if (peak > 0) {
            if ((rc = plan_step_time_model(c, l, &q->run, hw, &res->st, err))) return rc;
            tps = tokens_step / res->st.total;
            res->time_from_model = 1;
        }
    }
    if (tps > 0 && isfinite(tps)) {
        double secs = res->tokens / tps;
        res->time_known = 1;
        res->tokens_per_s = tps;
        res->step_known = q->run.global_batch > 0;
        res->step_time_s = tokens_step / tps;
        res->train_days = secs / 86400.0;
        res->gpu_hours = secs * n / 3600.0;
        res->mfu = peak > 0 ? tps * res->flops_per_token / (n * peak) : -1;
        res->hfu = peak > 0 ? tps * res->hw_flops_per_token / (n * peak) : -1;
        res->energy_mwh = n * hw->power_w * secs * q->pue / 3.6e9;
    }
    return 0;
}

void plan_result_free(PlanResult *res) {
    free(res->cand);
    res->cand = NULL;
    res->n_cand = 0;
}

static int divisors(int n, int *out, int cap) {
    int k = 0;
    for (int d = 1; d <= n && k < cap; d++)
        if (n % d == 0) out[k++] = d;
    return k;
}

static int cand_cmp(const void *a, const void *b) {
    const PlanCandidate *x = a, *y = b;
    if (x->st.total != y->st.total) return x->st.total < y->st.total ? -1 : 1;
    return x->mem.total < y->mem.total ? -1 : x->mem.total > y->mem.total;
}

/* Keep the best `cap` candidates in a sorted array (insertion). */
static void keep(PlanCandidate *best, int *n, int cap, const PlanCandidate *c) {
    int i = *n < cap ? (*n)++ : cap;
    if (i == cap) {
        if (cand_cmp(c, &best[cap - 1]) >= 0) return;
        i = cap - 1;
    }
    while (i > 0 && cand_cmp(c, &best[i - 1]) < 0) {
        best[i] = best[i - 1];
        i--;
    }
    best[i] = *c;
}

int plan_search(const Config *c, const Hardware *hw, const PlanRequest *q, unsigned fix, PlanResult *res, Err *err) {
    memset(res, 0, sizeof *res);
    if (q->gpus < 1) return err_set(err, ERR_INVALID, "--search needs --gpus N");
    if (peak_of(hw, &q->layout) <= 0) /* the ranking is by modelled step time */
        return err_set(err, ERR_UNSUPPORTED, "--search: %s has no %s peak to model step time with", hw->name,
                       q->layout.precision == PREC_BF16 ? "bf16" : "fp32");
    const int cap = q->max_candidates > 0 ? q->max_candidates : 10;
    PlanCandidate *best = calloc((size_t)cap, sizeof *best);
    if (!best) return err_set(err, ERR_NOMEM, "out of memory");
    int nb = 0;
    long long searched = 0;
    PlanCandidate least = {0}; /* the lightest layout, reported when none fits */
    int have_least = 0;
    int tps[512], pps[512], eps[512];
    int ntp = divisors(q->gpus, tps, 512);
    const int mbs[] = {1, 2, 4, 8}, vs[] = {1, 2, 4}, zs[] = {0, 1, 2, 3}, rcs[] = {0, 1, 2};
    const int node = hw->devices_per_node > 0 ? hw->devices_per_node : 1;
    Err e2;
    for (int a = 0; a < ntp; a++) {
        int tp = tps[a];
        if (fix & PLAN_FIX_TP ? tp != q->layout.tp : tp > node) continue; /* TP stays inside a node */
        int npp = divisors(q->gpus / tp, pps, 512);
        for (int bi = 0; bi < npp; bi++) {
            int pp = pps[bi], dp = q->gpus / tp / pp;
            if ((fix & PLAN_FIX_PP && pp != q->layout.pp) || (fix & PLAN_FIX_DP && dp != q->layout.dp)) continue;
            int nep = c->n_expert > 0 ? divisors(dp, eps, 512) : (eps[0] = 1, 1);
            for (int ei = 0; ei < nep; ei++)
                for (int vi = 0; vi < 3; vi++)
                    for (int mi = 0; mi < 4; mi++)
                        for (int ri = 0; ri < 3; ri++)
                            for (int zi = 0; zi < 4; zi++) {
                                PlanRequest r = *q;
                                PlanLayout *l = &r.layout;
                                l->tp = tp, l->pp = pp, l->dp = dp;
                                l->ep = eps[ei];
                                l->vpp = fix & PLAN_FIX_VPP ? q->layout.vpp : vs[vi];
                                l->zero = fix & PLAN_FIX_ZERO ? q->layout.zero : zs[zi];
                                r.run.micro_batch = fix & PLAN_FIX_MB ? q->run.micro_batch : mbs[mi];
                                r.run.recompute = fix & PLAN_FIX_RECOMPUTE ? q->run.recompute : rcs[ri];
                                r.run.seq_parallel = fix & PLAN_FIX_SP ? q->run.seq_parallel : tp > 1;
                                /* skip the duplicates a fixed field makes */
                                if ((fix & PLAN_FIX_VPP && vi) || (fix & PLAN_FIX_ZERO && zi) || (fix & PLAN_FIX_MB && mi) ||
                                    (fix & PLAN_FIX_RECOMPUTE && ri) || (fix & PLAN_FIX_EP && l->ep != q->layout.ep))
                                    continue;
                                if (l->vpp > 1 && pp == 1) continue;
                                if (l->zero > 0 && dp == 1) continue;
                                if (plan_layout_check(c, l, q->gpus, &e2) || run_check(c, l, &r.run, &e2)) continue;
                                searched++;
                                PlanCandidate cd = {0};
                                cd.layout = *l;
                                cd.run = r.run;
                                if (plan_memory(c, l, &r.run, engine_single(hw, l), &cd.mem, NULL, &e2)) continue;
                                cd.fits = cd.mem.total <= hw->memory * hw->usable_fraction;
                                if (!have_least || cd.mem.total < least.mem.total) {
                                    least = cd;
                                    have_least = 1;
                                }
                                if (!cd.fits) continue;
                                if (plan_step_time_model(c, l, &r.run, hw, &cd.st, &e2)) continue;
                                keep(best, &nb, cap, &cd);
                            }
        }
    }
    if (!have_least) {
        free(best);
        return err_set(err, ERR_INVALID, "no valid layout of %d devices for this model and global batch %lld (heads, layers, batch must divide)", q->gpus, q->run.global_batch);
    }
    PlanRequest r = *q;
    r.layout = nb > 0 ? best[0].layout : least.layout;
    r.run = nb > 0 ? best[0].run : least.run;
    int rc = plan_compute(c, hw, &r, res, err);
    if (rc) {
        free(best);
        return rc;
    }
    res->cand = best;
    res->n_cand = nb;
    res->n_searched = searched;
    return 0;
}
