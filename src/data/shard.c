/* Token shard files: writer (temp + fsync + rename) and verified mapping. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

/* Header layout (offsets): 0 magic[8], 8 version, 12 width, 16 vocab,
 * 20 split, 24 n_tokens u64, 32 n_docs u64, 40 token crc, 44 header crc
 * (of bytes 0..43), 48..63 zero. */
static void header_encode(const ShardHeader *h, uint8_t *b) {
    memset(b, 0, SHARD_HEADER_BYTES);
    memcpy(b, SHARD_MAGIC, 8);
    put32(b + 8, h->version);
    put32(b + 12, h->width);
    put32(b + 16, h->vocab);
    put32(b + 20, h->split);
    put64(b + 24, h->n_tokens);
    put64(b + 32, h->n_docs);
    put32(b + 40, h->crc);
    put32(b + 44, crc32_update(0, b, 44));
}

void shard_unmap(ShardView *v) {
    if (v->map) munmap(v->map, v->map_len);
    memset(v, 0, sizeof *v);
}

int shard_map(const char *path, int vocab_limit, ShardView *out, Err *err) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return err_set(err, ERR_IO, "cannot open shard %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return err_set(err, ERR_IO, "cannot stat shard %s", path);
    }
    size_t len = (size_t)st.st_size;
    if (len < SHARD_HEADER_BYTES) {
        close(fd);
        return err_set(err, ERR_FORMAT, "shard %s is truncated (%zu bytes, the header alone is %d)", path, len,
                       SHARD_HEADER_BYTES);
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return err_set(err, ERR_IO, "cannot map shard %s: %s", path, strerror(errno));
    const uint8_t *b = map;
    ShardHeader h = {get32(b + 8), get32(b + 12), get32(b + 16), get32(b + 20), get64(b + 24), get64(b + 32),
                     get32(b + 40)};
    int rc = 0;
    if (memcmp(b, SHARD_MAGIC, 8) != 0)
        rc = err_set(err, ERR_FORMAT, "%s is not a jarip token shard (bad magic)", path);
    else if (get32(b + 44) != crc32_update(0, b, 44))
        rc = err_set(err, ERR_FORMAT, "shard %s: header checksum mismatch (corrupt header)", path);
    else if (h.version != SHARD_VERSION)
        rc = err_set(err, ERR_UNSUPPORTED, "shard %s has version %u; this build reads %d", path, h.version, SHARD_VERSION);
    else if (h.width != 2 && h.width != 4)
        rc = err_set(err, ERR_FORMAT, "shard %s: token width %u is not 2 or 4", path, h.width);
    else if (h.split > 1)
        rc = err_set(err, ERR_FORMAT, "shard %s: split %u is not 0 (train) or 1 (val)", path, h.split);
    else if (h.n_tokens > (len - SHARD_HEADER_BYTES) / h.width)
        rc = err_set(err, ERR_FORMAT, "shard %s is truncated: header says %llu tokens, file holds %zu", path,
                     (unsigned long long)h.n_tokens, (len - SHARD_HEADER_BYTES) / h.width);
    else if (h.n_tokens * h.width + SHARD_HEADER_BYTES != len)
        rc = err_set(err, ERR_FORMAT, "shard %s has %zu bytes after its %llu tokens", path,
                     len - SHARD_HEADER_BYTES - (size_t)h.n_tokens * h.width, (unsigned long long)h.n_tokens);
    if (!rc) {
        const uint8_t *tok = b + SHARD_HEADER_BYTES;
        size_t nbytes = (size_t)h.n_tokens * h.width;
        if (crc32_update(0, tok, nbytes) != h.crc)
            rc = err_set(err, ERR_FORMAT, "shard %s fails its checksum (corrupt tokens)", path);
        uint32_t mx = 0;
        if (!rc && vocab_limit > 0) {
            if (h.width == 2)
                for (uint64_t i = 0; i < h.n_tokens; i++) mx = ((const uint16_t *)tok)[i] > mx ? ((const uint16_t *)tok)[i] : mx;
            else
                for (uint64_t i = 0; i < h.n_tokens; i++) mx = ((const uint32_t *)tok)[i] > mx ? ((const uint32_t *)tok)[i] : mx;
            if (h.n_tokens && mx >= (uint32_t)vocab_limit)
                rc = err_set(err, ERR_FORMAT, "shard %s holds token id %u, >= the model's vocab_size %d", path, mx,
                             vocab_limit);
        }
    }
    if (rc) {
        munmap(map, len);
        return rc;
    }
    out->h = h;
    out->tokens = b + SHARD_HEADER_BYTES;
    out->map = map;
    out->map_len = len;
    return 0;
}

/* ---- writer -------------------------------------------------------------- */
struct ShardWriter {
    char *dir, *prefix;
    int split, width, index;
    int32_t eot;         /* documents are counted by their end-of-text tokens */
    uint32_t vocab;
    uint64_t max_tokens;
    FILE *f;             /* shard in progress, or NULL */
    char tmp[4096];
    ShardHeader h;
    uint8_t *buf;        /* conversion buffer */
    size_t buf_cap;
};

