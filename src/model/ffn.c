/* The feed-forward half of a block: a dense MLP (GELU or SwiGLU) or a
 * mixture of such MLPs behind a softmax top-k router (Mixtral-style).
 * Dense is simply one expert with weight 1, so both share expert_*.
 *
 * MoE forward: probs = softmax(x Wr^T); each token picks its k most likely
 * experts (ties: lower index), weights renormalised over the k; rows are
 * gathered per expert so each expert runs as one GEMM; outputs combined.
 * Load-balancing loss: Hugging Face Mixtral's coef * E * sum_e f_e P_e
 * (f_e = tokens routed to e / T counting every slot, P_e = mean probability
 * of e), taken per sequence of T tokens and averaged over sequences. Per
 * sequence, the loss of a batch does not depend on how its rows are split
 * over data-parallel ranks or micro-batches. */
#include <math.h>
#include <string.h>

#include "model_internal.h"

/* Weight (or gradient) block of expert e in a tensor stacked (E, R, K). */
static const void *expert_w(const Tensor *t, int e) {
    if (!t) return NULL;
    if (!(t->flags & PF_EXPERT) && t->ndim < 3 && e == 0) return t->data;
    size_t rows = (size_t)t->shape[t->ndim - 2 >= 0 ? t->ndim - 2 : 0];
    size_t K = (size_t)t->shape[t->ndim - 1];
    if (t->ndim == 2 && (t->flags & PF_EXPERT)) return (const float *)t->data + (size_t)e * K; /* bias (E, K) */
    size_t row_bytes = t->dtype == DT_F32 ? K * sizeof(float) : dtype_row_bytes(t->dtype, (int64_t)K);
    return (const char *)t->data + (size_t)e * rows * row_bytes;
}

static float *expert_g(const Tensor *t, int e) {
    if (!t || !t->grad) return NULL;
    if (t->ndim == 3) return t->grad + (size_t)e * t->shape[1] * t->shape[2];
    if (t->ndim == 2 && (t->flags & PF_EXPERT)) return t->grad + (size_t)e * t->shape[1];
    return t->grad;
}

/* Feed-forward width held by this rank (d_ff / tp). */
static int local_ff(const Model *m) { return m->cfg.d_ff / m->shard.tp_size; }

/* y (rows, N) = x (rows, K) W_e^T + b_e: expert e's block of a stacked
 * tensor (in bf16 when it carries wt->bf16), or a dense weight through the
 * linear layer (its precision and LoRA adapter: linear_forward). */
static int weight_forward(float *y, const float *x, const Tensor *wt, const Tensor *b, int e, int rows, int N, int K) {
    if (!(wt->flags & PF_EXPERT)) return linear_forward(y, x, wt, b, rows);
    if (wt->bf16) return bf16_expert_forward(wt->bf16, y, x, expert_w(wt, e), N, K, expert_w(b, e), rows);
    return matmul_forward(y, x, expert_w(wt, e), wt->dtype, expert_w(b, e), rows, N, K);
}

/* y (rows, C) = down(act(up(x) [, gate(x)])) for one expert. h, g, a (rows, F).
 * Under tensor parallelism y is this rank's partial sum; the down bias is
 * added by rank 0 only. */
static int expert_forward(const Model *m, const LayerWeights *w, int e, const float *x, int rows, float *h,
                          float *g, float *a, float *y) {
    const Config *c = &m->cfg;
    const int C = c->d_model, F = local_ff(m);
    int rc;
    if ((rc = weight_forward(h, x, w->w_up, w->b_up, e, rows, F, C))) return rc;
    if (c->act == ACT_SWIGLU) {
        if ((rc = weight_forward(g, x, w->w_gate, NULL, e, rows, F, C))) return rc;
        swiglu_forward(a, g, h, (size_t)rows * F);
    } else {
        gelu_forward(a, h, (size_t)rows * F);
    }
    return weight_forward(y, a, w->w_down, m->shard.tp_rank == 0 ? w->b_down : NULL, e, rows, C, F);
}

