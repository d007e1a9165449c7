/* Tokenizer construction, lookup tables, byte-level mapping, decode, and
 * loading by content. */
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "tok_internal.h"

uint64_t tok_hash_bytes(const void *p, size_t n) {
    /* Word-at-a-time multiply-mix: words are short, so speed per call
     * matters more than quality on long keys. */
    const uint8_t *s = p;
    uint64_t h = 0x243F6A8885A308D3ULL ^ (n * 0x9E3779B97F4A7C15ULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, s, n);
        h = (h ^ w) * 0xC4CEB9FE1A85EC53ULL;
    }
    h ^= h >> 29;
    h *= 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 32);
}

Tokenizer *tok_new(Err *err) {
    Tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        err_set(err, ERR_NOMEM, "out of memory");
        return NULL;
    }
    t->bos = t->eos = t->unk = -1;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    return t;
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    free(t->pool);
    free(t->off);
    free(t->len);
    free(t->special);
    free(t->vmap);
    free(t->mmap);
    free(t->merge_l);
    free(t->merge_r);
    for (int i = 0; i < t->n_stages; i++) {
        free(t->stage_src[i]);
        pcre2_code_free(t->stage_re[i]);
    }
    free(t->special_ids);
    free(t);
}

/* Ids up to n. Capacity doubles: a rank file adds ids one by one, and
 * growing by one id each time copied the arrays once per token (quadratic;
 * ASan's realloc, which always moves, made a 100k-rank file take seconds). */
static int grow_vocab(Tokenizer *t, int n, Err *err) {
    if (n <= t->n_vocab) return 0;
    if (n > t->vocab_cap) {
        int cap = t->vocab_cap > 0 ? t->vocab_cap : 256;
        while (cap < n) cap = cap > TOK_MAX_VOCAB / 2 ? n : cap * 2;
        uint32_t *off = realloc(t->off, (size_t)cap * sizeof *off);
        if (off) t->off = off;
        uint32_t *len = realloc(t->len, (size_t)cap * sizeof *len);
        if (len) t->len = len;
        uint8_t *sp = realloc(t->special, (size_t)cap);
        if (sp) t->special = sp;
        if (!off || !len || !sp) return err_set(err, ERR_NOMEM, "out of memory for %d tokens", n);
        t->vocab_cap = cap;
    }
    /* unassigned: off 0, len UINT32_MAX (all bits set), not special; memset,
     * as a rank of four million in a hostile file makes this millions long */
    const size_t from = (size_t)t->n_vocab, k = (size_t)n - from;
    memset(t->off + from, 0, k * sizeof *t->off);
    memset(t->len + from, 0xFF, k * sizeof *t->len);
    memset(t->special + from, 0, k);
    t->n_vocab = n;
    return 0;
}

int tok_set_token(Tokenizer *t, int32_t id, const void *bytes, size_t len, Err *err) {
    if (id < 0 || id >= TOK_MAX_VOCAB) return err_set(err, ERR_FORMAT, "token id %d is out of range", id);
    if (len >= UINT32_MAX / 2) return err_set(err, ERR_FORMAT, "token %d is too long", id);
    if (grow_vocab(t, id + 1, err)) return err->code;
    if (t->pool_len + len > t->pool_cap) {
        size_t cap = t->pool_cap ? t->pool_cap * 2 : 1 << 16;
        while (cap < t->pool_len + len) cap *= 2;
        uint8_t *p = realloc(t->pool, cap);
        if (!p) return err_set(err, ERR_NOMEM, "out of memory");
        t->pool = p;
        t->pool_cap = cap;
    }
    if (len) memcpy(t->pool + t->pool_len, bytes, len);
    t->off[id] = (uint32_t)t->pool_len;
    t->len[id] = (uint32_t)len;
    t->pool_len += len;
    if (t->pool_len > UINT32_MAX) return err_set(err, ERR_FORMAT, "vocabulary text is over 4 GiB");
    return 0;
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

int32_t tok_lookup(const Tokenizer *t, const void *bytes, size_t len) {
    if (!t->vmap_cap) return -1;
    size_t mask = t->vmap_cap - 1, i = (size_t)tok_hash_bytes(bytes, len) & mask;
    for (;;) {
        uint32_t v = t->vmap[i];
        if (!v) return -1;
        int32_t id = (int32_t)v - 1;
        if (t->len[id] == len && memcmp(t->pool + t->off[id], bytes, len) == 0) return id;
        i = (i + 1) & mask;
    }
}

int tok_build_vocab(Tokenizer *t, Err *err) {
    free(t->vmap);
    t->vmap_cap = pow2_at_least((size_t)t->n_vocab * 2 + 1);
    t->vmap = calloc(t->vmap_cap, sizeof *t->vmap);
    if (!t->vmap) return err_set(err, ERR_NOMEM, "out of memory");
    for (int id = 0; id < t->n_vocab; id++) {
        if (t->len[id] == UINT32_MAX || t->len[id] == 0) continue;
        const uint8_t *b = t->pool + t->off[id];
        if (tok_lookup(t, b, t->len[id]) >= 0) continue; /* first id wins on duplicates */
        size_t mask = t->vmap_cap - 1, i = (size_t)tok_hash_bytes(b, t->len[id]) & mask;
        while (t->vmap[i]) i = (i + 1) & mask;
        t->vmap[i] = (uint32_t)id + 1;
    }
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        t->byte_id[b] = tok_lookup(t, &c, 1);
    }
    return 0;
}

