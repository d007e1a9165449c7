/* Parallel training layout: how the world's ranks split into tensor (tp),
 * pipeline (pp) and data (dp) parallel groups, and ZeRO sharding of the
 * optimizer state, gradients and parameters over dp.
 *
 * Rank order (the planner's too): rank = tp_rank + tp * (dp_rank + dp * pp_rank).
 * ZeRO works on buckets (src/dist/zero.h): the token embedding, the other
 * tensors outside the blocks, and each block; each bucket is split into dp
 * equal chunks (the last padded), chunk r belonging to dp rank r.
 *
 * What a rank stores (see zero.h for the sizes):
 *   ZeRO 0: everything whole; gradients all-reduced before the step.
 *   ZeRO 1: Adam moments of its chunks only; gradients all-reduced; after
 *           the update each bucket's chunks are all-gathered into the weights.
 *   ZeRO 2: + gradients of its chunks only. The backward writes a block's
 *           gradients into a one-block staging area (the edge tensors into
 *           theirs); when the block is done (the model's weights hook) the
 *           area is reduce-scattered, the own chunk added to the gradient
 *           shard and the area cleared. Gradient accumulation over
 *           micro-batches adds these shards.
 *   ZeRO 3: + weights of its chunks only. The weights hook all-gathers a
 *           block into a one-block buffer before the block's forward or
 *           backward (and the edge tensors into theirs before the forward);
 *           the optimizer updates the shard. */
#ifndef JARIP_PARALLEL_H
#define JARIP_PARALLEL_H

#include "dist/comm.h"
#include "dist/zero.h"
#include "model/model.h"

typedef struct Parallel_ {
    int tp, pp, dp, ep, zero;
    int rank, tp_rank, pp_rank, dp_rank, ep_rank;
    Comm *world, *tp_comm, *pp_comm, *dp_comm;
    Comm *ep_comm;        /* ranks exchanging tokens for their experts (inside dp) */
    Comm *edp_comm;       /* ranks holding the same experts (gradients summed) */
    Comm *embed_comm;     /* first and last pipeline stage (tied embeddings), or NULL */
    ZeroLayout zl;
    ZeroBucket *buckets;  /* == zl.buckets */
    int n_buckets;
    int *bucket_of;       /* bucket of each tensor */
    size_t opt_len;       /* elements of this rank's shard buffers */
    float *stage;         /* ZeRO 1: one bucket's gather staging */
    float *adam_m, *adam_v; /* compact (ZeRO >= 1) */
    float *grad_shard;    /* compact (ZeRO >= 2) */
    float *block_grad, *edge_grad;   /* ZeRO >= 2 staging, kept zero outside a backward */
    float *rs_out;        /* ZeRO >= 2: one chunk, the reduce-scatter's result */
    float *param_shard;   /* compact (ZeRO 3) */
    float *block_param, *edge_param; /* ZeRO 3: gathered weights */
    int held_block;       /* ZeRO 3: block whose weights block_param holds (-1: none) */
    int edge_held;        /* ZeRO 3: edge_param holds the current weights */
    int in_forward;       /* weights hook: between a forward's start and its last block */
    int reduce_grads;     /* weights hook: reduce-scatter gradients after backward blocks */
    int bw_passes;        /* ZeRO 0/1: backward passes per step (0: reduce at the optimizer step) */
    int *bw_seen;         /* ZeRO 0/1: passes finished this step, per block; [n_layer]: the edge */
    unsigned char *reduced; /* ZeRO 0/1: bucket already reduced by this step's backward */
} Parallel;

/* Split world into groups; checks tp*pp divides the world size and ep the
 * data-parallel size (experts spread over ep ranks of the dp group).
 * zero < 0 picks the default: 1 with several data-parallel ranks. */
int parallel_init(Parallel *p, Comm *world, int tp, int pp, int ep, int zero, Err *err);
/* The model shard of this rank (layers of its stage, tp slices). */
void parallel_model_shard(const Parallel *p, const Config *c, ModelShard *s);
/* After the model exists (model_create_shard, training): ZeRO buckets and
 * buffers. ZeRO >= 2 frees the model's whole gradient buffer (m->grads
 * becomes NULL, tensors' grad point into the staging areas), ZeRO 3 its
 * weights too (tensors' data point into the gather buffers), and installs
 * the model's weights hook; model_init_weights goes through it, so
 * initialising after attach fills the shards. */
int parallel_attach(Parallel *p, Model *m, Err *err);
void parallel_free(Parallel *p);

/* Bytes of weights, gradients, optimizer state and ZeRO staging this rank
 * holds, counted from the buffers actually allocated (the dry run prints
 * the same figure from the layout alone). */
size_t parallel_state_bytes(const Parallel *p, const Model *m);

/* ZeRO 0/1 with dp > 1 and one pipeline stage: each block's gradients are
 * reduced as soon as the step's last backward pass (of `passes`: micro-
 * batches x accumulation) is done with it, while they are still in cache,
 * instead of all at the optimizer step. Installs the weights hook. Other
 * layouts keep the reduction at the optimizer step (no error). */
int parallel_reduce_in_backward(Parallel *p, Model *m, int passes, Err *err);

/* Zero the gradients before a step's first micro-batch (whatever holds them). */
void parallel_zero_grad(Parallel *p, Model *m);

/* Make gradients global (average over dp, tied copies summed), clip by the
 * global norm, AdamW on what this rank owns, and share the result.
 * decay_of(t) chooses weight decay. Returns the global gradient norm in *norm. */
typedef struct {
    float lr, beta1, beta2, eps, weight_decay, grad_clip;
    int t; /* 1-based step */
    int skip; /* reduce and measure the gradients, but change nothing (a bad loss) */
} AdamOptions;
/* *norm: the global gradient norm. When it is not finite, or o->skip, no
 * parameter or moment changes (every rank sees the same norm: all skip). */
int parallel_optimizer_step(Parallel *p, Model *m, const AdamOptions *o, double *norm, Err *err);

/* The model's weights hook under ZeRO >= 2 (installed by parallel_attach)
 * and under ZeRO 0/1 with parallel_reduce_in_backward. */
int parallel_weights_hook(void *ctx, Model *m, int layer, int acquire, Err *err);
/* ZeRO-3: bring layer l's parameters in before use (layer -1: the tensors
 * outside the blocks); release: the buffer may be reused (the own chunk is
 * written back to the shard first). No-ops below ZeRO 3. */
int parallel_gather_layer(Parallel *p, Model *m, int layer, Err *err);
void parallel_release_layer(Parallel *p, Model *m, int layer);

/* Whole-model weights and Adam moments (unsharded registry layout) for
 * checkpoints, one tensor at a time over the world (so a rank needs no
 * whole-model buffer unless it asks for the result). Every rank calls it;
 * each of the three buffers may be NULL on ranks that do not need it. */
int parallel_gather_full(Parallel *p, Model *m, float *full_params, float *full_m, float *full_v, Err *err);
/* Take this rank's part of whole-model buffers (a checkpoint, any layout). */
void parallel_scatter_full(Parallel *p, Model *m, const float *full_params, const float *full_m, const float *full_v);

#endif
