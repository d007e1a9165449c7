/* serve: what the files of the server share (not a public interface). */
#ifndef JARIP_SERVE_INTERNAL_H
#define JARIP_SERVE_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

#include "infer/infer.h"
#include "serve/serve.h"

#define SERVE_MAX_STOPS 4     /* OpenAI allows up to 4 stop strings */
#define SERVE_MAX_STOP_LEN 256 /* bytes: each token checks the text's tail against every stop string */
#define SERVE_MAX_TOP_LOGPROBS 20

/* ---- a validated request (request.c) -------------------------------------- */
typedef struct {
    int chat;                 /* 1: /v1/chat/completions, 0: /v1/completions */
    int stream, include_usage;
    int max_tokens;           /* 0: not given (until the context is full) */
    SamplerOptions so;
    char *stops[SERVE_MAX_STOPS];
    int n_stops;
    int logprobs;             /* return log-probabilities of the chosen tokens */
    int top_logprobs;         /* and of this many most likely ones */
    int echo;                 /* completions: prepend the prompt */
    int has_seed;             /* seed given (else the server draws one) */
    int32_t *ids;             /* prompt tokens (n_ids) */
    int n_ids;
    char *prompt_text;        /* completions with echo: the prompt */
} ServeRequest;

/* An OpenAI error: HTTP status, message, type, param (may be NULL), code. */
typedef struct {
    int status;
    char message[512];
    const char *type, *param_fixed, *code;
    char param[80];
} ApiError;

