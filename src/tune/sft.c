/* Chat and text data -> padded examples with label flags (see tune.h).
 *
 * Which tokens are the assistant's: the conversation is rendered by the
 * model's template prefix by prefix. For assistant turn i, the text of
 * messages [0, i) with the assistant's opening appended ends where the
 * answer starts, and the text of messages [0, i] ends where the turn (and
 * its end-of-turn token) ends; each rendering must extend the one before,
 * or the template is refused. The pieces are tokenized one by one, so every
 * label starts at a token boundary (special tokens separate the pieces in
 * all three template families, so this is also how the whole text splits). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "tune.h"

typedef struct {
    int32_t *ids;
    uint8_t *lab;
    size_t n, cap;
} Seq;

static int seq_push(Seq *s, const int32_t *ids, size_t n, int label) {
    if (s->n + n > s->cap) {
        size_t cap = (s->n + n) * 2 + 64;
        int32_t *i2 = realloc(s->ids, cap * sizeof *i2);
        if (!i2) return ERR_NOMEM;
        s->ids = i2;
        uint8_t *l2 = realloc(s->lab, cap);
        if (!l2) return ERR_NOMEM;
        s->lab = l2;
        s->cap = cap;
    }
    memcpy(s->ids + s->n, ids, n * sizeof *ids);
    memset(s->lab + s->n, label, n);
    s->n += n;
    return 0;
}

/* Tokenize text[a, b) onto s with label flag `label`. */
static int push_text(const InferModel *im, Seq *s, const char *text, size_t a, size_t b, int label, int add_bos, Err *err) {
    if (b <= a && !add_bos) return 0;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = infer_tokenize(im, text + a, b - a, add_bos, &ids, &n, err);
    if (!rc && seq_push(s, ids, n, label)) rc = err_set(err, ERR_NOMEM, "out of memory");
    free(ids);
    return rc;
}

/* The rows being built. */
typedef struct {
    Examples ex;
    size_t cap;            /* rows allocated */
    int32_t pad;
    SftStats *st;
} Rows;

static int rows_add(Rows *r, const int32_t *ids, const uint8_t *lab, size_t n) {
    const size_t row = (size_t)r->ex.row, k = (size_t)(r->ex.n[0]);
    if (k == r->cap) {
        size_t cap = r->cap * 2 + 16;
        int32_t *i2 = realloc(r->ex.ids, cap * row * sizeof *i2);
        if (!i2) return ERR_NOMEM;
        r->ex.ids = i2;
        uint8_t *l2 = realloc(r->ex.labels, cap * row);
        if (!l2) return ERR_NOMEM;
        r->ex.labels = l2;
        r->cap = cap;
    }
    if (n > row) n = row;
    int32_t *di = r->ex.ids + k * row;
    uint8_t *dl = r->ex.labels + k * row;
    memcpy(di, ids, n * sizeof *ids);
    memcpy(dl, lab, n);
    for (size_t t = n; t < row; t++) di[t] = r->pad, dl[t] = 0;
    dl[0] = 0; /* nothing predicts the first token */
    r->ex.n[0]++;
    r->st->tokens += n;
    for (size_t t = 1; t < n; t++) r->st->labels += lab[t];
    return 0;
}

/* One chat (the "messages" array of line `line`) as labelled tokens. */
static int chat_example(const InferModel *im, json_t *msgs, uint64_t line, Seq *s, Err *err) {
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return err_set(err, ERR_FORMAT, "line %llu: \"messages\" must be a non-empty array", (unsigned long long)line);
    const size_t n = json_array_size(msgs);
    ChatMessage *m = calloc(n, sizeof *m);
    if (!m) return err_set(err, ERR_NOMEM, "out of memory");
    int rc = 0, assistant = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *o = json_array_get(msgs, i), *role = json_object_get(o, "role"), *content = json_object_get(o, "content");
        if (!json_is_object(o) || !json_is_string(role) || !json_is_string(content))
            rc = err_set(err, ERR_FORMAT, "line %llu: message %zu needs a string \"role\" and a string \"content\"",
                         (unsigned long long)line, i + 1);
        else if (strcmp(json_string_value(role), "system") && strcmp(json_string_value(role), "user") &&
                 strcmp(json_string_value(role), "assistant"))
            rc = err_set(err, ERR_FORMAT, "line %llu: message %zu has role \"%.32s\" (system, user or assistant)",
                         (unsigned long long)line, i + 1, json_string_value(role));
        else {
            m[i] = (ChatMessage){json_string_value(role), json_string_value(content)};
            assistant |= !strcmp(m[i].role, "assistant");
        }
    }
    if (!rc && !assistant)
        rc = err_set(err, ERR_FORMAT, "line %llu: the chat has no assistant turn (nothing to learn)", (unsigned long long)line);
    char *whole = NULL, *open = NULL, *turn = NULL;
    size_t done = 0; /* bytes of `whole` already tokenized */
    if (!rc) rc = chat_render(&im->chat, m, (int)n, 0, &whole, err);
    for (size_t i = 0; i < n && !rc; i++) {
        if (strcmp(m[i].role, "assistant")) continue;
        free(open);
        free(turn);
        open = turn = NULL;
        if ((rc = chat_render(&im->chat, m, (int)i, 1, &open, err)) || (rc = chat_render(&im->chat, m, (int)i + 1, 0, &turn, err)))
            break;
        size_t a = strlen(open), b = strlen(turn);
        if (a < done || a > b || strncmp(open, turn, a) || strncmp(turn, whole, b))
            rc = err_set(err, ERR_UNSUPPORTED, "line %llu: the %s chat template does not render turn %zu as a prefix of the "
                         "conversation; its assistant tokens cannot be told apart", (unsigned long long)line,
                         chat_style_name(im->chat.style), i + 1);
        else if (!(rc = push_text(im, s, whole, done, a, 0, 0, err)))
            rc = push_text(im, s, whole, a, b, 1, 0, err);
        done = b;
    }
    if (!rc) rc = push_text(im, s, whole, done, strlen(whole), 0, 0, err);
    free(open);
    free(turn);
    free(whole);
    free(m);
    return rc;
}

