/* model: ONE decoder-only transformer. GPT-2, Llama 2/3, SmolLM2 and
 * Mixtral-style MoE are configurations of this code, not copies of it.
 *
 *   tokens -> embed (+ learned positions) -> n_layer x [ norm -> attention
 *   (GQA, optional RoPE) -> residual -> norm -> FFN (GELU MLP | SwiGLU |
 *   top-k routed experts) -> residual ] -> norm -> lm_head -> logits/loss
 *
 * The same model_forward serves training (activations kept for backward),
 * sampling and GGUF inference (KV cache, weights of any dtype). */
#ifndef JARIP_MODEL_H
#define JARIP_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "dist/comm.h"
#include "kernels/kernels.h"

/* ---- configuration ------------------------------------------------------ */
enum { NORM_LAYERNORM = 0, NORM_RMSNORM = 1 };
enum { POS_LEARNED = 0, POS_ROPE = 1 };
enum { ACT_GELU = 0, ACT_SWIGLU = 1 };

typedef struct {
    char arch[16];       /* "gpt2" | "llama": only chooses defaults */
    int vocab_size;
    int context_length;
    int n_layer;
    int d_model;
    int n_head;
    int n_kv_head;       /* GQA: n_head % n_kv_head == 0 */
    int head_dim;        /* d_model / n_head unless set */
    int d_ff;            /* per expert for MoE */
    int norm;            /* NORM_* */
    float norm_eps;
    int pos;             /* POS_* */
    float rope_theta;
    int rope_neox;       /* 0 = GGUF/llama pair layout, 1 = NeoX half split */
    int act;             /* ACT_* */
    int bias;            /* biases on linear layers and norms */
    int tie_embeddings;  /* lm_head shares token_embd */
    int n_expert;        /* 0 = dense FFN */
    int n_expert_active; /* top-k */
    float moe_aux_coef;  /* weight of the load-balancing loss (Switch) */
    char note[256];      /* free text, e.g. assumptions of estimated presets */
    /* LoRA fine-tuning (Hu et al. 2021, as PEFT): lora_rank > 0 makes the
     * parameter registry the adapters alone, A (r, in) and B (out, r) for
     * each target linear layer of each block (named "<base weight>.lora_a"
     * / ".lora_b", as llama.cpp's adapter files); the base weights are
     * frozen and come from elsewhere (model_lora_attach). The layer computes
     * x W^T + (alpha / r) (x A^T) B^T. */
    int lora_rank;
    float lora_alpha;
    unsigned lora_targets; /* LORA_* bits */
    float lora_dropout;    /* probability in [0, 1) that training zeroes an element of the adapter's input
                              (PEFT's lora_dropout: the base product sees x whole) */
} Config;

enum {
    LORA_Q = 1u << 0, LORA_K = 1u << 1, LORA_V = 1u << 2, LORA_O = 1u << 3,
    LORA_GATE = 1u << 4, LORA_UP = 1u << 5, LORA_DOWN = 1u << 6, LORA_ALL = 0x7f
};
/* "q,k,v,o,gate,up,down" (any subset, any order) -> LORA_* bits; an unknown
 * name is an error naming it. */
int lora_targets_parse(const char *s, unsigned *mask, Err *err);
/* LORA_* bits -> "q,k,v" into buf (cap >= 32). */
const char *lora_targets_str(unsigned mask, char *buf, size_t cap);
/* Base tensor suffix ("attn_q.weight", ...) of LoRA target bit i (0..6). */
const char *lora_target_weight(int i);

/* Defaults for an arch ("gpt2" or "llama"); other fields zero. */
int config_defaults(Config *c, const char *arch, Err *err);
/* Parse a JSON object (text); unknown keys are an error. Validates. */
int config_from_json(Config *c, const char *json_text, Err *err);
int config_load(Config *c, const char *path, Err *err);
/* Named preset (gpt2-small, smollm2-135m, llama-tiny, ...). */
int config_preset(Config *c, const char *name, Err *err);
/* Names of all presets, NULL-terminated. */
const char *const *config_preset_names(void);
/* Check every constraint (divisibility, ranges); message names the field. */
int config_validate(const Config *c, Err *err);
/* Serialize as a JSON object into a malloc'd string. */
char *config_to_json(const Config *c);

