/* infer: running GGUF models (llama.cpp's format) through jarip's one model
 * code: loading, the generation loop, chat templates, the inference bench.
 *
 * The weights stay in the file's read-only mapping (Tensor.data points into
 * it, Tensor.dtype is the file's type per tensor), so loading a model costs
 * no copy and the resident memory is the pages actually touched. */
#ifndef JARIP_INFER_H
#define JARIP_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "infer/sampler.h"
#include "io/gguf.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

/* ---- loading -------------------------------------------------------------- */
/* Build m from an open GGUF of arch "llama" (also Mistral/SmolLM2/Llama 2/3
 * shapes, dense or MoE) or "gpt2": a Config from the {arch}.* metadata and a
 * registry whose tensors point into g's mapping. Every tensor's shape and
 * type is checked against the config; a missing, extra or misshapen tensor
 * is an error naming it. g must outlive m. Free with model_free_gguf(). */
int model_load_gguf(Model *m, GGUFFile *g, Err *err);
/* model_free plus what model_load_gguf allocated (f32 copies of half-precision
 * norm vectors). Does not close the GGUF. */
void model_free_gguf(Model *m);

/* Chat template families jarip renders itself. */
typedef enum { CHAT_NONE = 0, CHAT_CHATML, CHAT_LLAMA3, CHAT_LLAMA2 } ChatStyle;

typedef struct {
    ChatStyle style;
    char default_system[1024]; /* system turn the template adds when none is given ("" none) */
    char bos[64], eos[64];     /* texts of the bos/eos tokens (Llama 2/3 templates write them) */
} ChatTemplate;

/* A model file opened for inference: mapping, model, tokenizer. */
typedef struct {
    GGUFFile *gguf;
    Model model;
    Tokenizer *tok;     /* NULL: no tokenizer in the file (byte-level vocab 256 models use bytes) */
    ChatTemplate chat;  /* from tokenizer.chat_template; ChatML when absent */
    int32_t end_ids[8]; /* tokens that end a turn (eos, <|im_end|>, <|eot_id|>, ...) */
    int n_end;
    char name[128];     /* general.name or the file name */
    Model *lora;        /* a run-time LoRA adapter on the model's weights, or NULL */
} InferModel;

/* Open path, load the model and its tokenizer. A file without a tokenizer
 * loads only when its vocabulary is 256 (bytes); otherwise an error says so. */
int infer_model_open(InferModel *im, const char *path, Err *err);
/* Where generation reads g's weights from (path: the file g was opened
 * from): the file's own page cache in 2 MiB pages where the kernel maps it
 * so (gguf_map_tensor_data: no copy, instant when the file is cached, shared
 * with other processes), else a private copy in 2 MiB pages
 * (gguf_load_tensor_data). Always the copy when infer_model_repack will
 * rewrite Q4_0, Q5_0 or Q8_0 weights in place, or with JARIP_MAP_WEIGHTS=0. */
int infer_model_load_weights(GGUFFile *g, const char *path, Err *err);
/* The same from an opened file g (taken: infer_model_close closes it, and
 * so does a failure); path names it in errors. Tensor data must stay where
 * g found it (infer_model_load_weights places it). */
int infer_model_from_gguf(InferModel *im, GGUFFile *g, const char *path, Err *err);
void infer_model_close(InferModel *im);
/* Apply the LoRA adapter in path (llama.cpp's adapter GGUF, as `jarip export
 * --lora-out` writes) to im's linear weights at run time, scaled by
 * scale x alpha / r (llama.cpp's --lora-scaled). An adapter whose
 * architecture, tensor names or shapes do not fit the model is an error
 * naming the tensor. Call before creating sessions (their activations
 * include the adapter's scratch). */
int infer_model_add_lora(InferModel *im, const char *path, float scale, Err *err);
/* Rearrange im's Q4_0, Q5_0 and Q8_0 linear weights (q, k, v, o, gate, up,
 * down of dense layers; rows a multiple of 16) in place into DT_Q4_0_R16 /
 * DT_Q5_0_R16 / DT_Q8_0_R16, read as one stream by 16-row VNNI kernels
 * (kernels/quant_r16.c): same bytes, same output bits. Only where it is safe and pays: the weights were copied out
 * of the file (infer_model_open), this CPU has AVX-512 VNNI (JARIP_ISA not
 * below avx512), and JARIP_REPACK is not "0". Afterwards only matmul reads
 * those weights: callers that write or merge weights (export) must not
 * call it; a run-time LoRA adapter (its own products) may come before or
 * after. *n (may be NULL): tensors repacked. Returns 0 or ERR_NOMEM (the
 * model then mixes both layouts, each tensor consistent, and still runs). */
int infer_model_repack(InferModel *im, int *n, Err *err);

/* Text -> ids (special tokens like <|im_start|> are recognised; bos prepended
 * when the tokenizer asks for it and add_bos is set). *ids malloc'd. */
int infer_tokenize(const InferModel *im, const char *text, size_t len, int add_bos, int32_t **ids, size_t *n, Err *err);
/* Bytes of one token (bytes themselves for a byte-level model); NULL when none. */
const uint8_t *infer_token_bytes(const InferModel *im, int32_t id, size_t *len);
/* Whether id ends a turn: eos, or the template's end-of-turn token. */
int infer_is_end(const InferModel *im, int32_t id);

