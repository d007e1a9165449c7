/* LoRA as a property of a linear layer (Hu et al. 2021; PEFT's numerics):
 * a frozen weight W (out, in) of any type carries an adapter A (r, in),
 * B (out, r) and a scale alpha / r, and the layer computes
 *   y = x W^T + b + scale * (x A^T) B^T.
 * The forward adds the adapter's term after the base product; the backward
 * recomputes u = x A^T (cheaper than keeping it: r is small), then
 *   dB += scale dy^T u,  du = scale dy B,  dA += du^T x,  dx += dy W + du A,
 * with dy W taken from W's own blocks (matmul_backward_input). The base
 * gets no gradient: it has none to get (Tensor.grad NULL).
 * Dropout (PEFT's lora_dropout) replaces x by xd = x * mask / (1 - p) in the
 * adapter's term only: u = xd A^T, dA += du^T xd, and the adapter's part of
 * dx is (du A) * mask / (1 - p).
 * Training on a float32 base without dropout runs the layer merged instead
 * (lora_merged): y = x W'^T and dx += dy W' with W' = W + scale B A, made
 * afresh for each product in one (out, in) scratch. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

static const float *F(const Tensor *t) { return t ? (const float *)t->data : NULL; }

/* Whether element e of the pass keeps its value: 16 bits of a hash of its
 * group of 4 (one hash serves 4 elements) against p in units of 2^-16. */
static inline int keeps(uint64_t key, uint64_t e, uint32_t thr, uint64_t *group, uint64_t *h) {
    if (e >> 2 != *group) {
        *group = e >> 2;
        *h = rng_u64(key, *group);
    }
    return ((*h >> ((e & 3) * 16)) & 0xffff) >= thr;
}

/* dst (M,K) = src * mask / (1 - p), or dst += that when add: adapter k's
 * mask in the pass that runs. */
static void dropout_apply(const LoraLink *k, float *dst, const float *src, int M, int K, int add) {
    const LoraDropout *d = k->drop;
    const uint64_t key = rng_key(d->seed, d->batch, (uint64_t)k->id);
    const uint32_t thr = (uint32_t)(d->p * 65536.0f + 0.5f);
    const float inv = 1.0f / (1.0f - d->p);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++) {
        uint64_t group = UINT64_MAX, h = 0, e = (d->tok0 + (uint64_t)i) * (uint64_t)K;
        float *o = dst + (size_t)i * K;
        const float *x = src + (size_t)i * K;
        for (int j = 0; j < K; j++) {
            float v = keeps(key, e + (uint64_t)j, thr, &group, &h) ? x[j] * inv : 0.0f;
            o[j] = add ? o[j] + v : v;
        }
    }
}

/* The adapter's input: x itself, or x after dropout in k->x. */
static const float *lora_input(const LoraLink *k, const float *in, int M, int K) {
    if (!k->drop || !k->drop->on || !k->x) return in;
    dropout_apply(k, k->x, in, M, K, 0);
    return k->x;
}

void lora_forward(float *out, const float *in, const Tensor *w, int M) {
    const LoraLink *k = w->lora;
    if (!k || !k->u) return;
    const int r = k->r, K = (int)w->shape[1], N = (int)w->shape[0];
    in = lora_input(k, in, M, K);
    gemm_f32(0, 1, M, r, K, 1.0f, in, K, F(k->a), K, 0.0f, k->u, r);          /* u (M,r) = x A^T */
    gemm_f32(0, 1, M, N, r, k->scale, k->u, r, F(k->b), r, 1.0f, out, N);    /* out += scale u B^T */
}

/* W' = W + scale B A (out, in) in k->w, or NULL where the adapter's own
 * products are cheaper or the merge does not hold. One GEMM with W' then
 * gives the layer's output (x W'^T) and its input gradient (dy W'), where
 * the adapter's products would take two more rank-r GEMMs and a pass over
 * the (M, out) output or the (M, in) gradient each; the merge costs out x
 * in x r multiply-adds, less than the adapter's M x (out + in) x r once
 * M (out + in) >= out in (M >= 288 for 576 x 576). It needs a float32
 * base (bf16 and quantized bases keep their own products) and no dropout
 * (the adapter then sees another input than W). The sums are in another
 * order than x W^T + scale (x A^T) B^T: the results differ by rounding. */
