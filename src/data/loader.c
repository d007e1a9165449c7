/* Training data loader: mmap the source, sample windows reproducibly. */
#include "data.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct DataLoader {
    /* one contiguous view per split: uint8 (text), or uint16/uint32 tokens */
    const void *tok[2];
    uint64_t n[2];
    int width;           /* bytes per token: 1, 2 or 4 */
    int vocab;
    uint64_t seed;
    void *map;           /* text mapping */
    size_t map_len;
};

static int32_t tok_at(const DataLoader *dl, int split, uint64_t i) {
    const void *p = dl->tok[split];
    switch (dl->width) {
    case 1: return ((const uint8_t *)p)[i];
    case 2: return ((const uint16_t *)p)[i];
    default: return (int32_t)((const uint32_t *)p)[i];
    }
}

int loader_shards_open(DataLoader *dl, const char *dir, int vocab_size, Err *err) __attribute__((weak));

int loader_open(DataLoader **out, const char *path, int vocab_size, double val_fraction, uint64_t seed, Err *err) {
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0) return err_set(err, ERR_IO, "cannot open data %s: %s", path, strerror(errno));
    DataLoader *dl = calloc(1, sizeof *dl);
    if (!dl) return err_set(err, ERR_NOMEM, "out of memory");
    dl->seed = seed;
    if (S_ISDIR(st.st_mode)) {
        if (!loader_shards_open) {
            free(dl);
            return err_set(err, ERR_UNSUPPORTED, "%s is a directory, and shard support is not built in", path);
        }
        int rc = loader_shards_open(dl, path, vocab_size, err);
        if (rc) {
            free(dl);
            return rc;
        }
    } else {
        if (vocab_size < 256) {
            free(dl);
            return err_set(err, ERR_INVALID, "text data is byte-level (256 tokens) but the model's vocab_size is %d",
                           vocab_size);
        }
        int fd = open(path, O_RDONLY);
        if (fd < 0) {
            free(dl);
            return err_set(err, ERR_IO, "cannot open data %s: %s", path, strerror(errno));
        }
        size_t len = (size_t)st.st_size;
        void *map = len ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
        close(fd);
        if (map == MAP_FAILED) {
            free(dl);
            return err_set(err, ERR_IO, "cannot map data %s (%s)", path, len ? strerror(errno) : "file is empty");
        }
        dl->map = map;
        dl->map_len = len;
        dl->width = 1;
        dl->vocab = 256;
        uint64_t nval = (uint64_t)(len * val_fraction);
        dl->tok[SPLIT_TRAIN] = map;
        dl->n[SPLIT_TRAIN] = len - nval;
        dl->tok[SPLIT_VAL] = (const uint8_t *)map + (len - nval);
        dl->n[SPLIT_VAL] = nval;
    }
    *out = dl;
    return 0;
}

int loader_batch(DataLoader *dl, int split, uint64_t step, int row0, int nrows, int T, int32_t *inputs,
                 int32_t *targets, Err *err) {
    if (split != SPLIT_TRAIN && split != SPLIT_VAL) return err_set(err, ERR_INVALID, "bad split %d", split);
    uint64_t n = dl->n[split];
    if (n < (uint64_t)T + 1)
        return err_set(err, ERR_INVALID, "%s split has %llu tokens, fewer than one window of %d",
                       split == SPLIT_TRAIN ? "training" : "validation", (unsigned long long)n, T + 1);
    uint64_t key = rng_key(dl->seed, 0x6461746100ULL + (uint64_t)split, step);
    uint64_t span = n - (uint64_t)T; /* valid starts: 0 .. n-T-1 */
    for (int r = 0; r < nrows; r++) {
        uint64_t start = rng_u64(key, (uint64_t)(row0 + r)) % span;
        for (int t = 0; t < T; t++) {
            int32_t a = tok_at(dl, split, start + (uint64_t)t), b = tok_at(dl, split, start + (uint64_t)t + 1);
            if (a >= dl->vocab || b >= dl->vocab)
                return err_set(err, ERR_FORMAT, "token id %d in the data is >= vocab_size %d", a > b ? a : b, dl->vocab);
            inputs[(size_t)r * T + t] = a;
            targets[(size_t)r * T + t] = b;
        }
    }
    return 0;
}

uint64_t loader_tokens(const DataLoader *dl, int split) { return dl->n[split]; }

int loader_vocab(const DataLoader *dl) { return dl->vocab; }

void loader_close(DataLoader *dl) {
    if (!dl) return;
    if (dl->map) munmap(dl->map, dl->map_len);
    free(dl);
}
