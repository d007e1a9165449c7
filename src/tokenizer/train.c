/* BPE training.
 *
 * 1. Word counting: inputs are read in blocks, cut into ~1 MiB chunks at
 *    newlines (fixed positions, so the result does not depend on the thread
 *    count), split by the pattern in parallel into per-thread word maps.
 * 2. Each distinct word becomes a symbol sequence with its count; memory is
 *    proportional to distinct words, not to the input.
 * 3. Pair counts and, per pair, the words containing it are kept up to date
 *    incrementally; a max-heap with lazy deletion picks the next merge
 *    (highest count, then smaller (left id, right id)), so no merge rescans
 *    the corpus. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

#define BLOCK_BYTES (32u << 20)
#define CHUNK_BYTES (1u << 20)

/* ---- bytes -> value map -------------------------------------------------- */
typedef struct {
    uint64_t *h;     /* 0 = empty */
    uint64_t *off;
    uint32_t *len;
    uint64_t *val;
    size_t cap, n;
    uint8_t *arena;
    size_t alen, acap;
} WMap;

static void wmap_free(WMap *m) {
    free(m->h);
    free(m->off);
    free(m->len);
    free(m->val);
    free(m->arena);
    memset(m, 0, sizeof *m);
}

static int wmap_rehash(WMap *m, size_t cap) {
    WMap nm = *m;
    nm.cap = cap;
    nm.h = calloc(cap, sizeof *nm.h);
    nm.off = malloc(cap * sizeof *nm.off);
    nm.len = malloc(cap * sizeof *nm.len);
    nm.val = malloc(cap * sizeof *nm.val);
    if (!nm.h || !nm.off || !nm.len || !nm.val) {
        free(nm.h);
        free(nm.off);
        free(nm.len);
        free(nm.val);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->h[i]) continue;
        size_t j = m->h[i] & (cap - 1);
        while (nm.h[j]) j = (j + 1) & (cap - 1);
        nm.h[j] = m->h[i];
        nm.off[j] = m->off[i];
        nm.len[j] = m->len[i];
        nm.val[j] = m->val[i];
    }
    free(m->h);
    free(m->off);
    free(m->len);
    free(m->val);
    *m = nm;
    return 0;
}

/* Slot of p (added with value 0 when absent); -1 on out of memory. */
static long wmap_slot(WMap *m, const uint8_t *p, size_t n, uint64_t h) {
    if ((m->n + 1) * 2 > m->cap && wmap_rehash(m, m->cap ? m->cap * 2 : 1024)) return -1;
    size_t j = h & (m->cap - 1);
    while (m->h[j]) {
        if (m->h[j] == h && m->len[j] == n && memcmp(m->arena + m->off[j], p, n) == 0) return (long)j;
        j = (j + 1) & (m->cap - 1);
    }
    if (m->alen + n > m->acap) {
        size_t c = m->acap ? m->acap * 2 : 1 << 16;
        while (c < m->alen + n) c *= 2;
        uint8_t *a = realloc(m->arena, c);
        if (!a) return -1;
        m->arena = a;
        m->acap = c;
    }
    memcpy(m->arena + m->alen, p, n);
    m->h[j] = h;
    m->off[j] = m->alen;
    m->len[j] = (uint32_t)n;
    m->val[j] = 0;
    m->alen += n;
    m->n++;
    return (long)j;
}

static uint64_t whash(const uint8_t *p, size_t n) { return tok_hash_bytes(p, n) | 1; }

/* ---- word counting --------------------------------------------------------- */
typedef struct {
    WMap *map;
    int oom;
} CountCtx;

static void count_piece(void *ctx, const uint8_t *p, size_t n) {
    CountCtx *c = ctx;
    long s = wmap_slot(c->map, p, n, whash(p, n));
    if (s < 0)
        c->oom = 1;
    else
        c->map->val[s]++;
}