/* ---- parameter registry ----------------------------------------------------
 * Every parameter tensor is one entry. Weights, gradients and both Adam
 * moments are contiguous buffers laid out by the same offsets; checkpoints,
 * GGUF export, ZeRO sharding and the planner iterate this list and nothing
 * else enumerates parameters. Names follow GGUF ("blk.3.attn_q.weight"). */
enum {
    PF_DECAY = 1u << 0,      /* gets weight decay (matrices only) */
    PF_RESID_PROJ = 1u << 1, /* init scaled by 1/sqrt(2 n_layer) */
    PF_ONES = 1u << 2,       /* norm gain: init to 1 */
    PF_ZEROS = 1u << 3,      /* bias: init to 0 */
    PF_EXPERT = 1u << 4,     /* stacked expert weights (leading dim n_expert) */
    PF_LORA_A = 1u << 5,     /* LoRA A: init Kaiming-uniform, U(-1/sqrt(in), 1/sqrt(in)), as PEFT */
};

struct LoraLink_;

typedef struct {
    char name[48];
    int ndim;
    int64_t shape[4];  /* outermost first, PyTorch order: Linear weight (out, in);
                          this rank's block when the model is sharded */
    int64_t full[4];   /* shape in the whole model */
    int64_t start[4];  /* where this rank's block starts in the whole tensor */
    int tp_split;      /* 1: split over tensor-parallel ranks (0: replicated) */
    int ep_split;      /* 1: split over expert-parallel ranks */
    int dtype;         /* DType */
    size_t numel;
    size_t offset;     /* elements from the start of the f32 buffers */
    int layer;         /* -1 outside the blocks */
    unsigned flags;    /* PF_* */
    void *data;        /* weights: into Model.params or a GGUF mapping */
    float *grad;       /* into Model.grads; NULL when not training (or frozen) */
    const struct LoraLink_ *lora; /* a LoRA adapter on this (frozen) linear weight, or NULL */
    struct Bf16Linear_ *bf16;     /* non-NULL: this float32 weight's products run in bf16 (model_set_precision) */
} Tensor;

/* A LoRA adapter attached to a linear weight W (out, in): the layer adds
 * scale * (x A^T) B^T. a, b are registry tensors of the model that trains
 * (or holds) the adapter; u, du: (M, r) scratch in the activations of the
 * model that planned last (model_plan_activations sets them). */
/* LoRA dropout of the pass that runs (Model.lora_drop): element j of row i
 * of an adapter's (M, in) input is zeroed with probability p, the others
 * scaled by 1 / (1 - p), as torch.nn.Dropout in PEFT's LoRA layers. The
 * mask is a hash of (seed, batch, adapter, (tok0 + i) * in + j): the
 * backward recomputes it instead of keeping it, it does not depend on how
 * the batch is cut into micro-batches, and a resumed run draws the masks
 * the uninterrupted one drew. */
typedef struct {
    float p;       /* Config.lora_dropout of the model that holds the adapters */
    int on;        /* 0: no dropout (evaluation, inference) */
    uint64_t seed; /* the run's seed (TrainOptions.seed) */
    uint64_t batch; /* the global batch index of the pass */
    uint64_t tok0;  /* first row of the pass within its global batch, in tokens: row * T */
} LoraDropout;

typedef struct LoraLink_ {
    const Tensor *a, *b; /* (r, in), (out, r) */
    float scale;         /* alpha / r, times a run-time scale */
    int r;
    int id;              /* index among the model's adapters: each draws its own dropout mask */
    const LoraDropout *drop; /* Model.lora_drop of the model that holds the adapter */
    float *u, *du;       /* Activations.lora_u / lora_du of the running model */
    float *x;            /* Activations.lora_x: (M, in) dropped-out input; NULL without dropout */
    float *w;            /* Activations.lora_w: (out, in) merged weight W + scale B A; NULL outside training */
} LoraLink;

typedef struct {
    Tensor *attn_norm, *attn_norm_b;
    Tensor *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo;
    Tensor *ffn_norm, *ffn_norm_b;
    Tensor *router;               /* (n_expert, d_model) or NULL */
    Tensor *w_gate;               /* ([E,] d_ff, d_model), SwiGLU only */
    Tensor *w_up, *b_up;          /* ([E,] d_ff, d_model) */
    Tensor *w_down, *b_down;      /* ([E,] d_model, d_ff) */
} LayerWeights;

/* Build the registry for c (no tensor memory). tensors is malloc'd. */
int registry_build(const Config *c, Tensor **tensors, int *n_tensors, size_t *n_params, Err *err);

