/* plan: the scale planner. For a model config and a cluster it answers how
 * many parameters, how much compute, how much memory on each device under a
 * parallel layout (tensor, pipeline, data, expert parallel; ZeRO; activation
 * recomputation), which layouts fit, and how long and how much energy a run
 * takes. Every convention is stated in docs/planner.md.
 *
 * Parameter counts never come from a second formula: memory is computed from
 * the engine's parameter registry, sharded per rank (dryrun.c), so the plan
 * and `jarip train --dry-run` print the same shapes and bytes. */
#ifndef JARIP_PLAN_H
#define JARIP_PLAN_H

#include <stddef.h>
#include <stdio.h>

#include "core/core.h"
#include "model/model.h"

/* ---- hardware ------------------------------------------------------------ */
typedef struct {
    char name[64];
    double peak_bf16;        /* dense FLOP/s per device, 16-bit matmul */
    double peak_fp32;        /* dense FLOP/s per device, fp32; 0 = not published */
    double memory;           /* bytes per device */
    double intra_bw;         /* bytes/s per device per direction inside a node (NVLink, ICI) */
    double net_bw;           /* bytes/s per device per direction between nodes */
    int devices_per_node;
    double power_w;          /* W per device (board/TDP figure) */
    double gemm_efficiency;  /* fraction of peak a large matmul reaches (step-time model) */
    double usable_fraction;  /* share of memory a plan may fill (context, buffers, fragmentation) */
    char note[160];
} Hardware;

/* Names of the built-in presets (and "cpu"), NULL-terminated. */
const char *const *hw_preset_names(void);
/* A preset by name; "cpu" measures this machine (a fraction of a second);
 * a name ending in ".json" loads a file (see docs/planner.md for keys). */
int hw_get(Hardware *hw, const char *name, Err *err);
int hw_load_json(Hardware *hw, const char *path, Err *err);
/* Measure this machine: FMA-peak probe and an sgemm through gemm_f32. */
int hw_measure_cpu(Hardware *hw, Err *err);

/* ---- layout ---------------------------------------------------------------- */
enum { PREC_FP32 = 0, PREC_BF16 = 1 };
enum { RECOMPUTE_NONE = 0, RECOMPUTE_SELECTIVE = 1, RECOMPUTE_FULL = 2 };

/* How a training job is laid out over devices. gpus = tp * pp * dp; the
 * expert-parallel group lies inside the data-parallel group (ep | dp), as in
 * Megatron-LM and DeepSpeed-MoE. Rank order: tp fastest, then dp, then pp:
 * rank = tp_rank + tp * (dp_rank + dp * pp_rank); ep_rank = dp_rank % ep. */
typedef struct {
    int tp, pp, dp, ep, vpp;  /* vpp: virtual stages per device (interleaved 1F1B) */
    int zero;                 /* 0..3: shard optimizer (1), + grads (2), + weights (3) over dp */
    int precision;            /* PREC_FP32: fp32 everything; PREC_BF16: bf16 weights/activations, fp32 master + Adam */
    int grad_bf16;            /* bf16 mode: 1 = bf16 grads (ZeRO paper, 16 B/param), 0 = fp32 (Megatron, 18) */
    int first_stage_layers;   /* 0 = even split; else layers on the first / last pipeline stage */
    int last_stage_layers;    /* (Llama 3 405B: 126 layers over 16 stages, 7 on the first and last) */
} PlanLayout;

void plan_layout_default(PlanLayout *l); /* tp=pp=dp=ep=vpp=1, zero 0, fp32 */

/* Check a layout against a model: tp*pp*dp == gpus (gpus <= 0: not checked),
 * heads % tp, kv heads vs tp, d_ff % tp, layers over pp*vpp, experts % ep,
 * ep | dp. The message names the rule that failed. */
int plan_layout_check(const Config *c, const PlanLayout *l, int gpus, Err *err);

/* Layers [*first, *first + *count) held by pipeline stage s (vpp = 1), or
 * the layers of chunk j (0 <= j < vpp) of stage s in the interleaved split. */
