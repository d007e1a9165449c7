/* eval: what a model became, in the numbers other tools report.
 *
 *   perplexity   llama.cpp's llama-perplexity: the text tokenized once (BOS
 *                first where the tokenizer adds one), cut into chunks of ctx
 *                tokens, each chunk's first token replaced by BOS, only the
 *                second half of each chunk scored; PPL = exp(mean NLL) with
 *                its standard error.
 *   kld          llama-perplexity --kl-divergence: the same chunks through a
 *                base model and the model; mean KL divergence of the model
 *                from the base (base log-probabilities stored as llama.cpp
 *                stores them: 16 bits each), percentiles, same top token.
 *   choice       lm-evaluation-harness multiple choice: log-likelihood of
 *                each continuation given the context; acc, acc_norm.
 *
 * Every logit comes from the one cached forward (model_forward_cached_rows),
 * so a GGUF model gives llama.cpp's logits and a training checkpoint the ones
 * it samples with. Functions return 0 or an error code with err filled. */
#ifndef JARIP_EVAL_H
#define JARIP_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

/* ---- tokens ------------------------------------------------------------------ */
/* Text -> ids with tok, or the bytes themselves when tok is NULL (byte-level
 * models). allow_special: recognise special-token texts (llama-perplexity
 * does not; Hugging Face tokenizers do). *ids malloc'd. */
int eval_tokenize(const Tokenizer *tok, const char *text, size_t len, int allow_special, int32_t **ids, size_t *n,
                  Err *err);
/* A text file's tokens as llama-perplexity reads a text: special-token
 * texts not recognised, BOS first where the tokenizer adds one. */
int eval_read_text(const Tokenizer *tok, const char *path, int32_t **ids, size_t *n, Err *err);
/* The BOS id llama.cpp puts before a text and at the start of each chunk
 * (tokenizer.ggml.add_bos_token), -1 when the tokenizer adds none. */
int32_t eval_bos(const Tokenizer *tok);

/* ---- chunks -------------------------------------------------------------------- */
typedef struct {
    int ctx;        /* tokens per chunk (llama-perplexity -c; default 512) */
    int batch;      /* tokens per forward pass (llama-perplexity -b): < ctx cuts a chunk into passes,
                     * >= 2 ctx runs batch / ctx chunks per pass (<= 0: 2048 as llama.cpp, at least ctx) */
    int kv_type;    /* DT_F16 (llama.cpp's default cache) | DT_F32 */
    int max_chunks; /* <= 0: every whole chunk of the text */
    int32_t bos;    /* written over each chunk's first token; -1: none */
} EvalOptions;

/* ctx 512, batch 0 (2048), F16 cache, all chunks, no BOS. */
void eval_options_default(EvalOptions *o);

/* A model ready to run chunks: n_seq of them per forward pass, each its
 * own sequence and KV cache (as llama-perplexity packs n_batch / n_ctx
 * chunks into one batch), and the logits of their scored halves. The
 * model's activations are (re)planned for (1, n_seq * step). */
typedef struct {
    Model *m;
    KVCache *kv;           /* (n_seq) */
    int ctx, step, first;  /* step: tokens of a chunk per pass (<= ctx); first = ctx / 2, the first position whose logits are kept */
    int n_seq;             /* chunks per pass: batch / ctx where that is >= 2, within the model's context length and 1 GiB of logits; else 1 */
    int V;
    int32_t *buf;          /* (n_seq * step) tokens of a pass */
    SeqSpan *seqs;         /* (n_seq) the sequences of a pass */
    int *out0;             /* (n_seq) their first row with logits */
    float *logits;         /* (n_seq, ctx - first, V): logits of positions first..ctx-1 of each chunk of a run */
} ChunkRunner;

int chunk_runner_create(ChunkRunner *r, Model *m, const EvalOptions *o, Err *err);
/* chunks: n (1..n_seq) consecutive chunks of ctx tokens (not modified);
 * each chunk's first token is replaced by bos when bos >= 0. Chunk i's
 * logits at r->logits + i * (ctx - first) * V, the same bits as a run of
 * that chunk alone (Q8_0/Q4_1 weights; others within rounding). */