/* ---- model parallelism -------------------------------------------------------
 * Which part of the model one rank holds (Megatron-LM splits): attention
 * heads and FFN columns over tp (column-parallel q/k/v/gate/up, row-parallel
 * output and down projections), the vocabulary over tp (embedding, output,
 * cross-entropy), experts over ep, and layers [layer0, layer1) of a
 * pipeline stage. All-ones/whole-model when unsharded. */
typedef struct {
    int tp_rank, tp_size;
    Comm *tp;            /* tensor-parallel group; NULL when tp_size == 1 */
    int ep_rank, ep_size;
    Comm *ep;            /* expert-parallel group; NULL when ep_size == 1 */
    int layer0, layer1;  /* this stage's layers */
    int first, last;     /* holds the embeddings / the final norm and output */
} ModelShard;

void model_shard_whole(ModelShard *s, const Config *c);
/* Check that c can be split this way; the message names the rule. */
int model_shard_check(const Config *c, const ModelShard *s, Err *err);
/* The registry of one rank: local blocks with their place in the whole.
 * Sizes layouts with more tp ranks than kv heads too (the kv head is
 * replicated, for the planner); model_create_shard refuses those. */
int registry_build_shard(const Config *c, const ModelShard *s, Tensor **tensors, int *n_tensors, size_t *n_params,
                         Err *err);
/* Vocabulary rows [*v0, *v0 + *n) held by tp rank r (first V % tp ranks get one more). */
void vocab_part(int V, int tp, int r, int *v0, int *n);
/* Copy between a local block and the whole tensor (to_full: local -> whole). */
void tensor_block_copy(const Tensor *t, float *whole, float *local, int to_full);
/* Exact parameter count of a config (same code as the registry). */
size_t config_param_count(const Config *c);
/* Parameters touched per token (MoE: only n_expert_active experts). */
size_t config_active_param_count(const Config *c);

/* ---- activations, planned once ------------------------------------------- */
typedef struct {
    int B, T;            /* planned batch and sequence */
    int cur_B, cur_T;    /* shape of the last forward: backward works on it */
    int training;        /* keep what backward needs */
    size_t n_floats;     /* total size of the one activation buffer */
    float *mem;
    /* per layer (pointers into mem, L of each) */
    float **ln1, **ln1_mean, **ln1_rstd;  /* (B,T,C), (B,T), (B,T) */
    float **q, **k, **v;                   /* (B,T,Hq*D), (B,T,Hkv*D) x2 */
    float **att;                           /* (B,Hq,T,T) */
    float **atty;                          /* (B,T,Hq*D) attention output */
    float **res_att;                       /* (B,T,C) residual after attention */
    float **ln2, **ln2_mean, **ln2_rstd;   /* (B,T,C), (B,T), (B,T) */
    float **ffn_h, **ffn_g, **ffn_a;       /* (B*T*k, F) up pre-activation, gate, activated;
                                              MoE rows are sorted by expert */
    float **router_probs;                  /* (B,T,E) MoE softmax */
    int32_t **expert_idx;                  /* (B,T,k) chosen experts */
    float **expert_w;                      /* (B,T,k) their renormalised weights */
    int32_t **moe_row;                     /* (B,T,k) row of (token, slot) in the sorted order */
    int32_t **moe_off;                     /* (E+1) first sorted row of each expert */
    float **ffn_y;                         /* (B*T*k, C) expert outputs, MoE only */
    float **res_ffn;                       /* (B,T,C) residual after FFN = next input */
    /* outside the blocks */
    float *embed;                          /* (B,T,C) */
    float *lnf, *lnf_mean, *lnf_rstd;      /* (B,T,C), (B,T), (B,T) */
    float *logits;                         /* (B,T,V) */
    float *losses;                         /* (B,T) */
    float *ce_max, *ce_sum;                /* (B,T) softmax statistics for the backward: row max and
                                              exp-sum (vocab-parallel), or log-sum-exp in ce_max (one rank) */
    float *ce_gather;                      /* (tp, B,T) row maxima of every tp rank */
    /* backward scratch */
    float *d_res, *d_tmp, *d_ln;           /* (B,T,C) each */
    float *d_q, *d_k, *d_v, *d_atty;       /* like q, k, v, atty */
    float *d_att;                          /* (threads, T, T) attention backward scratch */
    float *d_ffn_h, *d_ffn_g, *d_ffn_a;    /* like ffn_* of one layer */
    float *moe_x, *moe_dy;                 /* (B*T*k, C) gathered inputs / output grads */
    float *moe_recv, *moe_xe, *moe_ye, *moe_dxe; /* (B*T*k*ep, C) expert-parallel exchange (ep > 1) */
    float *d_router;                       /* (B,T,E) */
    float *lora_u, *lora_du;               /* (B*T, lora rank): x A^T of one LoRA layer and its
                                              gradient (recomputed in backward); NULL without LoRA */
    float *lora_x;                         /* (B*T, widest layer input): a LoRA layer's input after
                                              dropout; training with lora_dropout > 0 only */
    float *lora_w;                         /* (widest out * widest in): a float32 base weight of one LoRA
                                              layer with its adapter merged in (lora.c); training only */
} Activations;

