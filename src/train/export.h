/* Export a training checkpoint as a GGUF model that jarip's inference and
 * llama.cpp load: GGUF tensor names are jarip's registry names. */
#ifndef JARIP_EXPORT_H
#define JARIP_EXPORT_H

#include "core/core.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

/* ckpt: run or checkpoint directory. tokenizer: a tokenizer file (json,
 * gguf, tiktoken) or NULL: then DIR/tokenizer.json next to the run if
 * present, else, for byte-level (vocab 256) models, a 256-token byte-level
 * BPE vocabulary. dtype: f32, f16, q8_0, q4_0, q4_1, ... (DType). */
int export_gguf(const char *ckpt, const char *tokenizer, const char *out, int dtype, Err *err);

/* A tokenizer for byte-level models: token id b is byte b, no merges. */
int export_byte_tokenizer(Tokenizer **out, Err *err);

/* The same from a float32 model in memory (m's registry: a whole model,
 * not LoRA) with tokenizer tok; chat_template (tlen bytes, may be NULL)
 * becomes tokenizer.chat_template. */
int export_model_gguf(const Model *m, const Tokenizer *tok, const char *chat_template, size_t tlen, const char *out,
                      int dtype, Err *err);

#endif
