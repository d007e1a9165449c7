/* The forward and backward passes of the transformer. One block function
 * serves training (keys/values of the batch itself) and inference (keys and
 * values appended to a KV cache); see model.h for the architecture. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quant.h"
#include "kernels/vmath.h"
#include "model_internal.h"


static const float *F(const Tensor *t) { return t ? (const float *)t->data : NULL; }
static float *G(const Tensor *t) { return t ? t->grad : NULL; }

/* out = in W^T + b, plus W's LoRA adapter when it carries one (lora.c). */
static int linear(float *out, const float *in, const Tensor *w, const Tensor *b, int M) {
    return linear_forward(out, in, w, b, M);
}

static void norm_forward(const Config *c, float *out, float *mean, float *rstd, const float *x, const Tensor *w,
                         const Tensor *b, int N) {
    if (c->norm == NORM_LAYERNORM)
        layernorm_forward(out, mean, rstd, x, F(w), F(b), N, c->d_model, c->norm_eps);
    else
        rmsnorm_forward(out, rstd, x, F(w), N, c->d_model, c->norm_eps);
}

static void norm_backward(const Config *c, float *dx, const Tensor *w, const Tensor *b, const float *dout,
                          const float *x, const float *mean, const float *rstd, int N) {
    if (c->norm == NORM_LAYERNORM)
        layernorm_backward(dx, G(w), G(b), dout, x, F(w), mean, rstd, N, c->d_model);
    else
        rmsnorm_backward(dx, G(w), dout, x, F(w), rstd, N, c->d_model);
}

/* Sum a partial result over the tensor-parallel group (no-op when tp = 1). */
static int tp_reduce(Model *m, float *buf, size_t n, Err *err) {
    if (m->shard.tp_size == 1) return 0;
    return comm_allreduce_sum(m->shard.tp, buf, n, err);
}

/* Row-parallel layers add their bias once: on tensor-parallel rank 0. */
static const Tensor *row_bias(const Model *m, const Tensor *b) { return m->shard.tp_rank == 0 ? b : NULL; }