/* KV cache for inference: (n_layer, ctx, Hkv*D) keys and values, batch 1,
 * stored as dtype: DT_F32, or DT_F16 (IEEE half, llama.cpp's default cache
 * type: keys and values are rounded to half precision when stored, half the
 * memory). The memory is zeroed lazily (calloc), so positions never used
 * never become resident. */
typedef struct {
    int ctx, kv_dim, n_layer;
    int len;             /* positions filled */
    int dtype;           /* DT_F32 | DT_F16 */
    void *k, *v;         /* float or uint16_t (n_layer, ctx, kv_dim) */
} KVCache;

/* ---- the model ------------------------------------------------------------ */
typedef struct Model_ {
    Config cfg;
    ModelShard shard;
    Tensor *tensors;
    int n_tensors;
    size_t n_params;
    Tensor *tok_emb, *pos_emb, *out_norm, *out_norm_b, *lm_head; /* lm_head == tok_emb if tied */
    LayerWeights *layers;
    float *params, *grads, *adam_m, *adam_v; /* (n_params) each; grads/adam NULL for inference;
                                                under ZeRO >= 2 grads is NULL (shards live in the
                                                parallel state), under ZeRO 3 params too */
    Activations act;
    double aux_loss;                         /* last MoE load-balancing loss (already weighted) */
    Err comm_err;                            /* first communication failure inside backward (code 0: none) */
    /* Called around the use of each layer's weights (layer -1: the tensors
     * outside the blocks, before the stage's forward and after its
     * backward); ZeRO-3 gathers and releases parameters here. */
    int (*weights_hook)(void *ctx, struct Model_ *m, int layer, int acquire, Err *err);
    void *hook_ctx;
    void *owner;                             /* e.g. the GGUF mapping the weights live in */
    int lora_r;                              /* rank of LoRA adapters attached to this model's linear
                                                weights (0: none): sizes Activations.lora_u */
    LoraLink *lora_links;                    /* adapters this model's registry holds (model_lora_attach) */
    int n_lora_links;
    LoraDropout lora_drop;                   /* dropout of the adapters' inputs in the pass that runs */
    int precision;                           /* PRECISION_*: how the linear layers multiply */
    struct Bf16Linear_ *bf16;                /* bf16 scratch and GEMM plans (model_set_precision) */
} Model;

/* ---- mixed precision ---------------------------------------------------------
 * PRECISION_BF16 (bf16 mixed precision as the literature defines it): the
 * products of the linear layers (attention q/k/v/o, the FFN or each MoE
 * expert, the output head) take bfloat16 inputs, rounded from the float32 activations,
 * gradients and master weights at each use, and accumulate in float32;
 * everything else (embeddings, norms, softmax, loss, AdamW and its moments,
 * checkpoints) stays float32. No loss scaling: bf16 has float32's range. */
enum { PRECISION_FP32 = 0, PRECISION_BF16 = 1 };
/* "fp32"/"bf16" -> PRECISION_*; -1 for anything else. */
int precision_from_name(const char *name);
const char *precision_name(int precision);
/* Choose how m's linear layers and MoE experts multiply (the router stays
 * float32). bf16 needs native bf16 GEMMs (AVX512-BF16 or AMX through
 * oneDNN): elsewhere an error says so. Its conversion scratch is allocated
 * here or by model_plan_activations, whichever comes last. */
