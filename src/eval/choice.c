/* Multiple choice by log-likelihood, as lm-evaluation-harness scores
 * `multiple_choice` tasks: each choice is a loglikelihood request (context,
 * " " + choice); acc takes the choice of highest log-likelihood, acc_norm
 * the highest log-likelihood per byte of the choice; the standard error is
 * the harness's (sample standard deviation / sqrt(n)). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

void choice_tasks_free(ChoiceTask *tasks, int n) {
    for (int i = 0; tasks && i < n; i++) {
        free(tasks[i].context);
        for (int j = 0; j < tasks[i].n_choices; j++) free(tasks[i].choices[j]);
        free(tasks[i].choices);
    }
    free(tasks);
}

/* One line's object into t; the message names the line. */
static int parse_task(json_t *o, ChoiceTask *t, const char *path, int line, Err *err) {
    json_t *ctx = json_object_get(o, "context"), *ch = json_object_get(o, "choices"), *lab = json_object_get(o, "label");
    if (!json_is_string(ctx)) return err_set(err, ERR_FORMAT, "%s:%d: \"context\" (a string) is missing", path, line);
    if (!json_is_array(ch) || json_array_size(ch) < 2 || json_array_size(ch) > CHOICE_MAX)
        return err_set(err, ERR_FORMAT, "%s:%d: \"choices\" must be a list of 2 to %d strings", path, line, CHOICE_MAX);
    if (!json_is_integer(lab)) return err_set(err, ERR_FORMAT, "%s:%d: \"label\" (an integer) is missing", path, line);
    const int nc = (int)json_array_size(ch);
    const json_int_t label = json_integer_value(lab);
    if (label < 0 || label >= nc)
        return err_set(err, ERR_FORMAT, "%s:%d: label %lld is out of range for %d choices", path, line, (long long)label,
                       nc);
    t->line = line;
    t->label = (int)label;
    t->context = strdup(json_string_value(ctx));
    t->choices = calloc((size_t)nc, sizeof *t->choices);
    if (!t->context || !t->choices) return err_set(err, ERR_NOMEM, "out of memory");
    for (int j = 0; j < nc; j++) {
        json_t *c = json_array_get(ch, (size_t)j);
        if (!json_is_string(c)) return err_set(err, ERR_FORMAT, "%s:%d: choice %d is not a string", path, line, j);
        if (!(t->choices[j] = strdup(json_string_value(c)))) return err_set(err, ERR_NOMEM, "out of memory");
        t->n_choices = j + 1;
    }
    return 0;
}

int choice_tasks_load(const char *path, int limit, ChoiceTask **tasks, int *n, Err *err) {
    *tasks = NULL;
    *n = 0;
    char *text = NULL;
    size_t len = 0;
    int rc = file_read_all(path, &text, &len, err);
    if (rc) return rc;
    int cap = 0, line = 0;
    for (char *p = text; p < text + len && (limit <= 0 || *n < limit);) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p)), *end = nl ? nl : text + len;
        line++;
        char *q = p;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (q < end) {
            json_error_t je;
            json_t *o = json_loadb(p, (size_t)(end - p), 0, &je);
            if (!json_is_object(o)) {
                rc = err_set(err, ERR_FORMAT, "%s:%d: not a JSON object%s%s", path, line, o ? "" : ": ", o ? "" : je.text);
                json_decref(o);
                break;
            }
            if (*n == cap) {
                cap = cap ? cap * 2 : 64;
                ChoiceTask *t = realloc(*tasks, (size_t)cap * sizeof *t);
                if (!t) {
                    json_decref(o);
                    rc = err_set(err, ERR_NOMEM, "out of memory");
                    break;
                }
                *tasks = t;
            }
            memset(&(*tasks)[*n], 0, sizeof **tasks);
            rc = parse_task(o, &(*tasks)[*n], path, line, err);
            (*n)++;
            json_decref(o);
            if (rc) break;
        }
        p = nl ? nl + 1 : text + len;
    }
    free(text);
    if (!rc && *n == 0) rc = err_set(err, ERR_FORMAT, "%s: no tasks", path);
    if (rc) {
        choice_tasks_free(*tasks, *n);
        *tasks = NULL;
        *n = 0;
    }
    return rc;
}

