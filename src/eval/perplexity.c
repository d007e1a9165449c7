/* Perplexity as llama-perplexity computes it (tools/perplexity/perplexity.cpp,
 * perplexity()): chunks of ctx tokens, BOS over each chunk's first token,
 * logits of the second half kept, -log p of tokens first+1..ctx-1 scored. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

int eval_tokenize(const Tokenizer *tok, const char *text, size_t len, int allow_special, int32_t **ids, size_t *n,
                  Err *err) {
    if (tok) return tokenizer_encode(tok, text, len, allow_special, ids, n, err);
    *ids = malloc((len + 1) * sizeof **ids);
    if (!*ids) return err_set(err, ERR_NOMEM, "out of memory for %zu tokens", len);
    for (size_t i = 0; i < len; i++) (*ids)[i] = (unsigned char)text[i];
    *n = len;
    return 0;
}

int32_t eval_bos(const Tokenizer *tok) {
    return tok && tokenizer_add_bos(tok) && tokenizer_bos_id(tok) >= 0 ? tokenizer_bos_id(tok) : -1;
}

int eval_read_text(const Tokenizer *tok, const char *path, int32_t **ids, size_t *n, Err *err) {
    char *text = NULL;
    size_t len = 0, nr = 0;
    int32_t *raw = NULL;
    *ids = NULL;
    int rc = file_read_all(path, &text, &len, err);
    if (!rc) rc = eval_tokenize(tok, text, len, 0, &raw, &nr, err);
    free(text);
    const int32_t bos = eval_bos(tok);
    if (!rc && !(*ids = malloc((nr + 1) * sizeof **ids))) rc = err_set(err, ERR_NOMEM, "out of memory");
    if (!rc) {
        (*ids)[0] = bos;
        memcpy(*ids + (bos >= 0), raw, nr * sizeof *raw);
        *n = nr + (bos >= 0);
    }
    free(raw);
    return rc;
}

void eval_options_default(EvalOptions *o) {
    memset(o, 0, sizeof *o);
    o->ctx = 512;
    o->kv_type = DT_F16;
    o->bos = -1;
}

/* llama-perplexity's n_batch when none is given */
#define EVAL_DEFAULT_BATCH 2048
/* the most logits a runner keeps for packed chunks (one chunk's are kept whatever their size) */
#define EVAL_MAX_LOGITS_BYTES ((size_t)1 << 30)

int chunk_runner_create(ChunkRunner *r, Model *m, const EvalOptions *o, Err *err) {
    memset(r, 0, sizeof *r);
    const Config *c = &m->cfg;
    if (o->ctx < 4 || o->ctx > c->context_length)
        return err_set(err, ERR_INVALID, "--ctx %d: must be in 4..%d (the model's context length)", o->ctx,
                       c->context_length);
    r->m = m;
    r->ctx = o->ctx;
    const int batch = o->batch > 0 ? o->batch : o->ctx > EVAL_DEFAULT_BATCH ? o->ctx : EVAL_DEFAULT_BATCH;
    r->step = batch < o->ctx ? batch : o->ctx;
    /* several chunks per pass as llama-perplexity (n_seq = n_batch / n_ctx):
     * the matmuls run once over all their rows, fewer and larger parallel
     * regions; the activation plan is bounded by the model's context length */
    r->n_seq = batch / o->ctx > 1 ? batch / o->ctx : 1;
    r->first = o->ctx / 2;
    /* and by the logits kept: a large vocabulary packs fewer chunks (the
     * figure is the same either way) */
    const size_t chunk_logits = (size_t)(o->ctx - r->first) * c->vocab_size * sizeof(float);
    if (r->n_seq > c->context_length / o->ctx) r->n_seq = c->context_length / o->ctx;
    if ((size_t)r->n_seq * chunk_logits > EVAL_MAX_LOGITS_BYTES) r->n_seq = (int)(EVAL_MAX_LOGITS_BYTES / chunk_logits);
    if (r->n_seq < 1) r->n_seq = 1;
    r->V = c->vocab_size;
    int rc = model_plan_activations(m, 1, r->n_seq * r->step, 0, err);
    if (rc) return rc;
    r->kv = calloc((size_t)r->n_seq, sizeof *r->kv);
    r->buf = malloc((size_t)r->n_seq * r->step * sizeof *r->buf);
    r->seqs = malloc((size_t)r->n_seq * sizeof *r->seqs);
    r->out0 = malloc((size_t)r->n_seq * sizeof *r->out0);
    r->logits = malloc((size_t)r->n_seq * (r->ctx - r->first) * r->V * sizeof *r->logits);
    if (!r->kv || !r->buf || !r->seqs || !r->out0 || !r->logits) {
        chunk_runner_free(r);
        return err_set(err, ERR_NOMEM, "out of memory for the logits of %d chunks (--batch %d)", r->n_seq, batch);
    }
    for (int i = 0; i < r->n_seq; i++)
        if ((rc = kvcache_create(&r->kv[i], c, r->ctx, o->kv_type, err))) {
            chunk_runner_free(r);
            return rc;
        }
    return 0;
}

void chunk_runner_free(ChunkRunner *r) {
    for (int i = 0; r->kv && i < r->n_seq; i++) kvcache_free(&r->kv[i]);
    free(r->kv);
    free(r->buf);
    free(r->seqs);
    free(r->out0);
    free(r->logits);
    memset(r, 0, sizeof *r);
}