int model_set_precision(Model *m, int precision, Err *err);
/* Bytes of bf16 conversion scratch that one process (no tp, pp or ep)
 * training c in bf16 at batch B x seq T allocates besides its float32
 * state and activations: three buffers holding the largest input (M,K),
 * weight (N,K) and output gradient (M,N) of any product, as bfloat16. */
size_t model_bf16_scratch_bytes(const Config *c, int B, int T, int training);
/* Bytes of that scratch m holds now; peak: the most its products have used
 * so far (both 0 in fp32). */
size_t model_bf16_scratch_allocated(const Model *m, size_t *peak);

/* Allocate weights (and, if training, grads and Adam moments) for c. */
int model_create(Model *m, const Config *c, int training, Err *err);
/* The same for one rank's shard (shard is copied; its Comms are borrowed). */
int model_create_shard(Model *m, const Config *c, const ModelShard *shard, int training, Err *err);
/* GPT-2 initialisation: N(0, 0.02), residual projections / sqrt(2 L),
 * norms 1, biases 0. Deterministic in seed, independent of thread count.
 * Calls the weights hook around each layer (ZeRO-3 initialises its shards). */
void model_init_weights(Model *m, uint64_t seed);
/* Plan and allocate activations for (B, T); training keeps backward state. */
int model_plan_activations(Model *m, int B, int T, int training, Err *err);
size_t model_activation_bytes(const Config *c, int B, int T, int training);
/* Free an activation set (pipelines keep several and swap them into m->act). */
void model_activations_free(Activations *a);
void model_free(Model *m);

/* Forward over tokens (B,T) at positions 0..T-1. With targets (B,T) it
 * returns the mean cross-entropy over non-ignored targets (< 0 ignored) plus
 * the MoE auxiliary loss; without, returns 0 and leaves logits in act.logits.
 * Returns NAN with err set on bad input (token id out of range...). */
float model_forward(Model *m, const int32_t *tokens, const int32_t *targets, int B, int T, Err *err);
/* Pipeline pieces. model_forward = forward_stage + stage_loss on a whole
 * model. A stage reads tokens (first stage) or x_in (B,T,C) from the
 * previous one; its output is model_stage_output(). stage_loss (last stage)
 * computes logits and the mean cross-entropy (without the MoE aux loss).
 * backward_stage takes d_out = dL/d(output) from the next stage (NULL on the
 * last) and leaves dL/d(input) in act.d_res. */
int model_forward_stage(Model *m, const int32_t *tokens, const float *x_in, int B, int T, Err *err);
const float *model_stage_output(const Model *m);
int model_stage_loss(Model *m, const int32_t *targets, int B, int T, double *loss, Err *err);
int model_backward_stage(Model *m, const int32_t *tokens, const int32_t *targets, const float *d_out, float loss_scale,
                         Err *err);

/* Backward of the last training forward; accumulates into m->grads.
 * loss_scale multiplies d(loss) (1/accum_steps for gradient accumulation). */
void model_backward(Model *m, const int32_t *tokens, const int32_t *targets, float loss_scale);
/* A communication failure inside model_backward is left in m->comm_err. */

/* Inference: n tokens at the cache's current position (batched prompt when
 * n > 1). Writes logits of the LAST token to logits (V). Needs activations
 * planned with B=1, T>=n, training=0. */
int model_forward_cached(Model *m, KVCache *kv, const int32_t *tokens, int n, float *logits, Err *err);
/* Whether m's cached inference takes llama.cpp's numerics (a Llama shape:
 * RMSNorm, RoPE, SwiGLU, dense, one shard): then every quantized matmul of
 * a block uses 8-bit activations and the integer kernels at every batch
 * size where the type has them (quant_batch_dots_fast). */
int model_infer_llamacpp(const Model *m);
/* The same forward with the logits of every row from out0 on: rows
 * out0..n-1 of this call into logits ((n - out0), V), each the bits
 * model_forward_cached gives for that position (evaluation scores every
 * position of a chunk; llama-perplexity asks for the same rows). out0 == n:
 * the cache is filled and no logits are computed. */
int model_forward_cached_rows(Model *m, KVCache *kv, const int32_t *tokens, int n, int out0, float *logits, Err *err);
/* One sequence of a batched inference step: n tokens appended to its own
 * cache at positions kv->len.. */
