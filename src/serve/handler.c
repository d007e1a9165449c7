/* serve: one HTTP request to its answer, without sockets. serve_handle
 * takes what libmicrohttpd gathered (method, path, Authorization header,
 * body) and gives the status, content type and body, or, for completions,
 * a validated job for the caller to queue and wait on. server.c is its only
 * caller in jarip; tests/fuzz/fuzz_serve_http.c drives it with hostile
 * requests and a stub in place of the scheduler. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "serve/serve_internal.h"

Job *job_new(Server *s, int chat) {
    Job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_cond_init(&j->cond, NULL);
    pthread_mutex_lock(&s->lock);
    uint64_t n = ++s->id_counter;
    pthread_mutex_unlock(&s->lock);
    snprintf(j->id, sizeof j->id, "%s%016llx%08llx", chat ? "chatcmpl-" : "cmpl-",
             (unsigned long long)time(NULL) * 2654435761ULL, (unsigned long long)n);
    j->created = (long)time(NULL);
    j->t_arrive = time_now();
    return j;
}

void job_free(Job *j) {
    request_free(&j->req);
    free(j->text.p);
    json_decref(j->lp);
    pthread_cond_destroy(&j->cond);
    free(j);
}

typedef struct {
    const char *path, *method;
    int auth; /* needs the API key when one is set */
} Route;

static const Route ROUTES[] = {
    {"/", "GET", 0},          {"/health", "GET", 0},          {"/v1/models", "GET", 1},
    {"/metrics", "GET", 1},   {"/v1/chat/completions", "POST", 1}, {"/chat/completions", "POST", 1},
    {"/v1/completions", "POST", 1}, {"/completions", "POST", 1}, {"/tokenize", "POST", 1},
    {"/detokenize", "POST", 1},
};

/* Authorization: "Bearer KEY" with the server's key, compared in constant time. */
static int key_ok(const Server *s, const char *h) {
    if (!h || strncmp(h, "Bearer ", 7)) return 0;
    h += 7;
    const char *k = s->o.api_key;
    size_t hl = strlen(h), kl = strlen(k);
    unsigned diff = hl != kl;
    for (size_t i = 0; i < hl; i++) diff |= (unsigned char)h[i] ^ (unsigned char)k[i < kl ? i : 0];
    return diff == 0;
}

static int answer(HttpReply *out, int status, const char *ctype, char *body) {
    out->status = status;
    out->ctype = ctype;
    out->body = body;
    return status;
}

static int answer_error(HttpReply *out, const ApiError *e) {
    return answer(out, e->status, "application/json", api_error_json(e));
}

static int answer_json(HttpReply *out, json_t *o) {
    char *b = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return answer(out, 200, "application/json", b);
}

int serve_body_limit(const Server *s, const char *content_length, HttpReply *out) {
    memset(out, 0, sizeof *out);
    if (!content_length || strtoll(content_length, NULL, 10) <= s->o.max_body) return 0;
    ApiError e;
    api_error(&e, 413, NULL, "request_too_large", "the request body has %.40s bytes; the limit is %ld (--max-body)",
              content_length, s->o.max_body);
    return answer_error(out, &e);
}

