/* bf16 mixed precision of the linear layers and the MoE experts (model.h,
 * "mixed precision"). Each product converts its float32 operands to
 * bfloat16 into scratch (the weights too: N*K conversions against 2*M*N*K
 * flops, so no second copy of the weights has to be kept in step with AdamW)
 * and runs a oneDNN bf16 GEMM planned once per shape (kernels.h, GemmBf16).
 * An expert's rows change every step, so its products are planned once with
 * the rows as a run-time dimension.
 *
 * The scratch is sized when both the precision and the activations are
 * known (scratch_elems), for the largest operand of any product, so a
 * step allocates nothing and the planner counts the same bytes
 * (model_bf16_scratch_bytes). */
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

typedef struct {
    int tA, tB, M, N, K, acc; /* M or K may be GEMM_BF16_ROWS */
    GemmBf16 g;
} Bf16Plan;

enum { BUF_IN, BUF_W, BUF_DOUT }; /* scratch: inputs (M,K), weights (N,K), output gradients (M,N) */

typedef struct Bf16Linear_ {
    Bf16Plan *plans;   /* one per shape seen, planned on first use */
    int n_plans, cap_plans;
    uint16_t *buf[3];  /* conversion scratch (BUF_*) */
    size_t cap[3];     /* elements of each */
    size_t peak[3];    /* most elements any product has used */
} Bf16Linear;

int precision_from_name(const char *name) {
    if (!strcmp(name, "fp32")) return PRECISION_FP32;
    if (!strcmp(name, "bf16")) return PRECISION_BF16;
    return -1;
}

const char *precision_name(int precision) { return precision == PRECISION_BF16 ? "bf16" : "fp32"; }

/* Make scratch i hold n elements (exactly n when it grows). */
static int reserve(Bf16Linear *b, int i, size_t n) {
    if (b->cap[i] >= n) return 0;
    xfree(b->buf[i]);
    b->buf[i] = n ? xalloc(n * sizeof(uint16_t), NULL) : NULL;
    b->cap[i] = b->buf[i] ? n : 0;
    return n && !b->buf[i] ? ERR_NOMEM : 0;
}

/* Scratch i with room for n values, converted from src. The planned size
 * covers every product; growing here is only a fallback. */
static const uint16_t *to_bf16(Bf16Linear *b, int i, const float *src, size_t n) {
    if (reserve(b, i, n)) return NULL;
    if (n > b->peak[i]) b->peak[i] = n;
    convert_f32_to_bf16(b->buf[i], src, n);
    return b->buf[i];
}

/* C (M,N) [+]= op(A) op(B) with A, B bf16 row-major as stored (lda/ldb
 * their row lengths). rows > 0: the plan is the one with M (tB, the
 * forward and input-gradient products) or K (tA, the weight gradient) a
 * run-time dimension, which is rows in this call. */
static int gemm(Bf16Linear *b, int tA, int tB, int M, int N, int K, const uint16_t *A, const uint16_t *B, float *C,
                int acc, int rows) {
    const int lda = tA ? M : K, ldb = tB ? K : N;
    if (rows) {
        if (tA) K = GEMM_BF16_ROWS;
        else M = GEMM_BF16_ROWS;
    }
    Bf16Plan *p = NULL;
    for (int i = 0; i < b->n_plans && !p; i++) {
        Bf16Plan *q = &b->plans[i];
        if (q->tA == tA && q->tB == tB && q->M == M && q->N == N && q->K == K && q->acc == acc) p = q;
    }
    if (!p) {
        if (b->n_plans == b->cap_plans) {
            int cap = b->cap_plans ? 2 * b->cap_plans : 16;
            Bf16Plan *np = realloc(b->plans, (size_t)cap * sizeof *np);
            if (!np) return ERR_NOMEM;
            b->plans = np, b->cap_plans = cap;
        }
        p = &b->plans[b->n_plans];
        *p = (Bf16Plan){tA, tB, M, N, K, acc, {0}};
        int rc = gemm_bf16_plan(&p->g, tA, tB, M, N, K, lda, ldb, N, acc, NULL);
        if (rc) return rc;
        b->n_plans++;
    }
    return rows ? gemm_bf16_run_rows(&p->g, rows, A, B, C) : gemm_bf16_run(&p->g, A, B, C);
}

/* out (M,N) = in (M,K) W^T (+ bias), W (N,K) float32; vary: M changes from
 * call to call (an expert's rows). */