static void add_inplace(float *y, const float *x, size_t n) {
#pragma omp parallel for simd
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* Embedding rows of any dtype (f32 directly; others dequantised per row). */
static int embed(Model *m, float *out, const int32_t *tokens, int B, int T, int pos0, Err *err) {
    const Config *c = &m->cfg;
    const int C = c->d_model;
    for (int i = 0; i < B * T; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return err_set(err, ERR_INVALID, "token id %d at position %d is outside the vocabulary (size %d)",
                           tokens[i], i, c->vocab_size);
    if (pos0 + T > c->context_length && c->pos == POS_LEARNED)
        return err_set(err, ERR_INVALID, "position %d is beyond context_length %d", pos0 + T, c->context_length);
    if (m->shard.tp_size > 1) {
        /* vocabulary parallel: rows this rank holds, zeros elsewhere, summed */
        const int v0 = (int)m->tok_emb->start[0], nv = (int)m->tok_emb->shape[0];
#pragma omp parallel for
        for (int i = 0; i < B * T; i++) {
            float *o = out + (size_t)i * C;
            int t = tokens[i] - v0;
            if (t >= 0 && t < nv)
                memcpy(o, F(m->tok_emb) + (size_t)t * C, (size_t)C * sizeof(float));
            else
                memset(o, 0, (size_t)C * sizeof(float));
        }
        int rc = tp_reduce(m, out, (size_t)B * T * C, err);
        if (rc) return rc;
        if (m->pos_emb)
            for (int i = 0; i < B * T; i++) add_inplace(out + (size_t)i * C, F(m->pos_emb) + (size_t)(pos0 + i % T) * C, (size_t)C);
        return 0;
    }
    if (m->tok_emb->dtype == DT_F32) {
        embedding_forward(out, tokens, F(m->tok_emb), F(m->pos_emb), B, T, C, pos0);
        return 0;
    }
    const int dt = m->tok_emb->dtype;
    const int r16 = dt == DT_Q4_0_R16 || dt == DT_Q5_0_R16 || dt == DT_Q8_0_R16; /* a repacked tied head (infer_model_repack) */
    size_t rb = dtype_row_bytes(dt, C);
    if (rb == 0) return err_set(err, ERR_UNSUPPORTED, "embedding type %s", dtype_name(dt));
    for (int i = 0; i < B * T; i++) {
        int rc = r16 ? quant_r16_dequantize_row(dt, m->tok_emb->data, tokens[i], C, out + (size_t)i * C)
                     : dequantize_row(dt, (const char *)m->tok_emb->data + (size_t)tokens[i] * rb, out + (size_t)i * C, C);
        if (rc) return err_set(err, rc, "embedding type %s", dtype_name(m->tok_emb->dtype));
        if (m->pos_emb) add_inplace(out + (size_t)i * C, F(m->pos_emb) + (size_t)(pos0 + i % T) * C, (size_t)C);
    }
    return 0;
}

/* The kernels a block runs: jarip's own (NATIVE_OPS: training, and inference
 * of any shape), or llama.cpp's numerics (LLAMACPP_OPS, below: GGUF inference
 * of Llama-shaped models, so greedy output equals llama.cpp's token for token).
 * One block function, block_forward, runs either. */
typedef struct {
    void (*norm)(const Model *m, float *out, float *mean, float *rstd, const float *x, const Tensor *w,
                 const Tensor *b, int N);
    /* out[i] = in W[i]^T + b[i] for i < n weights sharing the input */
    int (*linears)(const float *in, int M, const Tensor *const *w, const Tensor *const *b, float *const *out, int n);
    void (*rope)(float *x, int B, int T, int H, int D, int pos0, float theta, int neox);
    /* k, v: float, or IEEE half when kv_dtype is DT_F16 (an F16 KV cache) */
    int (*attention)(float *out, float *att, const float *q, const void *k, const void *v, int kv_dtype, int B, int T,
                     int S, int pos0, int Hq, int Hkv, int D);
    int (*ffn)(Model *m, int l, const float *x, float *out, int N, Err *err);
    void (*add)(float *y, const float *x, size_t n);
    /* attention may run for different sequences on different threads at once
     * (it keeps no scratch shared between calls) */
    int seq_parallel;
} BlockOps;

static void native_norm(const Model *m, float *out, float *mean, float *rstd, const float *x, const Tensor *w,
                        const Tensor *b, int N) {
    norm_forward(&m->cfg, out, mean, rstd, x, w, b, N);
}

static int native_linears(const float *in, int M, const Tensor *const *w, const Tensor *const *b, float *const *out,
                          int n) {
    for (int i = 0; i < n; i++) {
        int rc = linear(out[i], in, w[i], b[i], M);
        if (rc) return rc;
    }
    return 0;
}

static int native_attention(float *out, float *att, const float *q, const void *k, const void *v, int kv_dtype, int B,
                            int T, int S, int pos0, int Hq, int Hkv, int D) {
    if (kv_dtype == DT_F16) return attention_forward_kv16(out, q, k, v, T, S, pos0, Hq, Hkv, D); /* inference: B = 1 */
    attention_forward(out, att, q, k, v, B, T, S, pos0, Hq, Hkv, D);
    return 0;
}

/* not seq_parallel: attention_forward of an f32 cache writes the shared att */
static const BlockOps NATIVE_OPS = {native_norm, native_linears, rope_forward, native_attention, ffn_forward,
                                    add_inplace, 0};

/* RoPE, the cache append and attention of sequence sq, whose rows start at
 * row of the layer's q/k/v (rows of QD/KVD) and atty (rows of QD). Touches
 * only those rows and sq's cache, so sequences may run on different threads
 * when ops->seq_parallel. */
static int attend_one(Model *m, const BlockOps *ops, int l, const SeqSpan *sq, int row) {
    const Config *c = &m->cfg;
    const Activations *a = &m->act;
    const int tp = m->shard.tp_size, D = c->head_dim, Hq = c->n_head / tp, Hkv = c->n_kv_head / tp;
    const int KVD = Hkv * D, QD = Hq * D;
    KVCache *kv = sq->kv;
    const int n = sq->n, pos0 = kv->len;
    float *q = a->q[l] + (size_t)row * QD, *k = a->k[l] + (size_t)row * KVD, *v = a->v[l] + (size_t)row * KVD;
    if (c->pos == POS_ROPE) {
        ops->rope(q, 1, n, Hq, D, pos0, c->rope_theta, c->rope_neox);
        ops->rope(k, 1, n, Hkv, D, pos0, c->rope_theta, c->rope_neox);
    }
    const size_t layer = (size_t)l * kv->ctx * KVD, at = layer + (size_t)pos0 * KVD, nkv = (size_t)n * KVD;
    const void *kbuf, *vbuf;
    if (kv->dtype == DT_F16) {
        kv_store_f16((uint16_t *)kv->k + at, k, nkv);
        kv_store_f16((uint16_t *)kv->v + at, v, nkv);
        kbuf = (const uint16_t *)kv->k + layer;
        vbuf = (const uint16_t *)kv->v + layer;
    } else {
        memcpy((float *)kv->k + at, k, nkv * sizeof(float));
        memcpy((float *)kv->v + at, v, nkv * sizeof(float));
        kbuf = (const float *)kv->k + layer;
        vbuf = (const float *)kv->v + layer;
    }
    return ops->attention(a->atty[l] + (size_t)row * QD, a->att[l], q, kbuf, vbuf, kv->dtype, 1, n, kv->ctx, pos0, Hq,
                          Hkv, D);
}

/* attend_one for every sequence of a batched step. A decoding row's
 * attention is ~13 us of work (100 cached positions, SmolLM2's heads), too
 * small to split over threads (the kernel keeps it on one below ~450
 * positions), so the decoding rows (n == 1) are spread
 * over the threads, one sequence per task, when there are several and the
 * ops allow it; prompt chunks then run one at a time, each split over the
 * threads inside. Every sequence's arithmetic is the same either way: only
 * which thread computes it changes, not its bits. */
static int attend_seqs(Model *m, const BlockOps *ops, int l, const SeqSpan *seqs, int n_seqs, Err *err) {
    int *rows = malloc((size_t)n_seqs * sizeof *rows), n_dec = 0; /* (n_seqs) first row of each */
    if (!rows) return err_set(err, ERR_NOMEM, "out of memory");
    for (int i = 0, row = 0; i < n_seqs; row += seqs[i++].n) {
        rows[i] = row;
        n_dec += seqs[i].n == 1;
    }
    int failed = -1, rc = 0; /* the sequence whose attention failed, and its error */
    const int par = ops->seq_parallel && n_dec >= 2 && omp_get_max_threads() > 1 && !omp_in_parallel();
    if (par) {
#pragma omp parallel for schedule(dynamic, 1)
        for (int i = 0; i < n_seqs; i++) {
            int r = seqs[i].n == 1 ? attend_one(m, ops, l, &seqs[i], rows[i]) : 0;
            if (r) {
#pragma omp critical(attend_seqs_fail)
                failed = i, rc = r;
            }
        }
    }
    for (int i = 0; i < n_seqs && failed < 0; i++)
        if ((!par || seqs[i].n > 1) && (rc = attend_one(m, ops, l, &seqs[i], rows[i]))) failed = i;
    free(rows);
    if (failed < 0) return 0;
    return err_set(err, rc, "layer %d: attention scratch for %d positions", l, seqs[failed].kv->len + seqs[failed].n);
}

/* One block on x (N,C); result in act.res_ffn[l].
 * seqs == NULL: training/eval, B sequences of T tokens at positions 0..T-1,
 * keys and values are the batch's own (S = T).
 * seqs != NULL: inference, N = the sum of seqs[i].n rows, sequence after
 * sequence; the norms, linears and FFN run over all N rows at once (M = N),
 * RoPE, the cache append and attention per sequence over its own cache. */
static int block_forward(Model *m, const BlockOps *ops, int l, const float *x, int B, int T, const SeqSpan *seqs,
                         int n_seqs, Err *err) {
    const Config *c = &m->cfg;
    const Activations *a = &m->act;
    const LayerWeights *w = &m->layers[l];
    const int tp = m->shard.tp_size;
    const int C = c->d_model, D = c->head_dim, Hq = c->n_head / tp, Hkv = c->n_kv_head / tp;
    int N = B * T, rc;
    if (seqs)
        for (int i = N = 0; i < n_seqs; i++) N += seqs[i].n;
    ops->norm(m, a->ln1[l], a->ln1_mean[l], a->ln1_rstd[l], x, w->attn_norm, w->attn_norm_b, N);
    const Tensor *qkv_w[3] = {w->wq, w->wk, w->wv}, *qkv_b[3] = {w->bq, w->bk, w->bv};
    float *const qkv_out[3] = {a->q[l], a->k[l], a->v[l]};
    if ((rc = ops->linears(a->ln1[l], N, qkv_w, qkv_b, qkv_out, 3)))
        return err_set(err, rc, "layer %d: no matmul kernel for weight type %s", l, dtype_name(w->wq->dtype));
    if (!seqs) {
        if (c->pos == POS_ROPE) {
            ops->rope(a->q[l], B, T, Hq, D, 0, c->rope_theta, c->rope_neox);
            ops->rope(a->k[l], B, T, Hkv, D, 0, c->rope_theta, c->rope_neox);
        }
        if ((rc = ops->attention(a->atty[l], a->att[l], a->q[l], a->k[l], a->v[l], DT_F32, B, T, T, 0, Hq, Hkv, D)))
            return err_set(err, rc, "layer %d: attention scratch for %d positions", l, T);
    }
    if (seqs && (rc = attend_seqs(m, ops, l, seqs, n_seqs, err))) return rc;
    const Tensor *wo[1] = {w->wo}, *bo[1] = {row_bias(m, w->bo)};
    float *const res_att[1] = {a->res_att[l]};
    if ((rc = ops->linears(a->atty[l], N, wo, bo, res_att, 1)))
        return err_set(err, rc, "layer %d: no matmul kernel for weight type %s", l, dtype_name(w->wo->dtype));
    if ((rc = tp_reduce(m, a->res_att[l], (size_t)N * C, err))) return rc;
    ops->add(a->res_att[l], x, (size_t)N * C);
    ops->norm(m, a->ln2[l], a->ln2_mean[l], a->ln2_rstd[l], a->res_att[l], w->ffn_norm, w->ffn_norm_b, N);
    if ((rc = ops->ffn(m, l, a->ln2[l], a->res_ffn[l], N, err))) return rc;
    ops->add(a->res_ffn[l], a->res_att[l], (size_t)N * C);
    return 0;
}

/* Vocabulary-parallel cross-entropy (tp > 1): logits (N, V/tp) per rank; the
 * softmax statistics are combined over the group, so the loss equals the one
 * of the whole vocabulary. Saves the row max and sum for backward. */
static int ce_forward_tp(Model *m, const int32_t *targets, int N, double *mean, int *count, Err *err) {
    Activations *a = &m->act;
    const int Vl = (int)m->lm_head->shape[0], v0 = (int)m->lm_head->start[0], tp = m->shard.tp_size;
    float *mx = a->ce_max, *sum = a->ce_sum, *zt = a->losses;
    float *all = a->ce_gather; /* (tp, N) */
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        mx[i] = vec_max(a->logits + (size_t)i * Vl, Vl);
    }
    int rc = comm_allgather(m->shard.tp, mx, all, (size_t)N, err);
    if (rc) return rc;
    for (int i = 0; i < N; i++)
        for (int r = 0; r < tp; r++) mx[i] = all[(size_t)r * N + i] > mx[i] ? all[(size_t)r * N + i] : mx[i];
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float *z = a->logits + (size_t)i * Vl;
        sum[i] = vec_exp_sum(NULL, z, mx[i], 1.0f, Vl);
        int t = targets[i] - v0;
        zt[i] = (targets[i] >= 0 && t >= 0 && t < Vl) ? z[t] : 0.0f;
    }
    if ((rc = tp_reduce(m, sum, (size_t)N, err)) || (rc = tp_reduce(m, zt, (size_t)N, err))) return rc;
    double total = 0.0;
    int n = 0;
    for (int i = 0; i < N; i++) {
        if (targets[i] < 0) {
            a->losses[i] = 0.0f;
            continue;
        }
        a->losses[i] = logf(sum[i]) + mx[i] - zt[i];
        total += a->losses[i];
        n++;
    }
    *mean = n ? total / n : 0.0;
    *count = n;
    return 0;
}

