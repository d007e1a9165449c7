/* The generation loop: a KV-cached session over the one model forward
 * (model_forward_cached), prompts in chunks, then one token at a time;
 * streaming of whole UTF-8 characters with stop strings held back. */
#include "infer/infer.h"

#include <stdlib.h>
#include <string.h>

int infer_kv_type_from_name(const char *name) {
    if (!strcmp(name, "f16")) return DT_F16;
    if (!strcmp(name, "f32")) return DT_F32;
    return -1;
}

int infer_session_create(InferSession *s, const InferModel *im, int ctx, int batch, int kv_type, const SamplerOptions *so,
                         Err *err) {
    memset(s, 0, sizeof *s);
    const Config *c = &im->model.cfg;
    if (ctx <= 0) ctx = c->context_length < 4096 ? c->context_length : 4096;
    if (ctx > c->context_length) ctx = c->context_length;
    if (batch <= 0) batch = 512;
    if (batch > ctx) batch = ctx;
    int rc = so ? sampler_validate(so, err) : 0;
    if (rc) return rc;
    s->im = im;
    s->batch = batch;
    s->cap = ctx;
    if (so) s->so = *so;
    else sampler_options_default(&s->so);
    /* the activation plan lives in the model: one session per model at a time */
    Model *m = (Model *)&im->model;
    if ((rc = model_plan_activations(m, 1, batch, 0, err)) || (rc = kvcache_create(&s->kv, c, ctx, kv_type, err)) ||
        (rc = sampler_create(&s->sampler, c->vocab_size, err)))
        goto fail;
    s->hist = malloc((size_t)ctx * sizeof *s->hist);
    s->logits = malloc((size_t)c->vocab_size * sizeof *s->logits);
    if (!s->hist || !s->logits) {
        rc = err_set(err, ERR_NOMEM, "out of memory");
        goto fail;
    }
    return 0;
fail:
    infer_session_free(s);
    return rc;
}

void infer_session_free(InferSession *s) {
    kvcache_free(&s->kv);
    sampler_free(&s->sampler);
    free(s->hist);
    free(s->logits);
    memset(s, 0, sizeof *s);
}

void infer_session_reset(InferSession *s) {
    s->n_hist = 0;
    s->kv.len = 0;
    s->have_logits = 0;
    s->draws = 0;
}

/* Run ids through the model in chunks of at most s->batch. */
static int feed(InferSession *s, const int32_t *ids, int n, Err *err) {
    Model *m = (Model *)&s->im->model;
    for (int i = 0; i < n;) {
        int k = n - i < s->batch ? n - i : s->batch;
        int rc = model_forward_cached(m, &s->kv, ids + i, k, s->logits, err);
        if (rc) {
            s->n_hist = s->kv.len; /* what did make it in stays consistent */
            s->have_logits = 0;
            return rc;
        }
        memcpy(s->hist + s->n_hist, ids + i, (size_t)k * sizeof *ids);
        s->n_hist += k;
        i += k;
    }
    s->have_logits = n > 0;
    return 0;
}

int infer_session_prompt(InferSession *s, const int32_t *ids, int n, Err *err) {
    if (n <= 0) return err_set(err, ERR_INVALID, "empty prompt (no tokens)");
    if (n > s->cap)
        return err_set(err, ERR_INVALID, "prompt of %d tokens does not fit the context of %d", n, s->cap);
    int keep = 0;
    while (keep < s->n_hist && keep < n && s->hist[keep] == ids[keep]) keep++;
    if (keep == n) keep = n - 1; /* re-run the last token: its logits are needed */
    s->n_hist = keep;
    s->kv.len = keep; /* entries past len are simply overwritten */
    return feed(s, ids + keep, n - keep, err);
}

int infer_session_push(InferSession *s, int32_t id, Err *err) {
    if (s->n_hist >= s->cap) return err_set(err, ERR_INVALID, "context full (%d tokens)", s->cap);
    return feed(s, &id, 1, err);
}