static int product_forward(Bf16Linear *b, float *out, const float *in, const float *W, int N, int K,
                           const float *bias, int M, int vary) {
    const uint16_t *x = to_bf16(b, BUF_IN, in, (size_t)M * K), *wt = to_bf16(b, BUF_W, W, (size_t)N * K);
    if (!x || !wt) return ERR_NOMEM;
    if (bias) { /* the GEMM accumulates onto the bias, as the float32 path */
#pragma omp parallel for
        for (int i = 0; i < M; i++) memcpy(out + (size_t)i * N, bias, (size_t)N * sizeof(float));
    }
    return gemm(b, 0, 1, M, N, K, x, wt, out, bias != NULL, vary ? M : 0); /* out (M,N) = x (M,K) W^T */
}

/* dinp (M,K) += dout (M,N) W; dW (N,K) += dout^T inp; dbias (N) += column
 * sums of dout; any of the three NULL. */
static int product_backward(Bf16Linear *b, float *dinp, float *dW, float *dbias, const float *dout, const float *inp,
                            const float *W, int N, int K, int M, int vary) {
    const uint16_t *dy = to_bf16(b, BUF_DOUT, dout, (size_t)M * N);
    if (!dy) return ERR_NOMEM;
    int rc = 0;
    if (dinp) { /* dX (M,K) += dY (M,N) W (N,K) */
        const uint16_t *wt = to_bf16(b, BUF_W, W, (size_t)N * K);
        rc = wt ? gemm(b, 0, 0, M, K, N, dy, wt, dinp, 1, vary ? M : 0) : ERR_NOMEM;
    }
    if (!rc && dW) { /* dW (N,K) += dY^T (N,M) X (M,K) */
        const uint16_t *x = to_bf16(b, BUF_IN, inp, (size_t)M * K);
        rc = x ? gemm(b, 1, 0, N, K, M, dy, x, dW, 1, vary ? M : 0) : ERR_NOMEM;
    }
    if (!rc && dbias) matmul_backward(NULL, NULL, dbias, dout, NULL, NULL, M, N, K);
    return rc;
}

int bf16_linear_forward(Bf16Linear *b, float *out, const float *in, const Tensor *w, const float *bias, int M) {
    return product_forward(b, out, in, w->data, (int)w->shape[0], (int)w->shape[1], bias, M, 0);
}

int bf16_linear_backward(Bf16Linear *b, float *dinp, float *dW, float *dbias, const float *dout, const float *inp,
                         const Tensor *w, int M) {
    return product_backward(b, dinp, dW, dbias, dout, inp, w->data, (int)w->shape[0], (int)w->shape[1], M, 0);
}

int bf16_expert_forward(Bf16Linear *b, float *out, const float *in, const float *W, int N, int K, const float *bias,
                        int M) {
    return product_forward(b, out, in, W, N, K, bias, M, 1);
}

int bf16_expert_backward(Bf16Linear *b, float *dinp, float *dW, float *dbias, const float *dout, const float *inp,
                         const float *W, int N, int K, int M) {
    return product_backward(b, dinp, dW, dbias, dout, inp, W, N, K, M, 1);
}

/* Largest operand of any bf16 product, in elements per scratch (BUF_*),
 * for rows = B*T tokens of the local config lc. has[0..7]: whether q, k, v,
 * o, gate, up, down (stacked experts when lc has experts) and the head run
 * in bf16 (float32 weights). Expert products take at most rows * ep rows:
 * top-k picks an expert at most once per token, and under expert
 * parallelism every rank of the group may send each of its tokens. */
static void scratch_elems(const Config *lc, int ep, size_t rows, int training, const int has[8], size_t n[3]) {
    const size_t C = lc->d_model, F = lc->d_ff, V = lc->vocab_size;
    const size_t QD = (size_t)lc->n_head * lc->head_dim, KVD = (size_t)lc->n_kv_head * lc->head_dim;
    const size_t Rf = lc->n_expert ? rows * (size_t)ep : rows; /* rows of an FFN product */
    /* (rows, in, out) of each product, in has[] order */
    const size_t pr[8][3] = {{rows, C, QD}, {rows, C, KVD}, {rows, C, KVD}, {rows, QD, C},
                             {Rf, C, F},    {Rf, C, F},     {Rf, F, C},     {rows, C, V}};
    n[0] = n[1] = n[2] = 0;
    for (int i = 0; i < 8; i++) {
        if (!has[i]) continue;
        const size_t in = pr[i][0] * pr[i][1], w = pr[i][1] * pr[i][2], dout = pr[i][0] * pr[i][2];
        if (in > n[BUF_IN]) n[BUF_IN] = in;
        if (w > n[BUF_W]) n[BUF_W] = w;
        if (training && dout > n[BUF_DOUT]) n[BUF_DOUT] = dout;
    }
}

