/* serve: the HTTP side (libmicrohttpd, a thread per connection) and the
 * server's life: start (bind, load, slots, scheduler), stop; routing
 * and answers are handler.c's (serve_handle).
 * Connections only parse, queue and wait; the scheduler thread (sched.c)
 * runs the model. A waiting connection checks every POLL_S whether its
 * client is still there, so a client that leaves frees its slot within a
 * decode step. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "serve/serve_internal.h"

#define POLL_S 0.02 /* how often a waiting connection looks at its client */
#define STOP_DRAIN_S 2.0 /* how long serve_stop waits for answers in flight to be sent */

typedef struct {
    char *body;
    size_t len, cap;
    int too_big;
} Upload;

/* A streamed response in progress (owned by the MHD response). */
typedef struct {
    Server *s;
    Job *job;
    struct MHD_Connection *conn;
    int sock;
    int first_sent, end_sent;
    size_t text_sent, lp_sent;
    char *pend;               /* SSE bytes not yet handed to MHD */
    size_t pend_len, pend_off;
} Stream;

static int client_gone(int sock) {
    char c;
    ssize_t r = recv(sock, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static int conn_sock(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* Wait on the job's condition for at most POLL_S. Under the lock. */
static void wait_job(Server *s, Job *j) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long ns = ts.tv_nsec + (long)(POLL_S * 1e9);
    ts.tv_sec += ns / 1000000000L;
    ts.tv_nsec = ns % 1000000000L;
    pthread_cond_timedwait(&j->cond, &s->lock, &ts);
}

/* Queue a response (body malloc'd, taken; NULL: out of memory) and count it. */
static enum MHD_Result reply_allow(Server *s, struct MHD_Connection *c, int status, const char *ctype, char *body,
                                   const char *allow) {
    if (!body) {
        status = 500;
        ctype = "application/json";
        body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", ctype);
    if (status == 429) MHD_add_response_header(r, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    if (allow) MHD_add_response_header(r, "Allow", allow);
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    pthread_mutex_lock(&s->lock);
    metrics_status(&s->m, status);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static enum MHD_Result reply(Server *s, struct MHD_Connection *c, int status, const char *ctype, char *body) {
    return reply_allow(s, c, status, ctype, body, NULL);
}

static enum MHD_Result reply_error(Server *s, struct MHD_Connection *c, const ApiError *e) {
    return reply(s, c, e->status, "application/json", api_error_json(e));
}

/* The error a job ended with: 503 when the server stopped before it ran, else 500. */
static void job_error(const Job *j, ApiError *e) {
    api_error(e, j->error_status ? j->error_status : 500, NULL, j->error_status ? "shutting_down" : "model_error", "%s",
              j->error);
}

/* ---- streaming ------------------------------------------------------------- */
static void stream_put(Stream *st, char *json) {
    const char *data = json ? json : "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\"}}";
    size_t n = strlen(data);
    char *p = realloc(st->pend, st->pend_len + n + 8);
    if (p) {
        st->pend = p;
        memcpy(p + st->pend_len, "data: ", 6);
        memcpy(p + st->pend_len + 6, data, n);
        memcpy(p + st->pend_len + 6 + n, "\n\n", 2);
        st->pend_len += n + 8;
    }
    free(json);
}

/* Everything the job has produced since the last call, as SSE events.
 * Returns 1 when the stream is complete. Under the lock. */
static int stream_collect(Stream *st) {
    Server *s = st->s;
    Job *j = st->job;
    size_t nlp = j->lp ? json_array_size(j->lp) : 0;
    int fresh = j->text.sent > st->text_sent || nlp > st->lp_sent;
    if (!st->first_sent || fresh) {
        json_t *lp = NULL;
        if (j->req.logprobs && nlp > st->lp_sent) {
            lp = json_array();
            for (size_t i = st->lp_sent; i < nlp; i++) json_array_append(lp, json_array_get(j->lp, i));
        }
        char *txt = j->text.p ? j->text.p + st->text_sent : NULL;
        size_t n = j->text.sent - st->text_sent;
        if (j->req.chat || n || lp || st->first_sent) /* completions have no role chunk: text first */
            stream_put(st, response_chunk(s, j, txt, n, lp, !st->first_sent, NULL));
        json_decref(lp);
        st->first_sent = 1;
        st->text_sent = j->text.sent;
        st->lp_sent = nlp;
    }
    if (j->state != JOB_DONE) return 0;
    if (j->error[0]) {
        ApiError e;
        job_error(j, &e);
        stream_put(st, api_error_json(&e));
    } else {
        stream_put(st, response_chunk(s, j, "", 0, NULL, 0, j->finish ? j->finish : "stop"));
        if (j->req.include_usage) stream_put(st, response_usage_chunk(s, j));
    }
    char *p = realloc(st->pend, st->pend_len + 14);
    if (p) {
        st->pend = p;
        memcpy(p + st->pend_len, "data: [DONE]\n\n", 14);
        st->pend_len += 14;
    }
    return 1;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    Stream *st = cls;
    Server *s = st->s;
    while (st->pend_off == st->pend_len) {
        if (st->end_sent) { /* a kept-alive connection is an idle one again: the slow-client timeout is back */
            MHD_set_connection_option(st->conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)s->o.timeout_s);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        st->pend_len = st->pend_off = 0;
        pthread_mutex_lock(&s->lock);
        st->end_sent = stream_collect(st);
        if (st->pend_len == 0 && !st->end_sent) wait_job(s, st->job);
        pthread_mutex_unlock(&s->lock);
        if (st->pend_len == 0 && !st->end_sent && client_gone(st->sock)) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = st->pend_len - st->pend_off < max ? st->pend_len - st->pend_off : max;
    memcpy(buf, st->pend + st->pend_off, n);
    st->pend_off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    Stream *st = cls;
    job_release(st->s, st->job); /* a client gone mid-stream: the scheduler drops it at its next step */
    job_free(st->job);
    free(st->pend);
    free(st);
}

/* ---- completions ------------------------------------------------------------ */
/* Queue the validated job j (taken) and answer from it: streamed or whole. */
static enum MHD_Result completions(Server *s, struct MHD_Connection *c, Job *j) {
    ApiError e;
    if (sched_submit(s, j, &e)) {
        job_free(j);
        return reply_error(s, c, &e);
    }
    /* generation can take longer than the idle timeout meant for slow senders */
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0);
    const int sock = conn_sock(c);
    if (j->req.stream) {
        Stream *st = calloc(1, sizeof *st);
        struct MHD_Response *r = st ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free) : NULL;
        if (!r) {
            if (st) free(st);
            job_release(s, j);
            job_free(j);
            return reply(s, c, 500, "application/json", NULL);
        }
        *st = (Stream){.s = s, .job = j, .conn = c, .sock = sock};
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        enum MHD_Result rc = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        pthread_mutex_lock(&s->lock);
        metrics_status(&s->m, 200);
        pthread_mutex_unlock(&s->lock);
        return rc;
    }
    pthread_mutex_lock(&s->lock);
    while (j->state != JOB_DONE) {
        wait_job(s, j);
        if (j->state != JOB_DONE && client_gone(sock)) {
            pthread_mutex_unlock(&s->lock);
            job_release(s, j);
            job_free(j);
            return MHD_NO; /* nobody to answer */
        }
    }
    pthread_mutex_unlock(&s->lock);
    job_release(s, j);
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)s->o.timeout_s);
    enum MHD_Result rc;
    if (j->error[0]) {
        job_error(j, &e);
        rc = reply_error(s, c, &e);
    } else {
        rc = reply(s, c, 200, "application/json", response_full(s, j));
    }
    job_free(j);
    return rc;
}

/* ---- requests ------------------------------------------------------------------- */
/* Send what serve_handle answered (or queue its job). */
static enum MHD_Result send_reply(Server *s, struct MHD_Connection *c, HttpReply *out) {
    if (out->job) return completions(s, c, out->job);
    return reply_allow(s, c, out->status, out->ctype, out->body, out->allow);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *data, size_t *size, void **con_cls) {
    (void)version;
    Server *s = cls;
    Upload *u = *con_cls;
    if (!u) { /* headers are in; the body (if any) comes in the next calls */
        if (!(u = calloc(1, sizeof *u))) return MHD_NO;
        *con_cls = u;
        pthread_mutex_lock(&s->lock);
        s->n_requests++;
        pthread_mutex_unlock(&s->lock);
        HttpReply out;
        if (serve_body_limit(s, MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length"), &out)) {
            u->too_big = 2; /* answered already */
            return send_reply(s, c, &out);
        }
        return MHD_YES;
    }
    if (*size) {
        if (!u->too_big && u->len + *size > (size_t)s->o.max_body) u->too_big = 1;
        if (!u->too_big) {
            if (u->len + *size + 1 > u->cap) {
                size_t cap = (u->len + *size + 1) * 2;
                char *p = realloc(u->body, cap);
                if (!p) return MHD_NO;
                u->body = p;
                u->cap = cap;
            }
            memcpy(u->body + u->len, data, *size);
            u->len += *size;
            u->body[u->len] = 0;
        }
        *size = 0;
        return MHD_YES;
    }
    if (u->too_big == 2) return MHD_YES;
    HttpRequest rq = {.method = method, .url = url, .body = u->body, .len = u->len, .too_big = u->too_big,
                      .authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization")};
    HttpReply out;
    serve_handle(s, &rq, &out);
    return send_reply(s, c, &out);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)c, (void)toe;
    Server *s = cls;
    Upload *u = *con_cls;
    if (u) {
        free(u->body);
        pthread_mutex_lock(&s->lock);
        s->n_requests--;
        pthread_mutex_unlock(&s->lock);
    }
    free(u);
    *con_cls = NULL;
}

/* ---- life ------------------------------------------------------------------------ */
int serve_start(Server **out, const ServeOptions *o, Err *err) {
    *out = NULL;
    Server *s = server_new(o);
    if (!s) return err_set(err, ERR_NOMEM, "out of memory");
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)o->port);
    int rc = 0;
    if (inet_pton(AF_INET, s->o.host, &addr.sin_addr) != 1) {
        rc = err_set(err, ERR_INVALID, "--host '%s' is not an IPv4 address", s->o.host);
        goto fail;
    }
    s->httpd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, (uint16_t)o->port,
                                NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->o.timeout_s, MHD_OPTION_CONNECTION_LIMIT,
                                (unsigned)(s->max_queue + 256), MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                MHD_OPTION_END);
    if (!s->httpd) {
        rc = err_set(err, ERR_IO, "cannot listen on %s:%d (in use, or not an address of this host)", s->o.host, o->port);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->httpd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : o->port;
    /* /health says 503 while this loads */
    if ((rc = server_load(s, err))) goto fail;
    if ((rc = slots_create(s, err))) goto fail;
    /* The forward runs on the scheduler thread, with its own OpenMP team.
     * Loading ran parallel loops here (copying and repacking weights), and
     * this thread's idle team would stay counted against the CPUs: libgomp
     * then stops spinning between parallel regions and every region of
     * every token paid futex wake-ups (Q4_1 with its repacked head, one
     * client: 107 tokens/s against 217). Release it. */
    omp_pause_resource_all(omp_pause_hard);
    if (pthread_create(&s->sched, NULL, sched_main, s)) {
        rc = err_set(err, ERR_IO, "cannot start the scheduler thread");
        goto fail;
    }
    s->sched_started = 1;
    pthread_mutex_lock(&s->lock);
    s->ready = 1;
    pthread_mutex_unlock(&s->lock);
    *out = s;
    return 0;
fail:
    serve_stop(s);
    return rc;
}

int serve_port(const Server *s) { return s->port; }

void serve_shape(const Server *s, int *slots, int *ctx) {
    *slots = s->n_slots;
    *ctx = s->ctx;
}

void serve_stop(Server *s) {
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->lock);
    if (s->sched_started) pthread_join(s->sched, NULL);
    /* requests still queued: let their connections go (503) */
    pthread_mutex_lock(&s->lock);
    for (Job *j = s->queue_head; j; j = j->next) {
        snprintf(j->error, sizeof j->error, "the server is shutting down");
        j->error_status = 503;
        j->state = JOB_DONE;
        j->released = 1;
        pthread_cond_broadcast(&j->cond);
    }
    s->queue_head = s->queue_tail = NULL;
    s->n_queued = 0;
    /* every job is done now; let the connections send what they have (a
     * stream's last chunk and [DONE], a 503): MHD_stop_daemon shuts every
     * socket down at once and cut them. At most STOP_DRAIN_S. */
    for (double t0 = time_now(); s->n_requests > 0 && time_now() - t0 < STOP_DRAIN_S;) {
        pthread_mutex_unlock(&s->lock);
        usleep(5000);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    if (s->httpd) MHD_stop_daemon(s->httpd);
    slots_free(s);
    if (s->im.gguf) infer_model_close(&s->im);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->tok_lock);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
