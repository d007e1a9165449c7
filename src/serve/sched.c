/* serve: the scheduler. One thread owns the model and the slots; at every
 * step it builds one batch of all decoding sequences (one token each) and
 * the next chunks of prompts (never a one-token chunk when more remain: the
 * attention of one query sums in another order than a chunk's, and a
 * request must get the same bits however its prompt was cut), runs ONE
 * model_forward_batch, samples, and hands each job its new text. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/serve_internal.h"

int slots_create(Server *s, Err *err) {
    const Config *c = &s->im.model.cfg;
    s->slots = calloc((size_t)s->n_slots, sizeof *s->slots);
    s->logits = malloc((size_t)s->n_slots * c->vocab_size * sizeof(float));
    s->lp_row = malloc((size_t)c->vocab_size * sizeof(float));
    if (!s->slots || !s->logits || !s->lp_row) return err_set(err, ERR_NOMEM, "out of memory for %d slots", s->n_slots);
    for (int i = 0; i < s->n_slots; i++) {
        Slot *sl = &s->slots[i];
        int rc = kvcache_create(&sl->kv, c, s->ctx, s->o.kv_type ? s->o.kv_type : DT_F16, err);
        if (rc || (rc = sampler_create(&sl->sampler, c->vocab_size, err))) return rc;
        if (!(sl->toks = malloc((size_t)s->ctx * sizeof *sl->toks))) return err_set(err, ERR_NOMEM, "out of memory");
    }
    return model_plan_activations(&s->im.model, 1, s->chunk, 0, err);
}

void slots_free(Server *s) {
    for (int i = 0; s->slots && i < s->n_slots; i++) {
        kvcache_free(&s->slots[i].kv);
        sampler_free(&s->slots[i].sampler);
        free(s->slots[i].toks);
    }
    free(s->slots);
    free(s->logits);
    free(s->lp_row);
    s->slots = NULL;
}

int sched_submit(Server *s, Job *j, ApiError *e) {
    pthread_mutex_lock(&s->lock);
    if (s->stopping) {
        pthread_mutex_unlock(&s->lock);
        return api_error(e, 503, NULL, "shutting_down", "the server is shutting down");
    }
    if (s->n_queued >= s->max_queue + (s->n_slots - s->n_active)) { /* free slots take queued jobs at the next step */
        pthread_mutex_unlock(&s->lock);
        return api_error(e, 429, NULL, "queue_full", "all %d slots are busy and %d requests are waiting (--max-queue); retry later",
                         s->n_slots, s->max_queue);
    }
    if (!j->req.has_seed) j->req.so.seed = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ULL + ++s->id_counter;
    j->state = JOB_QUEUED;
    j->next = NULL;
    if (s->queue_tail) s->queue_tail->next = j;
    else s->queue_head = j;
    s->queue_tail = j;
    s->n_queued++;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