/* Whether a weight's products run in bf16: float32 matrices (a dense
 * weight, or stacked experts). */
static int runs_bf16(const Tensor *t) {
    return t && t->dtype == DT_F32 && (t->flags & PF_EXPERT ? t->ndim == 3 : t->ndim == 2);
}

size_t model_bf16_scratch_bytes(const Config *c, int B, int T, int training) {
    const int has[8] = {1, 1, 1, 1, c->act == ACT_SWIGLU, 1, 1, 1};
    size_t n[3];
    scratch_elems(c, 1, (size_t)B * T, training, has, n);
    return (n[0] + n[1] + n[2]) * sizeof(uint16_t);
}

/* The scratch for m's planned activations (no-op before they are, or in fp32). */
int model_precision_plan(Model *m, Err *err) {
    Bf16Linear *b = m->bf16;
    if (!b || m->act.B <= 0) return 0;
    const Config lc = model_local_config(&m->cfg, &m->shard);
    int has[8] = {0};
    for (int l = m->shard.layer0; l < m->shard.layer1 && m->layers; l++) {
        const LayerWeights *w = &m->layers[l];
        const Tensor *t[7] = {w->wq, w->wk, w->wv, w->wo, w->w_gate, w->w_up, w->w_down};
        for (int i = 0; i < 7; i++) has[i] |= t[i] && t[i]->bf16;
    }
    has[7] = m->lm_head && m->lm_head->bf16;
    size_t n[3];
    scratch_elems(&lc, m->shard.ep_size, (size_t)m->act.B * m->act.T, m->act.training, has, n);
    for (int i = 0; i < 3; i++) {
        if (b->cap[i] != n[i]) { /* exactly the planned size: the planner counts these bytes */
            xfree(b->buf[i]);
            b->buf[i] = NULL, b->cap[i] = 0;
        }
        if (reserve(b, i, n[i])) return err_set(err, ERR_NOMEM, "out of memory for the bf16 scratch (%zu values)", n[i]);
    }
    return 0;
}

size_t model_bf16_scratch_allocated(const Model *m, size_t *peak) {
    size_t n = 0, p = 0;
    for (int i = 0; m->bf16 && i < 3; i++) n += m->bf16->cap[i], p += m->bf16->peak[i];
    if (peak) *peak = p * sizeof(uint16_t);
    return n * sizeof(uint16_t);
}

static void bf16_free(Bf16Linear *b) {
    if (!b) return;
    for (int i = 0; i < b->n_plans; i++) gemm_bf16_free(&b->plans[i].g);
    free(b->plans);
    for (int i = 0; i < 3; i++) xfree(b->buf[i]);
    free(b);
}

void model_precision_free(Model *m) {
    for (int i = 0; i < m->n_tensors; i++) m->tensors[i].bf16 = NULL;
    bf16_free(m->bf16);
    m->bf16 = NULL;
    m->precision = PRECISION_FP32;
}

int model_set_precision(Model *m, int precision, Err *err) {
    model_precision_free(m);
    if (precision == PRECISION_FP32) return 0;
    if (precision != PRECISION_BF16) return err_set(err, ERR_INVALID, "unknown precision %d", precision);
    if (!gemm_bf16_available())
        return err_set(err, ERR_UNSUPPORTED,
                       "--precision bf16 needs native bf16 matrix units (AVX512-BF16 or AMX); this CPU has none "
                       "(oneDNN runs %s): use --precision fp32",
                       gemm_isa_name());
    m->bf16 = calloc(1, sizeof *m->bf16);
    if (!m->bf16) return err_set(err, ERR_NOMEM, "out of memory");
    m->precision = PRECISION_BF16;
    /* the float32 matrices that go through a linear layer or an expert; the
     * MoE router stays float32 (its softmax picks the experts: Fedus et al.
     * 2021, "selective precision") */
    for (int l = 0; l < m->cfg.n_layer && m->layers; l++) {
        LayerWeights *w = &m->layers[l];
        Tensor *t[7] = {w->wq, w->wk, w->wv, w->wo, w->w_gate, w->w_up, w->w_down};
        for (int i = 0; i < 7; i++)
            if (runs_bf16(t[i])) t[i]->bf16 = m->bf16;
    }
    if (runs_bf16(m->lm_head) && m->shard.last) m->lm_head->bf16 = m->bf16;
    int rc = model_precision_plan(m, err);
    if (rc) model_precision_free(m);
    return rc;
}