/* Split one chunk, leaving special-token text out (as Hugging Face does). */
static void count_chunk(const Tokenizer *pt, TokSplitter *sp, const uint8_t *p, size_t n, uint8_t *san, CountCtx *c) {
    const uint8_t *s = p;
    if (tok_utf8_valid_prefix(p, n) < n) {
        tok_utf8_sanitize(p, n, san);
        s = san;
    }
    size_t seg = 0;
    for (size_t i = 0; i < n;) {
        int32_t hit = -1;
        if (pt->special_first[p[i]])
            for (int k = 0; k < pt->n_special && hit < 0; k++) {
                int32_t id = pt->special_ids[k];
                if (pt->len[id] <= n - i && !memcmp(p + i, pt->pool + pt->off[id], pt->len[id])) hit = id;
            }
        if (hit < 0) {
            i++;
            continue;
        }
        tok_split(pt, sp, s + seg, p + seg, i - seg, count_piece, c);
        i += pt->len[hit];
        seg = i;
    }
    tok_split(pt, sp, s + seg, p + seg, n - seg, count_piece, c);
}

static int count_words(const Tokenizer *pt, const TokTrainOptions *o, int nth, WMap *total, Err *err) {
    WMap *local = calloc((size_t)nth, sizeof *local);
    uint8_t *block = malloc(BLOCK_BYTES + CHUNK_BYTES);
    size_t *starts = malloc((BLOCK_BYTES / CHUNK_BYTES + 2) * 2 * sizeof *starts);
    if (!local || !block || !starts) {
        free(local);
        free(block);
        free(starts);
        return err_set(err, ERR_NOMEM, "out of memory");
    }
    int rc = 0;
    uint64_t total_bytes = 0, done_bytes = 0;
    for (int f = 0; f < o->n_inputs; f++) {
        FILE *fp = fopen(o->inputs[f], "rb");
        if (!fp) {
            rc = err_set(err, ERR_IO, "cannot open input %s", o->inputs[f]);
            break;
        }
        fseek(fp, 0, SEEK_END);
        total_bytes += (uint64_t)ftell(fp);
        fclose(fp);
    }
    for (int f = 0; f < o->n_inputs && !rc; f++) {
        FILE *fp = fopen(o->inputs[f], "rb");
        if (!fp) {
            rc = err_set(err, ERR_IO, "cannot open input %s", o->inputs[f]);
            break;
        }
        size_t have = 0;
        for (;;) {
            size_t got = fread(block + have, 1, BLOCK_BYTES - have, fp);
            have += got;
            int eof = got == 0 || feof(fp);
            if (ferror(fp)) {
                rc = err_set(err, ERR_IO, "read error in %s", o->inputs[f]);
                break;
            }
            if (!have) break;
            /* process up to the last newline (all of it at end of file) */
            size_t use = have;
            if (!eof) {
                while (use > 0 && block[use - 1] != '\n') use--;
                if (use == 0) use = have; /* a block without newlines: cut anyway */
            }
            size_t nch = 0;
            for (size_t a = 0; a < use;) {
                size_t b = a + CHUNK_BYTES < use ? a + CHUNK_BYTES : use;
                while (b < use && block[b - 1] != '\n') b++;
                starts[2 * nch] = a;
                starts[2 * nch + 1] = b;
                nch++;
                a = b;
            }
            int oom = 0;
#pragma omp parallel num_threads(nth) reduction(| : oom)
            {
                int me = omp_get_thread_num();
                TokSplitter sp;
                uint8_t *san = malloc(CHUNK_BYTES * 2 + 64);
                CountCtx c = {&local[me], 0};
                Err e2 = {0};
                if (!san || tok_splitter_init(&sp, pt, &e2)) {
                    oom = 1;
                } else {
#pragma omp for schedule(dynamic, 1)
                    for (size_t k = 0; k < nch; k++) {
                        size_t a = starts[2 * k], b = starts[2 * k + 1];
                        uint8_t *big = NULL, *sb = san;
                        if (b - a > CHUNK_BYTES * 2 + 64) sb = big = malloc(b - a);
                        if (!sb) {
                            c.oom = 1;
                            continue;
                        }
                        count_chunk(pt, &sp, block + a, b - a, sb, &c);
                        free(big);
                    }
                    tok_splitter_free(&sp);
                }
                free(san);
                oom |= c.oom;
            }
            if (oom) {
                rc = err_set(err, ERR_NOMEM, "out of memory counting words");
                break;
            }
            done_bytes += use;
            if (o->progress) o->progress(o->progress_ctx, "counting words", total_bytes ? (double)done_bytes / total_bytes : 1);
            memmove(block, block + use, have - use);
            have -= use;
            if (eof && !have) break;
        }
        fclose(fp);
    }
    for (int k = 0; k < nth && !rc; k++) {
        WMap *m = &local[k];
        for (size_t i = 0; i < m->cap && !rc; i++) {
            if (!m->h[i]) continue;
            long s = wmap_slot(total, m->arena + m->off[i], m->len[i], m->h[i]);
            if (s < 0)
                rc = err_set(err, ERR_NOMEM, "out of memory merging word counts");
            else
                total->val[s] += m->val[i];
        }
    }
    for (int k = 0; k < nth; k++) wmap_free(&local[k]);
    free(local);
    free(block);
    free(starts);
    if (!rc && total->n == 0) rc = err_set(err, ERR_INVALID, "the inputs contain no text to train on");
    return rc;
}