int chunk_runner_run(ChunkRunner *r, const int32_t *chunks, int n, int32_t bos, Err *err);
void chunk_runner_free(ChunkRunner *r);

/* Whole chunks of n tokens at o->ctx (at most o->max_chunks); a text of
 * fewer than 2 x ctx tokens is an error, as llama-perplexity refuses it. */
int eval_n_chunks(size_t n_tokens, const EvalOptions *o, int *n_chunk, Err *err);

/* Running negative log-likelihood sums, and llama-perplexity's estimate:
 * PPL = exp(mean), error = PPL * sqrt(var / (count - 1)). */
typedef struct {
    double nll, nll2;
    long count;
} NllSum;
double nll_ppl(const NllSum *s);
double nll_ppl_err(const NllSum *s);

/* -log p(tok) of one row of logits (V), as llama-perplexity computes it
 * (max, sum of expf in double). */
double eval_nll(const float *logits, int V, int tok);

/* ---- llama.cpp's log-probability file ---------------------------------------------
 * llama-perplexity --kl-divergence-base FILE writes, and jarip reads and
 * writes, little-endian:
 *   "_logits_" | u32 ctx | i32 n_vocab | i32 n_chunk | i32 tokens[n_chunk * ctx]
 *   then per chunk, per scored position (ctx - 1 - ctx/2 of them), one row of
 *   nv = 2 * ((n_vocab + 1) / 2) + 4 u16: f32 scale, f32 min_log_prob, then
 *   n_vocab u16 q, log p(i) = scale * q[i] + min_log_prob (q = 0 for the
 *   tokens below max - 16, which the KLD ignores).
 * jarip appends a trailer "jaripcrc" | u32 CRC-32 of every byte before it
 * (llama.cpp reads the file to its own end and never sees it); a file with a
 * trailer is checked, one without (llama.cpp's) is taken as it is. */
typedef struct {
    int fd;
    char *tmp, *path;
    uint32_t crc;
    int ctx, n_vocab, n_chunk;
    uint16_t *row;       /* (nv) scratch */
} LogitsWriter;

/* Start writing path (a temporary file until logits_writer_finish renames it). */
int logits_writer_open(LogitsWriter *w, const char *path, int ctx, int n_vocab, int n_chunk, const int32_t *tokens,
                       Err *err);
/* Append one chunk's rows: logits (ctx - first, V) of positions first.., the
 * chunk's tokens. Adds each scored NLL (llama.cpp's float arithmetic of
 * this path) to s. */
int logits_writer_chunk(LogitsWriter *w, const float *logits, const int32_t *chunk, NllSum *s, Err *err);
/* Append n_rows rows already quantized (eval_logprob_row), nv u16 each. */
int logits_writer_rows(LogitsWriter *w, const uint16_t *rows, int n_rows, Err *err);
/* One row of logits (V) as llama.cpp stores it: row (nv u16) gets scale,
 * min_log_prob and the 16-bit log-probabilities; returns -log p(tok) in
 * the float arithmetic of that path. */
double eval_logprob_row(const float *logits, int V, int tok, uint16_t *row);
/* Trailer, fsync, rename; or (ok = 0) remove the temporary file. */
int logits_writer_finish(LogitsWriter *w, int ok, Err *err);

typedef struct {
    void *map;
    size_t size;
    int ctx, n_vocab, n_chunk, nv;
    const int32_t *tokens;  /* (n_chunk * ctx) */
    const uint16_t *rows;   /* (n_chunk, ctx - 1 - ctx/2, nv) */
} LogitsFile;

/* Map and check a log-probability file: header, size, CRC trailer. */
int logits_file_open(LogitsFile *f, const char *path, Err *err);
void logits_file_close(LogitsFile *f);