int tok_add_merge(Tokenizer *t, int32_t l, int32_t r, int32_t out, int32_t rank, Err *err) {
    if (((size_t)t->n_merges + 1) * 2 > t->mmap_cap) {
        size_t cap = t->mmap_cap ? t->mmap_cap * 2 : 1024;
        TokMerge *m = malloc(cap * sizeof *m);
        int32_t *ml = realloc(t->merge_l, cap / 2 * sizeof *ml);
        if (ml) t->merge_l = ml;
        int32_t *mr = realloc(t->merge_r, cap / 2 * sizeof *mr);
        if (mr) t->merge_r = mr;
        if (!m || !ml || !mr) {
            free(m);
            return err_set(err, ERR_NOMEM, "out of memory for merges");
        }
        for (size_t i = 0; i < cap; i++) m[i].key = UINT64_MAX;
        TokMerge *old = t->mmap;
        size_t oldcap = t->mmap_cap;
        t->mmap = m;
        t->mmap_cap = cap;
        for (size_t i = 0; i < oldcap; i++) {
            if (old[i].key == UINT64_MAX) continue;
            size_t j = (size_t)((old[i].key * 0x9E3779B97F4A7C15ULL) >> 20) & (cap - 1);
            while (m[j].key != UINT64_MAX) j = (j + 1) & (cap - 1);
            m[j] = old[i];
        }
        free(old);
    }
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    size_t mask = t->mmap_cap - 1, i = (size_t)((key * 0x9E3779B97F4A7C15ULL) >> 20) & mask;
    while (t->mmap[i].key != UINT64_MAX) {
        if (t->mmap[i].key == key) return 0; /* a repeated merge keeps its first rank, as HF does */
        i = (i + 1) & mask;
    }
    t->mmap[i].key = key;
    t->mmap[i].rank = rank;
    t->mmap[i].out = out;
    t->merge_l[t->n_merges] = l;
    t->merge_r[t->n_merges] = r;
    t->n_merges++;
    return 0;
}