/* ---- merge learning ---------------------------------------------------- */
typedef struct {
    int64_t count;
    int32_t a, b;
} HeapEnt;

typedef struct {
    /* pairs */
    uint64_t *pkey;       /* open addressing over pair ids: key (a<<32|b), UINT64_MAX empty */
    int32_t *pidx;
    size_t pcap;
    int64_t *cnt;
    uint32_t **wl, *wn, *wc;
    int32_t *lastw;
    int32_t *pa, *pb;
    size_t np, npcap;
    HeapEnt *heap;
    size_t hn, hcap;
    int oom;
} Pairs;

static int heap_better(const HeapEnt *x, const HeapEnt *y) {
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static void heap_push(Pairs *P, int64_t count, int32_t a, int32_t b) {
    if (P->hn == P->hcap) {
        size_t c = P->hcap ? P->hcap * 2 : 1 << 16;
        HeapEnt *h = realloc(P->heap, c * sizeof *h);
        if (!h) {
            P->oom = 1;
            return;
        }
        P->heap = h;
        P->hcap = c;
    }
    size_t i = P->hn++;
    P->heap[i] = (HeapEnt){count, a, b};
    while (i && heap_better(&P->heap[i], &P->heap[(i - 1) / 2])) {
        HeapEnt x = P->heap[i];
        P->heap[i] = P->heap[(i - 1) / 2];
        P->heap[(i - 1) / 2] = x;
        i = (i - 1) / 2;
    }
}

static HeapEnt heap_pop(Pairs *P) {
    HeapEnt top = P->heap[0];
    P->heap[0] = P->heap[--P->hn];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < P->hn && heap_better(&P->heap[l], &P->heap[m])) m = l;
        if (l + 1 < P->hn && heap_better(&P->heap[l + 1], &P->heap[m])) m = l + 1;
        if (m == i) break;
        HeapEnt x = P->heap[i];
        P->heap[i] = P->heap[m];
        P->heap[m] = x;
        i = m;
    }
    return top;
}

static size_t pair_slot(const Pairs *P, uint64_t key) {
    size_t j = (size_t)((key * 0x9E3779B97F4A7C15ULL) >> 17) & (P->pcap - 1);
    while (P->pkey[j] != UINT64_MAX && P->pkey[j] != key) j = (j + 1) & (P->pcap - 1);
    return j;
}

