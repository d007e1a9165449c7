/* serve: an OpenAI-compatible HTTP server over infer/ (jarip serve).
 *
 * HTTP is libmicrohttpd's (a thread per connection), JSON jansson's. One
 * scheduler thread owns the model: N slots, each with its own KV cache;
 * at every step all decoding sequences and the next chunks of prompts go
 * through ONE model_forward_batch. Requests wait in a bounded queue when
 * every slot is busy. Every bad request gets a 4xx JSON error in OpenAI's
 * shape; nothing a client sends can stop the server. */
#ifndef JARIP_SERVE_H
#define JARIP_SERVE_H

#include "core/core.h"

typedef struct {
    const char *model;      /* GGUF file */
    const char *host;       /* address to bind (default 127.0.0.1) */
    int port;               /* 0: any free port (serve_port says which) */
    int slots;              /* sequences decoded together; 0: sized from ctx and memory */
    int ctx;                /* positions per slot; 0: the model's, at most 4096 */
    int chunk;              /* most tokens in one forward (prompt chunks + decoding rows); 0: 256 */
    int max_queue;          /* requests waiting for a slot before 429; 0: 64 */
    long max_body;          /* request body bytes before 413; 0: 1 MiB */
    int timeout_s;          /* idle connection timeout (slow clients); 0: 30 */
    const char *api_key;    /* NULL: no key needed */
    const char *alias;      /* model name in responses; NULL: the file's general.name */
    int kv_type;            /* DT_F16 (0 means it) or DT_F32 */
} ServeOptions;

typedef struct Server Server;

/* Load the model, bind, start the HTTP and scheduler threads. On success
 * *out is a running server; the caller stops it with serve_stop. */
int serve_start(Server **out, const ServeOptions *o, Err *err);
/* The port it listens on (the chosen one when o->port was 0). */
int serve_port(const Server *s);
/* Slots and positions per slot it runs with (after defaults). */
void serve_shape(const Server *s, int *slots, int *ctx);
/* Stop accepting, cancel what runs (streams get a last chunk), join the
 * threads, free everything. */
void serve_stop(Server *s);

#endif