static void ce_backward_tp(Model *m, const int32_t *targets, int N, float scale) {
    Activations *a = &m->act;
    const int Vl = (int)m->lm_head->shape[0], v0 = (int)m->lm_head->start[0];
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        float *z = a->logits + (size_t)i * Vl;
        if (targets[i] < 0) {
            memset(z, 0, (size_t)Vl * sizeof(float));
            continue;
        }
        vec_exp_sum(z, z, a->ce_max[i], scale / a->ce_sum[i], Vl);
        int t = targets[i] - v0;
        if (t >= 0 && t < Vl) z[t] -= scale;
    }
}

/* Tell the owner of the weights (ZeRO-3) that layer's weights are needed / done. */
static int hook(Model *m, int layer, int acquire, Err *err) {
    return m->weights_hook ? m->weights_hook(m->hook_ctx, m, layer, acquire, err) : 0;
}

int model_forward_stage(Model *m, const int32_t *tokens, const float *x_in, int B, int T, Err *err) {
    const Config *c = &m->cfg;
    Activations *a = &m->act;
    if (!a->mem || !a->training || B > a->B || T > a->T)
        return err_set(err, ERR_INVALID, "model_forward: batch %dx%d exceeds the planned %dx%d (training plan)", B, T, a->B, a->T);
    const ModelShard *s = &m->shard;
    int rc;
    m->aux_loss = 0.0;
    a->cur_B = B;
    a->cur_T = T;
    if ((rc = hook(m, -1, 1, err))) return rc;
    if (s->first) {
        if ((rc = embed(m, a->embed, tokens, B, T, 0, err))) return rc;
    } else {
        if (!x_in) return err_set(err, ERR_INVALID, "a later pipeline stage needs the previous stage's output");
        memcpy(a->embed, x_in, (size_t)B * T * c->d_model * sizeof(float));
    }
    const float *x = a->embed;
    for (int l = s->layer0; l < s->layer1; l++) {
        if ((rc = hook(m, l, 1, err)) || (rc = block_forward(m, &NATIVE_OPS, l, x, B, T, NULL, 0, err)) || (rc = hook(m, l, 0, err)))
            return rc;
        x = a->res_ffn[l];
    }
    return 0;
}