/* Index of pair (a,b), created when absent; -1 on out of memory. */
static long pair_get(Pairs *P, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    if ((P->np + 1) * 2 > P->pcap) {
        size_t cap = P->pcap ? P->pcap * 2 : 1 << 16;
        uint64_t *k = malloc(cap * sizeof *k);
        int32_t *ix = malloc(cap * sizeof *ix);
        if (!k || !ix) {
            free(k);
            free(ix);
            return -1;
        }
        for (size_t i = 0; i < cap; i++) k[i] = UINT64_MAX;
        uint64_t *ok = P->pkey;
        int32_t *oi = P->pidx;
        size_t oc = P->pcap;
        P->pkey = k;
        P->pidx = ix;
        P->pcap = cap;
        for (size_t i = 0; i < oc; i++)
            if (ok[i] != UINT64_MAX) {
                size_t j = pair_slot(P, ok[i]);
                k[j] = ok[i];
                ix[j] = oi[i];
            }
        free(ok);
        free(oi);
    }
    size_t j = pair_slot(P, key);
    if (P->pkey[j] == key) return P->pidx[j];
    if (P->np == P->npcap) {
        size_t c = P->npcap ? P->npcap * 2 : 1 << 16;
#define GROWP(f)                                                  \
    do {                                                          \
        void *q_ = realloc(P->f, c * sizeof *P->f);               \
        if (!q_) return -1;                                       \
        P->f = q_;                                                \
    } while (0)
        GROWP(cnt); GROWP(wl); GROWP(wn); GROWP(wc); GROWP(lastw); GROWP(pa); GROWP(pb);
#undef GROWP
        P->npcap = c;
    }
    size_t p = P->np++;
    P->pkey[j] = key;
    P->pidx[j] = (int32_t)p;
    P->cnt[p] = 0;
    P->wl[p] = NULL;
    P->wn[p] = P->wc[p] = 0;
    P->lastw[p] = -1;
    P->pa[p] = a;
    P->pb[p] = b;
    return (long)p;
}

static long pair_add(Pairs *P, int32_t a, int32_t b, int64_t delta, int32_t w) {
    long p = pair_get(P, a, b);
    if (p < 0) {
        P->oom = 1;
        return -1;
    }
    P->cnt[p] += delta;
    if (delta > 0 && P->lastw[p] != w) {
        if (P->wn[p] == P->wc[p]) {
            uint32_t c = P->wc[p] ? P->wc[p] * 2 : 4;
            uint32_t *q = realloc(P->wl[p], c * sizeof *q);
            if (!q) {
                P->oom = 1;
                return -1;
            }
            P->wl[p] = q;
            P->wc[p] = c;
        }
        P->wl[p][P->wn[p]++] = (uint32_t)w;
        P->lastw[p] = w;
    }
    return p;
}

/* Remember pair q (a result of pair_add) to queue once the merge is done. */
static void touch(Pairs *P, int32_t **list, size_t *n, size_t *cap, long q) {
    if (q < 0) return;
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 1024;
        int32_t *l = realloc(*list, c * sizeof *l);
        if (!l) {
            P->oom = 1;
            return;
        }
        *list = l;
        *cap = c;
    }
    (*list)[(*n)++] = (int32_t)q;
}

static int cmp_i32(const void *x, const void *y) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

static void pairs_free(Pairs *P) {
    for (size_t i = 0; i < P->np; i++) free(P->wl[i]);
    free(P->pkey); free(P->pidx); free(P->cnt); free(P->wl); free(P->wn); free(P->wc);
    free(P->lastw); free(P->pa); free(P->pb); free(P->heap);
}

