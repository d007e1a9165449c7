/* BPE encoding: special tokens, then split pieces, then merges by rank.
 *
 * Each encoder caches the ids of the pieces it has merged (words repeat a
 * lot in text), keeps its scratch buffers between calls, and never
 * allocates per token. Merging a piece repeatedly applies the lowest-rank
 * adjacent pair, leftmost first on equal ranks -- the rule of Hugging Face
 * and tiktoken: a quadratic scan for short pieces, a heap for long ones. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

#define CACHE_MAX_KEY 64       /* longer pieces are rare; merging them is not cached */
#define CACHE_MAX_SLOTS (1u << 20)
#define SHORT_PIECE 48
#define PIECE_BATCH 32

typedef struct {
    uint64_t hash;             /* 0 = empty slot */
    uint32_t key_off, key_len, ids_off, n_ids;
} CacheEnt;

struct TokEncoder {
    const Tokenizer *t;
    TokSplitter sp;
    uint8_t *san, *pre;        /* sanitized copy; prefix-space copies */
    size_t san_cap, pre_cap;
    CacheEnt *ce;
    size_t ce_cap, ce_n;
    uint8_t *ckey;
    size_t ckey_len, ckey_cap;
    int32_t *cid;
    size_t cid_len, cid_cap;
    int32_t *sym, *rk, *nxt, *prv; /* merge scratch */
    uint64_t *heap;
    size_t scratch_cap;
    int32_t **out;             /* the caller's growable array during a call */
    size_t *out_n, *out_cap;
    int oom;
    uint64_t invalid;
    const uint8_t *qp[PIECE_BATCH]; /* queued pieces */
    size_t ql[PIECE_BATCH];
    uint64_t qh[PIECE_BATCH];
    int nq;
};

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

TokEncoder *tok_encoder_new(const Tokenizer *t, Err *err) {
    TokEncoder *e = calloc(1, sizeof *e);
    if (!e) {
        err_set(err, ERR_NOMEM, "out of memory");
        return NULL;
    }
    e->t = t;
    e->ce_cap = 4096;
    e->ce = calloc(e->ce_cap, sizeof *e->ce);
    if (!e->ce || tok_splitter_init(&e->sp, t, err)) {
        if (!e->ce) err_set(err, ERR_NOMEM, "out of memory");
        free(e->ce);
        free(e);
        return NULL;
    }
    return e;
}

void tok_encoder_free(TokEncoder *e) {
    if (!e) return;
    tok_splitter_free(&e->sp);
    free(e->san);
    free(e->pre);
    free(e->ce);
    free(e->ckey);
    free(e->cid);
    free(e->sym);
    free(e->rk);
    free(e->nxt);
    free(e->prv);
    free(e->heap);
    free(e);
}

uint64_t tok_encoder_invalid_bytes(const TokEncoder *e) { return e->invalid; }

static void emit(TokEncoder *e, const int32_t *ids, size_t n) {
    if (!n) return;
    if (grow((void **)e->out, e->out_cap, *e->out_n + n, sizeof(int32_t))) {
        e->oom = 1;
        return;
    }
    memcpy(*e->out + *e->out_n, ids, n * sizeof(int32_t));
    *e->out_n += n;
}

static int32_t merge_rank(const Tokenizer *t, int32_t l, int32_t r) {
    const TokMerge *m = tok_merge_find(t, l, r);
    return m ? m->rank : INT32_MAX;
}

/* Heap-based merging for long pieces: O(n log n). Entries are
 * (rank << 32 | position), so the minimum is the lowest rank, leftmost. */