/* ---- chat templates --------------------------------------------------------- */
typedef struct {
    const char *role;    /* "system" | "user" | "assistant" */
    const char *content;
} ChatMessage;

/* Read a Jinja template text (NULL/0: ChatML, as SmolLM2 and most small
 * instruct models use): the family by its marker tokens, and a default
 * system prompt written as a literal (SmolLM2's "You are a helpful AI
 * assistant named SmolLM..."). bos/eos: the tokens' texts (may be NULL). */
void chat_template_init(ChatTemplate *t, const char *tmpl, size_t len, const char *bos, const char *eos);
const char *chat_style_name(ChatStyle s);
/* Render messages and, when add_assistant, the opening of the assistant's
 * turn, as the model's Jinja template does (same text, byte for byte, for
 * the three families). *out malloc'd. */
int chat_render(const ChatTemplate *t, const ChatMessage *msgs, int n, int add_assistant, char **out, Err *err);

/* ---- generation ------------------------------------------------------------------ */
typedef struct {
    const InferModel *im;
    KVCache kv;
    Sampler sampler;
    SamplerOptions so;
    int32_t *hist;      /* tokens whose keys/values are in the cache, in order */
    int n_hist, cap;
    int batch;          /* prompt tokens per forward call */
    float *logits;      /* (V): after the last fed token */
    int have_logits;
    uint64_t draws;     /* sampler draws so far (seeded runs are reproducible) */
} InferSession;

/* KV cache type of generate/chat/bench infer unless --kv-type says otherwise:
 * f16, llama.cpp's default (half the memory; with the llama.cpp-numerics
 * path of Llama-shaped models the same logits as llama.cpp with its default
 * cache, bit for bit). */
#define INFER_KV_DEFAULT DT_F16
/* "f16"/"f32" -> DT_F16/DT_F32; -1 for anything else. */
int infer_kv_type_from_name(const char *name);

/* A session over ctx positions (0: the model's context length, capped at
 * 4096) that processes prompts in chunks of batch tokens (0: 512), with a
 * KV cache of kv_type (DT_F32 or DT_F16; see kvcache_create). */
int infer_session_create(InferSession *s, const InferModel *im, int ctx, int batch, int kv_type, const SamplerOptions *so,
                         Err *err);
void infer_session_free(InferSession *s);
/* Forget everything (new conversation). */
void infer_session_reset(InferSession *s);
/* Make the cache hold exactly ids[0..n): keeps the longest common prefix with
 * what is cached, runs the rest through the model in chunks (at least the
 * last token, so logits are fresh). Multi-turn chat re-renders the whole
 * conversation and pays only for the new turn. */
int infer_session_prompt(InferSession *s, const int32_t *ids, int n, Err *err);
/* Append one token (a sampled one) and compute the next logits. */
int infer_session_push(InferSession *s, int32_t id, Err *err);

/* Called with each piece of generated text as it becomes final (whole
 * UTF-8 characters, never part of a stop string). Non-zero stops generation. */
typedef int (*InferTextCb)(void *ctx, const char *text, size_t len);

typedef struct {
    int max_tokens;            /* <= 0: until the context is full */
    const char *const *stops;  /* stop strings (not printed) */
    int n_stops;
    int ignore_eos;            /* keep going past end-of-turn tokens */
} GenOptions;

typedef struct {
    int n_tokens;              /* generated (sampled) tokens */
    int stopped_by;            /* 0 max tokens, 1 end token, 2 stop string, 3 context full, 4 callback */
    double prompt_s, gen_s;    /* wall time of prompt processing / generation */
    char *text;                /* the generated text (malloc'd, NUL-terminated; caller frees) */
    size_t text_len;
} GenResult;

/* Generated text as it grows token by token: what is final to stream (whole
 * UTF-8 characters, never part of a possible stop string) and where a stop
 * string cuts it. Zero-initialise; free p. */
typedef struct {
    char *p;        /* the text so far (NUL-terminated once anything was pushed) */
    size_t n, cap;
    size_t sent;    /* bytes already handed out as final */
} InferText;
/* Append a token's bytes b[0..len). The newly final text is p[*from ..
 * *from + *n). Returns 1 when a stop string appeared (the text is cut
 * before it, nothing after it is handed out), 0 otherwise, ERR_NOMEM. */
int infer_text_push(InferText *t, const GenOptions *go, const uint8_t *b, size_t len, size_t *from, size_t *n);
/* At the end of generation: what was held back becomes final. */
void infer_text_flush(InferText *t, size_t *from, size_t *n);

/* Generate after infer_session_prompt: sample, stream, stop. ids (may be
 * NULL) receives the generated ids, at most max_ids of them. */
int infer_generate(InferSession *s, const GenOptions *go, InferTextCb cb, void *ctx, int32_t *ids, int max_ids,
                   GenResult *res, Err *err);

/* Everything a generate/chat run is asked for (the CLI fills it). */
#define INFER_MAX_STOPS 32
typedef struct {
    const char *model, *system, *prompt;
    int n, threads, ctx, batch, ignore_eos, stats, chat;
    int kv_type;         /* DT_F16 (default) or DT_F32 */
    const char *lora;    /* a LoRA adapter GGUF to apply at run time, or NULL */
    float lora_scale;    /* its scale (default 1) */
    SamplerOptions so;
    const char *stops[INFER_MAX_STOPS];
    int n_stops;
} InferOptions;

#endif