/* dx (rows, K) += dy (rows, N) W_e, and W_e's / the bias's gradients when
 * they train: expert e's block of a stacked tensor, or a dense weight (any
 * type, with its LoRA adapter: linear_backward). */
static int weight_backward(float *dx, const float *dy, const float *x, const Tensor *wt, const Tensor *b, int e,
                           int rows, int N, int K) {
    if (!(wt->flags & PF_EXPERT)) return linear_backward(dx, dy, x, wt, b, rows);
    if (wt->dtype != DT_F32) { /* frozen experts: the input gradient from their blocks */
        int rc = dx ? matmul_backward_input(dx, dy, expert_w(wt, e), wt->dtype, rows, N, K) : 0;
        if (!rc && expert_g(b, e)) matmul_backward(NULL, NULL, expert_g(b, e), dy, x, NULL, rows, N, K);
        return rc;
    }
    if (wt->bf16)
        return bf16_expert_backward(wt->bf16, dx, expert_g(wt, e), expert_g(b, e), dy, x, expert_w(wt, e), N, K, rows);
    matmul_backward(dx, expert_g(wt, e), expert_g(b, e), dy, x, expert_w(wt, e), rows, N, K);
    return 0;
}

/* Backward of expert_forward; dx (rows, C) accumulated. dh, dg, da scratch. */
static int expert_backward(const Model *m, const LayerWeights *w, int e, const float *x, int rows, const float *h,
                           const float *g, const float *a, const float *dy, float *dx, float *dh, float *dg,
                           float *da) {
    const Config *c = &m->cfg;
    const int C = c->d_model, F = local_ff(m);
    const size_t n = (size_t)rows * F;
    int rc;
    memset(da, 0, n * sizeof(float));
    if ((rc = weight_backward(da, dy, a, w->w_down, w->b_down, e, rows, C, F))) return rc;
    memset(dh, 0, n * sizeof(float));
    if (c->act == ACT_SWIGLU) {
        memset(dg, 0, n * sizeof(float));
        swiglu_backward(dg, dh, g, h, da, n);
        if ((rc = weight_backward(dx, dg, x, w->w_gate, NULL, e, rows, F, C))) return rc;
    } else {
        gelu_backward(dh, h, da, n);
    }
    return weight_backward(dx, dh, x, w->w_up, w->b_up, e, rows, F, C);
}

/* Route N tokens: probs, top-k indices and weights, sorted rows, aux loss. */
static double moe_route(Model *m, int l, const float *x, int N, Err *err) {
    const Config *c = &m->cfg;
    const Activations *a = &m->act;
    const LayerWeights *w = &m->layers[l];
    const int E = c->n_expert, K = c->n_expert_active;
    float *p = a->router_probs[l], *wt = a->expert_w[l];
    int32_t *idx = a->expert_idx[l], *row = a->moe_row[l], *off = a->moe_off[l];
    if (matmul_forward(p, x, w->router->data, w->router->dtype, NULL, N, E, c->d_model)) {
        err_set(err, ERR_UNSUPPORTED, "router weight type %s", dtype_name(w->router->dtype));
        return NAN;
    }
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        float *pi = p + (size_t)i * E;
        float mx = -INFINITY, sum = 0.0f;
        for (int e = 0; e < E; e++) mx = pi[e] > mx ? pi[e] : mx;
        for (int e = 0; e < E; e++) sum += (pi[e] = expf(pi[e] - mx));
        for (int e = 0; e < E; e++) pi[e] /= sum;
        float tot = 0.0f;
        for (int s = 0; s < K; s++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                int taken = 0;
                for (int r = 0; r < s; r++) taken |= idx[(size_t)i * K + r] == e;
                if (!taken && (best < 0 || pi[e] > pi[best])) best = e;
            }
            idx[(size_t)i * K + s] = best;
            tot += pi[best];
        }
        for (int s = 0; s < K; s++) wt[(size_t)i * K + s] = pi[idx[(size_t)i * K + s]] / tot;
    }
    /* rows sorted by expert, tokens in order within an expert */
    memset(off, 0, (size_t)(E + 1) * sizeof *off);
    for (size_t r = 0; r < (size_t)N * K; r++) off[idx[r] + 1]++;
    for (int e = 0; e < E; e++) off[e + 1] += off[e];
    const int T = m->act.cur_T > 0 ? m->act.cur_T : N, B = N / T;
    double aux = 0.0;
    for (int b = 0; b < B; b++)
        for (int e = 0; e < E; e++) {
            double pe = 0.0;
            int cnt = 0;
            for (int i = b * T; i < (b + 1) * T; i++) {
                pe += p[(size_t)i * E + e];
                for (int s = 0; s < K; s++) cnt += idx[(size_t)i * K + s] == e;
            }
            aux += (double)cnt / T * (pe / T) / B;
        }
    int32_t cursor[1024];
    for (int e = 0; e < E; e++) cursor[e] = off[e];
    for (size_t r = 0; r < (size_t)N * K; r++) row[r] = cursor[idx[r]]++;
    return c->moe_aux_coef * E * aux;
}

