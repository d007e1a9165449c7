/* Fine-tuning examples (docs/examples.md): one row per example, padded to a
 * fixed length, with a label flag per token. Each example is a row of its
 * own (padded, not packed): under causal attention the padding after an
 * example cannot change its logits, so no attention mask is needed, and an
 * example never sees another's tokens. */
#include <string.h>

#include "data.h"

typedef struct {
    char magic[8];
    uint32_t version, row;
    uint64_t n[2];
    uint32_t vocab, crc;
} ExHeader;

int examples_write(const char *path, const Examples *ex, Err *err) {
    const size_t rows = (size_t)(ex->n[0] + ex->n[1]), row = (size_t)ex->row;
    const size_t ids_b = rows * row * sizeof(int32_t), lab_b = rows * row;
    const size_t total = sizeof(ExHeader) + ids_b + lab_b;
    char *buf = xalloc(total, err);
    if (!buf) return err_wrap(err, "writing %s", path);
    ExHeader h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, EXAMPLES_MAGIC, 8);
    h.version = 1;
    h.row = (uint32_t)ex->row;
    h.n[0] = ex->n[0];
    h.n[1] = ex->n[1];
    h.vocab = (uint32_t)ex->vocab;
    memcpy(buf + sizeof h, ex->ids, ids_b);
    memcpy(buf + sizeof h + ids_b, ex->labels, lab_b);
    h.crc = crc32_update(0, buf + sizeof h, ids_b + lab_b);
    memcpy(buf, &h, sizeof h);
    int rc = file_write_atomic(path, buf, total, err);
    xfree(buf);
    return rc;
}

int examples_check(const void *data, size_t len, const char *path, Examples *ex, Err *err) {
    ExHeader h;
    if (len < sizeof h) return err_set(err, ERR_FORMAT, "%s: truncated examples file", path);
    memcpy(&h, data, sizeof h);
    if (memcmp(h.magic, EXAMPLES_MAGIC, 8) || h.version != 1)
        return err_set(err, ERR_FORMAT, "%s: not a jarip examples file (version 1)", path);
    const uint64_t rows = h.n[0] + h.n[1];
    if (h.row < 2 || h.row > (1u << 24) || rows > ((uint64_t)1 << 40) / h.row)
        return err_set(err, ERR_FORMAT, "%s: bad examples header", path);
    const size_t ids_b = (size_t)rows * h.row * sizeof(int32_t), lab_b = (size_t)rows * h.row;
    if (len != sizeof h + ids_b + lab_b)
        return err_set(err, ERR_FORMAT, "%s: examples file is truncated or has trailing bytes", path);
    if (crc32_update(0, (const char *)data + sizeof h, ids_b + lab_b) != h.crc)
        return err_set(err, ERR_FORMAT, "%s: examples file is corrupted (CRC-32 mismatch)", path);
    ex->row = (int)h.row;
    ex->n[0] = h.n[0];
    ex->n[1] = h.n[1];
    ex->vocab = (int)h.vocab;
    ex->ids = (int32_t *)((char *)data + sizeof h);
    ex->labels = (uint8_t *)((char *)data + sizeof h + ids_b);
    for (size_t i = 0; i < (size_t)rows * h.row; i++)
        if (ex->ids[i] < 0 || ex->ids[i] >= (int32_t)h.vocab)
            return err_set(err, ERR_FORMAT, "%s: token id %d outside the vocabulary %u", path, ex->ids[i], h.vocab);
    return 0;
}

void examples_batch(const Examples *ex, int split, uint64_t key, int row0, int nrows, int T, int32_t *inputs,
                    int32_t *targets) {
    const uint64_t n = ex->n[split], first = split == SPLIT_TRAIN ? 0 : ex->n[0];
    for (int r = 0; r < nrows; r++) {
        const uint64_t e = first + rng_u64(key, (uint64_t)(row0 + r)) % n;
        const int32_t *ids = ex->ids + e * (uint64_t)ex->row;
        const uint8_t *lab = ex->labels + e * (uint64_t)ex->row;
        for (int t = 0; t < T; t++) {
            inputs[(size_t)r * T + t] = ids[t];
            targets[(size_t)r * T + t] = lab[t + 1] ? ids[t + 1] : -1;
        }
    }
}