/* Text as rows of `row` tokens overlapping by one (every token predicted once). */
static int text_rows(Rows *r, const Seq *s) {
    const size_t row = (size_t)r->ex.row;
    for (size_t at = 0; at + 1 < s->n || at == 0; at += row - 1) {
        int rc = rows_add(r, s->ids + at, s->lab + at, s->n - at);
        if (rc) return rc;
        if (at + row >= s->n) break;
    }
    return 0;
}

int sft_prepare(const InferModel *im, const char *path, int format, int seq, double val_fraction, const char *out_path,
                SftStats *st, Err *err) {
    memset(st, 0, sizeof *st);
    char *text = NULL;
    size_t len = 0;
    int rc = file_read_all(path, &text, &len, err);
    if (rc) return err_wrap(err, "fine-tuning data");
    Rows r = {0};
    r.ex.row = seq + 1;
    r.ex.vocab = im->model.cfg.vocab_size;
    r.st = st;
    r.pad = 0;
    Seq s = {0};
    size_t k = 0;
    while (k < len && (text[k] == ' ' || text[k] == '\n' || text[k] == '\r' || text[k] == '\t')) k++;
    const int jsonl = format == TUNE_CHAT || (k < len && text[k] == '{');
    if (!jsonl) { /* plain text: one document */
        st->lines = 1;
        if (!(rc = push_text(im, &s, text, 0, len, 1, 1, err))) rc = text_rows(&r, &s);
    }
    uint64_t line = 0;
    for (char *p = text, *next; jsonl && !rc && p < text + len; p = next) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        next = nl ? nl + 1 : text + len;
        line++;
        size_t n = (size_t)((nl ? nl : text + len) - p);
        size_t b = 0;
        while (b < n && (p[b] == ' ' || p[b] == '\t' || p[b] == '\r')) b++;
        if (b == n) continue; /* blank line */
        st->lines++;
        json_error_t je;
        json_t *o = json_loadb(p, n, 0, &je);
        if (!o || !json_is_object(o)) {
            rc = err_set(err, ERR_FORMAT, "%s:%llu: %s", path, (unsigned long long)line,
                         o ? "a line must be a JSON object" : je.text);
            json_decref(o);
            break;
        }
        s.n = 0;
        if (format == TUNE_CHAT) {
            json_t *msgs = json_object_get(o, "messages");
            if (!msgs) rc = err_set(err, ERR_FORMAT, "line %llu: no \"messages\" array", (unsigned long long)line);
            else rc = chat_example(im, msgs, line, &s, err);
            if (!rc) {
                int labelled = 0;
                for (size_t t = 1; t < s.n && t <= (size_t)seq; t++) labelled |= s.lab[t];
                if (s.n > (size_t)seq + 1) st->truncated++;
                if (!labelled) st->dropped++;
                else rc = rows_add(&r, s.ids, s.lab, s.n) ? err_set(err, ERR_NOMEM, "out of memory") : 0;
            }
            if (rc) err_wrap(err, "%s", path);
        } else {
            json_t *t = json_object_get(o, "text");
            if (!json_is_string(t))
                rc = err_set(err, ERR_FORMAT, "%s:%llu: no string \"text\"", path, (unsigned long long)line);
            else if (!(rc = push_text(im, &s, json_string_value(t), 0, json_string_length(t), 1, 1, err)))
                rc = text_rows(&r, &s) ? err_set(err, ERR_NOMEM, "out of memory") : 0;
        }
        json_decref(o);
    }
    free(text);
    free(s.ids);
    free(s.lab);
    if (!rc && r.ex.n[0] == 0)
        rc = err_set(err, ERR_FORMAT, "%s: no examples with something to learn (%llu lines, %llu cut to nothing at --seq %d)",
                     path, (unsigned long long)st->lines, (unsigned long long)st->dropped, seq);
    if (!rc) {
        /* every k-th example to validation, moved to the end (train rows first) */
        const uint64_t n = r.ex.n[0];
        uint64_t every = val_fraction > 0 ? (uint64_t)(1.0 / val_fraction + 0.5) : 0;
        if (every > n && n >= 2) every = n;
        const size_t row = (size_t)r.ex.row;
        Examples out = r.ex;
        out.ids = malloc(n * row * sizeof *out.ids);
        out.labels = malloc(n * row);
        if (!out.ids || !out.labels) {
            rc = err_set(err, ERR_NOMEM, "out of memory");
        } else {
            out.n[0] = out.n[1] = 0;
            for (int pass = 0; pass < 2; pass++)
                for (uint64_t i = 0; i < n; i++) {
                    int val = every >= 1 && n >= 2 && (i + 1) % every == 0;
                    if (val != pass) continue;
                    uint64_t at = out.n[0] + out.n[1];
                    memcpy(out.ids + at * row, r.ex.ids + i * row, row * sizeof *out.ids);
                    memcpy(out.labels + at * row, r.ex.labels + i * row, row);
                    out.n[pass]++;
                }
            st->examples[0] = out.n[0];
            st->examples[1] = out.n[1];
            rc = examples_write(out_path, &out, err);
        }
        free(out.ids);
        free(out.labels);
    }
    free(r.ex.ids);
    free(r.ex.labels);
    return rc;
}
