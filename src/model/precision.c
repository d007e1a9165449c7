/* bf16 mixed precision of the linear layers (model.h, "mixed precision").
 * Each product converts its float32 operands to bfloat16 into scratch
 * (the weights too: N*K conversions against 2*M*N*K flops, so no second
 * copy of the weights has to be kept in step with AdamW) and runs a oneDNN
 * bf16 GEMM planned once per shape (kernels.h, GemmBf16). */
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

typedef struct {
    int tA, tB, M, N, K, acc;
    GemmBf16 g;
} Bf16Plan;

typedef struct Bf16Linear_ {
    Bf16Plan *plans;   /* one per shape seen, planned on first use */
    int n_plans, cap_plans;
    uint16_t *buf[3];  /* conversion scratch, grown on demand */
    size_t cap[3];     /* elements of each */
} Bf16Linear;

int precision_from_name(const char *name) {
    if (!strcmp(name, "fp32")) return PRECISION_FP32;
    if (!strcmp(name, "bf16")) return PRECISION_BF16;
    return -1;
}

const char *precision_name(int precision) { return precision == PRECISION_BF16 ? "bf16" : "fp32"; }

/* Scratch i with room for n values, converted from src. */
static const uint16_t *to_bf16(Bf16Linear *b, int i, const float *src, size_t n) {
    if (b->cap[i] < n) {
        xfree(b->buf[i]);
        b->buf[i] = xalloc(n * sizeof(uint16_t), NULL);
        b->cap[i] = b->buf[i] ? n : 0;
        if (!b->buf[i]) return NULL;
    }
    convert_f32_to_bf16(b->buf[i], src, n);
    return b->buf[i];
}

/* C (M,N) [+]= op(A) op(B) with A, B bf16 row-major as stored (lda/ldb their row lengths). */
static int gemm(Bf16Linear *b, int tA, int tB, int M, int N, int K, const uint16_t *A, const uint16_t *B, float *C,
                int acc) {
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
        int rc = gemm_bf16_plan(&p->g, tA, tB, M, N, K, tA ? M : K, tB ? K : N, N, acc, NULL);
        if (rc) return rc;
        b->n_plans++;
    }
    return gemm_bf16_run(&p->g, A, B, C);
}

int bf16_linear_forward(Bf16Linear *b, float *out, const float *in, const Tensor *w, const float *bias, int M) {
    const int N = (int)w->shape[0], K = (int)w->shape[1];
    const uint16_t *x = to_bf16(b, 0, in, (size_t)M * K), *wt = to_bf16(b, 1, w->data, (size_t)N * K);
    if (!x || !wt) return ERR_NOMEM;
    if (bias) { /* the GEMM accumulates onto the bias, as the float32 path */
#pragma omp parallel for
        for (int i = 0; i < M; i++) memcpy(out + (size_t)i * N, bias, (size_t)N * sizeof(float));
    }
    return gemm(b, 0, 1, M, N, K, x, wt, out, bias != NULL); /* out (M,N) = x (M,K) W^T */
}

int bf16_linear_backward(Bf16Linear *b, float *dinp, float *dW, float *dbias, const float *dout, const float *inp,
                         const Tensor *w, int M) {
    const int N = (int)w->shape[0], K = (int)w->shape[1];
    const uint16_t *dy = to_bf16(b, 2, dout, (size_t)M * N);
    if (!dy) return ERR_NOMEM;
    int rc = 0;
    if (dinp) { /* dX (M,K) += dY (M,N) W (N,K) */
        const uint16_t *wt = to_bf16(b, 1, w->data, (size_t)N * K);
        rc = wt ? gemm(b, 0, 0, M, K, N, dy, wt, dinp, 1) : ERR_NOMEM;
    }
    if (!rc && dW) { /* dW (N,K) += dY^T (N,M) X (M,K) */
        const uint16_t *x = to_bf16(b, 0, inp, (size_t)M * K);
        rc = x ? gemm(b, 1, 0, N, K, M, dy, x, dW, 1) : ERR_NOMEM;
    }
    if (!rc && dbias) matmul_backward(NULL, NULL, dbias, dout, NULL, NULL, M, N, K);
    return rc;
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
    /* the dense float32 matrices that go through a linear layer */
    for (int l = 0; l < m->cfg.n_layer && m->layers; l++) {
        LayerWeights *w = &m->layers[l];
        Tensor *t[7] = {w->wq, w->wk, w->wv, w->wo, w->w_gate, w->w_up, w->w_down};
        for (int i = 0; i < 7; i++)
            if (t[i] && t[i]->dtype == DT_F32 && t[i]->ndim == 2 && !(t[i]->flags & PF_EXPERT)) t[i]->bf16 = m->bf16;
    }
    if (m->lm_head && m->lm_head->dtype == DT_F32 && m->shard.last) m->lm_head->bf16 = m->bf16;
    return 0;
}