void plan_stage_layers(const Config *c, const PlanLayout *l, int stage, int chunk, int *first, int *count);

/* ---- sharded registry (dry run) ----------------------------------------- */
typedef struct {
    char name[64];       /* registry name; a tied copy is "output.weight" */
    int ndim;
    int64_t global[4];   /* shape in the full model */
    int64_t local[4];    /* shape on this rank */
    size_t numel;        /* local elements */
    int split_dim;       /* dimension split by tp (or ep for experts), -1 = replicated */
    int expert;          /* 1: expert weights (sharded over ep; ZeRO over dp/ep) */
    int tied_copy;       /* 1: the last stage's copy of a tied embedding */
} ShardTensor;

typedef struct {
    int rank, tp_rank, pp_rank, dp_rank, ep_rank;
    ShardTensor *t;
    int n;
    size_t n_dense;      /* local parameters replicated over dp (ZeRO shards over dp) */
    size_t n_expert;     /* local expert parameters (replicated over dp/ep) */
} RankShard;

/* Coordinates of a global rank under the layout's order (see PlanLayout). */
void plan_rank_coords(const PlanLayout *l, int rank, int *tp_rank, int *pp_rank, int *dp_rank);
/* Build one rank's sharded registry from the engine's registry, without
 * allocating any tensor. Free with plan_shard_free. */
int plan_shard_build(const Config *c, const PlanLayout *l, int rank, RankShard *rs, Err *err);
void plan_shard_free(RankShard *rs);

/* Bytes per parameter of each training state for a layout's precision. */
typedef struct {
    double weights, grads, optimizer;
} StateBytes;
StateBytes plan_state_bytes_per_param(const PlanLayout *l);

/* Weights, grads and optimizer bytes for n_dense + n_expert local parameters
 * after ZeRO (dense over dp, expert over dp/ep; a shard is ceil(n / group)). */
typedef struct {
    double weights, grads, optimizer, activations;
    double scratch; /* the engine's bf16 conversion scratch (model_bf16_scratch_bytes); 0 elsewhere */
    double total;
} PlanMemory;
void plan_state_memory(const PlanLayout *l, size_t n_dense, size_t n_expert, PlanMemory *m);

/* Print one rank's tensors, local shapes and bytes, then the ZeRO shard and
 * the totals. The lead's `jarip train --dry-run` calls this. */
int plan_dry_run(const Config *c, const PlanLayout *layout, int rank, FILE *out, Err *err);
/* Every rank, one after the other. */
int plan_dry_run_all(const Config *c, const PlanLayout *layout, FILE *out, Err *err);

/* ---- activations ------------------------------------------------------------ */
typedef struct {
    int seq, micro_batch;
    long long global_batch;  /* sequences per step; 0 = unknown */
    int recompute;           /* RECOMPUTE_* */
    int seq_parallel;
    int dropout;             /* keep dropout masks (Megatron GPT); default by arch */
    int flash;               /* attention scores not stored (fused attention) */
} PlanRun;

/* Activation bytes of one transformer layer for one micro-batch on one
 * device (Korthikanti et al. 2022, generalised to GQA, SwiGLU, MoE, d_ff). */
double plan_layer_activation_bytes(const Config *c, const PlanLayout *l, const PlanRun *r);
/* Activations held by pipeline stage s at its peak (in-flight micro-batches,
 * embedding/output extras). */
double plan_stage_activation_bytes(const Config *c, const PlanLayout *l, const PlanRun *r, int stage);

/* Memory of the most loaded device. engine_single: the plan is one process
 * on this machine, and every byte comes from what the engine allocates, so
 * that plan and allocation agree: float32 weights, grads and Adam moments
 * in either precision (jarip's bf16 keeps no bf16 copy of the weights), the
 * activations from the engine's own planner (model_activation_bytes, float32
 * in either precision) and in bf16 the conversion scratch
 * (model_bf16_scratch_bytes). */
int plan_memory(const Config *c, const PlanLayout *l, const PlanRun *r, int engine_single, PlanMemory *m,
                int *worst_stage, Err *err);