int tokenizer_train(Tokenizer **out, const TokTrainOptions *o, Err *err) {
    *out = NULL;
    const char *def_special[] = {"<|endoftext|>"};
    const char *const *specials = o->n_specials ? o->specials : def_special;
    int nspec = o->n_specials ? o->n_specials : 1;
    if (o->n_inputs < 1) return err_set(err, ERR_INVALID, "no input files");
    if (o->vocab_size < 256 + nspec)
        return err_set(err, ERR_INVALID, "vocab size %d is below 256 bytes + %d special tokens", o->vocab_size, nspec);
    int nth = o->threads > 0 ? o->threads : omp_get_max_threads();
    /* pt only splits the text: the pattern, and the specials (cut out of
     * the text); t is the tokenizer being built */
    Tokenizer *pt = tok_new(err), *t = tok_new(err);
    if (!pt || !t) {
        tokenizer_free(pt);
        tokenizer_free(t);
        return ERR_NOMEM;
    }
    const char *pat = o->pattern ? o->pattern : "gpt2";
    int rc = tok_set_pattern(pt, pat, err);
    if (!rc) rc = tok_set_pattern(t, pat, err);
    for (int i = 0; i < 256 && !rc; i++) {
        uint8_t b = (uint8_t)i;
        rc = tok_set_token(t, i, &b, 1, err);
    }
    for (int i = 0; i < nspec && !rc; i++) {
        if (!specials[i][0]) rc = err_set(err, ERR_INVALID, "empty special token");
        else rc = tok_set_token(pt, i, specials[i], strlen(specials[i]), err);
        if (!rc) pt->special[i] = 1;
    }
    if (!rc) rc = tok_finish_specials(pt, err);
    WMap words = {0};
    if (!rc) rc = count_words(pt, o, nth, &words, err);
    tokenizer_free(pt);
    /* word symbols, packed */
    size_t nw = words.n, nsym = 0;
    uint64_t *woff = NULL;
    uint32_t *wlen = NULL;
    int64_t *wcnt = NULL;
    int32_t *sym = NULL;
    if (!rc) {
        woff = malloc(nw * sizeof *woff);
        wlen = malloc(nw * sizeof *wlen);
        wcnt = malloc(nw * sizeof *wcnt);
        sym = malloc((words.alen + 1) * sizeof *sym);
        if (!woff || !wlen || !wcnt || !sym) rc = err_set(err, ERR_NOMEM, "out of memory for %zu words", nw);
    }
    size_t w = 0;
    for (size_t i = 0; !rc && i < words.cap; i++) {
        if (!words.h[i]) continue;
        woff[w] = nsym;
        wlen[w] = words.len[i];
        wcnt[w] = (int64_t)words.val[i];
        for (uint32_t k = 0; k < words.len[i]; k++) sym[nsym++] = words.arena[words.off[i] + k];
        w++;
    }
    wmap_free(&words);
    Pairs P = {0};
    for (size_t i = 0; !rc && i < nw; i++)
        for (uint32_t k = 0; k + 1 < wlen[i]; k++) pair_add(&P, sym[woff[i] + k], sym[woff[i] + k + 1], wcnt[i], (int32_t)i);
    for (size_t p = 0; !rc && p < P.np; p++) heap_push(&P, P.cnt[p], P.pa[p], P.pb[p]);
    if (!rc && P.oom) rc = err_set(err, ERR_NOMEM, "out of memory counting pairs");
    /* token bytes by id, for new tokens; and bytes -> id to reuse a token a
     * second merge path spells the same way (as Hugging Face does) */
    WMap tokmap = {0};
    for (int i = 0; i < 256 && !rc; i++) {
        uint8_t b = (uint8_t)i;
        long s = wmap_slot(&tokmap, &b, 1, whash(&b, 1));
        if (s < 0) rc = err_set(err, ERR_NOMEM, "out of memory");
        else tokmap.val[s] = (uint64_t)i;
    }
    int target = o->vocab_size - nspec, next_id = 256, n_merges = 0;
    int32_t *touched = NULL;
    size_t ntouched = 0, touched_cap = 0;
    uint8_t *tb = NULL;
    size_t tb_cap = 0;
    while (!rc && next_id < target && P.hn) {
        HeapEnt top = heap_pop(&P);
        long p = pair_get(&P, top.a, top.b);
        if (p < 0) {
            rc = err_set(err, ERR_NOMEM, "out of memory");
            break;
        }
        if (P.cnt[p] != top.count) { /* stale: counts only fall, so re-queue with the true count */
            if (P.cnt[p] > 0) heap_push(&P, P.cnt[p], top.a, top.b);
            continue;
        }
        if (top.count < 1) break;
        int32_t a = top.a, b = top.b;
        size_t la, lb;
        const uint8_t *ba = tokenizer_token_bytes(t, a, &la), *bb = tokenizer_token_bytes(t, b, &lb);
        if (la + lb > tb_cap) {
            tb_cap = 2 * (la + lb);
            uint8_t *q = realloc(tb, tb_cap);
            if (!q) {
                rc = err_set(err, ERR_NOMEM, "out of memory");
                break;
            }
            tb = q;
        }
        memcpy(tb, ba, la);
        memcpy(tb + la, bb, lb);
        long s = wmap_slot(&tokmap, tb, la + lb, whash(tb, la + lb));
        if (s < 0) {
            rc = err_set(err, ERR_NOMEM, "out of memory");
            break;
        }
        int32_t nid;
        if (tokmap.val[s]) { /* merges make tokens of >= 2 bytes, so 0 (byte 0) means new */
            nid = (int32_t)tokmap.val[s];
        } else {
            nid = next_id++;
            tokmap.val[s] = (uint64_t)nid;
            if ((rc = tok_set_token(t, nid, tb, la + lb, err))) break;
        }
        if ((rc = tok_add_merge(t, a, b, nid, n_merges++, err))) break;
        /* apply to every word holding the pair; the list may hold words that
         * no longer do, and duplicates (skipped by lastw-style stamps) */
        uint32_t nlist = P.wn[p];
        uint32_t *list = P.wl[p];
        P.wl[p] = NULL;
        P.wn[p] = P.wc[p] = 0;
        ntouched = 0;
        int32_t prevw = -1;
        for (uint32_t li = 0; li < nlist; li++) {
            int32_t wi = (int32_t)list[li];
            if (wi == prevw) continue;
            prevw = wi;
            int32_t *s0 = sym + woff[wi];
            uint32_t L = wlen[wi], i = 0, j = 0;
            int64_t c = wcnt[wi];
            while (i < L) {
                if (i + 1 < L && s0[i] == a && s0[i + 1] == b) {
                    int32_t prev = j > 0 ? s0[j - 1] : -1, nxt = i + 2 < L ? s0[i + 2] : -1;
                    pair_add(&P, a, b, -c, wi);
                    if (prev >= 0) {
                        pair_add(&P, prev, a, -c, wi);
                        touch(&P, &touched, &ntouched, &touched_cap, pair_add(&P, prev, nid, c, wi));
                    }
                    if (nxt >= 0) {
                        pair_add(&P, b, nxt, -c, wi);
                        touch(&P, &touched, &ntouched, &touched_cap, pair_add(&P, nid, nxt, c, wi));
                    }
                    s0[j++] = nid;
                    i += 2;
                } else {
                    s0[j++] = s0[i++];
                }
            }
            wlen[wi] = j;
        }
        free(list);
        if (P.oom) {
            rc = err_set(err, ERR_NOMEM, "out of memory while merging");
            break;
        }
        /* queue the pairs the merge created, once each, with final counts */
        qsort(touched, ntouched, sizeof *touched, cmp_i32);
        for (size_t k = 0; k < ntouched; k++) {
            int32_t q = touched[k];
            if (k && q == touched[k - 1]) continue;
            if (P.cnt[q] > 0) heap_push(&P, P.cnt[q], P.pa[q], P.pb[q]);
        }
        if (o->progress && (n_merges & 255) == 0)
            o->progress(o->progress_ctx, "merging", (double)(next_id - 256) / (target - 256 > 0 ? target - 256 : 1));
    }
    if (o->progress && !rc) o->progress(o->progress_ctx, "merging", 1.0);
    free(tb);
    free(touched);
    wmap_free(&tokmap);
    pairs_free(&P);
    free(woff);
    free(wlen);
    free(wcnt);
    free(sym);
    /* specials take the ids after the merges */
    for (int i = 0; i < nspec && !rc; i++) {
        int dup = 0;
        for (int k = 0; k < i; k++) dup |= !strcmp(specials[k], specials[i]);
        if (dup) continue;
        rc = tok_set_token(t, next_id, specials[i], strlen(specials[i]), err);
        if (!rc) t->special[next_id++] = 1;
    }
    if (!rc) rc = tok_build_vocab(t, err);
    if (!rc) rc = tok_finish_specials(t, err);
    if (rc) {
        tokenizer_free(t);
        return rc;
    }
    t->eos = tokenizer_special_id(t, "<|endoftext|>");
    if (t->eos < 0) t->eos = tokenizer_special_id(t, specials[0]);
    *out = t;
    return 0;
}
