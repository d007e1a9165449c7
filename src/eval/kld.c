/* KL divergence of a model from a base, as llama-perplexity --kl-divergence
 * computes it (tools/perplexity/perplexity.cpp, kl_divergence()): the base's
 * log-probabilities in llama.cpp's 16-bit rows, the model's from its logits,
 * each position's KLD = sum over tokens with log p_base > -16 of
 * p_base (log p_base - log p), in the same float/double arithmetic. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

typedef struct {
    float nll, nll_base, p_diff;
    double kld;
    int same_top;
} RowKld;

/* llama.cpp's log_softmax(n_vocab, logits, base_log_prob, tok, kld). */
static RowKld row_kld(const float *logits, int V, const uint16_t *base, int tok) {
    RowKld r;
    float mx = logits[0];
    int imax = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > mx) {
            mx = logits[i];
            imax = i;
        }
    double sum_exp = 0.0;
    for (int i = 0; i < V; i++) sum_exp += expf(logits[i] - mx);
    const float lse = (float)log(sum_exp);
    float scale, min_log_prob;
    memcpy(&scale, base, 4);
    memcpy(&min_log_prob, base + 2, 4);
    const uint16_t *q = base + 4;
    r.nll = mx + lse - logits[tok];
    r.nll_base = -(scale * q[tok] + min_log_prob);
    const float top = mx + lse;
    double sum = 0.0;
    int imax_base = -1;
    float pmax = 0;
    for (int i = 0; i < V; i++) {
        const float pl = scale * q[i] + min_log_prob;
        if (i == 0 || pl > pmax) {
            pmax = pl;
            imax_base = i;
        }
        if (pl > -16.f) sum += expf(pl) * (pl - logits[i] + top);
    }
    r.kld = sum;
    r.same_top = imax == imax_base;
    r.p_diff = expf(-r.nll) - expf(-r.nll_base);
    return r;
}

typedef struct {
    double nll, nll2, nllb, nllb2, nll_nllb, kld, kld2, dp, dp2, dp4;
    long same, count;
} KldSums;

/* llama.cpp's mean_and_uncertainty and covariance. */
static void mean_unc(double sum, double sum2, long n, double *mean, double *unc) {
    *mean = n ? sum / n : 0.0;
    double v = n ? sum2 / n - *mean * *mean : 0.0;
    *unc = v > 0 && n > 10 ? sqrt(v / (n - 1)) : 0.0;
}

static double covariance(double a, double b, double ab, long n) {
    return n < 10 ? 0.0 : (ab / n - (a / n) * (b / n)) / (n - 1);
}

