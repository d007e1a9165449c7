/* jarip serve: the OpenAI-compatible HTTP server (src/serve/). Blocks
 * SIGINT/SIGTERM in every thread and waits for them here, so stopping is
 * an ordinary call, not work inside a signal handler. */
#include <omp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "infer/infer.h"
#include "serve/serve.h"
#include "train/export.h"

static void usage(FILE *f) {
    fprintf(f, "usage: jarip serve --model FILE | --ckpt DIR [flags]\n\n"
               "An OpenAI-compatible HTTP server: POST /v1/chat/completions, /v1/completions (stream: true for\n"
               "Server-Sent Events), /tokenize, /detokenize; GET /v1/models, /health, /metrics, and a chat page at /.\n\n"
               "  --model FILE        GGUF model\n"
               "  --ckpt DIR          a jarip training run or checkpoint (exported to a temporary f32 GGUF)\n"
               "  --host ADDR         IPv4 address to bind (default 127.0.0.1: this machine only)\n"
               "  --port N            port (default 8080; 0 = any free port, printed)\n"
               "  --slots N           requests decoded together, each with its own KV cache (default: from --ctx\n"
               "                      and memory, at most 4)\n"
               "  --ctx N             context positions per slot: prompt + answer (default: the model's, at most 4096)\n"
               "  --batch N           most tokens in one forward pass: decoding rows + prompt chunks (default 256)\n"
               "  --threads N         OpenMP threads (default: all cores)\n"
               "  --api-key KEY       require 'Authorization: Bearer KEY' (or set JARIP_API_KEY)\n"
               "  --max-queue N       requests waiting for a slot before 429 (default 64)\n"
               "  --max-body BYTES    largest request body before 413 (default 1048576)\n"
               "  --timeout S         seconds a client may take to send its request (default 30)\n"
               "  --alias NAME        model name in responses (default: the file's general.name)\n"
               "  --kv-type f16|f32   KV cache type (default f16)\n");
}

int cmd_serve(int argc, char **argv) {
    ServeOptions o = {0};
    o.port = 8080;
    o.api_key = getenv("JARIP_API_KEY");
    if (o.api_key && !o.api_key[0]) o.api_key = NULL;
    int threads = 0, rc = 0;
    const char *ckpt = NULL;
    long long body = 0;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--model") || !strcmp(a, "-m")) rc = cli_str(argc, argv, &i, &o.model);
        else if (!strcmp(a, "--ckpt")) rc = cli_str(argc, argv, &i, &ckpt);
        else if (!strcmp(a, "--host")) rc = cli_str(argc, argv, &i, &o.host);
        else if (!strcmp(a, "--port")) rc = cli_int(argc, argv, &i, 0, 65535, &o.port);
        else if (!strcmp(a, "--slots")) rc = cli_int(argc, argv, &i, 1, 256, &o.slots);
        else if (!strcmp(a, "--ctx")) rc = cli_int(argc, argv, &i, 16, 1 << 20, &o.ctx);
        else if (!strcmp(a, "--batch")) rc = cli_int(argc, argv, &i, 2, 1 << 16, &o.chunk);
        else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) rc = cli_int(argc, argv, &i, 1, 1024, &threads);
        else if (!strcmp(a, "--api-key")) rc = cli_str(argc, argv, &i, &o.api_key);
        else if (!strcmp(a, "--max-queue")) rc = cli_int(argc, argv, &i, 1, 1 << 20, &o.max_queue);
        else if (!strcmp(a, "--max-body")) {
            rc = cli_long(argc, argv, &i, 64, 1LL << 32, &body);
            o.max_body = (long)body;
        } else if (!strcmp(a, "--timeout")) rc = cli_int(argc, argv, &i, 1, 3600, &o.timeout_s);
        else if (!strcmp(a, "--alias")) rc = cli_str(argc, argv, &i, &o.alias);
        else if (!strcmp(a, "--kv-type")) {
            const char *t = NULL;
            if (!(rc = cli_str(argc, argv, &i, &t)) && (o.kv_type = infer_kv_type_from_name(t)) < 0)
                rc = cli_error(2, "--kv-type: '%s' is not f16 or f32", t);
        } else rc = cli_error(2, "serve: unknown flag '%s' (see jarip serve --help)", a);
    }
    if (rc) return rc;
    if (!o.model == !ckpt) return cli_error(2, "serve: one of --model FILE or --ckpt DIR is required");
    if (o.api_key && !o.api_key[0]) return cli_error(2, "serve: --api-key must not be empty");
    if (threads) omp_set_num_threads(threads);
    /* the signals go to sigwait below, not to whichever thread runs */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client that leaves mid-write is not a reason to die */
    Server *s = NULL;
    Err err = {0};
    char tmp[4096] = "";
    if (ckpt) { /* the checkpoint as a GGUF in a temporary file; the server maps it, so it is unlinked at once */
        const char *dir = getenv("TMPDIR");
        snprintf(tmp, sizeof tmp, "%s/jarip-serve-%ld.gguf", dir && *dir ? dir : "/tmp", (long)getpid());
        if (export_gguf(ckpt, NULL, tmp, DT_F32, &err)) return cli_error(1, "serve: --ckpt %s: %s", ckpt, err.msg);
        o.model = tmp;
    }
    rc = serve_start(&s, &o, &err);
    if (tmp[0]) unlink(tmp);
    if (rc) return cli_error(1, "serve: %s", err.msg);
    int slots = 0, ctx = 0;
    serve_shape(s, &slots, &ctx);
    printf("jarip serve: listening on http://%s:%d (%d slots x %d positions)\n", o.host ? o.host : "127.0.0.1",
           serve_port(s), slots, ctx);
    fflush(stdout);
    int sig = 0;
    sigwait(&stop, &sig);
    fprintf(stderr, "jarip serve: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    serve_stop(s);
    return 0;
}