int ffn_forward(Model *m, int l, const float *x, float *out, int N, Err *err) {
    const Config *c = &m->cfg;
    const Activations *a = &m->act;
    const LayerWeights *w = &m->layers[l];
    const int C = c->d_model, F = local_ff(m);
    if (c->n_expert == 0) {
        int rc = expert_forward(m, w, 0, x, N, a->ffn_h[l], a->ffn_g[l], a->ffn_a[l], out);
        if (rc) return err_set(err, rc, "layer %d: no matmul kernel for this weight type", l);
        if (m->shard.tp_size > 1) return comm_allreduce_sum(m->shard.tp, out, (size_t)N * C, err);
        return 0;
    }
    const int E = c->n_expert, K = c->n_expert_active;
    double aux = moe_route(m, l, x, N, err);
    if (isnan(aux)) return ERR_UNSUPPORTED;
    m->aux_loss += aux;
    const int32_t *row = a->moe_row[l], *off = a->moe_off[l];
#pragma omp parallel for
    for (int i = 0; i < N; i++)
        for (int s = 0; s < K; s++)
            memcpy(a->moe_x + (size_t)row[(size_t)i * K + s] * C, x + (size_t)i * C, (size_t)C * sizeof(float));
    if (m->shard.ep_size > 1) {
        /* rows travel to the ranks holding their experts and back */
        MoeExchange ex;
        int rc = moe_ep_plan(m, l, &ex, err);
        if (!rc) rc = moe_ep_dispatch(m, &ex, a->moe_x, a->moe_xe, err);
        for (int j = 0; j < ex.El && !rc; j++) {
            int r0 = ex.goff[j], n = ex.goff[j + 1] - r0;
            if (n == 0) continue;
            rc = expert_forward(m, w, j, a->moe_xe + (size_t)r0 * C, n, a->ffn_h[l] + (size_t)r0 * F,
                                a->ffn_g[l] ? a->ffn_g[l] + (size_t)r0 * F : NULL, a->ffn_a[l] + (size_t)r0 * F,
                                a->moe_ye + (size_t)r0 * C);
            if (rc) rc = err_set(err, rc, "layer %d: no matmul kernel for this weight type", l);
        }
        if (!rc) rc = moe_ep_combine(m, &ex, a->moe_ye, a->ffn_y[l], err);
        moe_ep_free(&ex);
        if (rc) return rc;
    }
    for (int e = 0; e < E && m->shard.ep_size == 1; e++) {
        int r0 = off[e], n = off[e + 1] - off[e];
        if (n == 0) continue;
        int rc = expert_forward(m, w, e, a->moe_x + (size_t)r0 * C, n, a->ffn_h[l] + (size_t)r0 * F,
                                a->ffn_g[l] ? a->ffn_g[l] + (size_t)r0 * F : NULL, a->ffn_a[l] + (size_t)r0 * F,
                                a->ffn_y[l] + (size_t)r0 * C);
        if (rc) return err_set(err, rc, "layer %d: no matmul kernel for this weight type", l);
    }
    /* whole expert outputs: backward needs them for the routing weights */
    if (m->shard.tp_size > 1) {
        int rc = comm_allreduce_sum(m->shard.tp, a->ffn_y[l], (size_t)N * K * C, err);
        if (rc) return rc;
    }
    const float *wt = a->expert_w[l];
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        float *o = out + (size_t)i * C;
        memset(o, 0, (size_t)C * sizeof(float));
        for (int s = 0; s < K; s++) {
            const float *y = a->ffn_y[l] + (size_t)row[(size_t)i * K + s] * C;
            float ws = wt[(size_t)i * K + s];
            for (int j = 0; j < C; j++) o[j] += ws * y[j];
        }
    }
    return 0;
}