static size_t merge_long(TokEncoder *e, size_t n) {
    const Tokenizer *t = e->t;
    int32_t *id = e->sym, *nxt = e->nxt, *prv = e->prv;
    uint64_t *h = e->heap;
    size_t hn = 0;
#define HPUSH(v)                                                              \
    do {                                                                      \
        size_t c_ = hn++;                                                     \
        h[c_] = (v);                                                          \
        while (c_ && h[(c_ - 1) / 2] > h[c_]) {                               \
            uint64_t x_ = h[c_]; h[c_] = h[(c_ - 1) / 2]; h[(c_ - 1) / 2] = x_; \
            c_ = (c_ - 1) / 2;                                                \
        }                                                                     \
    } while (0)
    for (size_t i = 0; i < n; i++) {
        nxt[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        prv[i] = (int32_t)i - 1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        int32_t r = merge_rank(t, id[i], id[i + 1]);
        if (r != INT32_MAX) HPUSH(((uint64_t)(uint32_t)r << 32) | i);
    }
    while (hn) {
        uint64_t top = h[0];
        h[0] = h[--hn];
        for (size_t c = 0;;) { /* sift down */
            size_t l = 2 * c + 1, m = c;
            if (l < hn && h[l] < h[m]) m = l;
            if (l + 1 < hn && h[l + 1] < h[m]) m = l + 1;
            if (m == c) break;
            uint64_t x = h[c];
            h[c] = h[m];
            h[m] = x;
            c = m;
        }
        int32_t pos = (int32_t)(top & 0xFFFFFFFFu), rank = (int32_t)(top >> 32);
        if (id[pos] < 0 || nxt[pos] < 0) continue;
        const TokMerge *mg = tok_merge_find(t, id[pos], id[nxt[pos]]);
        if (!mg || mg->rank != rank) continue; /* stale entry */
        int32_t r = nxt[pos];
        id[pos] = mg->out;
        id[r] = -1;
        nxt[pos] = nxt[r];
        if (nxt[r] >= 0) prv[nxt[r]] = pos;
        if (prv[pos] >= 0) {
            int32_t rr = merge_rank(t, id[prv[pos]], id[pos]);
            if (rr != INT32_MAX) HPUSH(((uint64_t)(uint32_t)rr << 32) | (uint32_t)prv[pos]);
        }
        if (nxt[pos] >= 0) {
            int32_t rr = merge_rank(t, id[pos], id[nxt[pos]]);
            if (rr != INT32_MAX) HPUSH(((uint64_t)(uint32_t)rr << 32) | (uint32_t)pos);
        }
    }
#undef HPUSH
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = nxt[i]) id[k++] = id[i];
    return k;
}

/* Merge the bytes of one piece into e->sym; returns the token count. */
static size_t merge_piece(TokEncoder *e, const uint8_t *p, size_t len) {
    const Tokenizer *t = e->t;
    if (t->ignore_merges) {
        int32_t whole = tok_lookup(t, p, len);
        if (whole >= 0) {
            e->sym[0] = whole;
            return 1;
        }
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int32_t id = t->byte_id[p[i]];
        if (id < 0) id = t->unk; /* no token for this byte: unk, or dropped as HF does without one */
        if (id >= 0) e->sym[n++] = id;
    }
    if (n < 2) return n;
    if (n > SHORT_PIECE) return merge_long(e, n);
    int32_t *s = e->sym, *r = e->rk;
    /* overlap the table's memory latency (a vocabulary without merges has
     * no table: mmap is NULL, and NULL + offset is UB) */
    for (size_t i = 0; t->mmap && i + 1 < n; i++) {
        uint64_t key = ((uint64_t)(uint32_t)s[i] << 32) | (uint32_t)s[i + 1];
        __builtin_prefetch(&t->mmap[(size_t)((key * 0x9E3779B97F4A7C15ULL) >> 20) & (t->mmap_cap - 1)]);
    }
    for (size_t i = 0; i + 1 < n; i++) r[i] = merge_rank(t, s[i], s[i + 1]);
    while (n > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < n; i++)
            if (r[i] < r[best]) best = i;
        if (r[best] == INT32_MAX) break;
        s[best] = tok_merge_find(t, s[best], s[best + 1])->out;
        memmove(s + best + 1, s + best + 2, (n - best - 2) * sizeof *s);
        memmove(r + best, r + best + 1, (n - best - 2) * sizeof *r);
        n--;
        if (best + 1 < n) r[best] = merge_rank(t, s[best], s[best + 1]);
        if (best > 0) r[best - 1] = merge_rank(t, s[best - 1], s[best]);
    }
    return n;
}

static void cache_clear(TokEncoder *e) {
    memset(e->ce, 0, e->ce_cap * sizeof *e->ce);
    e->ce_n = 0;
    e->ckey_len = 0;
    e->cid_len = 0;
}