static const float *lora_merged(const LoraLink *k, const Tensor *w, int M) {
    if (!k || !k->w || w->dtype != DT_F32 || w->bf16 || (k->drop && k->drop->on)) return NULL;
    const int N = (int)w->shape[0], K = (int)w->shape[1];
    if ((double)M * (N + K) < (double)N * K) return NULL;
    /* each thread its block of rows: copied, then its rows' GEMM while they are in its cache (one
     * thread or a nested call: one block) */
    const int parts = omp_in_parallel() ? 1 : omp_get_max_threads();
#pragma omp parallel num_threads(parts)
    {
        const int p = omp_get_thread_num(), n0 = (int)((long)N * p / parts), n1 = (int)((long)N * (p + 1) / parts);
        memcpy(k->w + (size_t)n0 * K, F(w) + (size_t)n0 * K, (size_t)(n1 - n0) * K * sizeof(float));
        gemm_f32(0, 0, n1 - n0, K, k->r, k->scale, F(k->b) + (size_t)n0 * k->r, k->r, F(k->a), K, 1.0f,
                 k->w + (size_t)n0 * K, K); /* W' (rows, K) += scale B A */
    }
    return k->w;
}

/* out (M,N) = in (M,K) W^T + bias for a merged weight: a block of rows per
 * thread (gemm_f32_rows), as the backward's dx = dy W' runs. */
static void merged_forward(float *out, const float *in, const float *W, const float *bias, int M, int N, int K) {
    if (bias) {
#pragma omp parallel for
        for (int i = 0; i < M; i++) memcpy(out + (size_t)i * N, bias, (size_t)N * sizeof(float));
    }
    gemm_f32_rows(1, M, N, K, 1.0f, in, K, W, K, bias ? 1.0f : 0.0f, out, N);
}

int linear_forward(float *out, const float *in, const Tensor *w, const Tensor *bias, int M) {
    const float *wm = lora_merged(w->lora, w, M);
    if (wm) {
        merged_forward(out, in, wm, F(bias), M, (int)w->shape[0], (int)w->shape[1]);
        return 0;
    }
    int rc = w->bf16 ? bf16_linear_forward(w->bf16, out, in, w, F(bias), M)
                     : matmul_forward(out, in, w->data, w->dtype, F(bias), M, (int)w->shape[0], (int)w->shape[1]);
    if (!rc) lora_forward(out, in, w, M);
    return rc;
}

/* The adapter's rank-r products of the backward, in one parallel region:
 * u (M,r) = x A^T and du (M,r) = scale dy B over each thread's block of
 * rows, then dB (N,r) += scale dy^T u over its block of B's rows and
 * dA (r,K) += du^T x over its block of A's columns. Each is a single-
 * threaded GEMM with one barrier between the two halves, where four
 * 2-thread GEMMs of a few tens of MFLOP each sync inside. */
static void lora_grads(const LoraLink *k, const float *x, const float *dout, int M, int N, int K) {
    const int r = k->r;
    float *dB = k->b->grad, *dA = k->a->grad;
    const int parts = omp_in_parallel() ? 1 : omp_get_max_threads();
#pragma omp parallel num_threads(parts)
    {
        const int p = omp_get_thread_num();
        const int m0 = (int)((long)M * p / parts), m1 = (int)((long)M * (p + 1) / parts);
        if (m1 > m0) {
            gemm_f32(0, 1, m1 - m0, r, K, 1.0f, x + (size_t)m0 * K, K, F(k->a), K, 0.0f, k->u + (size_t)m0 * r, r);
            gemm_f32(0, 0, m1 - m0, r, N, k->scale, dout + (size_t)m0 * N, N, F(k->b), r, 0.0f, k->du + (size_t)m0 * r,
                     r);
        }
#pragma omp barrier
        const int n0 = (int)((long)N * p / parts), n1 = (int)((long)N * (p + 1) / parts);
        const int k0 = (int)((long)K * p / parts), k1 = (int)((long)K * (p + 1) / parts);
        if (dB && n1 > n0) gemm_f32(1, 0, n1 - n0, r, M, k->scale, dout + n0, N, k->u, r, 1.0f, dB + (size_t)n0 * r, r);
        if (dA && k1 > k0) gemm_f32(1, 0, r, k1 - k0, M, 1.0f, k->du, r, x + k0, K, 1.0f, dA + k0, K);
    }
}

