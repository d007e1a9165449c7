/* data: token sources for training. A source is either a UTF-8 text file
 * (byte-level tokens 0..255, the last val_fraction held out) or a directory
 * of token shards written by `jarip data prepare` (see docs/shards.md).
 *
 * Batches are stateless: row g of step s is a window whose start depends
 * only on (seed, split, s, g). So a resumed run, or N data-parallel ranks
 * that each take rows [r*B/N, (r+1)*B/N) of the global batch, see exactly
 * the tokens one uninterrupted process would. */
#ifndef JARIP_DATA_H
#define JARIP_DATA_H

#include <stdint.h>

#include "core/core.h"

enum { SPLIT_TRAIN = 0, SPLIT_VAL = 1 };

typedef struct DataLoader DataLoader;

/* Open path (text file, examples file, or shard directory). vocab_size is the model's:
 * a token >= vocab_size is an error naming the file. */
int loader_open(DataLoader **dl, const char *path, int vocab_size, double val_fraction, uint64_t seed, Err *err);
/* Rows [row0, row0+nrows) of batch `step` of split: inputs and targets are
 * (nrows, T) int32, targets the inputs shifted by one. */
int loader_batch(DataLoader *dl, int split, uint64_t step, int row0, int nrows, int T, int32_t *inputs,
                 int32_t *targets, Err *err);
/* Tokens available in a split. */
uint64_t loader_tokens(const DataLoader *dl, int split);
/* Vocabulary the data was made with (256 for text). */
int loader_vocab(const DataLoader *dl);
void loader_close(DataLoader *dl);

/* ---- fine-tuning examples (docs/examples.md) ----------------------------
 * A file "JARIPSFT": header (version 1, row length, train and validation
 * example counts, vocabulary, CRC-32 of the rest), then one row of `row`
 * int32 token ids per example (train rows first, padded), then as many rows
 * of uint8 label flags (1: the model is taught to predict this token).
 * loader_open reads such a file: row g of a batch is example
 * rng(seed, split, step, g) mod n, targets[t] = ids[t+1] where its flag is
 * set, -1 elsewhere (ignored by the loss). */
#define EXAMPLES_MAGIC "JARIPSFT"
typedef struct {
    int row;           /* tokens per row (sequence + 1) */
    uint64_t n[2];     /* examples in the train / validation split */
    int vocab;
    int32_t *ids;      /* (n[0] + n[1], row) */
    uint8_t *labels;   /* (n[0] + n[1], row) */
} Examples;
/* Write atomically (temp + fsync + rename). */
int examples_write(const char *path, const Examples *ex, Err *err);
/* Check a mapped file (magic, sizes, CRC, ids < vocab) and point ex into it. */
int examples_check(const void *data, size_t len, const char *path, Examples *ex, Err *err);
/* Rows [row0, row0 + nrows) of a batch (split's examples, key per step). T < row. */
void examples_batch(const Examples *ex, int split, uint64_t key, int row0, int nrows, int T, int32_t *inputs,
                    int32_t *targets);

/* ---- token shards (docs/shards.md) --------------------------------------
 * One file per shard: a 64-byte little-endian header (magic "JARIPTOK",
 * version, bytes per token 2 or 4, vocab size, split, token count,
 * document count, CRC-32 of the tokens, CRC-32 of the header), then the
 * tokens. Written to a temp name and renamed only when complete. */
#define SHARD_MAGIC "JARIPTOK"
#define SHARD_VERSION 1
#define SHARD_HEADER_BYTES 64

typedef struct {
    uint32_t version, width, vocab, split;
    uint64_t n_tokens, n_docs;
    uint32_t crc;
} ShardHeader;

/* A mapped, verified shard. */
typedef struct {
    ShardHeader h;
    const void *tokens; /* n_tokens of h.width bytes */
    void *map;
    size_t map_len;
} ShardView;

/* Map path and check everything: magic, version, width, exact size (a
 * truncated file is named as such), header and token CRC-32, and every
 * token < vocab_limit (pass 0 to skip that check). */
int shard_map(const char *path, int vocab_limit, ShardView *out, Err *err);
void shard_unmap(ShardView *v);

typedef struct ShardWriter ShardWriter;
/* Shards named <dir>/<prefix>_NNNNNN.bin; a new one starts every
 * max_tokens tokens. Width is 2 when vocab < 65536, else 4. A shard's
 * document count is the number of eot tokens in it. */
int shard_writer_open(ShardWriter **w, const char *dir, const char *prefix, int split, int vocab, int32_t eot,
                      uint64_t max_tokens, Err *err);
int shard_writer_put(ShardWriter *w, const int32_t *ids, size_t n, Err *err);
/* Finish the last shard; *n_shards (may be NULL) gets the count written. */
int shard_writer_close(ShardWriter *w, int *n_shards, Err *err);
/* Drop the shard in progress (its temp file); written shards stay. */
void shard_writer_abort(ShardWriter *w);

/* ---- prepare: corpus -> shards (`jarip data prepare`) ------------------- */
typedef struct Tokenizer Tokenizer;
enum { DATA_FORMAT_TEXT = 0, DATA_FORMAT_LINES = 1, DATA_FORMAT_JSONL = 2 };

typedef struct {
    const Tokenizer *tok;
    const char *const *inputs;
    int n_inputs;
    const char *out_dir;       /* must not exist or be empty */
    double val_fraction;       /* share of documents (text format: 64 KiB segments) held out */
    int format;                /* DATA_FORMAT_* */
    const char *jsonl_field;   /* default "text" */
    int threads;               /* 0: all */
    uint64_t shard_tokens;     /* tokens per shard, 0: 100M */
    void (*progress)(void *ctx, uint64_t bytes_done, uint64_t bytes_total);
    void *progress_ctx;
} PrepareOptions;

typedef struct {
    uint64_t docs[2], tokens[2];
    uint64_t bytes;            /* input bytes tokenized */
    uint64_t invalid_utf8;     /* bytes that were not valid UTF-8 (kept, one token each) */
    int shards[2];
} PrepareStats;

/* Tokenize the inputs into shards, streaming (memory bounded by a block of
 * input, whatever its size). Each document's tokens are followed by the
 * end-of-text token. Output goes to <out_dir>.partial and is renamed to
 * out_dir only when complete. Same inputs and options (any thread count)
 * give byte-identical shards. */
int data_prepare(const PrepareOptions *o, PrepareStats *st, Err *err);

#endif
