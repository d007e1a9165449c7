/* llama-perplexity's log-probability file (--kl-divergence-base), read and
 * written; format in eval.h. Rows are quantized exactly as llama.cpp's
 * log_softmax(n_vocab, logits, log_prob, tok) does, so a file written here
 * and one written by llama-perplexity hold the same numbers for the same
 * logits, and either tool reads the other's. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eval/eval.h"

static const char MAGIC[8] = {'_', 'l', 'o', 'g', 'i', 't', 's', '_'};
static const char TRAILER[8] = {'j', 'a', 'r', 'i', 'p', 'c', 'r', 'c'};

static int row_len(int n_vocab) { return 2 * ((n_vocab + 1) / 2) + 4; }

static int put(LogitsWriter *w, const void *p, size_t n, Err *err) {
    w->crc = crc32_update(w->crc, p, n);
    for (const char *q = p; n > 0;) {
        ssize_t k = write(w->fd, q, n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return err_set(err, ERR_IO, "writing %s: %s", w->tmp, strerror(errno));
        q += k;
        n -= (size_t)k;
    }
    return 0;
}

int logits_writer_open(LogitsWriter *w, const char *path, int ctx, int n_vocab, int n_chunk, const int32_t *tokens,
                       Err *err) {
    memset(w, 0, sizeof *w);
    w->fd = -1;
    size_t n = strlen(path);
    w->path = strdup(path);
    w->tmp = malloc(n + 32);
    w->row = calloc((size_t)row_len(n_vocab), sizeof *w->row);
    if (!w->path || !w->tmp || !w->row) {
        logits_writer_finish(w, 0, NULL);
        return err_set(err, ERR_NOMEM, "out of memory");
    }
    snprintf(w->tmp, n + 32, "%s.tmp.%d", path, (int)getpid());
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (w->fd < 0) {
        int rc = err_set(err, ERR_IO, "cannot create %s: %s", w->tmp, strerror(errno));
        logits_writer_finish(w, 0, NULL);
        return rc;
    }
    w->ctx = ctx;
    w->n_vocab = n_vocab;
    w->n_chunk = n_chunk;
    uint32_t uctx = (uint32_t)ctx;
    int rc;
    if ((rc = put(w, MAGIC, 8, err)) || (rc = put(w, &uctx, 4, err)) || (rc = put(w, &n_vocab, 4, err)) ||
        (rc = put(w, &n_chunk, 4, err)) || (rc = put(w, tokens, (size_t)n_chunk * ctx * sizeof *tokens, err))) {
        logits_writer_finish(w, 0, NULL);
        return rc;
    }
    return 0;
}

/* llama.cpp's nearest_int: round to nearest through the float mantissa. */
static int nearest_int(float f) {
    float v = f + 12582912.f;
    int i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* One row: the quantized log-probabilities into row (nv); returns the NLL
 * of tok in llama.cpp's float arithmetic of this path. */
double eval_logprob_row(const float *logits, int V, int tok, uint16_t *row) {
    float mx = logits[0], mn = logits[0];
    for (int i = 1; i < V; i++) {
        mx = logits[i] > mx ? logits[i] : mx;
        mn = logits[i] < mn ? logits[i] : mn;
    }
    mn = mn > mx - 16 ? mn : mx - 16;
    double sum = 0.0;
    for (int i = 0; i < V; i++) sum += expf(logits[i] - mx);
    const float lse = (float)log(sum), min_log_prob = mn - mx - lse, scale = (mx - mn) / 65535.f;
    memcpy(row, &scale, 4);
    memcpy(row + 2, &min_log_prob, 4);
    uint16_t *q = row + 4;
    if (scale != 0.0f) {
        const float inv = 1 / scale;
        for (int i = 0; i < V; i++) q[i] = logits[i] > mn ? (uint16_t)nearest_int(inv * (logits[i] - mn)) : 0;
    } else {
        memset(q, 0, (size_t)V * sizeof *q);
    }
    return mx + lse - logits[tok];
}

int logits_writer_chunk(LogitsWriter *w, const float *logits, const int32_t *chunk, NllSum *s, Err *err) {
    const int first = w->ctx / 2, scored = w->ctx - 1 - first, nv = row_len(w->n_vocab);
    for (int i = 0; i < scored; i++) {
        const double v = eval_logprob_row(logits + (size_t)i * w->n_vocab, w->n_vocab, chunk[first + 1 + i], w->row);
        s->nll += v;
        s->nll2 += v * v;
        s->count++;
        int rc = put(w, w->row, (size_t)nv * sizeof *w->row, err);
        if (rc) return rc;
    }
    return 0;
}

int logits_writer_rows(LogitsWriter *w, const uint16_t *rows, int n_rows, Err *err) {
    return put(w, rows, (size_t)n_rows * row_len(w->n_vocab) * sizeof *rows, err);
}

int logits_writer_finish(LogitsWriter *w, int ok, Err *err) {
    int rc = 0;
    if (ok && w->fd >= 0) {
        uint32_t crc = w->crc;
        if (!(rc = put(w, TRAILER, 8, err)) && !(rc = put(w, &crc, 4, err))) {
            if (fsync(w->fd) != 0) rc = err_set(err, ERR_IO, "flushing %s: %s", w->tmp, strerror(errno));
        }
    }
    if (w->fd >= 0 && close(w->fd) != 0 && ok && !rc) rc = err_set(err, ERR_IO, "closing %s: %s", w->tmp, strerror(errno));
    if (ok && !rc && rename(w->tmp, w->path) != 0) rc = err_set(err, ERR_IO, "renaming to %s: %s", w->path, strerror(errno));
    if (ok && !rc) {
        char *dir = strdup(w->path), *slash = dir ? strrchr(dir, '/') : NULL;
        if (dir) {
            if (slash) *slash = 0;
            fsync_dir(slash ? (dir[0] ? dir : "/") : ".");
        }
        free(dir);
    }
    if ((!ok || rc) && w->tmp) unlink(w->tmp);
    free(w->tmp);
    free(w->path);
    free(w->row);
    memset(w, 0, sizeof *w);
    w->fd = -1;
    return rc;
}

int logits_file_open(LogitsFile *f, const char *path, Err *err) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return err_set(err, ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 20) {
        close(fd);
        return err_set(err, ERR_FORMAT, "%s is not a log-probability file (too short)", path);
    }
    f->size = (size_t)st.st_size;
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        return err_set(err, ERR_IO, "cannot map %s: %s", path, strerror(errno));
    }
    const char *p = f->map;
    uint32_t ctx;
    int32_t nvocab, nchunk;
    memcpy(&ctx, p + 8, 4);
    memcpy(&nvocab, p + 12, 4);
    memcpy(&nchunk, p + 16, 4);
    int rc = 0;
    if (memcmp(p, MAGIC, 8) != 0)
        rc = err_set(err, ERR_FORMAT, "%s is not a log-probability file (no _logits_ header)", path);
    else if (ctx < 4 || ctx > (1u << 24) || nvocab <= 0 || nvocab > (1 << 24) || nchunk <= 0 || nchunk > (1 << 24))
        rc = err_set(err, ERR_FORMAT, "%s: impossible header (ctx %u, vocabulary %d, %d chunks)", path, ctx, nvocab,
                     nchunk);
    if (rc) {
        logits_file_close(f);
        return rc;
    }
    f->ctx = (int)ctx;
    f->n_vocab = nvocab;
    f->n_chunk = nchunk;
    f->nv = row_len(nvocab);
    const size_t tok_bytes = (size_t)nchunk * ctx * 4;
    const size_t rows = (size_t)nchunk * (ctx - 1 - ctx / 2), body = 20 + tok_bytes + rows * (size_t)f->nv * 2;
    if (f->size == body + 12 && memcmp(p + body, TRAILER, 8) == 0) {
        uint32_t want;
        memcpy(&want, p + body + 8, 4);
        if (crc32_update(0, p, body) != want)
            rc = err_set(err, ERR_FORMAT, "%s: checksum mismatch (the file is corrupted)", path);
    } else if (f->size != body) {
        rc = err_set(err, ERR_FORMAT, "%s: %zu bytes, but its header (%d chunks of %u, vocabulary %d) needs %zu: truncated?",
                     path, f->size, nchunk, ctx, nvocab, body);
    }
    if (rc) {
        logits_file_close(f);
        return rc;
    }
    f->tokens = (const int32_t *)(p + 20);
    f->rows = (const uint16_t *)(p + 20 + tok_bytes);
    return 0;
}

void logits_file_close(LogitsFile *f) {
    if (f->map) munmap(f->map, f->size);
    memset(f, 0, sizeof *f);
}