int linear_backward(float *dinp, const float *dout, const float *inp, const Tensor *w, const Tensor *bias, int M) {
    const int N = (int)w->shape[0], K = (int)w->shape[1];
    const LoraLink *k = w->lora;
    const float *wm = dinp && k && k->du ? lora_merged(k, w, M) : NULL;
    if (w->bf16 && !wm) {
        int rc = bf16_linear_backward(w->bf16, dinp, w->grad, bias ? bias->grad : NULL, dout, inp, w, M);
        if (rc) return rc;
    } else if (w->dtype == DT_F32 && w->grad) {
        matmul_backward(dinp, w->grad, bias ? bias->grad : NULL, dout, inp, F(w), M, N, K);
    } else { /* a frozen weight: the input gradient alone, through W' when merged */
        if (dinp) {
            int rc = wm ? matmul_backward_input(dinp, dout, wm, DT_F32, M, N, K)
                        : matmul_backward_input(dinp, dout, w->data, w->dtype, M, N, K);
            if (rc) return rc;
        }
        if (bias && bias->grad) matmul_backward(NULL, NULL, bias->grad, dout, inp, NULL, M, N, K);
        if (wm) dinp = NULL; /* it has the adapter's part */
    }
    if (!k || !k->u || !k->du) return 0;
    const int r = k->r;
    const float *x = lora_input(k, inp, M, K);
    lora_grads(k, x, dout, M, N, K);
    if (!dinp) return 0;
    if (x == inp) {
        gemm_f32(0, 0, M, K, r, 1.0f, k->du, r, F(k->a), K, 1.0f, dinp, K);    /* dx += du A */
    } else { /* dx += (du A) * mask / (1 - p), through k->x (its dropped-out input is used up) */
        gemm_f32(0, 0, M, K, r, 1.0f, k->du, r, F(k->a), K, 0.0f, k->x, K);
        dropout_apply(k, dinp, k->x, M, K, 1);
    }
    return 0;
}

/* The linear weights of layer l that can carry an adapter, in LORA_* bit order. */
static Tensor *target_of(const LayerWeights *w, int i) {
    Tensor *t[7] = {w->wq, w->wk, w->wv, w->wo, w->w_gate, w->w_up, w->w_down};
    return t[i];
}

void lora_bind_scratch(Model *m) {
    if (!m->layers) return;
    for (int l = m->shard.layer0; l < m->shard.layer1; l++)
        for (int i = 0; i < 7; i++) {
            Tensor *t = target_of(&m->layers[l], i);
            if (t && t->lora) {
                LoraLink *k = (LoraLink *)t->lora;
                k->u = m->act.lora_u;
                k->du = m->act.lora_du;
                k->x = m->act.lora_x;
                k->w = m->act.lora_w;
            }
        }
}