int api_error(ApiError *e, int status, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* {"error": {...}} as a malloc'd string. */
char *api_error_json(const ApiError *e);

/* Parse and check a completions body against the model (tokenizes under
 * tok_lock). 0, or 4xx in e. */
int request_parse(ServeRequest *r, const char *body, size_t len, int chat, const InferModel *im,
                  pthread_mutex_t *tok_lock, int ctx, ApiError *e);
void request_free(ServeRequest *r);
/* POST /tokenize and /detokenize bodies -> response JSON (malloc'd), or 4xx. */
char *tokenize_handle(const char *body, size_t len, const InferModel *im, pthread_mutex_t *tok_lock, ApiError *e);
char *detokenize_handle(const char *body, size_t len, const InferModel *im, ApiError *e);
/* A JSON string of p[0..n), invalid UTF-8 bytes replaced by U+FFFD. */
json_t *json_text(const char *p, size_t n);
/* Parse body as a JSON object; 400 with jansson's message otherwise. */
json_t *body_json(const char *body, size_t len, ApiError *e);

/* ---- a request in flight (sched.c) ------------------------------------------- */
enum { JOB_QUEUED = 0, JOB_ACTIVE, JOB_DONE };

typedef struct Job {
    ServeRequest req;
    char id[40];
    long created;
    int state;                /* JOB_*: under the server lock */
    int cancelled;            /* the client left or the server stops */
    int released;             /* the scheduler no longer touches it */
    pthread_cond_t cond;      /* signalled on new text and at the end */
    /* output, under the server lock */
    InferText text;           /* generated text; text.sent: final so far */
    json_t *lp;               /* array of per-token log-probability entries (or NULL) */
    size_t lp_sent;           /* entries already streamed */
    int n_gen;                /* tokens generated */
    int cached;               /* prompt tokens found in the slot's cache */
    const char *finish;       /* "stop" | "length" once done */
    char error[512];          /* a failure inside the model (500), or the server stopping (503) */
    int error_status;
    double t_arrive, t_first, t_last;
    struct Job *next;         /* queue link */
} Job;

typedef struct {
    KVCache kv;
    int32_t *toks;            /* (ctx) tokens whose keys/values are in kv, in order */
    Sampler sampler;
    Job *job;                 /* NULL: free */
    int done;                 /* prompt tokens in the cache */
    int32_t next;             /* last sampled token, fed at the next step */
    int decoding;
    uint64_t draws;
    uint64_t last_used;       /* step of the last request: least recently used goes first */
} Slot;

/* Prometheus figures (metrics.c), under the server lock. */
#define METRIC_BUCKETS 12
typedef struct {
    int status_code[16];       /* responses by HTTP status (the first 16 distinct) */
    uint64_t status_count[16];
    int n_status;
    uint64_t prompt_tokens, gen_tokens, cached_tokens;
    uint64_t ttft[METRIC_BUCKETS + 1], itl[METRIC_BUCKETS + 1];
    double ttft_sum, itl_sum;
    uint64_t ttft_n, itl_n;
} Metrics;

struct Server {
    ServeOptions o;
    InferModel im;
    char alias[128];
    int n_slots, ctx, chunk, max_queue;
    Slot *slots;
    float *logits;            /* (n_slots, V) one batched step's */
    float *lp_row;            /* (V) a copy for log-probabilities */
    pthread_mutex_t lock;     /* jobs, queue, slots' job pointers, metrics */
    pthread_mutex_t tok_lock; /* the tokenizer's caches are not thread-safe */
    pthread_cond_t work;      /* the scheduler waits here for jobs */
    Job *queue_head, *queue_tail;
    int n_queued, n_active;
    int n_requests;           /* HTTP requests from their headers to on_completed (answer sent or connection gone) */
    int stopping, ready;
    uint64_t step;
    uint64_t id_counter;
    pthread_t sched;
    int sched_started;
    struct MHD_Daemon *httpd;
    int port;
    Metrics m;
};

/* handler.c: one HTTP request to its answer, without sockets. */
typedef struct {
    const char *method, *url;   /* "GET" | "POST" | ..., the path */
    const char *authorization;  /* the Authorization header, or NULL */
    const char *body;           /* len bytes (NUL after them when body is not NULL) */
    size_t len;
    int too_big;                /* the body went past --max-body (it was not kept) */
} HttpRequest;

typedef struct {
    int status;                 /* HTTP status (0 when job is set) */
    const char *ctype;          /* Content-Type */
    char *body;                 /* malloc'd, the caller frees; NULL: out of memory (answer 500) */
    const char *allow;          /* an Allow header (405), or NULL */
    Job *job;                   /* completions: a validated job, not yet queued, the caller's */
} HttpReply;

/* Route rq and answer it: the status (also in out->status), or 0 with
 * out->job set for completions (the caller queues it with sched_submit,
 * answers from it and frees it with job_free). Never fails otherwise:
 * every bad request is a 4xx answer in OpenAI's error shape. */
int serve_handle(Server *s, const HttpRequest *rq, HttpReply *out);
/* A Content-Length header over --max-body: 413 in out (answer before the
 * body arrives); else 0. */
int serve_body_limit(const Server *s, const char *content_length, HttpReply *out);
/* A completions job with a fresh id (NULL: out of memory); job_free frees it. */
Job *job_new(Server *s, int chat);
void job_free(Job *j);
/* A server with o's options and defaults and its locks; no model, socket or
 * thread yet (serve_stop frees it at any stage). NULL: out of memory. */
Server *server_new(const ServeOptions *o);
/* Load o->model and size ctx, slots and chunk from it. */
int server_load(Server *s, Err *err);

/* sched.c */
void *sched_main(void *server);
/* Queue a job (409-free: returns 429 in e when the queue is full). Under no lock. */
int sched_submit(Server *s, Job *j, ApiError *e);
/* The client is gone (or done): wait until the scheduler lets go, then free. */
void job_release(Server *s, Job *j);
int slots_create(Server *s, Err *err);
void slots_free(Server *s);

/* response.c: OpenAI JSON bodies and SSE chunks (malloc'd strings). */
char *response_full(const Server *s, const Job *j);
char *response_chunk(const Server *s, const Job *j, const char *text, size_t len, json_t *lp, int first,
                     const char *finish);
char *response_usage_chunk(const Server *s, const Job *j);
json_t *response_usage(const Job *j);

/* metrics.c */
void metrics_status(Metrics *m, int status);
void metrics_observe(Metrics *m, double ttft, double itl_mean, int n_itl);
char *metrics_text(Server *s);

/* page.c */
extern const char serve_page_html[];

#endif
