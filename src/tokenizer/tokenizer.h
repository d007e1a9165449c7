/* tokenizer: byte-level BPE as GPT-2, Llama 3 and SmolLM2 use it.
 *
 * A Tokenizer is immutable once built, so any number of threads may encode
 * with it at once. Encoding goes: special tokens matched first (when
 * allowed), then the split pattern (pre-tokenizer) cuts each segment into
 * pieces, then each piece's bytes are merged by rank. Ids equal those of
 * Hugging Face `tokenizers` for the same tokenizer.json (see docs/tokenizer.md
 * for the invalid UTF-8 policy and the training tie-break).
 *
 * decode(encode(x)) == x for every byte string x when every byte has a
 * token (true of every byte-level vocabulary; the trainer guarantees it). */
#ifndef JARIP_TOKENIZER_H
#define JARIP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef struct Tokenizer Tokenizer;
typedef struct GGUFFile GGUFFile;

/* Split patterns jarip knows by name ("gpt2", "llama3", "smollm" = each
 * digit alone, then gpt2). NULL for an unknown name. */
const char *tokenizer_pattern_regex(const char *name);

/* Load by content: a JSON object -> tokenizer.json, "GGUF" magic -> GGUF
 * metadata, otherwise a tiktoken rank file ("<base64> <rank>" lines). */
int tokenizer_load(Tokenizer **out, const char *path, Err *err);
/* Hugging Face tokenizer.json text (model BPE, byte-level). */
int tokenizer_from_json(Tokenizer **out, const char *json, size_t len, Err *err);
/* tokenizer.ggml.* metadata of an open GGUF (model "gpt2"). */
int tokenizer_from_gguf(Tokenizer **out, const GGUFFile *g, Err *err);
/* tiktoken rank file text. pattern: a name above or NULL to choose by size
 * (50256 ranks: gpt2 + <|endoftext|>; else llama3/cl100k). */
int tokenizer_from_tiktoken(Tokenizer **out, const char *text, size_t len, const char *pattern, Err *err);
void tokenizer_free(Tokenizer *t);

/* Encode len bytes. allow_special: match special tokens in the text (as
 * Hugging Face does); 0 treats their text as ordinary bytes. *ids is
 * malloc'd (free() it), *n its length. */
int tokenizer_encode(const Tokenizer *t, const void *bytes, size_t len, int allow_special, int32_t **ids, size_t *n,
                     Err *err);

/* The same ids as tokenizer_encode, computed by `threads` threads (0: all)
 * on pieces cut where no pre-token can cross: after a newline that ends a
 * non-space character and precedes one (known patterns only; other
 * tokenizers fall back to one thread). */
int tokenizer_encode_parallel(const Tokenizer *t, const void *bytes, size_t len, int allow_special, int threads,
                              int32_t **ids, size_t *n, Err *err);

/* Smallest p in [from, len) where the text may be cut with the ids of the
 * two parts equal to the ids of the whole: after "X\n" (X visible ASCII)
 * before a visible character, where no piece of the gpt2, llama3 or smollm
 * patterns can cross. len when there is none, or when the tokenizer adds a
 * prefix space (every part would get one). Custom patterns get the same
 * points: exact unless the pattern joins a line's end to the next line. */
size_t tokenizer_next_cut(const Tokenizer *t, const void *bytes, size_t len, size_t from);

/* Per-thread encoder: keeps a cache of encoded words and scratch buffers
 * between calls, which is what makes encoding many documents fast. */
typedef struct TokEncoder TokEncoder;
TokEncoder *tok_encoder_new(const Tokenizer *t, Err *err);
void tok_encoder_free(TokEncoder *e);
/* Append the ids of bytes to the growable array (*ids, *n, *cap). */
int tok_encoder_append(TokEncoder *e, const void *bytes, size_t len, int allow_special, int32_t **ids, size_t *n,
                       size_t *cap, Err *err);
/* Invalid UTF-8 bytes the encoder has seen so far (each counted once). */
uint64_t tok_encoder_invalid_bytes(const TokEncoder *e);

/* Concatenate the tokens' bytes into *out (malloc'd, NUL-terminated for
 * convenience; *len excludes the NUL). An id outside the vocabulary is an
 * error. */
int tokenizer_decode(const Tokenizer *t, const int32_t *ids, size_t n, char **out, size_t *len, Err *err);
/* Bytes of one token (NULL when id is out of range or unassigned). */
const uint8_t *tokenizer_token_bytes(const Tokenizer *t, int32_t id, size_t *len);

int tokenizer_vocab_size(const Tokenizer *t);  /* highest id + 1 */
int32_t tokenizer_eos_id(const Tokenizer *t);  /* -1 when none */
int32_t tokenizer_bos_id(const Tokenizer *t);  /* -1 when none */
/* Whether the model expects bos_id before a prompt: GGUF
 * tokenizer.ggml.add_bos_token (absent: yes for llama3, else no), or a
 * tokenizer.json TemplateProcessing post-processor that starts with a
 * special token. encode never adds it; callers prepend it. */
int tokenizer_add_bos(const Tokenizer *t);
/* Id of the special token with exactly this text, -1 when none. */
int32_t tokenizer_special_id(const Tokenizer *t, const char *text);
int tokenizer_is_special(const Tokenizer *t, int32_t id);
/* The split pattern's name ("gpt2", "llama3", "smollm" or "custom"). */
const char *tokenizer_pattern_name(const Tokenizer *t);

/* Write tokenizer.json (atomically) that Hugging Face `tokenizers` loads
 * and that encodes to the same ids. */
int tokenizer_save_json(const Tokenizer *t, const char *path, Err *err);

/* Put the tokenizer.ggml.* keys (model gpt2, pre, tokens, token_type,
 * merges, bos/eos ids) into a GGUF being written, so that
 * tokenizer_from_gguf (and llama.cpp) read the same tokenizer back.
 * Unassigned ids are written as unused "<unused_N>" tokens. */
typedef struct GGUFWriter GGUFWriter;
int tokenizer_to_gguf(const Tokenizer *t, GGUFWriter *w, Err *err);

/* ---- training ---------------------------------------------------------- */
typedef struct {
    const char *const *inputs; /* UTF-8 text files */
    int n_inputs;
    int vocab_size;            /* total, including the 256 bytes and the specials */
    const char *pattern;       /* "gpt2" (default) or "llama3" */
    const char *const *specials; /* NULL/0: just "<|endoftext|>" */
    int n_specials;
    int threads;               /* 0: all */
    /* Called now and then from the calling thread: stage name, done in [0,1]. */
    void (*progress)(void *ctx, const char *stage, double done);
    void *progress_ctx;
} TokTrainOptions;

/* Learn merges: ids 0..255 are the bytes, then one token per merge, then
 * the specials. Each step merges the most frequent adjacent pair; equal
 * counts go to the pair with the smaller (left id, right id). */
int tokenizer_train(Tokenizer **out, const TokTrainOptions *opt, Err *err);

#endif
