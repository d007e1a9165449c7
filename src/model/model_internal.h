/* Shared between the model's own files; not part of the public API. */
#ifndef JARIP_MODEL_INTERNAL_H
#define JARIP_MODEL_INTERNAL_H

#include "model.h"

/* out (N,C) = FFN of layer l applied to x (N,C) (the normalised input).
 * MoE adds its weighted auxiliary loss to m->aux_loss. */
int ffn_forward(Model *m, int l, const float *x, float *out, int N, Err *err);
/* dx (N,C) += d FFN / dx given dout (N,C); parameter grads accumulated.
 * Returns 0, or an error (a weight type without a backward) in err. */
int ffn_backward(Model *m, int l, const float *x, const float *dout, float *dx, int N, float loss_scale, Err *err);

/* Point the LoRA adapters on m's linear weights at m's activation scratch
 * (after planning: the model that plans last runs the adapters). */
void lora_bind_scratch(Model *m);

/* The bf16 products of a linear layer whose weight w carries w->bf16
 * (precision.c): out (M,N) = in W^T (+ bias); the backward accumulates
 * dinp (M,K) += dout W, dW += dout^T inp, dbias += column sums (any NULL). */
struct Bf16Linear_;
int bf16_linear_forward(struct Bf16Linear_ *b, float *out, const float *in, const Tensor *w, const float *bias, int M);
int bf16_linear_backward(struct Bf16Linear_ *b, float *dinp, float *dW, float *dbias, const float *dout,
                         const float *inp, const Tensor *w, int M);
/* The same for expert e's block W (N,K) of a stacked float32 tensor: M,
 * its rows in this step, changes from step to step. */
int bf16_expert_forward(struct Bf16Linear_ *b, float *out, const float *in, const float *W, int N, int K,
                        const float *bias, int M);
int bf16_expert_backward(struct Bf16Linear_ *b, float *dinp, float *dW, float *dbias, const float *dout,
                         const float *inp, const float *W, int N, int K, int M);
void model_precision_free(Model *m);
/* Size the bf16 conversion scratch for m's planned activations (after
 * model_plan_activations; no-op in fp32). ERR_NOMEM on failure. */
int model_precision_plan(Model *m, Err *err);

/* Expert-parallel exchange of one MoE layer (moe_ep.c). ep <= 64. */
typedef struct {
    int ep, El, R;          /* group size, local experts, rows received */
    int send_rows[64], send_off[64], recv_rows[64], recv_off[64];
    int *recv_cnt;          /* (ep, El): rows from sender r for local expert j */
    int goff[1025];         /* grouped offset of local expert j */
} MoeExchange;

int moe_ep_plan(Model *m, int l, MoeExchange *x, Err *err);
int moe_ep_dispatch(Model *m, const MoeExchange *x, const float *sorted, float *grouped, Err *err);
int moe_ep_combine(Model *m, const MoeExchange *x, float *grouped, float *sorted, Err *err);
void moe_ep_free(MoeExchange *x);

#endif