const float *model_stage_output(const Model *m) {
    const ModelShard *s = &m->shard;
    return s->layer1 > s->layer0 ? m->act.res_ffn[s->layer1 - 1] : m->act.embed;
}

int model_stage_loss(Model *m, const int32_t *targets, int B, int T, double *loss, Err *err) {
    const Config *c = &m->cfg;
    Activations *a = &m->act;
    const int N = B * T, V = c->vocab_size;
    norm_forward(c, a->lnf, a->lnf_mean, a->lnf_rstd, model_stage_output(m), m->out_norm, m->out_norm_b, N);
    if (linear(a->logits, a->lnf, m->lm_head, NULL, N))
        return err_set(err, ERR_UNSUPPORTED, "output weight type %s", dtype_name(m->lm_head->dtype));
    if (!targets) {
        *loss = 0.0;
        return 0;
    }
    for (int i = 0; i < N; i++)
        if (targets[i] >= V)
            return err_set(err, ERR_INVALID, "target id %d at position %d is outside the vocabulary (size %d)", targets[i], i, V);
    int count = 0;
    double ce = 0.0;
    if (m->shard.tp_size > 1) {
        int rc = ce_forward_tp(m, targets, N, &ce, &count, err);
        if (rc) return rc;
    } else {
        ce = crossentropy_forward(a->losses, a->ce_max, a->logits, targets, N, V, &count);
    }
    *loss = ce;
    return 0;
}

float model_forward(Model *m, const int32_t *tokens, const int32_t *targets, int B, int T, Err *err) {
    double loss = 0.0;
    if (model_forward_stage(m, tokens, NULL, B, T, err) || model_stage_loss(m, targets, B, T, &loss, err)) return NAN;
    return targets ? (float)(loss + m->aux_loss) : 0.0f;
}

static int backward_fail(Err *err, int rc, int l, const Tensor *w) {
    return err_set(err, rc, "layer %d: backward through weight type %s", l, dtype_name(w->dtype));
}