typedef struct {
    KVCache *kv;
    const int32_t *tokens; /* (n) */
    int n;
} SeqSpan;
/* Continuous batching: several sequences, each with its own cache, in one
 * forward. The linears and FFNs run once over all rows (M = the sum of the
 * n), RoPE and attention per sequence over its cache. logits (n_seqs, V):
 * after each sequence's last token. With FWD_ROWS_EXACT every matmul row is
 * computed as if alone, for every weight type, so (Llama-shaped models) a
 * sequence's results do not depend on the others in the batch nor on how
 * its prompt was cut into chunks of two tokens or more (batch invariance);
 * without it, only Q8_0/Q4_1 weights promise that (other types take the
 * faster GEMM path for many rows). Needs activations planned with B=1,
 * T >= the total tokens; caches must be distinct. Each cache's len
 * advances by its n on success. */
#define FWD_ROWS_EXACT 1
int model_forward_batch(Model *m, const SeqSpan *seqs, int n_seqs, float *logits, int flags, Err *err);
/* Several sequences in one forward (as model_forward_batch) with the logits
 * of every row from out0[i] on of sequence i: rows out0[i]..n-1 of each
 * sequence, sequence after sequence, into logits (sum of (n - out0[i]), V);
 * the output norm and projection run for those rows only. Each row has the
 * bits model_forward_cached_rows gives it alone where the weight types'
 * rows do not depend on M (Q8_0/Q4_1; see FWD_ROWS_EXACT); llama-perplexity
 * packs its chunks and asks for the rows the same way. */
int model_forward_batch_rows(Model *m, const SeqSpan *seqs, int n_seqs, const int *out0, float *logits, Err *err);
/* A cache of ctx positions of type dtype (DT_F32 or DT_F16; anything else
 * is an error naming it). */
int kvcache_create(KVCache *kv, const Config *c, int ctx, int dtype, Err *err);
void kvcache_free(KVCache *kv);

/* ---- LoRA (lora.c) ----------------------------------------------------------
 * m: a model created from a config with lora_rank > 0 (its registry: the
 * adapters). base: the frozen model (any weight types, e.g. a GGUF; same
 * shapes without LoRA). m takes base's weights as its own views and links
 * each adapter to its base weight, so m's forward computes base + adapters
 * and its backward gives gradients to the adapters only (the input gradient
 * flows through the frozen weights in their own type). The scale is
 * alpha / r times run_scale. base must outlive m and is tied to m's adapters
 * (base's own forward applies them too: run-time adapters for inference,
 * base->lora_r is set). A tensor of m that does not match base (name or
 * shape) is an error naming it. */
int model_lora_attach(Model *m, Model *base, float run_scale, Err *err);
/* LoRA dropout for the next forward and backward of m (a model that holds
 * adapters, Config.lora_dropout > 0; otherwise nothing happens): masks of
 * the run seed, global batch `batch`, rows from `row0` of `T` tokens
 * (LoraDropout). model_lora_dropout_off: passes without dropout again. */
void model_lora_dropout_pass(Model *m, uint64_t seed, uint64_t batch, int row0, int T);
void model_lora_dropout_off(Model *m);
/* out (M, out) += scale * (drop(in) A^T) B^T when w carries an adapter
 * (drop: the identity unless a dropout pass is on). */
void lora_forward(float *out, const float *in, const Tensor *w, int M);
/* The linear layer: out (M,N) = in (M,K) W^T + bias, in W's precision
 * (model_set_precision) and type, plus W's LoRA adapter. 0 or an error
 * code (ERR_UNSUPPORTED: no kernel for W's type). */
int linear_forward(float *out, const float *in, const Tensor *w, const Tensor *bias, int M);
/* The backward of out = in W^T + bias (+ LoRA) for one linear weight of any
 * type: dinp (M, in) += dout W (+ the adapter's term; dinp may be NULL);
 * W's and bias's gradients when they have one (f32 weights that train);
 * the adapter's dA, dB. Returns 0, or ERR_UNSUPPORTED / ERR_NOMEM (a weight
 * type without a dequantizer; the tile buffer). */
int linear_backward(float *dinp, const float *dout, const float *inp, const Tensor *w, const Tensor *bias, int M);

/* Per-rank dimensions of a sharded model (heads, d_ff, vocabulary, experts
 * divided by tp / ep); the whole config when unsharded. */
Config model_local_config(const Config *c, const ModelShard *s);

/* Model FLOPs per token for training, PaLM convention: 6 N_active + 12 L d T. */
double model_flops_per_token(const Config *c, int T);

#endif