static void cache_put(TokEncoder *e, uint64_t h, const uint8_t *p, size_t len, const int32_t *ids, size_t n) {
    if ((e->ce_n + 1) * 2 > e->ce_cap) {
        if (e->ce_cap >= CACHE_MAX_SLOTS) {
            cache_clear(e); /* bounded memory: start over rather than grow without end */
        } else {
            size_t cap = e->ce_cap ? e->ce_cap * 2 : 4096;
            CacheEnt *ne = calloc(cap, sizeof *ne);
            if (!ne) return;
            for (size_t i = 0; i < e->ce_cap; i++) {
                if (!e->ce[i].hash) continue;
                size_t j = (size_t)e->ce[i].hash & (cap - 1);
                while (ne[j].hash) j = (j + 1) & (cap - 1);
                ne[j] = e->ce[i];
            }
            free(e->ce);
            e->ce = ne;
            e->ce_cap = cap;
        }
    }
    if (grow((void **)&e->ckey, &e->ckey_cap, e->ckey_len + len, 1) ||
        grow((void **)&e->cid, &e->cid_cap, e->cid_len + n, sizeof(int32_t)))
        return;
    size_t j = (size_t)h & (e->ce_cap - 1);
    while (e->ce[j].hash) j = (j + 1) & (e->ce_cap - 1);
    CacheEnt *c = &e->ce[j];
    c->hash = h;
    c->key_off = (uint32_t)e->ckey_len;
    c->key_len = (uint32_t)len;
    c->ids_off = (uint32_t)e->cid_len;
    c->n_ids = (uint32_t)n;
    memcpy(e->ckey + e->ckey_len, p, len);
    if (n) memcpy(e->cid + e->cid_len, ids, n * sizeof *ids); /* n is 0 for a piece of dropped bytes */
    e->ckey_len += len;
    e->cid_len += n;
    e->ce_n++;
}

/* All merge scratch arrays share one capacity (the heap three times it). */
static int ensure_scratch(TokEncoder *e, size_t len) {
    size_t cap = e->scratch_cap ? e->scratch_cap : 64;
    while (cap < len) cap *= 2;
    int32_t *a = realloc(e->sym, cap * sizeof *a);
    if (a) e->sym = a;
    int32_t *b = realloc(e->rk, cap * sizeof *b);
    if (b) e->rk = b;
    int32_t *c = realloc(e->nxt, cap * sizeof *c);
    if (c) e->nxt = c;
    int32_t *d = realloc(e->prv, cap * sizeof *d);
    if (d) e->prv = d;
    uint64_t *h = realloc(e->heap, 3 * cap * sizeof *h);
    if (h) e->heap = h;
    if (!a || !b || !c || !d || !h) return -1;
    e->scratch_cap = cap;
    return 0;
}

static void encode_piece(TokEncoder *e, const uint8_t *p, size_t len, uint64_t h) {
    const Tokenizer *t = e->t;
    if (len == 1 && t->byte_id[p[0]] >= 0) {
        emit(e, &t->byte_id[p[0]], 1);
        return;
    }
    if (len <= CACHE_MAX_KEY) {
        if (!h) h = tok_hash_bytes(p, len) | 1;
        for (size_t j = (size_t)h & (e->ce_cap - 1);; j = (j + 1) & (e->ce_cap - 1)) {
            const CacheEnt *c = &e->ce[j];
            if (!c->hash) break;
            if (c->hash == h && c->key_len == len && memcmp(e->ckey + c->key_off, p, len) == 0) {
                /* a piece none of whose bytes has a token caches zero ids,
                 * and then cid may still be NULL (NULL + 0 is UB) */
                if (c->n_ids) emit(e, e->cid + c->ids_off, c->n_ids);
                return;
            }
        }
    }
    if (len > e->scratch_cap && ensure_scratch(e, len)) {
        e->oom = 1;
        return;
    }
    size_t n = merge_piece(e, p, len);
    emit(e, e->sym, n);
    if (len <= CACHE_MAX_KEY) cache_put(e, h, p, len, e->sym, n);
}