/* The harness's _encode_pair: trailing spaces of the context move to the
 * continuation; the continuation's tokens are those of context +
 * continuation past the context's own token count. */
static int encode_pair(const Tokenizer *tok, const char *context, const char *cont, int32_t **ctx_ids, size_t *n_ctx,
                       int32_t **cont_ids, size_t *n_cont, Err *err) {
    size_t lc = strlen(context), lk = strlen(cont), keep = lc;
    while (keep > 0 && strchr(" \t\n\r\v\f", context[keep - 1])) keep--; /* Python's rstrip() */
    char *whole = malloc(lc + lk + 1);
    if (!whole) return err_set(err, ERR_NOMEM, "out of memory");
    memcpy(whole, context, lc);
    memcpy(whole + lc, cont, lk + 1);
    int32_t *w = NULL;
    size_t nw = 0;
    int rc = eval_tokenize(tok, whole, lc + lk, 1, &w, &nw, err);
    if (!rc) rc = eval_tokenize(tok, whole, keep, 1, ctx_ids, n_ctx, err);
    free(whole);
    if (rc) {
        free(w);
        return rc;
    }
    *n_cont = nw > *n_ctx ? nw - *n_ctx : 0;
    *cont_ids = w;
    memmove(w, w + *n_ctx, *n_cont * sizeof *w);
    return 0;
}

/* Log-likelihood of cont given ctx_ids, through a cache holding nothing. */
static int score(Model *m, KVCache *kv, int batch, const int32_t *ctx_ids, size_t n_ctx, const int32_t *cont,
                 size_t n_cont, float *logits, double *ll, int *greedy, Err *err) {
    const int V = m->cfg.vocab_size;
    const size_t total = n_ctx + n_cont - 1; /* the last continuation token is only predicted */
    int32_t *in = malloc(total * sizeof *in);
    if (!in) return err_set(err, ERR_NOMEM, "out of memory");
    memcpy(in, ctx_ids, n_ctx * sizeof *in);
    memcpy(in + n_ctx, cont, (n_cont - 1) * sizeof *in);
    kv->len = 0;
    int rc = 0;
    *ll = 0.0;
    *greedy = 1;
    /* logits from position n_ctx - 1 on: they predict the continuation */
    for (size_t p0 = 0; p0 < total && !rc; p0 += (size_t)batch) {
        const int k = total - p0 < (size_t)batch ? (int)(total - p0) : batch;
        const size_t want = n_ctx - 1;
        const int out0 = want > p0 ? (want - p0 < (size_t)k ? (int)(want - p0) : k) : 0;
        rc = model_forward_cached_rows(m, kv, in + p0, k, out0, out0 < k ? logits : NULL, err);
        for (int i = out0; i < k && !rc; i++) {
            const float *row = logits + (size_t)(i - out0) * V;
            const int32_t t = cont[p0 + (size_t)i - (n_ctx - 1)];
            *ll -= eval_nll(row, V, t);
            int am = 0;
            for (int j = 1; j < V; j++) am = row[j] > row[am] ? j : am;
            *greedy &= am == t;
        }
    }
    free(in);
    return rc;
}

/* acc_norm's length: the choice's bytes (an empty choice counts as one). */
static double choice_bytes(const char *choice) { return strlen(choice) ? (double)strlen(choice) : 1.0; }

static double stderr_of_mean(const int *x, int n) {
    if (n < 2) return 0.0;
    double mean = 0.0, ss = 0.0;
    for (int i = 0; i < n; i++) mean += x[i];
    mean /= n;
    for (int i = 0; i < n; i++) ss += (x[i] - mean) * (x[i] - mean);
    return sqrt(ss / (n - 1)) / sqrt((double)n);
}