int model_backward_stage(Model *m, const int32_t *tokens, const int32_t *targets, const float *d_out, float loss_scale,
                         Err *err) {
    const Config *c = &m->cfg;
    Activations *a = &m->act;
    const ModelShard *s = &m->shard;
    const int tp = s->tp_size;
    const int B = a->cur_B, T = a->cur_T, N = B * T, C = c->d_model;
    const int D = c->head_dim, Hq = c->n_head / tp, Hkv = c->n_kv_head / tp, QD = Hq * D, KVD = Hkv * D;
    int rc;
    if (s->last) {
        const int Vl = (int)m->lm_head->shape[0];
        int count = 0;
        for (int i = 0; i < N; i++) count += targets[i] >= 0;
        float scale = count ? loss_scale / count : 0.0f;
        /* logits buffer becomes dlogits: it is not needed after this point */
        if (tp > 1)
            ce_backward_tp(m, targets, N, scale);
        else
            crossentropy_backward(a->logits, a->logits, a->ce_max, targets, N, Vl, scale);
        memset(a->d_ln, 0, (size_t)N * C * sizeof(float));
        if ((rc = linear_backward(a->d_ln, a->logits, a->lnf, m->lm_head, NULL, N)))
            return err_set(err, rc, "backward through the output weight (type %s)", dtype_name(m->lm_head->dtype));
        if ((rc = tp_reduce(m, a->d_ln, (size_t)N * C, err))) return rc;
        memset(a->d_res, 0, (size_t)N * C * sizeof(float));
        norm_backward(c, a->d_res, m->out_norm, m->out_norm_b, a->d_ln, model_stage_output(m), a->lnf_mean, a->lnf_rstd, N);
    } else {
        memcpy(a->d_res, d_out, (size_t)N * C * sizeof(float));
    }
    for (int l = s->layer1 - 1; l >= s->layer0; l--) {
        const LayerWeights *w = &m->layers[l];
        const float *x = l > s->layer0 ? a->res_ffn[l - 1] : a->embed;
        if ((rc = hook(m, l, 1, err))) return rc;
        /* FFN half: res_ffn = res_att + ffn(norm(res_att)) */
        memset(a->d_ln, 0, (size_t)N * C * sizeof(float));
        if ((rc = ffn_backward(m, l, a->ln2[l], a->d_res, a->d_ln, N, loss_scale, err))) return rc;
        if ((rc = tp_reduce(m, a->d_ln, (size_t)N * C, err))) return rc;
        norm_backward(c, a->d_res, w->ffn_norm, w->ffn_norm_b, a->d_ln, a->res_att[l], a->ln2_mean[l], a->ln2_rstd[l], N);
        /* attention half: res_att = x + proj(attention(q, k, v)) */
        memset(a->d_atty, 0, (size_t)N * QD * sizeof(float));
        if ((rc = linear_backward(a->d_atty, a->d_res, a->atty[l], w->wo, w->bo, N))) return backward_fail(err, rc, l, w->wo);
        memset(a->d_q, 0, (size_t)N * QD * sizeof(float));
        memset(a->d_k, 0, (size_t)N * KVD * sizeof(float));
        memset(a->d_v, 0, (size_t)N * KVD * sizeof(float));
        attention_backward(a->d_q, a->d_k, a->d_v, a->d_atty, a->att[l], a->q[l], a->k[l], a->v[l], B, T, Hq, Hkv, D,
                           a->d_att);
        if (c->pos == POS_ROPE) {
            rope_backward(a->d_q, B, T, Hq, D, 0, c->rope_theta, c->rope_neox);
            rope_backward(a->d_k, B, T, Hkv, D, 0, c->rope_theta, c->rope_neox);
        }
        memset(a->d_ln, 0, (size_t)N * C * sizeof(float));
        if ((rc = linear_backward(a->d_ln, a->d_q, a->ln1[l], w->wq, w->bq, N))) return backward_fail(err, rc, l, w->wq);
        if ((rc = linear_backward(a->d_ln, a->d_k, a->ln1[l], w->wk, w->bk, N))) return backward_fail(err, rc, l, w->wk);
        if ((rc = linear_backward(a->d_ln, a->d_v, a->ln1[l], w->wv, w->bv, N))) return backward_fail(err, rc, l, w->wv);
        if ((rc = tp_reduce(m, a->d_ln, (size_t)N * C, err))) return rc;
        norm_backward(c, a->d_res, w->attn_norm, w->attn_norm_b, a->d_ln, x, a->ln1_mean[l], a->ln1_rstd[l], N);
        if ((rc = hook(m, l, 0, err))) return rc;
    }
    if (s->first) {
        if (tp > 1) {
            const int v0 = (int)m->tok_emb->start[0], nv = (int)m->tok_emb->shape[0];
            float *g = G(m->tok_emb);
            for (int i = 0; i < N; i++) {
                int t = tokens[i] - v0;
                if (t < 0 || t >= nv) continue;
                const float *d = a->d_res + (size_t)i * C;
                float *gr = g + (size_t)t * C;
                for (int j = 0; j < C; j++) gr[j] += d[j];
            }
            if (m->pos_emb) embedding_backward(NULL, G(m->pos_emb), a->d_res, tokens, B, T, C);
        } else {
            embedding_backward(G(m->tok_emb), G(m->pos_emb), a->d_res, tokens, B, T, C);
        }
    }
    return hook(m, -1, 0, err);
}

void model_backward(Model *m, const int32_t *tokens, const int32_t *targets, float loss_scale) {
    memset(&m->comm_err, 0, sizeof m->comm_err);
    model_backward_stage(m, tokens, targets, NULL, loss_scale, &m->comm_err);
}