/* ---- perplexity ------------------------------------------------------------------ */
typedef struct {
    int chunk, n_chunk;     /* chunks done / all */
    double ppl, ppl_err;    /* running estimate after this chunk */
    /* kld only (0 otherwise): */
    double base_ppl, ln_ratio, ln_ratio_err, kld, kld_err, same_top, same_top_err;
} EvalProgress;
typedef void (*EvalProgressCb)(void *ctx, const EvalProgress *p);

typedef struct {
    double ppl, ppl_err, nll;  /* final estimate; mean NLL */
    long scored;               /* tokens scored */
    int n_chunk, ctx;
    double seconds;            /* wall time of the forwards and scoring */
} PplResult;

/* Perplexity of tokens (the whole text's, BOS included where added) at
 * o->ctx. save (may be NULL, opened for the same chunks): also write the
 * log-probabilities (llama-perplexity --kl-divergence-base). */
int eval_perplexity(Model *m, const int32_t *tokens, size_t n, const EvalOptions *o, LogitsWriter *save,
                    EvalProgressCb cb, void *cb_ctx, PplResult *res, Err *err);

/* ---- KL divergence ------------------------------------------------------------------ */
typedef struct {
    double ppl, ppl_err, base_ppl, base_ppl_err;
    double ln_ratio, ln_ratio_err, cor;        /* ln(PPL/PPL base), correlation of the two */
    double kld, kld_err;                       /* mean KLD(base || model), nats */
    double kld_median, kld_p90, kld_p95, kld_p99, kld_p999, kld_max, kld_min;
    double same_top, same_top_err;             /* fraction of positions with the same top token */
    double rms_dp, rms_dp_err;                 /* RMS of p(model) - p(base) of the next token */
    long count;
    int n_chunk, ctx;
    double seconds;
} KldResult;

/* KLD of m from a base: base_model run on the chunks of tokens (base_file
 * NULL), or the log-probabilities of base_file (its own chunks and tokens;
 * tokens/n ignored). A base of another vocabulary size is an error. save:
 * write the base's log-probabilities (only with base_model). */
int eval_kld(Model *m, Model *base_model, const LogitsFile *base_file, const int32_t *tokens, size_t n,
             const EvalOptions *o, LogitsWriter *save, EvalProgressCb cb, void *cb_ctx, KldResult *res, Err *err);

/* ---- multiple choice ------------------------------------------------------------------ */
typedef struct {
    char *context;
    char **choices;
    int n_choices;
    int label;
    int line;        /* in the tasks file */
} ChoiceTask;

/* Read JSONL: one {"context": str, "choices": [str, ...], "label": int} per
 * line (blank lines skipped); at most limit tasks (<= 0 all). A missing or
 * mistyped field or a label out of range is an error naming the line. */
int choice_tasks_load(const char *path, int limit, ChoiceTask **tasks, int *n, Err *err);
void choice_tasks_free(ChoiceTask *tasks, int n);

#define CHOICE_MAX 64
typedef struct {
    double ll[CHOICE_MAX];      /* log-likelihood of each choice (nats) */
    int n_tokens[CHOICE_MAX];   /* continuation tokens */
    int greedy[CHOICE_MAX];     /* every continuation token was the argmax */
    int pred, pred_norm;        /* argmax of ll, of ll / bytes of the choice */
} ChoiceScore;

typedef struct {
    int n;
    double acc, acc_stderr, acc_norm, acc_norm_stderr;
    double seconds;
} ChoiceResult;

typedef void (*ChoiceCb)(void *ctx, int index, const ChoiceTask *t, const ChoiceScore *s);

/* Score tasks as lm-evaluation-harness's loglikelihood requests: the
 * continuation " " + choice (the harness's target delimiter), context and
 * context + continuation tokenized apart, the continuation's tokens those
 * of the whole past the context's (an empty context is the BOS token, or
 * EOS without one; a newline for a byte-level model). ctx: KV cache positions (0: the model's, at most 4096). */
int eval_choice(Model *m, const Tokenizer *tok, const ChoiceTask *tasks, int n, int ctx, int kv_type, ChoiceCb cb,
                void *cb_ctx, ChoiceResult *res, Err *err);

#endif
