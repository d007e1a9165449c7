/* Export a training checkpoint as a GGUF model that jarip's inference and
 * llama.cpp load: GGUF tensor names are jarip's registry names. */
#ifndef JARIP_EXPORT_H
#define JARIP_EXPORT_H

#include "core/core.h"

/* ckpt: run or checkpoint directory. tokenizer: a tokenizer file (json,
 * gguf, tiktoken) or NULL: then DIR/tokenizer.json next to the run if
 * present, else, for byte-level (vocab 256) models, a 256-token byte-level
 * BPE vocabulary. dtype: f32, f16, q8_0, q4_0, q4_1, ... (DType). */
int export_gguf(const char *ckpt, const char *tokenizer, const char *out, int dtype, Err *err);

#endif