int kvcache_create(KVCache *kv, const Config *c, int ctx, int dtype, Err *err) {
    memset(kv, 0, sizeof *kv);
    if (ctx <= 0 || ctx > c->context_length)
        return err_set(err, ERR_INVALID, "KV cache length %d must be in 1..%d", ctx, c->context_length);
    if (dtype != DT_F32 && dtype != DT_F16)
        return err_set(err, ERR_INVALID, "KV cache type %s: only f32 and f16 are supported",
                       dtype_name(dtype) ? dtype_name(dtype) : "(unknown)");
    kv->ctx = ctx;
    kv->kv_dim = c->n_kv_head * c->head_dim;
    kv->n_layer = c->n_layer;
    kv->dtype = dtype;
    const size_t n = (size_t)c->n_layer * ctx * kv->kv_dim, esz = dtype == DT_F16 ? sizeof(uint16_t) : sizeof(float);
    /* calloc, not xalloc: large blocks come zeroed from the kernel and are
     * touched only as positions fill, so a cache sized for the whole context
     * costs resident memory for the positions used (xalloc memsets all). */
    kv->k = calloc(n, esz);
    kv->v = kv->k ? calloc(n, esz) : NULL;
    if (!kv->v) {
        kvcache_free(kv);
        return err_set(err, ERR_NOMEM, "out of memory for a KV cache of %d positions (%zu bytes)", ctx, 2 * n * esz);
    }
    return 0;
}

void kvcache_free(KVCache *kv) {
    free(kv->k);
    free(kv->v);
    memset(kv, 0, sizeof *kv);
}

/* ---- inference with llama.cpp's numerics -----------------------------------
 * For Llama-shaped models (RMSNorm, RoPE, dense SwiGLU, one rank) the cached
 * forward computes every operation as llama.cpp's CPU backend does
 * (kernels/quant_llamacpp.c) and the quantized matmuls with 8-bit
 * activations for every batch size, so a GGUF model gives llama.cpp's logits
 * bit for bit and its greedy tokens (LLAMACPP_OPS). Other shapes run
 * NATIVE_OPS; both through block_forward. */
static int lcpp_shaped(const Model *m) {
    const Config *c = &m->cfg;
    return c->norm == NORM_RMSNORM && c->pos == POS_ROPE && c->act == ACT_SWIGLU && c->n_expert <= 1 &&
           m->shard.tp_size == 1 && lcpp_attention_ok(c->head_dim) && c->n_head % c->n_kv_head == 0;
}

int model_infer_llamacpp(const Model *m) { return lcpp_shaped(m); }

/* Matmul of inference: weight types whose dot products reproduce
 * llama.cpp's (quant_matches_llamacpp) dot 8-bit activations for every M,
 * as llama.cpp does, and so do types whose integer 4x2 kernels beat the GEMM
 * on this CPU (quant_batch_dots_fast); the others keep dequantize + GEMM for
 * prompts, their results being close to llama.cpp's but not identical anyway. */
static int linear_infer_f(float *out, const float *in, const Tensor *w, const Tensor *b, int M, int rows_exact) {
    if (!quant_matches_llamacpp(w->dtype) && !quant_batch_dots_fast(w->dtype) && !rows_exact) return linear(out, in, w, b, M);
    const int N = (int)w->shape[0], K = (int)w->shape[1];
    int rc = matmul_quant_forward_ex(out, in, w->data, w->dtype, M, N, K, QMM_Q8_ACTIVATIONS);
    if (rc == ERR_UNSUPPORTED && rows_exact) return linear(out, in, w, b, M); /* a type without a dot kernel (f32) */
    if (rc) return rc;
    if (b)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) out[(size_t)i * N + j] += F(b)[j];
    lora_forward(out, in, w, M); /* a run-time adapter, after the base as llama.cpp adds it */
    return 0;
}

/* One input through up to QMM_MAX_PARTS weights (q/k/v, gate/up): one
 * quantization of the input and one parallel region when the weights share
 * a block or half type and have no bias (types that match llama.cpp take
 * 8-bit activations at every M, the others the GEMM path for prompts, as
 * linear_infer); else one at a time. rows_exact: every type takes the dot
 * kernels at every M, whose rows do not depend on M (batch invariance;
 * the GEMM path and the f32 matmul of a lone weight do). */
static int linear_infer_multi_f(const float *in, int M, const Tensor *const *w, const Tensor *const *b, float *const *out,
                                int n, int rows_exact) {
    if (n == 1) return linear_infer_f(out[0], in, w[0], b[0], M, rows_exact);
    const int exact = quant_matches_llamacpp(w[0]->dtype) || quant_batch_dots_fast(w[0]->dtype) || rows_exact;
    int joint = n <= QMM_MAX_PARTS && w[0]->dtype != DT_F32;
    for (int i = 0; i < n; i++) joint = joint && w[i]->dtype == w[0]->dtype && !b[i] && w[i]->shape[1] == w[0]->shape[1];
    if (joint) {
        QMMPart parts[QMM_MAX_PARTS];
        for (int i = 0; i < n; i++) parts[i] = (QMMPart){out[i], w[i]->data, (int)w[i]->shape[0]};
        int rc = matmul_quant_forward_multi(in, w[0]->dtype, M, (int)w[0]->shape[1], parts, n, exact ? QMM_Q8_ACTIVATIONS : 0);
        if (!rc)
            for (int i = 0; i < n; i++) lora_forward(out[i], in, w[i], M);
        if (rc != ERR_UNSUPPORTED) return rc; /* else: a type without a dot kernel, one at a time below */
    }
    for (int i = 0; i < n; i++) {
        int rc = linear_infer_f(out[i], in, w[i], b[i], M, rows_exact);
        if (rc) return rc;
    }
    return 0;
}

