/* Parallel training layout: how the world's ranks split into tensor (tp),
 * pipeline (pp) and data (dp) parallel groups, and ZeRO sharding of the
 * optimizer state, gradients and parameters over dp.
 *
 * Rank order (the planner's too): rank = tp_rank + tp * (dp_rank + dp * pp_rank).
 * ZeRO works on buckets: the non-layer tensors at the start of the registry,
 * each layer, and the tensors after the layers; each bucket is split into dp
 * equal chunks (the last padded), chunk r belonging to dp rank r. */
#ifndef JARIP_PARALLEL_H
#define JARIP_PARALLEL_H

#include "dist/comm.h"
#include "model/model.h"

typedef struct {
    size_t a, b;      /* local flat range of the bucket */
    size_t chunk;     /* elements per dp rank (ceil((b-a)/dp)) */
    size_t opt_off;   /* this rank's chunk in the compact Adam buffers */
    int layer;        /* -1: outside the blocks */
} ZeroBucket;

typedef struct Parallel_ {
    int tp, pp, dp, ep, zero;
    int rank, tp_rank, pp_rank, dp_rank, ep_rank;
    Comm *world, *tp_comm, *pp_comm, *dp_comm;
    Comm *ep_comm;        /* ranks exchanging tokens for their experts (inside dp) */
    Comm *edp_comm;       /* ranks holding the same experts (gradients summed) */
    Comm *embed_comm;     /* first and last pipeline stage (tied embeddings), or NULL */
    ZeroBucket *buckets;
    int n_buckets;
    size_t opt_len;       /* elements of this rank's Adam state */
    float *stage;         /* dp * max chunk staging buffer */
    float *adam_m, *adam_v; /* compact (ZeRO >= 1) */
} Parallel;

/* Split world into groups; checks tp*pp divides the world size and ep the
 * data-parallel size (experts spread over ep ranks of the dp group). */
int parallel_init(Parallel *p, Comm *world, int tp, int pp, int ep, int zero, Err *err);
/* The model shard of this rank (layers of its stage, tp slices). */
void parallel_model_shard(const Parallel *p, const Config *c, ModelShard *s);
/* After the model exists: ZeRO buckets and compact Adam buffers. */
int parallel_attach(Parallel *p, Model *m, Err *err);
void parallel_free(Parallel *p);

/* Make gradients global (average over dp, tied copies summed), clip by the
 * global norm, AdamW on what this rank owns, and share the result.
 * decay_of(t) chooses weight decay. Returns the global gradient norm in *norm. */
typedef struct {
    float lr, beta1, beta2, eps, weight_decay, grad_clip;
    int t; /* 1-based step */
} AdamOptions;
int parallel_optimizer_step(Parallel *p, Model *m, const AdamOptions *o, double *norm, Err *err);

/* ZeRO-3: bring layer l's parameters in before use (layer -1: the tensors
 * outside the blocks) and drop the ones this rank does not own after. */
int parallel_gather_layer(Parallel *p, Model *m, int layer, Err *err);
void parallel_release_layer(Parallel *p, Model *m, int layer);

/* Whole-model weights and Adam moments (unsharded registry layout) on every
 * rank, for checkpoints; full_m/full_v may be NULL. */
int parallel_gather_full(Parallel *p, Model *m, float *full_params, float *full_m, float *full_v, Err *err);
/* Take this rank's part of whole-model buffers (a checkpoint, any layout). */
void parallel_scatter_full(Parallel *p, Model *m, const float *full_params, const float *full_m, const float *full_v);

#endif