/* Pieces are queued and handled in batches: hashing a batch first and
 * prefetching its cache slots overlaps the memory latency of the lookups
 * (a large cache does not fit in the CPU caches). Order is kept. */
static void flush_pieces(TokEncoder *e) {
    size_t mask = e->ce_cap - 1;
    for (int i = 0; i < e->nq; i++) {
        if (e->ql[i] > 1 && e->ql[i] <= CACHE_MAX_KEY) {
            e->qh[i] = tok_hash_bytes(e->qp[i], e->ql[i]) | 1;
            __builtin_prefetch(&e->ce[e->qh[i] & mask]);
        }
    }
    for (int i = 0; i < e->nq; i++) encode_piece(e, e->qp[i], e->ql[i], e->qh[i]);
    e->nq = 0;
}

static void on_piece(void *ctx, const uint8_t *p, size_t len) {
    TokEncoder *e = ctx;
    e->qp[e->nq] = p;
    e->ql[e->nq] = len;
    e->qh[e->nq] = 0;
    if (++e->nq == PIECE_BATCH) flush_pieces(e);
}

static void encode_segment(TokEncoder *e, const uint8_t *san, const uint8_t *orig, size_t len) {
    const Tokenizer *t = e->t;
    if (!len) return;
    if (t->add_prefix_space && orig[0] != ' ') {
        if (grow((void **)&e->pre, &e->pre_cap, 2 * (len + 1), 1)) {
            e->oom = 1;
            return;
        }
        e->pre[0] = ' ';
        memcpy(e->pre + 1, orig, len);
        e->pre[len + 1] = ' ';
        memcpy(e->pre + len + 2, san, len);
        tok_split(t, &e->sp, e->pre + len + 1, e->pre, len + 1, on_piece, e);
        flush_pieces(e);
        return;
    }
    tok_split(t, &e->sp, san, orig, len, on_piece, e);
    flush_pieces(e);
}

int tok_encoder_append(TokEncoder *e, const void *bytes, size_t len, int allow_special, int32_t **ids, size_t *n,
                       size_t *cap, Err *err) {
    const Tokenizer *t = e->t;
    const uint8_t *orig = bytes, *san = bytes;
    e->out = ids;
    e->out_n = n;
    e->out_cap = cap;
    e->oom = 0;
    if (tok_utf8_valid_prefix(orig, len) < len) {
        if (grow((void **)&e->san, &e->san_cap, len, 1)) return err_set(err, ERR_NOMEM, "out of memory");
        e->invalid += tok_utf8_sanitize(orig, len, e->san);
        san = e->san;
    }
    size_t seg = 0;
    if (allow_special && t->n_special) {
        for (size_t i = 0; i < len;) {
            if (!t->special_first[orig[i]]) {
                i++;
                continue;
            }
            int32_t hit = -1;
            for (int k = 0; k < t->n_special; k++) { /* longest first */
                int32_t id = t->special_ids[k];
                size_t l = t->len[id];
                if (l <= len - i && memcmp(orig + i, t->pool + t->off[id], l) == 0) {
                    hit = id;
                    break;
                }
            }
            if (hit < 0) {
                i++;
                continue;
            }
            encode_segment(e, san + seg, orig + seg, i - seg);
            emit(e, &hit, 1);
            i += t->len[hit];
            seg = i;
        }
    }
    encode_segment(e, san + seg, orig + seg, len - seg);
    e->out = NULL;
    if (e->oom) return err_set(err, ERR_NOMEM, "out of memory while encoding %zu bytes", len);
    if (e->sp.failed) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(e->sp.failed, msg, sizeof msg);
        e->sp.failed = 0;
        return err_set(err, ERR_UNSUPPORTED, "the split pattern failed on this text: %s", (char *)msg);
    }
    return 0;
}

int tokenizer_encode(const Tokenizer *t, const void *bytes, size_t len, int allow_special, int32_t **ids, size_t *n,
                     Err *err) {
    *ids = NULL;
    *n = 0;
    TokEncoder *e = tok_encoder_new(t, err);
    if (!e) return ERR_NOMEM;
    size_t cap = 0;
    int rc = tok_encoder_append(e, bytes, len, allow_special, ids, n, &cap, err);
    tok_encoder_free(e);
    if (rc) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return rc;
}

