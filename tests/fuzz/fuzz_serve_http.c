/* libFuzzer target: the HTTP request handling of `jarip serve`, without
 * sockets. An input is a request head and a body cut at FUZZ_SEP:
 *     POST /v1/chat/completions        (method and path)
 *     Authorization: Bearer fuzz-key    (optional header lines)
 *     Content-Length: 123
 *     X-Loading: 1                      (answer as if the model were loading)
 *     --8<--
 *     {"messages": [...]}               (the body, any bytes)
 * It goes through serve_handle (routing, API key, body limit, JSON parsing
 * and validation of every field, chat template, tokenizer) as libmicrohttpd's
 * callback sends it. A completions request that passes validation meets a
 * stub scheduler that never runs the model: it "generates" the prompt's own
 * tokens back (with log-probabilities when asked, stop strings applied) and
 * builds the whole and the streamed answers from them. Every answer must be
 * JSON (the page and /metrics aside) with a status in 200..599.
 * The model, made once at start, is fuzz_model.h's (64 positions: prompts
 * overflow the context and the 400s for it are reached). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_model.h"
#include "serve/serve_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_BODY 4096 /* --max-body: bigger inputs exercise the 413s */
#define STUB_TOKENS 8 /* tokens the stub scheduler "generates" */

static Server *server;
static int verbose; /* FUZZ_VERBOSE=1: print each answer (checking seeds) */

static void fail(const char *what, const Err *e) {
    fprintf(stderr, "fuzz_serve_http: %s: %s\n", what, e ? e->msg : "");
    abort();
}

static void server_make(void) {
    Err e = {0};
    static char path[512]; /* the server keeps o.model */
    fuzz_tiny_gguf("serve.gguf", path);
    ServeOptions o = {.model = path, .slots = 2, .max_body = MAX_BODY, .api_key = "fuzz-key", .alias = "fuzz"};
    if (!(server = server_new(&o))) fail("server_new", NULL);
    if (server_load(server, &e)) fail("server_load", &e);
    server->ready = 1;
}

/* Every JSON answer must parse back (the page and the metrics are text). */
static void check_json(const char *body, const char *where) {
    if (!body) return; /* out of memory: the server answers 500 */
    if (verbose) fprintf(stderr, "%s: %.300s\n", where, body);
    json_error_t je;
    json_t *v = json_loads(body, JSON_ALLOW_NUL, &je); /* "\u0000" is JSON (a token of byte 0) */
    if (!v) {
        fprintf(stderr, "fuzz_serve_http: %s is not JSON (%s): %.200s\n", where, je.text, body);
        abort();
    }
    json_decref(v);
}

static void check_chunk(char *chunk) {
    check_json(chunk, "a streamed chunk");
    free(chunk);
}

/* One log-probability entry in the scheduler's shape: token, logprob, bytes,
 * top_logprobs. */
static json_t *stub_lp(const InferModel *im, int32_t id, int top) {
    json_t *e = NULL, *tops = json_array();
    for (int k = -1; k < top; k++) {
        int32_t t = k < 0 ? id : (int32_t)((id + k) % im->model.cfg.vocab_size);
        size_t bl = 0;
        const uint8_t *b = infer_token_bytes(im, t, &bl);
        json_t *bytes = json_array(), *o = json_object();
        for (size_t q = 0; q < bl; q++) json_array_append_new(bytes, json_integer(b[q]));
        json_object_set_new(o, "token", json_text((const char *)b, b ? bl : 0));
        json_object_set_new(o, "logprob", json_real(k < 0 ? -0.25 : -0.5 - k));
        json_object_set_new(o, "bytes", bytes);
        if (k < 0) e = o;
        else json_array_append_new(tops, o);
    }
    json_object_set_new(e, "top_logprobs", tops);
    return e;
}

/* The scheduler's part, without the model: the prompt's tokens come back as
 * the answer, through the same text and stop-string code. */
static void stub_generate(Server *s, Job *j) {
    ServeRequest *r = &j->req;
    GenOptions go = {0, (const char *const *)r->stops, r->n_stops, 0};
    size_t from, n;
    int stop = 0;
    for (int i = 0; i < STUB_TOKENS && i < r->max_tokens && !stop; i++) {
        int32_t id = r->ids[i % r->n_ids];
        size_t bl = 0;
        const uint8_t *b = infer_token_bytes(&s->im, id, &bl);
        if (r->logprobs) {
            if (!j->lp) j->lp = json_array();
            json_array_append_new(j->lp, stub_lp(&s->im, id, r->top_logprobs));
        }
        stop = infer_text_push(&j->text, &go, b, bl, &from, &n);
        if (stop < 0) return; /* out of memory */
        j->n_gen++;
        if (r->stream && n) { /* a content chunk per final piece */
            j->text.sent = from + n;
            check_chunk(response_chunk(s, j, j->text.p + from, n, NULL, j->n_gen == 1, NULL));
        }
    }
    if (!stop) infer_text_flush(&j->text, &from, &n);
    j->text.sent = j->text.n;
    j->finish = stop ? "stop" : "length";
    j->state = JOB_DONE;
}

static void answer_job(Server *s, Job *j) {
    stub_generate(s, j);
    if (j->req.stream) {
        check_chunk(response_chunk(s, j, "", 0, j->lp, 0, j->finish));
        if (j->req.include_usage) check_chunk(response_usage_chunk(s, j));
    } else {
        char *body = response_full(s, j);
        check_json(body, "a completion");
        free(body);
    }
    job_free(j);
}

/* Head lines: "METHOD PATH", then "Name: value" (Authorization and
 * Content-Length are read, others ignored). */
static void parse_head(char *head, const char **method, const char **url, const char **auth, const char **clen) {
    char *line = head, *next;
    *method = "POST";
    *url = "/";
    *auth = *clen = NULL;
    for (int k = 0; line; k++, line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        if (k == 0) {
            char *sp = strchr(line, ' ');
            if (sp) {
                *sp = 0;
                *method = line;
                *url = sp + 1;
            } else {
                *url = line;
            }
        } else if (!strncasecmp(line, "Authorization: ", 15)) {
            *auth = line + 15;
        } else if (!strncasecmp(line, "Content-Length: ", 16)) {
            *clen = line + 16;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!server) {
        server_make();
        verbose = getenv("FUZZ_VERBOSE") != NULL;
    }
    FuzzPart part[2];
    fuzz_split(data, size, part, 2);
    char *head = fuzz_strndup(part[0].p, part[0].n);
    char *body = fuzz_strndup(part[1].p, part[1].n); /* the server's upload buffer is NUL-terminated too */
    HttpRequest rq = {.body = body, .len = part[1].n, .too_big = part[1].n > MAX_BODY};
    const char *clen;
    server->ready = !strstr(head, "\nX-Loading:"); /* the 503s while the model loads */
    parse_head(head, &rq.method, &rq.url, &rq.authorization, &clen);
    HttpReply out;
    if (serve_body_limit(server, clen, &out) == 0) serve_handle(server, &rq, &out);
    if (out.job) {
        answer_job(server, out.job);
    } else {
        if (out.status < 200 || out.status > 599) abort();
        if (out.ctype && !strcmp(out.ctype, "application/json")) check_json(out.body, "an answer");
        free(out.body);
    }
    free(head);
    free(body);
    return 0;
}