int shard_writer_open(ShardWriter **out, const char *dir, const char *prefix, int split, int vocab, int32_t eot,
                      uint64_t max_tokens, Err *err) {
    *out = NULL;
    if (vocab <= 0) return err_set(err, ERR_INVALID, "vocab size %d", vocab);
    ShardWriter *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = strdup(dir)) || !(w->prefix = strdup(prefix))) {
        if (w) free(w->dir);
        free(w);
        return err_set(err, ERR_NOMEM, "out of memory");
    }
    w->split = split;
    w->eot = eot;
    w->vocab = (uint32_t)vocab;
    w->width = vocab < 65536 ? 2 : 4;
    w->max_tokens = max_tokens ? max_tokens : 100000000ULL;
    *out = w;
    return 0;
}

static int start_shard(ShardWriter *w, Err *err) {
    snprintf(w->tmp, sizeof w->tmp, "%s/%s_%06d.bin.tmp", w->dir, w->prefix, w->index);
    w->f = fopen(w->tmp, "wb");
    if (!w->f) return err_set(err, ERR_IO, "cannot create %s: %s", w->tmp, strerror(errno));
    uint8_t zero[SHARD_HEADER_BYTES] = {0}; /* the real header goes in last */
    if (fwrite(zero, 1, sizeof zero, w->f) != sizeof zero) return err_set(err, ERR_IO, "write error on %s", w->tmp);
    memset(&w->h, 0, sizeof w->h);
    w->h.version = SHARD_VERSION;
    w->h.width = (uint32_t)w->width;
    w->h.vocab = w->vocab;
    w->h.split = (uint32_t)w->split;
    return 0;
}

static int finish_shard(ShardWriter *w, Err *err) {
    uint8_t hb[SHARD_HEADER_BYTES];
    header_encode(&w->h, hb);
    int rc = 0;
    if (fseek(w->f, 0, SEEK_SET) != 0 || fwrite(hb, 1, sizeof hb, w->f) != sizeof hb || fflush(w->f) != 0 ||
        fsync(fileno(w->f)) != 0)
        rc = err_set(err, ERR_IO, "cannot write %s: %s", w->tmp, strerror(errno));
    if (fclose(w->f) != 0 && !rc) rc = err_set(err, ERR_IO, "cannot close %s", w->tmp);
    w->f = NULL;
    if (rc) {
        unlink(w->tmp);
        return rc;
    }
    char final[4096];
    snprintf(final, sizeof final, "%s/%s_%06d.bin", w->dir, w->prefix, w->index);
    if (rename(w->tmp, final) != 0) {
        unlink(w->tmp);
        return err_set(err, ERR_IO, "cannot rename %s: %s", w->tmp, strerror(errno));
    }
    fsync_dir(w->dir);
    w->index++;
    return 0;
}

int shard_writer_put(ShardWriter *w, const int32_t *ids, size_t n, Err *err) {
    while (n) {
        if (!w->f && start_shard(w, err)) return err->code;
        uint64_t room = w->max_tokens - w->h.n_tokens;
        size_t k = n < room ? n : (size_t)room;
        if ((size_t)k * 4 > w->buf_cap) {
            uint8_t *b = realloc(w->buf, (size_t)k * 4);
            if (!b) return err_set(err, ERR_NOMEM, "out of memory");
            w->buf = b;
            w->buf_cap = (size_t)k * 4;
        }
        for (size_t i = 0; i < k; i++) {
            w->h.n_docs += ids[i] == w->eot;
            if (ids[i] < 0 || (uint32_t)ids[i] >= w->vocab)
                return err_set(err, ERR_INVALID, "token id %d is outside the vocabulary (%u)", ids[i], w->vocab);
            if (w->width == 2) {
                w->buf[2 * i] = (uint8_t)ids[i];
                w->buf[2 * i + 1] = (uint8_t)(ids[i] >> 8);
            } else {
                put32(w->buf + 4 * i, (uint32_t)ids[i]);
            }
        }
        size_t nb = k * (size_t)w->width;
        if (fwrite(w->buf, 1, nb, w->f) != nb) return err_set(err, ERR_IO, "write error on %s: %s", w->tmp, strerror(errno));
        w->h.crc = crc32_update(w->h.crc, w->buf, nb);
        w->h.n_tokens += k;
        ids += k;
        n -= k;
        if (w->h.n_tokens == w->max_tokens && finish_shard(w, err)) return err->code;
    }
    return 0;
}

int shard_writer_close(ShardWriter *w, int *n_shards, Err *err) {
    int rc = 0;
    if (w->f) rc = finish_shard(w, err);
    if (n_shards) *n_shards = w->index;
    free(w->dir);
    free(w->prefix);
    free(w->buf);
    free(w);
    return rc;
}

void shard_writer_abort(ShardWriter *w) {
    if (!w) return;
    if (w->f) {
        fclose(w->f);
        unlink(w->tmp);
    }
    free(w->dir);
    free(w->prefix);
    free(w->buf);
    free(w);
}
