/* Training data loader: mmap the source, sample windows reproducibly.
 * A split is a list of spans (one for a text file, one per shard), read as
 * if concatenated; windows may cross shard boundaries. */
#include "data.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const void *p;
    uint64_t n, base; /* tokens, and the split's index of the first */
    int width;        /* bytes per token: 1, 2 or 4 */
} Span;

struct DataLoader {
    Span *span[2];
    int nspan[2];
    uint64_t n[2];
    int vocab;
    uint64_t seed;
    void *map;           /* text mapping */
    size_t map_len;
    ShardView *shards;
    int nshards;
    Examples ex;         /* an examples file (ex.row > 0): rows are padded examples */
};

static int add_span(DataLoader *dl, int split, const void *p, uint64_t n, int width) {
    Span *s = realloc(dl->span[split], (size_t)(dl->nspan[split] + 1) * sizeof *s);
    if (!s) return -1;
    dl->span[split] = s;
    s[dl->nspan[split]++] = (Span){p, n, dl->n[split], width};
    dl->n[split] += n;
    return 0;
}

/* Tokens [start, start+count) of a split into out. */
static void read_span(const DataLoader *dl, int split, uint64_t start, int count, int32_t *out) {
    const Span *s = dl->span[split];
    int lo = 0, hi = dl->nspan[split] - 1;
    while (lo < hi) { /* last span with base <= start */
        int mid = (lo + hi + 1) / 2;
        if (s[mid].base <= start) lo = mid;
        else hi = mid - 1;
    }
    uint64_t i = start - s[lo].base;
    for (int k = 0; k < count; k++) {
        while (i >= s[lo].n) {
            i -= s[lo].n;
            lo++;
        }
        const Span *c = &s[lo];
        out[k] = c->width == 1 ? ((const uint8_t *)c->p)[i]
                 : c->width == 2 ? ((const uint16_t *)c->p)[i]
                                 : (int32_t)((const uint32_t *)c->p)[i];
        i++;
    }
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every train_*.bin and val_*.bin of dir, in name order, verified. */
static int shards_open(DataLoader *dl, const char *dir, int vocab_size, Err *err) {
    DIR *d = opendir(dir);
    if (!d) return err_set(err, ERR_IO, "cannot open data directory %s: %s", dir, strerror(errno));
    char **names = NULL;
    int n = 0, rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t L = strlen(e->d_name);
        int ok = L > 4 && !strcmp(e->d_name + L - 4, ".bin") &&
                 (!strncmp(e->d_name, "train_", 6) || !strncmp(e->d_name, "val_", 4));
        if (!ok) continue;
        char **q = realloc(names, (size_t)(n + 1) * sizeof *q);
        if (!q || !(q[n] = strdup(e->d_name))) {
            if (q) names = q;
            rc = err_set(err, ERR_NOMEM, "out of memory");
            break;
        }
        names = q;
        n++;
    }
    closedir(d);
    if (!rc && n > 0) qsort(names, (size_t)n, sizeof *names, cmp_str);
    if (!rc && !(dl->shards = calloc((size_t)(n ? n : 1), sizeof *dl->shards))) rc = err_set(err, ERR_NOMEM, "out of memory");
    for (int i = 0; i < n && !rc; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        ShardView *v = &dl->shards[dl->nshards];
        rc = shard_map(path, vocab_size, v, err);
        if (rc) break;
        dl->nshards++;
        int want = names[i][0] == 'v' ? SPLIT_VAL : SPLIT_TRAIN;
        if ((int)v->h.split != want) {
            rc = err_set(err, ERR_FORMAT, "shard %s is named for one split but its header says the other", path);
            break;
        }
        if ((int)v->h.vocab > dl->vocab) dl->vocab = (int)v->h.vocab;
        if (v->h.n_tokens && add_span(dl, want, v->tokens, v->h.n_tokens, (int)v->h.width))
            rc = err_set(err, ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    if (!rc && dl->n[SPLIT_TRAIN] == 0)
        rc = err_set(err, ERR_FORMAT, "%s holds no training tokens (no train_*.bin shards from `jarip data prepare`)", dir);
    return rc;
}

int loader_open(DataLoader **out, const char *path, int vocab_size, double val_fraction, uint64_t seed, Err *err) {
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0) return err_set(err, ERR_IO, "cannot open data %s: %s", path, strerror(errno));
    DataLoader *dl = calloc(1, sizeof *dl);
    if (!dl) return err_set(err, ERR_NOMEM, "out of memory");
    dl->seed = seed;
    if (S_ISDIR(st.st_mode)) {
        /* shards carry their own split; val_fraction was applied by prepare */
        int rc = shards_open(dl, path, vocab_size, err);
        if (rc) {
            loader_close(dl);
            return rc;
        }
    } else {
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
        if (len >= 8 && !memcmp(map, EXAMPLES_MAGIC, 8)) { /* fine-tuning examples (jarip finetune) */
            int rc = examples_check(map, len, path, &dl->ex, err);
            if (!rc && dl->ex.vocab > vocab_size)
                rc = err_set(err, ERR_INVALID, "%s was made for a vocabulary of %d but the model's is %d", path,
                             dl->ex.vocab, vocab_size);
            if (!rc && dl->ex.n[SPLIT_TRAIN] == 0) rc = err_set(err, ERR_FORMAT, "%s holds no training examples", path);
            if (rc) {
                loader_close(dl);
                return rc;
            }
            dl->vocab = dl->ex.vocab;
            for (int s = 0; s < 2; s++) dl->n[s] = dl->ex.n[s] * (uint64_t)dl->ex.row;
            *out = dl;
            return 0;
        }
        if (vocab_size < 256) {
            munmap(map, len);
            free(dl);
            return err_set(err, ERR_INVALID, "text data is byte-level (256 tokens) but the model's vocab_size is %d",
                           vocab_size);
        }
        dl->vocab = 256;
        uint64_t nval = (uint64_t)(len * val_fraction);
        if (add_span(dl, SPLIT_TRAIN, map, len - nval, 1) ||
            (nval && add_span(dl, SPLIT_VAL, (const uint8_t *)map + (len - nval), nval, 1))) {
            loader_close(dl);
            return err_set(err, ERR_NOMEM, "out of memory");
        }
    }
    *out = dl;
    return 0;
}

int loader_batch(DataLoader *dl, int split, uint64_t step, int row0, int nrows, int T, int32_t *inputs,
                 int32_t *targets, Err *err) {
    if (split != SPLIT_TRAIN && split != SPLIT_VAL) return err_set(err, ERR_INVALID, "bad split %d", split);
    uint64_t n = dl->n[split];
    if (dl->ex.row > 0) {
        if (T < 1 || T >= dl->ex.row || dl->ex.n[split] == 0)
            return err_set(err, ERR_INVALID, "the examples are rows of %d tokens (%llu in the %s split): sequence %d does not fit",
                           dl->ex.row - 1, (unsigned long long)dl->ex.n[split], split == SPLIT_TRAIN ? "training" : "validation", T);
        examples_batch(&dl->ex, split, rng_key(dl->seed, 0x6461746100ULL + (uint64_t)split, step), row0, nrows, T, inputs,
                       targets);
        return 0;
    }
    if (T < 1 || n < (uint64_t)T + 1)
        return err_set(err, ERR_INVALID, "%s split has %llu tokens, fewer than one window of %d",
                       split == SPLIT_TRAIN ? "training" : "validation", (unsigned long long)n, T + 1);
    int32_t *win = malloc(((size_t)T + 1) * sizeof *win);
    if (!win) return err_set(err, ERR_NOMEM, "out of memory");
    uint64_t key = rng_key(dl->seed, 0x6461746100ULL + (uint64_t)split, step);
    uint64_t span = n - (uint64_t)T; /* valid starts: 0 .. n-T-1 */
    for (int r = 0; r < nrows; r++) {
        uint64_t start = rng_u64(key, (uint64_t)(row0 + r)) % span;
        read_span(dl, split, start, T + 1, win);
        for (int t = 0; t <= T; t++)
            if (win[t] < 0 || win[t] >= dl->vocab) {
                int bad = win[t];
                free(win);
                return err_set(err, ERR_FORMAT, "token id %d in the data is >= vocab_size %d", bad, dl->vocab);
            }
        memcpy(inputs + (size_t)r * T, win, (size_t)T * sizeof *win);
        memcpy(targets + (size_t)r * T, win + 1, (size_t)T * sizeof *win);
    }
    free(win);
    return 0;
}

uint64_t loader_tokens(const DataLoader *dl, int split) { return dl->n[split]; }

int loader_vocab(const DataLoader *dl) { return dl->vocab; }

void loader_close(DataLoader *dl) {
    if (!dl) return;
    if (dl->map) munmap(dl->map, dl->map_len);
    for (int i = 0; i < dl->nshards; i++) shard_unmap(&dl->shards[i]);
    free(dl->shards);
    free(dl->span[0]);
    free(dl->span[1]);
    free(dl);
}