/* Length of the longest incomplete UTF-8 sequence at the end of p[0..n). */
static size_t utf8_incomplete_tail(const char *p, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = (unsigned char)p[n - back];
        if ((c & 0xC0) == 0x80) continue; /* continuation byte: keep looking */
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

static int text_add(InferText *t, const uint8_t *b, size_t n) {
    if (t->n + n + 1 > t->cap) {
        size_t cap = (t->n + n + 1) * 2 + 64;
        char *q = realloc(t->p, cap);
        if (!q) return ERR_NOMEM;
        t->p = q;
        t->cap = cap;
    }
    memcpy(t->p + t->n, b, n);
    t->n += n;
    t->p[t->n] = 0;
    return 0;
}

/* Find the first stop string in the text (searching only where a new one can
 * start); returns its position or (size_t)-1. */
static size_t find_stop(const InferText *t, const GenOptions *go, size_t from) {
    size_t best = (size_t)-1;
    for (int i = 0; i < go->n_stops; i++) {
        size_t sl = strlen(go->stops[i]);
        if (!sl || sl > t->n) continue;
        for (size_t p = from; p + sl <= t->n; p++)
            if (!memcmp(t->p + p, go->stops[i], sl)) {
                if (p < best) best = p;
                break;
            }
    }
    return best;
}

/* How many bytes at the end may still become a stop string. */
static size_t stop_holdback(const InferText *t, const GenOptions *go) {
    size_t hold = 0;
    for (int i = 0; i < go->n_stops; i++) {
        size_t sl = strlen(go->stops[i]);
        for (size_t k = sl > 1 ? sl - 1 : 0; k > hold; k--)
            if (k <= t->n && !memcmp(t->p + t->n - k, go->stops[i], k)) {
                hold = k;
                break;
            }
    }
    return hold;
}

int infer_text_push(InferText *t, const GenOptions *go, const uint8_t *b, size_t len, size_t *from, size_t *n) {
    size_t max_stop = 0;
    for (int i = 0; i < go->n_stops; i++)
        if (strlen(go->stops[i]) > max_stop) max_stop = strlen(go->stops[i]);
    size_t before = t->n;
    *from = t->sent;
    *n = 0;
    if (b && len && text_add(t, b, len)) return ERR_NOMEM;
    if (!t->p && text_add(t, (const uint8_t *)"", 0)) return ERR_NOMEM;
    size_t start = before > max_stop ? before - max_stop : 0;
    size_t at = go->n_stops ? find_stop(t, go, start > t->sent ? start : t->sent) : (size_t)-1;
    size_t ready;
    int stopped = 0;
    if (at != (size_t)-1) {
        t->n = at;
        t->p[at] = 0;
        ready = at;
        stopped = 1;
    } else {
        ready = t->n - stop_holdback(t, go);
        ready -= utf8_incomplete_tail(t->p, ready);
    }
    if (ready > t->sent) {
        *n = ready - t->sent;
        t->sent = ready;
    }
    return stopped;
}

void infer_text_flush(InferText *t, size_t *from, size_t *n) {
    *from = t->sent;
    *n = t->n > t->sent ? t->n - t->sent : 0;
    t->sent = t->n;
}

int infer_generate(InferSession *s, const GenOptions *go, InferTextCb cb, void *ctx, int32_t *ids, int max_ids,
                   GenResult *res, Err *err) {
    memset(res, 0, sizeof *res);
    if (!s->have_logits) return err_set(err, ERR_INVALID, "generate: no prompt has been processed");
    const InferModel *im = s->im;
    const int V = im->model.cfg.vocab_size;
    InferText text = {0};
    int rc = 0, stop = 0;
    size_t from, n;
    double t0 = time_now();
    for (int g = 0; go->max_tokens <= 0 || g < go->max_tokens; g++) {
        int32_t id = sampler_next(&s->sampler, &s->so, s->logits, s->hist, s->n_hist, s->draws++);
        if (id < 0 || id >= V) id = 0;
        if (ids && res->n_tokens < max_ids) ids[res->n_tokens] = id;
        res->n_tokens++;
        if (!go->ignore_eos && infer_is_end(im, id)) {
            stop = 1;
            /* the end token goes into the cache too, so a next chat turn continues after it */
            if (s->n_hist < s->cap && (rc = infer_session_push(s, id, err))) goto done;
            break;
        }
        size_t len = 0;
        const uint8_t *b = infer_token_bytes(im, id, &len);
        int found = infer_text_push(&text, go, b, len, &from, &n);
        if (found < 0) {
            rc = err_set(err, ERR_NOMEM, "out of memory");
            goto done;
        }
        if (found) stop = 2;
        if (n && cb && cb(ctx, text.p + from, n)) stop = 4;
        if (stop) break;
        if (s->n_hist >= s->cap) {
            stop = 3;
            break;
        }
        if ((rc = infer_session_push(s, id, err))) goto done;
    }
    /* what was held back (a partial stop string, a cut character) is final now */
    infer_text_flush(&text, &from, &n);
    if (stop != 2 && stop != 4 && n && cb) cb(ctx, text.p + from, n);
    res->stopped_by = stop;
done:
    res->gen_s = time_now() - t0;
    if (rc || (!text.p && text_add(&text, (const uint8_t *)"", 0))) {
        free(text.p);
        return rc ? rc : err_set(err, ERR_NOMEM, "out of memory");
    }
    res->text = text.p;
    res->text_len = text.n;
    return 0;
}

/* cmd_bench.c reaches bench_infer_main through a weak reference, which does
 * not pull bench_infer.o out of the static library; this strong one does,
 * in every binary that generates (the jarip CLI does). */
int bench_infer_main(int argc, char **argv);
int (*const infer_bench_link)(int, char **) = bench_infer_main;