static float percentile(const float *v, size_t n, float fraction) {
    if (fraction <= 0) return v[0];
    if (fraction >= 1) return v[n - 1];
    float p = fraction * (float)(n - 1);
    size_t ip = (size_t)p;
    p -= (float)ip;
    return (1 - p) * v[ip] + p * v[ip + 1 < n ? ip + 1 : n - 1];
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The summary statistics of sums s (running or final). */
static void kld_fill(const KldSums *s, KldResult *r) {
    double lp, lpu, lb, lbu;
    mean_unc(s->nll, s->nll2, s->count, &lp, &lpu);
    mean_unc(s->nllb, s->nllb2, s->count, &lb, &lbu);
    r->ppl = exp(lp);
    r->ppl_err = r->ppl * lpu;
    r->base_ppl = exp(lb);
    r->base_ppl_err = r->base_ppl * lbu;
    const double cov = covariance(s->nll, s->nllb, s->nll_nllb, s->count);
    r->cor = lpu > 0 && lbu > 0 ? cov / (lpu * lbu) : 0.0;
    r->ln_ratio = lp - lb;
    const double v = lpu * lpu + lbu * lbu - 2.0 * cov;
    r->ln_ratio_err = v > 0 ? sqrt(v) : 0.0;
    mean_unc(s->kld, s->kld2, s->count, &r->kld, &r->kld_err);
    double mse, mse_unc;
    mean_unc(s->dp2, s->dp4, s->count, &mse, &mse_unc);
    r->rms_dp = sqrt(mse);
    r->rms_dp_err = r->rms_dp > 0 ? 0.5 / r->rms_dp * mse_unc : 0.0;
    r->same_top = s->count ? (double)s->same / s->count : 0.0;
    r->same_top_err = s->count > 1 ? sqrt(r->same_top * (1 - r->same_top) / (s->count - 1)) : 0.0;
    r->count = s->count;
}

int eval_kld(Model *m, Model *base_model, const LogitsFile *base_file, const int32_t *tokens, size_t n,
             const EvalOptions *o, LogitsWriter *save, EvalProgressCb cb, void *cb_ctx, KldResult *res, Err *err) {
    memset(res, 0, sizeof *res);
    const int V = m->cfg.vocab_size;
    EvalOptions eo = *o;
    int n_chunk = 0, rc = 0;
    if (base_file) {
        if (base_file->n_vocab != V)
            return err_set(err, ERR_INVALID, "the base log-probabilities have a vocabulary of %d tokens, the model %d",
                           base_file->n_vocab, V);
        eo.ctx = base_file->ctx;
        tokens = base_file->tokens;
        n_chunk = base_file->n_chunk;
        if (o->max_chunks > 0 && n_chunk > o->max_chunks) n_chunk = o->max_chunks;
    } else {
        if (!base_model) return err_set(err, ERR_INVALID, "kld needs a base model or its saved log-probabilities");
        if (base_model->cfg.vocab_size != V)
            return err_set(err, ERR_INVALID, "the base model has a vocabulary of %d tokens, the model %d",
                           base_model->cfg.vocab_size, V);
        if ((rc = eval_n_chunks(n, &eo, &n_chunk, err))) return rc;
    }
    const int first = eo.ctx / 2, scored = eo.ctx - 1 - first, nv = 2 * ((V + 1) / 2) + 4;
    ChunkRunner r = {0}, rb = {0};
    uint16_t *brows = NULL;
    RowKld *rows = malloc((size_t)scored * sizeof *rows);
    float *klds = malloc((size_t)n_chunk * scored * sizeof *klds);
    if (!rows || !klds) {
        rc = err_set(err, ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = chunk_runner_create(&r, m, &eo, err))) goto done;
    int group = r.n_seq; /* chunks per pass of both models */
    if (!base_file) {
        /* the two models each plan their own activations and caches */
        if ((rc = chunk_runner_create(&rb, base_model, &eo, err))) goto done;
        if (rb.n_seq < group) group = rb.n_seq;
        if (!(brows = calloc((size_t)group * scored * nv, sizeof *brows))) {
            rc = err_set(err, ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    KldSums s = {0};
    const double t0 = time_now();
    for (int c0 = 0; c0 < n_chunk; c0 += group) {
        const int nc = n_chunk - c0 < group ? n_chunk - c0 : group;
        const int32_t *chunks = tokens + (size_t)c0 * eo.ctx;
        const size_t per = (size_t)(eo.ctx - first) * V; /* logits per chunk of a runner */
        if (!base_file) {
            if ((rc = chunk_runner_run(&rb, chunks, nc, o->bos, err))) goto done;
#pragma omp parallel for collapse(2) schedule(dynamic, 8)
            for (int j = 0; j < nc; j++)
                for (int i = 0; i < scored; i++)
                    eval_logprob_row(rb.logits + j * per + (size_t)i * V, V, chunks[(size_t)j * eo.ctx + first + 1 + i],
                                     brows + ((size_t)j * scored + i) * nv);
            if (save && (rc = logits_writer_rows(save, brows, nc * scored, err))) goto done;
        }
        if ((rc = chunk_runner_run(&r, chunks, nc, o->bos, err))) goto done;
        for (int j = 0; j < nc; j++) {
            const int c = c0 + j;
            const int32_t *chunk = chunks + (size_t)j * eo.ctx;
            const uint16_t *base = base_file ? base_file->rows + (size_t)c * scored * nv : brows + (size_t)j * scored * nv;
#pragma omp parallel for schedule(dynamic, 8)
            for (int i = 0; i < scored; i++)
                rows[i] = row_kld(r.logits + j * per + (size_t)i * V, V, base + (size_t)i * nv, chunk[first + 1 + i]);
            for (int i = 0; i < scored; i++) { /* in order: the same sums at any thread count */
                const RowKld *k = &rows[i];
                s.nll += k->nll;
                s.nll2 += k->nll * k->nll;
                s.nllb += k->nll_base;
                s.nllb2 += k->nll_base * k->nll_base;
                s.nll_nllb += k->nll * k->nll_base;
                s.kld += k->kld;
                s.kld2 += k->kld * k->kld;
                s.dp += k->p_diff;
                const double d2 = k->p_diff * k->p_diff;
                s.dp2 += d2;
                s.dp4 += d2 * d2;
                s.same += k->same_top;
                s.count++;
                klds[(size_t)c * scored + i] = (float)k->kld;
            }
            if (cb) {
                KldResult t;
                kld_fill(&s, &t);
                EvalProgress p = {c + 1, n_chunk, t.ppl, t.ppl_err, t.base_ppl, t.ln_ratio, t.ln_ratio_err,
                                  t.kld, t.kld_err, t.same_top, t.same_top_err};
                cb(cb_ctx, &p);
            }
        }
    }
    res->seconds = time_now() - t0;
    kld_fill(&s, res);
    const size_t nk = (size_t)n_chunk * scored;
    qsort(klds, nk, sizeof *klds, cmp_float);
    res->kld_median = nk % 2 == 0 ? 0.5f * (klds[nk / 2] + klds[nk / 2 - 1]) : klds[nk / 2];
    res->kld_p90 = percentile(klds, nk, 0.90f);
    res->kld_p95 = percentile(klds, nk, 0.95f);
    res->kld_p99 = percentile(klds, nk, 0.99f);
    res->kld_p999 = percentile(klds, nk, 0.999f);
    res->kld_max = klds[nk - 1];
    res->kld_min = klds[0];
    res->n_chunk = n_chunk;
    res->ctx = eo.ctx;
done:
    free(rows);
    free(klds);
    free(brows);
    chunk_runner_free(&r);
    chunk_runner_free(&rb);
    return rc;
}