int serve_handle(Server *s, const HttpRequest *rq, HttpReply *out) {
    memset(out, 0, sizeof *out);
    ApiError e;
    const char *url = rq->url;
    if (rq->too_big)
        return answer_error(out, (api_error(&e, 413, NULL, "request_too_large",
                                            "the request body is over %ld bytes (--max-body)", s->o.max_body), &e));
    const Route *r = NULL;
    for (size_t i = 0; i < sizeof ROUTES / sizeof *ROUTES; i++)
        if (!strcmp(url, ROUTES[i].path)) r = &ROUTES[i];
    if (!r) return answer_error(out, (api_error(&e, 404, NULL, "not_found", "no such path: %.100s", url), &e));
    if (strcmp(rq->method, r->method)) {
        api_error(&e, 405, NULL, "method_not_allowed", "%.100s takes %s, not %.10s", url, r->method, rq->method);
        out->allow = r->method;
        return answer_error(out, &e);
    }
    if (r->auth && s->o.api_key && !key_ok(s, rq->authorization))
        return answer_error(out, (api_error(&e, 401, NULL, "invalid_api_key",
                                            "a valid API key is required (Authorization: Bearer KEY)"), &e));
    if (!strcmp(url, "/")) return answer(out, 200, "text/html; charset=utf-8", strdup(serve_page_html));
    pthread_mutex_lock(&s->lock);
    const int ready = s->ready;
    pthread_mutex_unlock(&s->lock);
    if (!ready) {
        if (!strcmp(url, "/health")) return answer(out, 503, "application/json", strdup("{\"status\":\"loading model\"}"));
        return answer_error(out, (api_error(&e, 503, NULL, "loading", "the model is still loading"), &e));
    }
    if (!strcmp(url, "/health")) return answer(out, 200, "application/json", strdup("{\"status\":\"ok\"}"));
    if (!strcmp(url, "/v1/models"))
        return answer_json(out, json_pack("{s:s, s:[{s:s, s:s, s:I, s:s, s:{s:i, s:i}}]}", "object", "list", "data", "id",
                                          s->alias, "object", "model", "created", (json_int_t)time(NULL), "owned_by",
                                          "jarip", "meta", "n_ctx", s->ctx, "slots", s->n_slots));
    if (!strcmp(url, "/metrics")) return answer(out, 200, "text/plain; version=0.0.4", metrics_text(s));
    if (strstr(url, "completions")) {
        const int chat = strstr(url, "chat") != NULL;
        Job *j = job_new(s, chat);
        if (!j) return answer(out, 500, "application/json", NULL);
        if (request_parse(&j->req, rq->body, rq->len, chat, &s->im, &s->tok_lock, s->ctx, &e)) {
            job_free(j);
            return answer_error(out, &e);
        }
        out->job = j;
        return 0;
    }
    char *body = !strcmp(url, "/tokenize") ? tokenize_handle(rq->body, rq->len, &s->im, &s->tok_lock, &e)
                                           : detokenize_handle(rq->body, rq->len, &s->im, &e);
    return body ? answer(out, 200, "application/json", body) : answer_error(out, &e);
}

Server *server_new(const ServeOptions *o) {
    Server *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->o = *o;
    if (!s->o.host) s->o.host = "127.0.0.1";
    if (!s->o.max_body) s->o.max_body = 1 << 20;
    if (!s->o.timeout_s) s->o.timeout_s = 30;
    if (!s->o.kv_type) s->o.kv_type = DT_F16;
    s->max_queue = o->max_queue > 0 ? o->max_queue : 64;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->tok_lock, NULL);
    pthread_cond_init(&s->work, NULL);
    return s;
}

/* Slots from the memory: a quarter of the RAM for KV caches, 1..4. */
static int default_slots(const Config *c, int ctx, int kv_type) {
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    double ram = pages > 0 && psz > 0 ? (double)pages * psz : 4e9;
    double per = 2.0 * c->n_layer * ctx * c->n_kv_head * c->head_dim * (kv_type == DT_F32 ? 4 : 2);
    int n = (int)(ram / 4 / per);
    return n < 1 ? 1 : n > 4 ? 4 : n;
}

int server_load(Server *s, Err *err) {
    int rc = infer_model_open(&s->im, s->o.model, err);
    if (!rc) rc = infer_model_repack(&s->im, NULL, err); /* Q4_0 / Q5_0 / Q8_0 for the VNNI kernels: same outputs */
    if (rc) return rc;
    const Config *c = &s->im.model.cfg;
    s->ctx = s->o.ctx > 0 ? s->o.ctx : c->context_length < 4096 ? c->context_length : 4096;
    if (s->ctx > c->context_length)
        return err_set(err, ERR_INVALID, "--ctx %d is beyond the model's context length %d", s->ctx, c->context_length);
    s->n_slots = s->o.slots > 0 ? s->o.slots : default_slots(c, s->ctx, s->o.kv_type);
    s->chunk = s->o.chunk > 0 ? s->o.chunk : 256;
    if (s->chunk < s->n_slots + 2) s->chunk = s->n_slots + 2; /* every decoding row plus a prompt chunk of two */
    snprintf(s->alias, sizeof s->alias, "%s", s->o.alias ? s->o.alias : s->im.name);
    return 0;
}