static int linear_infer_multi(const float *in, int M, const Tensor *const *w, const Tensor *const *b, float *const *out,
                              int n) {
    return linear_infer_multi_f(in, M, w, b, out, n, 0);
}

static int linear_rows_multi(const float *in, int M, const Tensor *const *w, const Tensor *const *b, float *const *out,
                             int n) {
    return linear_infer_multi_f(in, M, w, b, out, n, 1);
}

/* y += x without a fork for the few hundred values of a decoding step. */
static void add_infer(float *y, const float *x, size_t n) {
#pragma omp parallel for simd if (n >= 65536)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

static void lcpp_norm(const Model *m, float *out, float *mean, float *rstd, const float *x, const Tensor *w,
                      const Tensor *b, int N) {
    (void)mean, (void)rstd, (void)b; /* RMSNorm only (lcpp_shaped) */
    lcpp_rmsnorm(out, x, F(w), N, m->cfg.d_model, m->cfg.norm_eps);
}

static void lcpp_rope_ops(float *x, int B, int T, int H, int D, int pos0, float theta, int neox) {
    (void)B; /* inference: one sequence */
    lcpp_rope(x, T, H, D, pos0, theta, neox);
}

static int lcpp_attention_ops(float *out, float *att, const float *q, const void *k, const void *v, int kv_dtype, int B,
                              int T, int S, int pos0, int Hq, int Hkv, int D) {
    (void)att, (void)B, (void)S; /* inference: one sequence over the cache */
    if (kv_dtype == DT_F16) return lcpp_attention_f16(out, q, k, v, T, pos0, Hq, Hkv, D);
    return lcpp_attention(out, q, k, v, T, pos0, Hq, Hkv, D);
}

/* Dense SwiGLU FFN: up and gate in one call, llama.cpp's SiLU, down. */
static int lcpp_ffn_f(Model *m, int l, const float *x, float *out, int N, int rows_exact, Err *err) {
    const Activations *a = &m->act;
    const LayerWeights *w = &m->layers[l];
    const Tensor *ug_w[2] = {w->w_up, w->w_gate}, *ug_b[2] = {w->b_up, NULL};
    float *const ug_out[2] = {a->ffn_h[l], a->ffn_g[l]};
    int rc = linear_infer_multi_f(x, N, ug_w, ug_b, ug_out, 2, rows_exact);
    if (rc) return err_set(err, rc, "layer %d: no matmul kernel for weight type %s", l, dtype_name(w->w_up->dtype));
    lcpp_swiglu(a->ffn_a[l], a->ffn_g[l], a->ffn_h[l], (size_t)N * m->cfg.d_ff);
    const Tensor *dw[1] = {w->w_down}, *db[1] = {w->b_down};
    float *const o[1] = {out};
    if ((rc = linear_infer_multi_f(a->ffn_a[l], N, dw, db, o, 1, rows_exact)))
        return err_set(err, rc, "layer %d: no matmul kernel for weight type %s", l, dtype_name(w->w_down->dtype));
    return 0;
}

static int lcpp_ffn(Model *m, int l, const float *x, float *out, int N, Err *err) { return lcpp_ffn_f(m, l, x, out, N, 0, err); }

static int lcpp_ffn_rows(Model *m, int l, const float *x, float *out, int N, Err *err) {
    return lcpp_ffn_f(m, l, x, out, N, 1, err);
}

static const BlockOps LLAMACPP_OPS = {lcpp_norm, linear_infer_multi, lcpp_rope_ops, lcpp_attention_ops, lcpp_ffn,
                                      add_infer, 1};
/* The same, every matmul row computed as if alone (FWD_ROWS_EXACT). */
static const BlockOps LLAMACPP_ROWS_OPS = {lcpp_norm, linear_rows_multi, lcpp_rope_ops, lcpp_attention_ops, lcpp_ffn_rows,
                                           add_infer, 1};

/* The blocks of a batched inference step: checks, embeddings, every layer.
 * Leaves the rows (N, C) after the last block in *out and the ops used. */
static int batch_blocks(Model *m, const SeqSpan *seqs, int n_seqs, int flags, const float **out, const BlockOps **used,
                        Err *err) {
    const Config *c = &m->cfg;
    Activations *a = &m->act;
    const int C = c->d_model;
    int N = 0, rc;
    for (int i = 0; i < n_seqs; i++) {
        const KVCache *kv = seqs[i].kv;
        if (seqs[i].n <= 0 || !seqs[i].tokens)
            return err_set(err, ERR_INVALID, "model_forward_batch: sequence %d has no tokens", i);
        if (kv->len + seqs[i].n > kv->ctx)
            return err_set(err, ERR_INVALID, "context full: %d + %d tokens exceed the KV cache of %d", kv->len,
                           seqs[i].n, kv->ctx);
        for (int j = 0; j < i; j++)
            if (seqs[j].kv == kv) return err_set(err, ERR_INVALID, "model_forward_batch: sequences %d and %d share a cache", j, i);
        N += seqs[i].n;
    }
    if (!a->mem || a->training || a->B != 1 || N > a->T || n_seqs <= 0)
        return err_set(err, ERR_INVALID, "model_forward_batch: %d tokens in %d sequences exceed the planned inference chunk %d",
                       N, n_seqs, a->T);
    a->cur_B = 1;
    a->cur_T = N;
    for (int i = 0, row = 0; i < n_seqs; row += seqs[i++].n)
        if ((rc = embed(m, a->embed + (size_t)row * C, seqs[i].tokens, 1, seqs[i].n, seqs[i].kv->len, err))) return rc;
    const float *x = a->embed;
    const BlockOps *ops = !lcpp_shaped(m) ? &NATIVE_OPS : flags & FWD_ROWS_EXACT ? &LLAMACPP_ROWS_OPS : &LLAMACPP_OPS;
    for (int l = 0; l < c->n_layer; l++) {
        if ((rc = block_forward(m, ops, l, x, 1, N, seqs, n_seqs, err))) return rc;
        x = a->res_ffn[l];
    }
    *out = x, *used = ops;
    return 0;
}

int model_forward_batch(Model *m, const SeqSpan *seqs, int n_seqs, float *logits, int flags, Err *err) {
    Activations *a = &m->act;
    const int C = m->cfg.d_model;
    const float *x = NULL;
    const BlockOps *ops = NULL;
    int rc = batch_blocks(m, seqs, n_seqs, flags, &x, &ops, err);
    if (rc) return rc;
    /* the last row of each sequence through the final norm and the output
     * layer, all sequences in one product (M = n_seqs) */
    float *last = n_seqs == 1 ? a->lnf : malloc((size_t)n_seqs * C * sizeof(float));
    if (!last) return err_set(err, ERR_NOMEM, "out of memory");
    for (int i = 0, row = 0; i < n_seqs; i++) {
        row += seqs[i].n;
        ops->norm(m, last + (size_t)i * C, a->lnf_mean, a->lnf_rstd, x + (size_t)(row - 1) * C, m->out_norm,
                  m->out_norm_b, 1);
    }
    const Tensor *head[1] = {m->lm_head}, *nob[1] = {NULL};
    float *const lo[1] = {logits};
    rc = ops->linears(last, n_seqs, head, nob, lo, 1);
    if (last != a->lnf) free(last);
    if (rc) return err_set(err, rc, "output weight type %s", dtype_name(m->lm_head->dtype));
    for (int i = 0; i < n_seqs; i++) seqs[i].kv->len += seqs[i].n;
    return 0;
}

int model_forward_cached(Model *m, KVCache *kv, const int32_t *tokens, int n, float *logits, Err *err) {
    const SeqSpan one = {kv, tokens, n};
    return model_forward_batch(m, &one, 1, logits, 0, err);
}

int model_forward_batch_rows(Model *m, const SeqSpan *seqs, int n_seqs, const int *out0, float *logits, Err *err) {
    Activations *a = &m->act;
    const int C = m->cfg.d_model;
    int rows = 0;
    for (int i = 0; i < n_seqs; i++) {
        if (out0[i] < 0 || out0[i] > seqs[i].n)
            return err_set(err, ERR_INVALID, "model_forward_batch_rows: sequence %d: output rows from %d of %d", i,
                           out0[i], seqs[i].n);
        rows += seqs[i].n - out0[i];
    }
    const float *x = NULL;
    const BlockOps *ops = NULL;
    int rc = batch_blocks(m, seqs, n_seqs, 0, &x, &ops, err);
    if (rc) return rc;
    if (rows > 0) {
        /* the plan holds the final norm of one row; several rows go to the
         * first layer's norm buffers (N >= rows rows), dead once the last
         * block is done. Each sequence's rows, then one output product over
         * all of them (M = rows): only the rows asked for pay for the
         * vocabulary-wide projection. */
        float *lnf = rows > 1 ? a->ln1[0] : a->lnf, *mean = rows > 1 ? a->ln1_mean[0] : a->lnf_mean;
        float *rstd = rows > 1 ? a->ln1_rstd[0] : a->lnf_rstd;
        for (int i = 0, row = 0, r = 0; i < n_seqs; row += seqs[i++].n) {
            const int k = seqs[i].n - out0[i];
            if (k > 0)
                ops->norm(m, lnf + (size_t)r * C, mean + r, rstd + r, x + (size_t)(row + out0[i]) * C, m->out_norm,
                          m->out_norm_b, k);
            r += k;
        }
        const Tensor *head[1] = {m->lm_head}, *nob[1] = {NULL};
        float *const lo[1] = {logits};
        if ((rc = ops->linears(lnf, rows, head, nob, lo, 1)))
            return err_set(err, rc, "output weight type %s", dtype_name(m->lm_head->dtype));
    }
    for (int i = 0; i < n_seqs; i++) seqs[i].kv->len += seqs[i].n;
    return 0;
}

int model_forward_cached_rows(Model *m, KVCache *kv, const int32_t *tokens, int n, int out0, float *logits, Err *err) {
    const SeqSpan one = {kv, tokens, n};
    return model_forward_batch_rows(m, &one, 1, &out0, logits, err);
}
