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

/* Open path (text file or shard directory). vocab_size is the model's:
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

#endif
