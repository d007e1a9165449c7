/* jarip chat: an interactive conversation with a GGUF model. Each turn
 * re-renders the whole conversation in the model's template; the session
 * keeps the KV cache of the common prefix, so a turn costs only its new
 * tokens. Answers stream as they are generated. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "infer/infer.h"

/* Flag parsing shared by generate and chat (defined in cmd_generate.c). */
int infer_flags_parse(InferOptions *f, int argc, char **argv, const char *cmd, void (*usage)(FILE *), int prompt_flags);
void infer_flags_usage(FILE *out);
int infer_flags_open(const InferOptions *f, InferModel *im, InferSession *s);

static void usage(FILE *f) {
    fprintf(f, "usage: jarip chat --model FILE [--system TEXT] [flags]\n\n"
               "Type a message and press Enter; the answer streams back. Commands:\n"
               "  /reset   start a new conversation (keeps the system prompt)\n"
               "  /exit    quit (end of input quits too)\n\n");
    infer_flags_usage(f);
}

typedef struct {
    ChatMessage *m;
    char **owned; /* strdup'd contents, freed with the list */
    int n, cap;
} Conversation;

static int conv_add(Conversation *c, const char *role, const char *content) {
    if (c->n == c->cap) {
        int cap = c->cap ? c->cap * 2 : 16;
        ChatMessage *m = realloc(c->m, (size_t)cap * sizeof *m);
        char **o = m ? realloc(c->owned, (size_t)cap * sizeof *o) : NULL;
        if (m) c->m = m;
        if (!m || !o) return ERR_NOMEM;
        c->owned = o;
        c->cap = cap;
    }
    char *copy = strdup(content);
    if (!copy) return ERR_NOMEM;
    c->owned[c->n] = copy;
    c->m[c->n++] = (ChatMessage){role, copy};
    return 0;
}

/* Drop messages [from, from + k). */
static void conv_drop(Conversation *c, int from, int k) {
    for (int i = from; i < from + k; i++) free(c->owned[i]);
    memmove(c->m + from, c->m + from + k, (size_t)(c->n - from - k) * sizeof *c->m);
    memmove(c->owned + from, c->owned + from + k, (size_t)(c->n - from - k) * sizeof *c->owned);
    c->n -= k;
}

static int stream(void *ctx, const char *text, size_t len) {
    (void)ctx;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

/* Render and tokenize the conversation; when it does not leave room for an
 * answer, forget the oldest exchange (never the system prompt) and retry. */
static int prepare(InferModel *im, InferSession *s, Conversation *c, int answer_room, int32_t **ids, size_t *n,
                   Err *err) {
    for (;;) {
        char *text = NULL;
        int rc = chat_render(&im->chat, c->m, c->n, 1, &text, err);
        if (!rc) rc = infer_tokenize(im, text, strlen(text), 0, ids, n, err);
        free(text);
        if (rc) return rc;
        if ((int)*n + answer_room <= s->cap) return 0;
        int first = c->n > 0 && !strcmp(c->m[0].role, "system");
        if (c->n - first <= 1)
            return err_set(err, ERR_INVALID, "the message (%zu tokens) does not fit the context of %d", *n, s->cap);
        free(*ids);
        *ids = NULL;
        conv_drop(c, first, c->n - first >= 3 ? 2 : 1);
    }
}

int cmd_chat(int argc, char **argv) {
    InferOptions f;
    int rc = infer_flags_parse(&f, argc, argv, "chat", usage, 0);
    if (rc) return rc < 0 ? 0 : rc;
    InferModel im;
    InferSession s;
    rc = infer_flags_open(&f, &im, &s);
    if (rc) return rc;
    const int tty = isatty(STDIN_FILENO);
    if (tty)
        fprintf(stderr, "%s (%s template, context %d). /reset starts over, /exit or Ctrl-D quits.\n", im.name,
                chat_style_name(im.chat.style), s.cap);
    Conversation conv = {0};
    Err err = {0};
    if (f.system && conv_add(&conv, "system", f.system)) {
        rc = cli_error(1, "out of memory");
        goto done;
    }
    char *line = NULL;
    size_t lcap = 0;
    int room = f.n < s.cap / 2 ? f.n : s.cap / 2;
    for (;;) {
        if (tty) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        ssize_t got = getline(&line, &lcap, stdin);
        if (got < 0) break;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            conv_drop(&conv, f.system ? 1 : 0, conv.n - (f.system ? 1 : 0));
            infer_session_reset(&s);
            if (tty) fputs("(new conversation)\n", stderr);
            continue;
        }
        if (!got) continue;
        int32_t *ids = NULL;
        size_t n = 0;
        if (conv_add(&conv, "user", line)) {
            rc = cli_error(1, "out of memory");
            break;
        }
        if (prepare(&im, &s, &conv, room, &ids, &n, &err) || infer_session_prompt(&s, ids, (int)n, &err)) {
            free(ids);
            fprintf(stderr, "jarip: %s\n", err.msg);
            conv_drop(&conv, conv.n - 1, 1);
            infer_session_reset(&s);
            continue;
        }
        free(ids);
        GenOptions go = {f.n, f.stops, f.n_stops, 0};
        GenResult res;
        int grc = infer_generate(&s, &go, stream, NULL, NULL, 0, &res, &err);
        fputc('\n', stdout);
        fflush(stdout);
        if (f.stats) fprintf(stderr, "[%d tokens, %.1f tokens/s]\n", res.n_tokens, res.gen_s > 0 ? res.n_tokens / res.gen_s : 0.0);
        if (grc) {
            rc = cli_error(1, "%s", err.msg);
            break;
        }
        int arc = conv_add(&conv, "assistant", res.text);
        free(res.text);
        if (arc) {
            rc = cli_error(1, "out of memory");
            break;
        }
    }
    free(line);
done:
    conv_drop(&conv, 0, conv.n);
    free(conv.m);
    free(conv.owned);
    infer_session_free(&s);
    infer_model_close(&im);
    return rc;
}
