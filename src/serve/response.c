/* serve: OpenAI's response bodies. Non-streamed: one chat.completion or
 * text_completion object. Streamed (Server-Sent Events): chunks whose
 * first delta carries the role, then content deltas (whole UTF-8
 * characters: the scheduler hands out only those), a last chunk with the
 * finish_reason, a usage chunk (choices: []) when asked, then [DONE]. */
#include <stdlib.h>
#include <string.h>

#include "serve/serve_internal.h"

json_t *response_usage(const Job *j) {
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", j->req.n_ids, "completion_tokens", j->n_gen,
                     "total_tokens", j->req.n_ids + j->n_gen, "prompt_tokens_details", "cached_tokens", j->cached);
}

/* id, object, created, model, system_fingerprint */
static json_t *head(const Server *s, const Job *j, const char *object) {
    return json_pack("{s:s, s:s, s:I, s:s, s:s}", "id", j->id, "object", object, "created", (json_int_t)j->created, "model",
                     s->alias, "system_fingerprint", "jarip");
}

static char *dump(json_t *o) {
    char *str = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return str;
}

/* Completions' logprobs shape from the chat entries: tokens, token_logprobs,
 * top_logprobs ({token: logprob}), text_offset. */
static json_t *completion_logprobs(const json_t *lp, size_t from, size_t to, size_t offset0) {
    json_t *toks = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    size_t off = offset0;
    for (size_t i = from; i < to; i++) {
        json_t *e = json_array_get(lp, i), *t = json_object_get(e, "token"), *top = json_object();
        json_array_append(toks, t);
        json_array_append(lps, json_object_get(e, "logprob"));
        size_t k;
        json_t *x;
        json_array_foreach(json_object_get(e, "top_logprobs"), k, x)
            json_object_set(top, json_string_value(json_object_get(x, "token")), json_object_get(x, "logprob"));
        json_array_append_new(tops, top);
        json_array_append_new(offs, json_integer((json_int_t)off));
        off += json_array_size(json_object_get(e, "bytes"));
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", toks, "token_logprobs", lps, "top_logprobs", tops, "text_offset", offs);
}

char *response_full(const Server *s, const Job *j) {
    const int chat = j->req.chat;
    json_t *o = head(s, j, chat ? "chat.completion" : "text_completion"), *choice;
    json_t *lp = json_null();
    if (j->req.logprobs && chat) lp = json_pack("{s:O}", "content", j->lp ? j->lp : json_array());
    else if (j->req.logprobs) lp = completion_logprobs(j->lp, 0, json_array_size(j->lp), 0);
    if (chat) {
        choice = json_pack("{s:i, s:{s:s, s:o}, s:o, s:s}", "index", 0, "message", "role", "assistant", "content",
                           json_text(j->text.p, j->text.n), "logprobs", lp, "finish_reason", j->finish);
    } else {
        size_t pl = j->req.echo && j->req.prompt_text ? strlen(j->req.prompt_text) : 0;
        char *t = malloc(pl + j->text.n + 1);
        if (t) {
            memcpy(t, j->req.prompt_text ? j->req.prompt_text : "", pl);
            memcpy(t + pl, j->text.p ? j->text.p : "", j->text.n);
        }
        choice = json_pack("{s:o, s:i, s:o, s:s}", "text", json_text(t, t ? pl + j->text.n : 0), "index", 0, "logprobs", lp,
                           "finish_reason", j->finish);
        free(t);
    }
    json_object_set_new(o, "choices", json_pack("[o]", choice));
    json_object_set_new(o, "usage", response_usage(j));
    return dump(o);
}

char *response_chunk(const Server *s, const Job *j, const char *text, size_t len, json_t *lp, int first,
                     const char *finish) {
    const int chat = j->req.chat;
    json_t *o = head(s, j, chat ? "chat.completion.chunk" : "text_completion"), *choice;
    json_t *l = json_null();
    if (lp && chat) l = json_pack("{s:O}", "content", lp);
    else if (lp) l = completion_logprobs(lp, 0, json_array_size(lp), j->text.sent - len);
    if (chat) {
        json_t *delta = json_object();
        if (first) json_object_set_new(delta, "role", json_string("assistant"));
        if (first || len) json_object_set_new(delta, "content", json_text(text, len));
        choice = json_pack("{s:i, s:o, s:o, s:o}", "index", 0, "delta", delta, "logprobs", l, "finish_reason",
                           finish ? json_string(finish) : json_null());
    } else {
        choice = json_pack("{s:o, s:i, s:o, s:o}", "text", json_text(text, len), "index", 0, "logprobs", l, "finish_reason",
                           finish ? json_string(finish) : json_null());
    }
    json_object_set_new(o, "choices", json_pack("[o]", choice));
    if (j->req.include_usage) json_object_set_new(o, "usage", json_null());
    return dump(o);
}

char *response_usage_chunk(const Server *s, const Job *j) {
    json_t *o = head(s, j, j->req.chat ? "chat.completion.chunk" : "text_completion");
    json_object_set_new(o, "choices", json_array());
    json_object_set_new(o, "usage", response_usage(j));
    return dump(o);
}
