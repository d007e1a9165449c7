/* tune: fine-tuning models jarip runs (a GGUF file or a training
 * checkpoint) with LoRA adapters or in full: chat/text data into padded
 * examples with label flags, the base and adapter models, the run's record
 * (finetune.json), and what a run exports (merged GGUF, llama.cpp adapter).
 * Depends on infer (the base, its tokenizer and chat template), train,
 * data, model, io. */
#ifndef JARIP_TUNE_H
#define JARIP_TUNE_H

#include "core/core.h"
#include "infer/infer.h"
#include "model/model.h"

enum { TUNE_CHAT = 0, TUNE_TEXT = 1 };

typedef struct {
    uint64_t lines;        /* non-empty input lines (JSONL) or 1 (plain text) */
    uint64_t examples[2];  /* rows written: train, validation */
    uint64_t tokens;       /* tokens in the rows (padding excluded) */
    uint64_t labels;       /* tokens the loss counts */
    uint64_t truncated;    /* examples cut at the row length */
    uint64_t dropped;      /* chat examples left without a label after the cut */
} SftStats;

/* Read data (format TUNE_CHAT: JSONL {"messages": [{"role", "content"}]}
 * per line, rendered by im's chat template, only the assistant turns
 * labelled; TUNE_TEXT: JSONL {"text"} per line or, when the file does not
 * start with '{', plain text, every token labelled; long texts are cut into
 * rows that overlap by one token) and write rows of seq + 1 tokens to
 * out_path (examples_write). Every round(1 / val_fraction)-th example goes
 * to the validation split (none when val_fraction is 0; at least one when
 * there are two or more examples and val_fraction > 0). Bad input (a line
 * that does not parse, a message without role or content, an unknown role,
 * a chat without an assistant turn) is an error naming the line; nothing
 * is written then. */
int sft_prepare(const InferModel *im, const char *path, int format, int seq, double val_fraction, const char *out_path,
                SftStats *st, Err *err);

/* A float32 training model with base's weights (any types, dequantized):
 * --full fine-tuning. dst must be created (model_create, training) from
 * base's config; tensors are matched by name. */
int tune_copy_weights(Model *dst, const Model *base, Err *err);
/* W += (alpha / r) B A for every adapter of lora (a LoRA config's registry)
 * into full (float32, the base's registry): the merged model. */
int tune_merge(Model *full, const Model *lora, Err *err);

/* The adapters of lora (a LoRA model's registry) as llama.cpp's LoRA GGUF
 * (general.type "adapter", adapter.type "lora", adapter.lora.alpha; tensors
 * "<base weight>.lora_a" (GGUF ne {in, r}) and ".lora_b" ({r, out}), f32),
 * written atomically. arch: the base's general.architecture. */
int tune_write_adapter(const Model *lora, const char *arch, const char *out, Err *err);

/* The run's record, OUT/finetune.json: the base (path, "gguf" or "ckpt"),
 * the mode ("lora" or "full"), the data format and the chat template text. */
typedef struct {
    char base[4096];
    int base_is_gguf;
    int lora;
    int format;
} TuneRun;
int tune_run_write(const char *out_dir, const TuneRun *r, const char *chat_template, size_t tlen, Err *err);
/* Find the record of dir (a run directory) or of its parent (a checkpoint
 * directory). Returns 0 and fills r, ERR_IO when there is none. *tmpl (may
 * be NULL) gets the chat template (malloc'd, "" when none). */
int tune_run_read(const char *dir, TuneRun *r, char **tmpl, Err *err);

/* The frozen base of a run: a GGUF file (infer_model_open: weights in their
 * own types, tokenizer, chat template) or a training checkpoint (float32
 * weights; DIR/tokenizer.json or bytes; ChatML), as an InferModel either
 * way. Close with infer_model_close. */
int tune_base_open(InferModel *im, const char *path, int is_gguf, Err *err);
/* The chat template text of a GGUF base ("" when none; not copied). */
const char *tune_base_template(const InferModel *im, size_t *len);

/* jarip export of a fine-tuning run: out (may be NULL): the merged model
 * (LoRA: base + adapters; full: the weights) with the base's tokenizer and
 * chat template, as type dtype; lora_out (may be NULL): the adapter alone. */
int tune_export(const char *ckpt, const char *out, const char *lora_out, int dtype, Err *err);

#endif