int eval_choice(Model *m, const Tokenizer *tok, const ChoiceTask *tasks, int n, int ctx, int kv_type, ChoiceCb cb,
                void *cb_ctx, ChoiceResult *res, Err *err) {
    memset(res, 0, sizeof *res);
    const Config *c = &m->cfg;
    if (ctx <= 0) ctx = c->context_length < 4096 ? c->context_length : 4096;
    if (ctx > c->context_length) ctx = c->context_length;
    const int batch = ctx < 512 ? ctx : 512;
    /* what stands for an empty context: BOS, else EOS (the harness's
     * prefix token); a byte-level model's documents start after a newline */
    int32_t prefix = tok ? tokenizer_bos_id(tok) : '\n';
    if (prefix < 0 && tok) prefix = tokenizer_eos_id(tok);
    KVCache kv;
    int rc = model_plan_activations(m, 1, batch, 0, err);
    if (rc || (rc = kvcache_create(&kv, c, ctx, kv_type, err))) return rc;
    float *logits = malloc((size_t)batch * c->vocab_size * sizeof *logits);
    int *acc = calloc((size_t)n, sizeof *acc), *accn = calloc((size_t)n, sizeof *accn);
    if (!logits || !acc || !accn) {
        rc = err_set(err, ERR_NOMEM, "out of memory");
        goto done;
    }
    const double t0 = time_now();
    for (int i = 0; i < n && !rc; i++) {
        const ChoiceTask *t = &tasks[i];
        ChoiceScore s;
        memset(&s, 0, sizeof s);
        for (int j = 0; j < t->n_choices && !rc; j++) {
            char *cont = malloc(strlen(t->choices[j]) + 2);
            if (!cont) {
                rc = err_set(err, ERR_NOMEM, "out of memory");
                break;
            }
            cont[0] = ' ';
            strcpy(cont + 1, t->choices[j]);
            int32_t *ci = NULL, *ki = NULL;
            size_t nc = 0, nk = 0;
            rc = encode_pair(tok, t->context, cont, &ci, &nc, &ki, &nk, err);
            free(cont);
            if (!rc && nc == 0) { /* an empty context: the prefix token stands for it */
                if (prefix < 0) rc = err_set(err, ERR_INVALID, "line %d: empty context and no BOS/EOS token", t->line);
                else if (!(ci = realloc(ci, sizeof *ci))) rc = err_set(err, ERR_NOMEM, "out of memory");
                else ci[0] = prefix, nc = 1;
            }
            if (!rc && nk == 0) rc = err_set(err, ERR_INVALID, "line %d: choice %d has no tokens", t->line, j);
            if (!rc && nc + nk - 1 > (size_t)ctx)
                rc = err_set(err, ERR_INVALID, "line %d: context and choice %d are %zu tokens, over --ctx %d", t->line,
                             j, nc + nk, ctx);
            if (!rc) rc = score(m, &kv, batch, ci, nc, ki, nk, logits, &s.ll[j], &s.greedy[j], err);
            s.n_tokens[j] = (int)nk;
            free(ci);
            free(ki);
        }
        if (rc) break;
        for (int j = 1; j < t->n_choices; j++) {
            if (s.ll[j] > s.ll[s.pred]) s.pred = j;
            if (s.ll[j] / choice_bytes(t->choices[j]) > s.ll[s.pred_norm] / choice_bytes(t->choices[s.pred_norm]))
                s.pred_norm = j;
        }
        acc[i] = s.pred == t->label;
        accn[i] = s.pred_norm == t->label;
        if (cb) cb(cb_ctx, i, t, &s);
    }
    if (!rc) {
        res->n = n;
        for (int i = 0; i < n; i++) res->acc += acc[i], res->acc_norm += accn[i];
        res->acc /= n;
        res->acc_norm /= n;
        res->acc_stderr = stderr_of_mean(acc, n);
        res->acc_norm_stderr = stderr_of_mean(accn, n);
        res->seconds = time_now() - t0;
    }
done:
    free(logits);
    free(acc);
    free(accn);
    kvcache_free(&kv);
    return rc;
}