static Tensor *find_tensor(Model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

int model_lora_attach(Model *m, Model *base, float run_scale, Err *err) {
    const Config *c = &m->cfg, *bc = &base->cfg;
    if (c->lora_rank <= 0) return err_set(err, ERR_INVALID, "model_lora_attach: the config has no LoRA rank");
    if (bc->n_layer != c->n_layer || bc->d_model != c->d_model || bc->n_head != c->n_head ||
        bc->n_kv_head != c->n_kv_head || bc->head_dim != c->head_dim || bc->d_ff != c->d_ff ||
        bc->vocab_size != c->vocab_size || strcmp(bc->arch, c->arch))
        return err_set(err, ERR_INVALID,
                       "the adapter's base (%s, %d layers, d_model %d, d_ff %d, vocabulary %d) does not match the model "
                       "(%s, %d layers, d_model %d, d_ff %d, vocabulary %d)",
                       c->arch, c->n_layer, c->d_model, c->d_ff, c->vocab_size, bc->arch, bc->n_layer, bc->d_model,
                       bc->d_ff, bc->vocab_size);
    if (m->shard.tp_size > 1 || base->shard.tp_size > 1 || m->shard.layer1 - m->shard.layer0 != c->n_layer)
        return err_set(err, ERR_UNSUPPORTED, "LoRA runs on one whole model (no tensor or pipeline parallelism)");
    free(m->lora_links);
    m->lora_links = calloc((size_t)(m->n_tensors / 2 + 1), sizeof *m->lora_links);
    if (!m->lora_links) return err_set(err, ERR_NOMEM, "out of memory");
    m->n_lora_links = 0;
    /* m's forward runs on base's weights */
    if (!m->layers && !(m->layers = calloc((size_t)c->n_layer, sizeof *m->layers)))
        return err_set(err, ERR_NOMEM, "out of memory");
    memcpy(m->layers, base->layers, (size_t)c->n_layer * sizeof *m->layers);
    m->tok_emb = base->tok_emb;
    m->pos_emb = base->pos_emb;
    m->out_norm = base->out_norm;
    m->out_norm_b = base->out_norm_b;
    m->lm_head = base->lm_head;
    for (int i = 0; i < m->n_tensors; i++) {
        Tensor *a = &m->tensors[i];
        size_t n = strlen(a->name);
        if (n < 8 || strcmp(a->name + n - 7, ".lora_a")) continue;
        char wname[48], bname[64];
        snprintf(wname, sizeof wname, "%.*s", (int)(n - 7), a->name);
        snprintf(bname, sizeof bname, "%s.lora_b", wname);
        Tensor *w = find_tensor(base, wname), *b = find_tensor(m, bname);
        if (!w) return err_set(err, ERR_INVALID, "adapter tensor %s has no base weight %s in the model", a->name, wname);
        if (!b) return err_set(err, ERR_INVALID, "adapter tensor %s has no %s", a->name, bname);
        if (w->ndim != 2 || a->shape[1] != w->shape[1] || b->shape[0] != w->shape[0] || a->shape[0] != b->shape[1])
            return err_set(err, ERR_INVALID,
                           "adapter %s (%lld x %lld) / %s (%lld x %lld) does not fit the base weight %s (%lld x %lld)",
                           a->name, (long long)a->shape[0], (long long)a->shape[1], b->name, (long long)b->shape[0],
                           (long long)b->shape[1], wname, (long long)w->shape[0], (long long)w->shape[1]);
        if (w->grad) return err_set(err, ERR_INVALID, "base weight %s trains: LoRA needs a frozen base", wname);
        LoraLink *k = &m->lora_links[m->n_lora_links++];
        k->a = a;
        k->b = b;
        k->r = (int)a->shape[0];
        k->scale = c->lora_alpha / (float)k->r * run_scale;
        k->id = m->n_lora_links - 1;
        k->drop = &m->lora_drop;
        w->lora = k;
    }
    m->lora_r = base->lora_r = c->lora_rank;
    m->lora_drop = (LoraDropout){.p = c->lora_dropout};
    return 0;
}

void model_lora_dropout_pass(Model *m, uint64_t seed, uint64_t batch, int row0, int T) {
    LoraDropout *d = &m->lora_drop;
    d->on = d->p > 0 && m->n_lora_links > 0;
    d->seed = seed;
    d->batch = batch;
    d->tok0 = (uint64_t)row0 * (uint64_t)T;
}

void model_lora_dropout_off(Model *m) { m->lora_drop.on = 0; }