/* ---- time ------------------------------------------------------------------- */
enum { RATE_NONE = 0, RATE_MFU, RATE_TFLOPS, RATE_TOKENS_PER_S, RATE_STEP_TIME };

/* Hardware FLOPs per token: model FLOPs plus the recomputed forward pass. */
double plan_hw_flops_per_token(const Config *c, int seq, int recompute);

typedef struct {
    double compute, tp_comm, ep_comm, pp_comm, bubble, dp_comm, total; /* seconds per step */
} StepTime;
/* The step-time model: compute at peak x gemm_efficiency, TP all-reduce on
 * the intra-node link, pipeline bubble (p-1)/(m v), DP all-reduce on the
 * network. Needs r->global_batch. */
int plan_step_time_model(const Config *c, const PlanLayout *l, const PlanRun *r, const Hardware *hw,
                         StepTime *st, Err *err);

/* ---- the whole plan ---------------------------------------------------------- */
typedef struct {
    PlanLayout layout;
    PlanRun run;
    int gpus;
    double tokens;           /* 0 = 20 tokens per parameter (Chinchilla) */
    int rate_kind;           /* RATE_*; RATE_NONE: the step-time model */
    double rate;
    double pue;              /* power usage effectiveness (default 1.1) */
    int search;
    int max_candidates;      /* kept by --search */
} PlanRequest;

typedef struct {
    PlanLayout layout;
    PlanRun run;
    PlanMemory mem;
    int fits;
    StepTime st;
} PlanCandidate;

typedef struct {
    size_t params_total, params_active;
    double flops_per_token, hw_flops_per_token, train_flops, tokens;
    int devices;
    PlanLayout layout;
    PlanRun run;
    PlanMemory mem;
    int worst_stage;
    int engine;              /* 1: the memory is what `jarip train` allocates (one process on cpu) */
    int fits;
    int time_known, step_known;
    int time_from_model;     /* 1: step time from the model, not a given rate */
    StepTime st;
    double tokens_per_s, step_time_s, train_days, gpu_hours, mfu, hfu, energy_mwh;
    PlanCandidate *cand;
    int n_cand;
    long long n_searched;
} PlanResult;

void plan_request_default(PlanRequest *q);
/* Fill unset run fields (seq, dropout, global batch) from the config. */
void plan_run_defaults(const Config *c, const Hardware *hw, PlanRequest *q);
int plan_compute(const Config *c, const Hardware *hw, const PlanRequest *q, PlanResult *res, Err *err);
/* Enumerate layouts of q->gpus devices that fit; fixed fields of q stay fixed
 * (fixed_mask: PLAN_FIX_*); ranks by modelled step time. */
enum {
    PLAN_FIX_TP = 1, PLAN_FIX_PP = 2, PLAN_FIX_DP = 4, PLAN_FIX_EP = 8, PLAN_FIX_VPP = 16,
    PLAN_FIX_ZERO = 32, PLAN_FIX_RECOMPUTE = 64, PLAN_FIX_MB = 128, PLAN_FIX_SP = 256
};
int plan_search(const Config *c, const Hardware *hw, const PlanRequest *q, unsigned fixed_mask,
                PlanResult *res, Err *err);
void plan_result_free(PlanResult *res);

/* ---- report ------------------------------------------------------------------- */
const char *plan_recompute_name(int r);
int plan_report_text(const Config *c, const char *model_name, const Hardware *hw, const PlanRequest *q,
                     const PlanResult *res, FILE *out);
/* One JSON object (malloc'd string) with the keys listed in docs/planner.md. */
char *plan_report_json(const Config *c, const char *model_name, const Hardware *hw, const PlanRequest *q,
                       const PlanResult *res);
/* An SVG chart: the searched candidates when res has any, else the model
 * next to the reference presets. Written atomically. */
int plan_report_svg(const Config *c, const char *model_name, const Hardware *hw, const PlanRequest *q,
                    const PlanResult *res, const char *path, Err *err);

#endif