/* A cut before p is safe when p follows "X\n" with X a visible ASCII
 * character and p starts a character that is neither white space nor a
 * continuation: no piece of the known patterns spans such a point. */
static int safe_cut(const uint8_t *s, size_t p) {
    if (p < 2 || s[p - 1] != '\n' || s[p - 2] < 0x21 || s[p - 2] > 0x7E) return 0;
    uint8_t c = s[p];
    return (c >= 0x21 && c <= 0x7E) || (c >= 0xC3 && c <= 0xE0) || (c >= 0xE4 && c <= 0xF4);
}

size_t tokenizer_next_cut(const Tokenizer *t, const void *bytes, size_t len, size_t from) {
    const uint8_t *s = bytes;
    if (t->add_prefix_space) return len; /* each part would get its own prefix space */
    for (size_t p = from; p < len; p++)
        if (safe_cut(s, p)) return p;
    return len;
}

int tokenizer_encode_parallel(const Tokenizer *t, const void *bytes, size_t len, int allow_special, int threads,
                              int32_t **ids, size_t *n, Err *err) {
    const uint8_t *s = bytes;
    *ids = NULL;
    *n = 0;
    int known = (!strcmp(t->pattern_name, "gpt2") || !strcmp(t->pattern_name, "llama3") ||
                 !strcmp(t->pattern_name, "smollm")) && !t->add_prefix_space;
    for (int k = 0; k < t->n_special; k++) /* a special holding a newline could straddle a cut */
        if (memchr(t->pool + t->off[t->special_ids[k]], '\n', t->len[t->special_ids[k]])) known = 0;
    int nth = threads > 0 ? threads : omp_get_max_threads();
    if (!known || nth <= 1 || len < (1u << 16)) return tokenizer_encode(t, bytes, len, allow_special, ids, n, err);
    size_t nchunk = (size_t)nth * 8, step = len / nchunk + 1;
    size_t *cut = malloc((nchunk + 1) * sizeof *cut);
    int32_t **part = calloc(nchunk, sizeof *part);
    size_t *pn = calloc(nchunk, sizeof *pn);
    int *prc = calloc(nchunk, sizeof *prc);
    if (!cut || !part || !pn || !prc) {
        free(cut), free(part), free(pn), free(prc);
        return err_set(err, ERR_NOMEM, "out of memory");
    }
    cut[0] = 0;
    for (size_t k = 1; k < nchunk; k++) {
        size_t p = cut[k - 1] > k * step ? cut[k - 1] : k * step;
        while (p < len && !safe_cut(s, p)) p++;
        cut[k] = p < len ? p : len;
    }
    cut[nchunk] = len;
    Err perr[1] = {{0}};
#pragma omp parallel num_threads(nth)
    {
        Err e2 = {0};
        TokEncoder *enc = tok_encoder_new(t, &e2);
#pragma omp for schedule(dynamic, 1)
        for (size_t k = 0; k < nchunk; k++) {
            size_t cap = 0;
            prc[k] = enc ? tok_encoder_append(enc, s + cut[k], cut[k + 1] - cut[k], allow_special, &part[k], &pn[k], &cap,
                                              &e2)
                         : ERR_NOMEM;
            if (prc[k]) {
#pragma omp critical
                perr[0] = e2;
            }
        }
        tok_encoder_free(enc);
    }
    int rc = 0;
    size_t total = 0;
    for (size_t k = 0; k < nchunk; k++) {
        if (prc[k]) rc = prc[k];
        total += pn[k];
    }
    if (rc) {
        if (err) *err = perr[0];
    } else if (!(*ids = malloc((total ? total : 1) * sizeof **ids))) {
        rc = err_set(err, ERR_NOMEM, "out of memory");
    } else {
        size_t o = 0;
        for (size_t k = 0; k < nchunk; k++) {
            memcpy(*ids + o, part[k], pn[k] * sizeof **ids);
            o += pn[k];
        }
        *n = total;
    }
    for (size_t k = 0; k < nchunk; k++) free(part[k]);
    free(cut), free(part), free(pn), free(prc);
    return rc;
}