static int cmp_special(const void *a, const void *b, void *ctx) {
    const Tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (t->len[x] != t->len[y]) return t->len[x] > t->len[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

int tok_finish_specials(Tokenizer *t, Err *err) {
    free(t->special_ids);
    t->special_ids = NULL;
    t->n_special = 0;
    memset(t->special_first, 0, sizeof t->special_first);
    int n = 0;
    for (int id = 0; id < t->n_vocab; id++)
        if (t->special[id] && t->len[id] != UINT32_MAX && t->len[id] > 0) n++;
    if (!n) return 0;
    t->special_ids = malloc((size_t)n * sizeof *t->special_ids);
    if (!t->special_ids) return err_set(err, ERR_NOMEM, "out of memory");
    for (int id = 0; id < t->n_vocab; id++)
        if (t->special[id] && t->len[id] != UINT32_MAX && t->len[id] > 0) {
            t->special_ids[t->n_special++] = id;
            t->special_first[t->pool[t->off[id]]] = 1;
        }
    /* longest first: matching is leftmost-longest, as Hugging Face's */
    qsort_r(t->special_ids, (size_t)n, sizeof *t->special_ids, cmp_special, t);
    return 0;
}

/* ---- GPT-2 byte-level alphabet ----------------------------------------
 * Printable bytes stand for themselves; the other 68 are shifted to
 * U+0100.. in byte order, so every byte has a visible character. */
static uint32_t byte_to_cp(int b) {
    if (b <= 32) return 256u + (uint32_t)b;                 /* 0..32   -> U+0100..U+0120 */
    if (b >= 127 && b <= 160) return 289u + (uint32_t)(b - 127); /* 127..160 -> U+0121..U+0142 */
    if (b == 173) return 323u;                                /* soft hyphen -> U+0143 */
    return (uint32_t)b;
}

static int cp_to_byte(uint32_t cp) {
    if (cp >= 256 && cp <= 288) return (int)cp - 256;
    if (cp >= 289 && cp <= 322) return (int)cp - 289 + 127;
    if (cp == 323) return 173;
    if (cp < 256 && byte_to_cp((int)cp) == cp) return (int)cp;
    return -1;
}

size_t tok_bytelevel_encode(const uint8_t *in, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = byte_to_cp(in[i]);
        if (cp < 0x80) {
            out[o++] = (char)cp;
        } else {
            out[o++] = (char)(0xC0 | (cp >> 6));
            out[o++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    return o;
}

long tok_bytelevel_decode(const char *in, size_t n, uint8_t *out) {
    const uint8_t *s = (const uint8_t *)in;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        if (s[i] < 0x80) {
            cp = s[i++];
        } else if ((s[i] & 0xE0) == 0xC0 && i + 1 < n && (s[i + 1] & 0xC0) == 0x80) {
            cp = ((uint32_t)(s[i] & 0x1F) << 6) | (s[i + 1] & 0x3F);
            i += 2;
        } else {
            return -1;
        }
        int b = cp_to_byte(cp);
        if (b < 0) return -1;
        out[o++] = (uint8_t)b;
    }
    return (long)o;
}

/* ---- accessors ---------------------------------------------------------- */
int tokenizer_vocab_size(const Tokenizer *t) { return t->n_vocab; }
int32_t tokenizer_eos_id(const Tokenizer *t) { return t->eos; }
int32_t tokenizer_bos_id(const Tokenizer *t) { return t->bos; }
int tokenizer_add_bos(const Tokenizer *t) { return t->add_bos && t->bos >= 0; }
const char *tokenizer_pattern_name(const Tokenizer *t) { return t->pattern_name; }

int tokenizer_is_special(const Tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->special[id];
}

const uint8_t *tokenizer_token_bytes(const Tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab || t->len[id] == UINT32_MAX) return NULL;
    if (len) *len = t->len[id];
    return t->pool + t->off[id];
}

int32_t tokenizer_special_id(const Tokenizer *t, const char *text) {
    size_t n = strlen(text);
    for (int i = 0; i < t->n_special; i++) {
        int32_t id = t->special_ids[i];
        if (t->len[id] == n && memcmp(t->pool + t->off[id], text, n) == 0) return id;
    }
    return -1;
}

int tokenizer_decode(const Tokenizer *t, const int32_t *ids, size_t n, char **out, size_t *len, Err *err) {
    *out = NULL;
    *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab || t->len[ids[i]] == UINT32_MAX)
            return err_set(err, ERR_INVALID, "token id %d is not in the vocabulary (size %d)", ids[i], t->n_vocab);
        total += t->len[ids[i]];
    }
    char *buf = malloc(total + 1);
    if (!buf) return err_set(err, ERR_NOMEM, "out of memory decoding %zu tokens", n);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(buf + o, t->pool + t->off[ids[i]], t->len[ids[i]]);
        o += t->len[ids[i]];
    }
    buf[o] = 0;
    *out = buf;
    *len = o;
    return 0;
}

int tokenizer_load(Tokenizer **out, const char *path, Err *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, ERR_IO, "cannot open tokenizer %s", path);
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    int rc;
    if (got == 4 && memcmp(magic, "GGUF", 4) == 0) {
        GGUFFile *g = NULL;
        rc = gguf_open(&g, path, err);
        if (!rc) rc = tokenizer_from_gguf(out, g, err);
        gguf_close(g);
    } else {
        char *text = NULL;
        size_t len = 0;
        rc = file_read_all(path, &text, &len, err);
        if (rc) return rc;
        size_t i = 0;
        while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\r' || text[i] == '\t')) i++;
        if (i < len && text[i] == '{')
            rc = tokenizer_from_json(out, text, len, err);
        else
            rc = tokenizer_from_tiktoken(out, text, len, NULL, err);
        free(text);
    }
    if (rc) err_wrap(err, "tokenizer %s", path);
    return rc;
}