int ffn_backward(Model *m, int l, const float *x, const float *dout, float *dx, int N, float loss_scale, Err *err) {
    const Config *c = &m->cfg;
    Activations *a = &m->act;
    const LayerWeights *w = &m->layers[l];
    const int C = c->d_model, F = local_ff(m);
    int brc = 0; /* the first failure of a backward through a weight */
    if (c->n_expert == 0) {
        brc = expert_backward(m, w, 0, x, N, a->ffn_h[l], a->ffn_g[l], a->ffn_a[l], dout, dx, a->d_ffn_h, a->d_ffn_g,
                              a->d_ffn_a);
        return brc ? err_set(err, brc, "layer %d: FFN backward through weight type %s", l, dtype_name(w->w_up->dtype)) : 0;
    }
    const int E = c->n_expert, K = c->n_expert_active;
    const int32_t *row = a->moe_row[l], *off = a->moe_off[l], *idx = a->expert_idx[l];
    const float *wt = a->expert_w[l], *p = a->router_probs[l];
    float *dp = a->d_router;
    /* combine backward: dy rows, and d(weights) -> d(probs) over the k chosen */
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float *d = dout + (size_t)i * C;
        float dw[64], dot = 0.0f;
        for (int s = 0; s < K; s++) {
            size_t r = (size_t)row[(size_t)i * K + s];
            const float *y = a->ffn_y[l] + r * C;
            float *dy = a->moe_dy + r * C, ws = wt[(size_t)i * K + s], acc = 0.0f;
            for (int j = 0; j < C; j++) {
                acc += d[j] * y[j];
                dy[j] = ws * d[j];
            }
            dw[s] = acc;
            dot += acc * ws;
        }
        float tot = 0.0f;
        for (int s = 0; s < K; s++) tot += p[(size_t)i * E + idx[(size_t)i * K + s]];
        float *dpi = dp + (size_t)i * E;
        for (int e = 0; e < E; e++) dpi[e] = 0.0f;
        for (int s = 0; s < K; s++) dpi[idx[(size_t)i * K + s]] = (dw[s] - dot) / tot;
    }
    /* moe_x is one buffer for all layers: gather this layer's inputs again */