void job_release(Server *s, Job *j) {
    pthread_mutex_lock(&s->lock);
    j->cancelled = 1;
    if (j->state == JOB_QUEUED) { /* still waiting: unlink it here */
        Job **pp = &s->queue_head, *prev = NULL;
        while (*pp && *pp != j) prev = *pp, pp = &(*pp)->next;
        if (*pp) {
            *pp = j->next;
            if (s->queue_tail == j) s->queue_tail = prev;
            s->n_queued--;
        }
        j->released = 1;
    }
    pthread_cond_signal(&s->work);
    while (!j->released) pthread_cond_wait(&j->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

/* Common prefix of the slot's cached tokens and the prompt. */
static int common_prefix(const Slot *sl, const ServeRequest *r) {
    int k = 0;
    while (k < sl->kv.len && k < r->n_ids && sl->toks[k] == r->ids[k]) k++;
    return k;
}

/* Put queued jobs on free slots: the slot sharing the longest prefix with
 * the prompt, else the least recently used. Under the lock. */
static void assign(Server *s) {
    while (s->queue_head) {
        Job *j = s->queue_head;
        int best = -1, best_k = -1;
        for (int i = 0; i < s->n_slots; i++) {
            Slot *sl = &s->slots[i];
            if (sl->job) continue;
            int k = common_prefix(sl, &j->req);
            if (k > best_k || (k == best_k && sl->last_used < s->slots[best].last_used)) best = i, best_k = k;
        }
        if (best < 0) return;
        s->queue_head = j->next;
        if (!s->queue_head) s->queue_tail = NULL;
        s->n_queued--;
        Slot *sl = &s->slots[best];
        const int n = j->req.n_ids;
        /* the last prompt token is always computed (its logits are needed);
         * and the rest never as a lone token when the prompt has more */
        int keep = best_k;
        if (keep > n - 2) keep = n >= 2 ? n - 2 : 0;
        sl->kv.len = keep;
        sl->job = j;
        sl->done = keep;
        sl->decoding = 0;
        sl->draws = 0;
        sl->last_used = ++s->step;
        j->cached = keep;
        j->state = JOB_ACTIVE;
        s->n_active++;
    }
}

/* Free a slot whose job is over; the cache stays for the next prompt. */
static void finish(Server *s, Slot *sl, const char *reason) {
    Job *j = sl->job;
    size_t from, n;
    if (reason) {
        j->finish = reason;
        infer_text_flush(&j->text, &from, &n); /* what was held back is final now */
    }
    if (j->n_gen > 0 && !j->cancelled) {
        double itl = j->n_gen > 1 ? (j->t_last - j->t_first) / (j->n_gen - 1) : 0;
        metrics_observe(&s->m, j->t_first - j->t_arrive, itl, j->n_gen - 1);
    }
    s->m.prompt_tokens += (uint64_t)j->req.n_ids;
    s->m.cached_tokens += (uint64_t)j->cached;
    s->m.gen_tokens += (uint64_t)j->n_gen;
    j->state = JOB_DONE;
    j->released = 1;
    sl->job = NULL;
    s->n_active--;
    pthread_cond_broadcast(&j->cond);
}

/* Log-probabilities of token id under logits row (V): chat's entry shape
 * {"token", "logprob", "bytes", "top_logprobs": [...]}. */
static json_t *logprob_entry(const Server *s, const float *row, int32_t id, int top) {
    const int V = s->im.model.cfg.vocab_size;
    float mx = row[0];
    for (int i = 1; i < V; i++) mx = row[i] > mx ? row[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)row[i] - mx);
    const double lse = mx + log(sum);
    json_t *e = json_object(), *tops = json_array();
    int picked[SERVE_MAX_TOP_LOGPROBS];
    for (int t = -1; t < top; t++) {
        int k = id;
        if (t >= 0) { /* the t-th most likely, not yet picked */
            k = -1;
            for (int i = 0; i < V; i++) {
                int seen = 0;
                for (int q = 0; q < t; q++) seen |= picked[q] == i;
                if (!seen && (k < 0 || row[i] > row[k])) k = i;
            }
            picked[t] = k;
        }
        size_t bl = 0;
        const uint8_t *b = infer_token_bytes(&s->im, k, &bl);
        json_t *bytes = json_array();
        for (size_t q = 0; q < bl; q++) json_array_append_new(bytes, json_integer(b[q]));
        json_t *o = t < 0 ? e : json_object();
        json_object_set_new(o, "token", json_text((const char *)b, b ? bl : 0));
        json_object_set_new(o, "logprob", json_real(row[k] - lse));
        json_object_set_new(o, "bytes", bytes);
        if (t >= 0) json_array_append_new(tops, o);
    }
    json_object_set_new(e, "top_logprobs", tops);
    return e;
}

/* The next token of slot sl from its logits row (penalties applied to the
 * row in place). Touches only the slot's sampler and draw counter, which the
 * scheduler thread alone uses: callable outside the lock. */
static int32_t sample(Slot *sl, float *row) {
    const ServeRequest *r = &sl->job->req;
    return sampler_next(&sl->sampler, &r->so, row, sl->toks, sl->kv.len, sl->draws++);
}

/* Hand slot sl's job its next token: id, already sampled from the slot's
 * logits row, or SAMPLE_HERE to sample row now (a request with
 * log-probabilities, which need the row before the penalties). Returns 1
 * when the job is over. Under the lock. */
enum { SAMPLE_HERE = -1, MID_PROMPT = -2 };
static int advance(Server *s, Slot *sl, float *row, int32_t id) {
    Job *j = sl->job;
    const ServeRequest *r = &j->req;
    const int V = s->im.model.cfg.vocab_size;
    if (id == SAMPLE_HERE) {
        if (r->logprobs) memcpy(s->lp_row, row, (size_t)V * sizeof *row);
        id = sample(sl, row);
    }
    if (id < 0 || id >= V) id = 0;
    double now = time_now();
    if (!j->n_gen) j->t_first = now;
    j->t_last = now;
    j->n_gen++;
    if (infer_is_end(&s->im, id)) {
        finish(s, sl, "stop");
        return 1;
    }
    if (r->logprobs) {
        if (!j->lp) j->lp = json_array();
        json_array_append_new(j->lp, logprob_entry(s, s->lp_row, id, r->top_logprobs));
    }
    size_t len = 0, from, n;
    const uint8_t *b = infer_token_bytes(&s->im, id, &len);
    GenOptions go = {0, (const char *const *)r->stops, r->n_stops, 0};
    int found = infer_text_push(&j->text, &go, b, len, &from, &n);
    pthread_cond_broadcast(&j->cond);
    if (found) {
        finish(s, sl, "stop");
        return 1;
    }
    if (j->n_gen >= r->max_tokens || sl->kv.len >= s->ctx) {
        finish(s, sl, "length");
        return 1;
    }
    sl->next = id;
    sl->decoding = 1;
    return 0;
}

/* Build the step's batch: every decoding slot's last token, then prompt
 * chunks while the chunk budget lasts. Under the lock. */
static int build_batch(Server *s, SeqSpan *spans, int *which) {
    int n = 0, budget = s->chunk;
    for (int i = 0; i < s->n_slots; i++) {
        Slot *sl = &s->slots[i];
        if (!sl->job || !sl->decoding) continue;
        spans[n] = (SeqSpan){&sl->kv, &sl->next, 1};
        which[n++] = i;
        budget--;
    }
    for (int i = 0; i < s->n_slots && budget >= 2; i++) {
        Slot *sl = &s->slots[i];
        if (!sl->job || sl->decoding) continue;
        const int left = sl->job->req.n_ids - sl->done;
        int k = left < budget ? left : budget;
        if (left - k == 1) k--; /* never leave a lone last token */
        if (k < 1 || (k == 1 && left > 1)) continue;
        spans[n] = (SeqSpan){&sl->kv, sl->job->req.ids + sl->done, k};
        which[n++] = i;
        budget -= k;
    }
    return n;
}

/* After a step's forward: record each row's tokens in its slot's history
 * and sample every row that ends a prompt or decodes, in parallel: ids[b]
 * the token, MID_PROMPT (the prompt goes on at the next step) or
 * SAMPLE_HERE (advance samples it under the lock). Greedy choice over the
 * vocabulary, or a full softmax when sampling, costs tens to hundreds of
 * microseconds a row, which 16 rows on the scheduler's thread alone added
 * to every step. Outside the lock: the slots' caches, histories and
 * samplers are the scheduler's alone, and a job stays on its slot (its
 * request unchanged) until finish() under the lock. */
static void sample_rows(Server *s, const SeqSpan *spans, const int *which, int n, int32_t *ids) {
    const int V = s->im.model.cfg.vocab_size;
    int todo = 0;
    for (int b = 0; b < n; b++) {
        Slot *sl = &s->slots[which[b]];
        memcpy(sl->toks + sl->kv.len - spans[b].n, spans[b].tokens, (size_t)spans[b].n * sizeof(int32_t));
        if (!sl->decoding) sl->done += spans[b].n;
        ids[b] = !sl->decoding && sl->done < sl->job->req.n_ids ? MID_PROMPT : SAMPLE_HERE;
        todo += ids[b] == SAMPLE_HERE && !sl->job->req.logprobs;
    }
#pragma omp parallel for schedule(dynamic, 1) if (todo > 1)
    for (int b = 0; b < n; b++) {
        Slot *sl = &s->slots[which[b]];
        if (ids[b] == SAMPLE_HERE && !sl->job->req.logprobs) ids[b] = sample(sl, s->logits + (size_t)b * V);
    }
}

void *sched_main(void *arg) {
    Server *s = arg;
    SeqSpan *spans = malloc((size_t)s->n_slots * sizeof *spans);
    int *which = malloc((size_t)s->n_slots * sizeof *which);
    int32_t *ids = malloc((size_t)s->n_slots * sizeof *ids); /* (n_slots) each row's sampled token */
    const int V = s->im.model.cfg.vocab_size;
    pthread_mutex_lock(&s->lock);
    while (spans && which && ids) {
        /* cancelled jobs (client gone, server stopping) leave their slots now */
        for (int i = 0; i < s->n_slots; i++)
            if (s->slots[i].job && (s->slots[i].job->cancelled || s->stopping))
                finish(s, &s->slots[i], s->slots[i].job->cancelled ? NULL : "length"); /* stopping: cut short */
        if (s->stopping) break;
        assign(s);
        int n = build_batch(s, spans, which);
        if (!n) {
            pthread_cond_wait(&s->work, &s->lock);
            continue;
        }
        pthread_mutex_unlock(&s->lock);
        Err err = {0};
        int rc = model_forward_batch(&s->im.model, spans, n, s->logits, FWD_ROWS_EXACT, &err);
        if (!rc) sample_rows(s, spans, which, n, ids);
        pthread_mutex_lock(&s->lock);
        for (int b = 0; b < n; b++) {
            Slot *sl = &s->slots[which[b]];
            if (rc) { /* a failure inside the model: the job gets a 500, the slot is reset */
                snprintf(sl->job->error, sizeof sl->job->error, "%s", err.msg);
                sl->kv.len = 0;
                finish(s, sl, NULL);
                continue;
            }
            if (ids[b] != MID_PROMPT) advance(s, sl, s->logits + (size_t)b * V, ids[b]);
        }
    }
    pthread_mutex_unlock(&s->lock);
    free(spans);
    free(which);
    free(ids);
    return NULL;
}