int chunk_runner_run(ChunkRunner *r, const int32_t *chunks, int n, int32_t bos, Err *err) {
    if (n < 1 || n > r->n_seq)
        return err_set(err, ERR_INVALID, "chunk_runner_run: %d chunks, the runner takes 1..%d", n, r->n_seq);
    SeqSpan *seqs = r->seqs;
    int *out0 = r->out0;
    for (int i = 0; i < n; i++) r->kv[i].len = 0; /* a fresh cache per chunk, as llama_memory_clear */
    int rc = 0;
    /* n > 1 only when step == ctx: a single pass, whose rows (ctx - first
     * per chunk) land chunk after chunk; n == 1: the passes of one chunk,
     * each call's rows from position first on into their place */
    for (int p0 = 0; p0 < r->ctx && !rc; p0 += r->step) {
        const int k = r->ctx - p0 < r->step ? r->ctx - p0 : r->step;
        const int o0 = r->first > p0 ? (r->first - p0 < k ? r->first - p0 : k) : 0;
        for (int i = 0; i < n; i++) {
            int32_t *b = r->buf + (size_t)i * k;
            memcpy(b, chunks + (size_t)i * r->ctx + p0, (size_t)k * sizeof *b);
            if (p0 == 0 && bos >= 0) b[0] = bos;
            seqs[i] = (SeqSpan){&r->kv[i], b, k};
            out0[i] = o0;
        }
        float *dst = r->logits + (size_t)(p0 + o0 - r->first) * r->V;
        rc = model_forward_batch_rows(r->m, seqs, n, out0, o0 < k ? dst : NULL, err);
    }
    return rc;
}

int eval_n_chunks(size_t n_tokens, const EvalOptions *o, int *n_chunk, Err *err) {
    if (n_tokens < (size_t)2 * o->ctx)
        return err_set(err, ERR_INVALID,
                       "the text has %zu tokens: perplexity at --ctx %d needs at least %d (two chunks); give a longer "
                       "text or a smaller --ctx",
                       n_tokens, o->ctx, 2 * o->ctx);
    size_t nc = n_tokens / (size_t)o->ctx;
    if (o->max_chunks > 0 && nc > (size_t)o->max_chunks) nc = (size_t)o->max_chunks;
    *n_chunk = (int)nc;
    return 0;
}

double nll_ppl(const NllSum *s) { return s->count ? exp(s->nll / (double)s->count) : NAN; }

double nll_ppl_err(const NllSum *s) {
    if (s->count < 2) return 0.0;
    const double mean = s->nll / (double)s->count, var = s->nll2 / (double)s->count - mean * mean;
    return var > 0 ? nll_ppl(s) * sqrt(var / (double)(s->count - 1)) : 0.0;
}

double eval_nll(const float *logits, int V, int tok) {
    /* vectorised exp (not glibc's expf): the perplexity moves by ~1e-7
     * relative, far under llama-perplexity's printed 4 decimals */
    return -log_softmax_at(logits, V, tok);
}

int eval_perplexity(Model *m, const int32_t *tokens, size_t n, const EvalOptions *o, LogitsWriter *save,
                    EvalProgressCb cb, void *cb_ctx, PplResult *res, Err *err) {
    memset(res, 0, sizeof *res);
    int n_chunk = 0, rc = eval_n_chunks(n, o, &n_chunk, err);
    if (rc) return rc;
    ChunkRunner r;
    if ((rc = chunk_runner_create(&r, m, o, err))) return rc;
    const int scored = r.ctx - 1 - r.first; /* per chunk */
    double *nll = malloc((size_t)scored * sizeof *nll);
    if (!nll) {
        chunk_runner_free(&r);
        return err_set(err, ERR_NOMEM, "out of memory");
    }
    NllSum s = {0};
    const double t0 = time_now();
    for (int c0 = 0; c0 < n_chunk && !rc; c0 += r.n_seq) {
        const int nc = n_chunk - c0 < r.n_seq ? n_chunk - c0 : r.n_seq;
        if ((rc = chunk_runner_run(&r, tokens + (size_t)c0 * r.ctx, nc, o->bos, err))) break;
        for (int j = 0; j < nc && !rc; j++) {
            const int32_t *chunk = tokens + (size_t)(c0 + j) * r.ctx;
            const float *logits = r.logits + (size_t)j * (r.ctx - r.first) * r.V;
            if (save) {
                rc = logits_writer_chunk(save, logits, chunk, &s, err);
            } else {
                /* rows in parallel, summed in order: the same figure at any thread count */
#pragma omp parallel for schedule(dynamic, 8)
                for (int i = 0; i < scored; i++) nll[i] = eval_nll(logits + (size_t)i * r.V, r.V, chunk[r.first + 1 + i]);
                for (int i = 0; i < scored; i++) {
                    s.nll += nll[i];
                    s.nll2 += nll[i] * nll[i];
                }
                s.count += scored;
            }
            if (!rc && cb) {
                EvalProgress p = {.chunk = c0 + j + 1, .n_chunk = n_chunk, .ppl = nll_ppl(&s), .ppl_err = nll_ppl_err(&s)};
                cb(cb_ctx, &p);
            }
        }
    }
    res->seconds = time_now() - t0;
    free(nll);
    chunk_runner_free(&r);
    if (rc) return rc;
    res->ppl = nll_ppl(&s);
    res->ppl_err = nll_ppl_err(&s);
    res->nll = s.nll / (double)s.count;
    res->scored = s.count;
    res->n_chunk = n_chunk;
    res->ctx = o->ctx;
    return 0;
}
