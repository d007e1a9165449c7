/* Private layout of the tokenizer, shared by its source files only. */
#ifndef JARIP_TOK_INTERNAL_H
#define JARIP_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer.h"

#define TOK_MAX_STAGES 4
/* Highest token id + 1 a loaded tokenizer may have: 16x the largest real
 * vocabulary (Gemma's 262144). Ids are array indices, so a hostile file
 * naming id 10^9 must be refused, not allocated (4 GiB from a 14-byte file). */
#define TOK_MAX_VOCAB (1 << 22)

typedef struct {
    uint64_t key;  /* (left << 32) | right; UINT64_MAX marks an empty slot */
    int32_t rank;
    int32_t out;   /* id of the merged token */
} TokMerge;

struct Tokenizer {
    int n_vocab;
    int vocab_cap;          /* ids off/len/special have room for (grown by doubling) */
    uint8_t *pool;          /* all token bytes */
    size_t pool_len, pool_cap;
    uint32_t *off, *len;    /* per id; len UINT32_MAX = unassigned */
    uint8_t *special;       /* per id: matched before splitting */

    uint32_t *vmap;         /* bytes -> id+1 (open addressing), 0 empty */
    size_t vmap_cap;

    TokMerge *mmap;         /* (left,right) -> rank, out */
    size_t mmap_cap;
    int32_t *merge_l, *merge_r; /* merges by rank, for saving */
    int32_t n_merges;

    int32_t byte_id[256];   /* token of each single byte, -1 when absent */
    int ignore_merges;      /* whole piece in vocab -> that token (Llama 3) */
    int add_prefix_space;

    /* pre-tokenizer: stages applied in order, each an Isolated split */
    char pattern_name[16];
    int n_stages;
    char *stage_src[TOK_MAX_STAGES];
    pcre2_code *stage_re[TOK_MAX_STAGES];

    int32_t *special_ids;   /* sorted by text length, longest first */
    int n_special;
    uint8_t special_first[256]; /* first bytes of special tokens */

    int32_t bos, eos, unk;
    int add_bos;
};

/* ---- tokenizer.c: construction ---- */
Tokenizer *tok_new(Err *err);
/* Set id's bytes (grows the vocabulary as needed). */
int tok_set_token(Tokenizer *t, int32_t id, const void *bytes, size_t len, Err *err);
/* After all tokens are set: build the bytes->id map and byte table.
 * Tokens flagged special are left out of the map when plain_specials is 0. */
int tok_build_vocab(Tokenizer *t, Err *err);
int32_t tok_lookup(const Tokenizer *t, const void *bytes, size_t len);
/* Append a merge (left, right) -> out with the next rank. */
int tok_add_merge(Tokenizer *t, int32_t l, int32_t r, int32_t out, int32_t rank, Err *err);
/* Collect flagged specials into the matching table. */
int tok_finish_specials(Tokenizer *t, Err *err);
static inline const TokMerge *tok_merge_find(const Tokenizer *t, int32_t l, int32_t r) {
    if (t->mmap_cap == 0) return NULL; /* a vocabulary without merges (bytes only) */
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    uint64_t h = key * 0x9E3779B97F4A7C15ULL;
    size_t mask = t->mmap_cap - 1, i = (size_t)(h >> 20) & mask;
    for (;;) {
        const TokMerge *m = &t->mmap[i];
        if (m->key == key) return m;
        if (m->key == UINT64_MAX) return NULL;
        i = (i + 1) & mask;
    }
}
uint64_t tok_hash_bytes(const void *p, size_t n);

/* GPT-2 byte <-> unicode mapping. Encode writes UTF-8 (<= 2 bytes a byte). */
size_t tok_bytelevel_encode(const uint8_t *in, size_t n, char *out);
/* Decode a byte-level string; returns -1 when a character is outside the
 * 256-character alphabet (then the caller keeps the raw UTF-8). */
long tok_bytelevel_decode(const char *in, size_t n, uint8_t *out);

/* ---- pretokenize.c ---- */
/* Install split stages from regex sources (already expanded, PCRE2 syntax). */
int tok_set_stages(Tokenizer *t, const char *name, const char *const *srcs, int n, Err *err);
/* Install a named pattern ("gpt2", "llama3", "smollm"). */
int tok_set_pattern(Tokenizer *t, const char *name, Err *err);
/* Translate a Hugging Face (Oniguruma) regex into PCRE2 syntax with the
 * same \s meaning. Returns a malloc'd string. */
char *tok_regex_from_hf(const char *src);

typedef void (*TokPieceFn)(void *ctx, const uint8_t *orig, size_t len);
typedef struct {
    pcre2_match_data *md[TOK_MAX_STAGES];
    int failed;  /* PCRE2 error code of a match that failed, 0 if none */
} TokSplitter;
int tok_splitter_init(TokSplitter *s, const Tokenizer *t, Err *err);
void tok_splitter_free(TokSplitter *s);
/* Cut a segment into pieces. san is the same text with invalid UTF-8 bytes
 * replaced (same length), orig the real bytes passed on to fn. */
void tok_split(const Tokenizer *t, TokSplitter *s, const uint8_t *san, const uint8_t *orig, size_t len, TokPieceFn fn,
               void *ctx);
/* Length of the valid UTF-8 prefix of p[0..n). */
size_t tok_utf8_valid_prefix(const uint8_t *p, size_t n);
/* Copy src to dst replacing each byte that is not part of a valid UTF-8
 * sequence by 0x01 (a character no pattern treats as letter, digit or
 * space, as U+FFFD is not); returns how many bytes were replaced. */
size_t tok_utf8_sanitize(const uint8_t *src, size_t n, uint8_t *dst);

#endif