#pragma omp parallel for
    for (int i = 0; i < N; i++)
        for (int s = 0; s < K; s++)
            memcpy(a->moe_x + (size_t)row[(size_t)i * K + s] * C, x + (size_t)i * C, (size_t)C * sizeof(float));
    if (m->shard.ep_size > 1) {
        MoeExchange ex;
        int rc = moe_ep_plan(m, l, &ex, err);
        if (!rc) rc = moe_ep_dispatch(m, &ex, a->moe_x, a->moe_xe, err);
        if (!rc) rc = moe_ep_dispatch(m, &ex, a->moe_dy, a->moe_ye, err);
        if (!rc) memset(a->moe_dxe, 0, (size_t)ex.R * C * sizeof(float));
        for (int j = 0; j < ex.El && !rc; j++) {
            int r0 = ex.goff[j], n = ex.goff[j + 1] - r0;
            if (n == 0) continue;
            rc = expert_backward(m, w, j, a->moe_xe + (size_t)r0 * C, n, a->ffn_h[l] + (size_t)r0 * F,
                                 a->ffn_g[l] ? a->ffn_g[l] + (size_t)r0 * F : NULL, a->ffn_a[l] + (size_t)r0 * F,
                                 a->moe_ye + (size_t)r0 * C, a->moe_dxe + (size_t)r0 * C, a->d_ffn_h, a->d_ffn_g,
                                 a->d_ffn_a);
        }
        if (rc && !err->code) brc = rc; /* a backward through a weight failed (not the exchange) */
        if (!rc) rc = moe_ep_combine(m, &ex, a->moe_dxe, a->moe_dy, err);
        moe_ep_free(&ex);
        if (rc && !brc) return rc;
    }
    for (int e = 0; e < E && m->shard.ep_size == 1; e++) {
        int r0 = off[e], n = off[e + 1] - off[e];
        if (n == 0) continue;
        float *xe = a->moe_x + (size_t)r0 * C;
        float *dxe = a->moe_dy + (size_t)r0 * C; /* reuse: dy rows of e are consumed first */
        float *tmp = a->d_tmp;                   /* (n <= N rows, C) */
        memset(tmp, 0, (size_t)n * C * sizeof(float));
        int rc = expert_backward(m, w, e, xe, n, a->ffn_h[l] + (size_t)r0 * F,
                                 a->ffn_g[l] ? a->ffn_g[l] + (size_t)r0 * F : NULL, a->ffn_a[l] + (size_t)r0 * F, dxe, tmp,
                                 a->d_ffn_h, a->d_ffn_g, a->d_ffn_a);
        if (rc && !brc) brc = rc;
        memcpy(dxe, tmp, (size_t)n * C * sizeof(float));
    }
#pragma omp parallel for
    for (int i = 0; i < N; i++)
        for (int s = 0; s < K; s++) {
            const float *g = a->moe_dy + (size_t)row[(size_t)i * K + s] * C;
            float *d = dx + (size_t)i * C;
            for (int j = 0; j < C; j++) d[j] += g[j];
        }
    /* aux loss: d/dp_ie = coef E f_e / (T B) within i's sequence, then the
     * softmax backward to router logits */
    const int T = a->cur_T > 0 ? a->cur_T : N, B = N / T;
    const float aux_scale = loss_scale * c->moe_aux_coef * E / ((float)T * T * B);
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        float *dpi = dp + (size_t)i * E;
        const float *pi = p + (size_t)i * E;
        int b = i / T, cnt[1024];
        for (int e = 0; e < E; e++) cnt[e] = 0;
        for (int t = b * T; t < (b + 1) * T; t++)
            for (int s = 0; s < K; s++) cnt[idx[(size_t)t * K + s]]++;
        for (int e = 0; e < E; e++) dpi[e] += aux_scale * (float)cnt[e];
        float s = 0.0f;
        for (int e = 0; e < E; e++) s += pi[e] * dpi[e];
        for (int e = 0; e < E; e++) dpi[e] = pi[e] * (dpi[e] - s);
    }
    /* the router is replicated over tp: its input gradient is added once,
     * since the caller sums dx over the tensor-parallel group */
    if (!brc) brc = linear_backward(m->shard.tp_rank == 0 ? dx : NULL, dp, x, w->router, NULL, N);
    return brc ? err_set(err, brc, "layer %d: MoE backward through weight type %s", l, dtype_name(w->w_up->dtype)) : 0;
}
