/* serve: parsing and checking request bodies. Every field OpenAI defines for
 * completions is either honoured or refused with a 400 naming it; unknown
 * fields are refused as OpenAI does ("Unrecognized request argument"). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve_internal.h"

int api_error(ApiError *e, int status, const char *param, const char *code, const char *fmt, ...) {
    memset(e, 0, sizeof *e);
    e->status = status;
    e->type = status == 401   ? "authentication_error"
              : status == 404 ? "not_found_error"
              : status == 429 ? "rate_limit_error"
              : status >= 500 ? "server_error"
                              : "invalid_request_error";
    e->code = code;
    if (param) snprintf(e->param, sizeof e->param, "%s", param);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return status;
}

char *api_error_json(const ApiError *e) {
    json_t *o = json_pack("{s:{s:s, s:s, s:o, s:o}}", "error", "message", e->message, "type", e->type, "param",
                          e->param[0] ? json_string(e->param) : json_null(), "code",
                          e->code ? json_string(e->code) : json_null());
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

json_t *body_json(const char *body, size_t len, ApiError *e) {
    json_error_t je;
    if (!len) return api_error(e, 400, NULL, "invalid_json", "the request body is empty; a JSON object is expected"), NULL;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (strstr(je.text, "UTF-8") || strstr(je.text, "unable to decode byte") || strstr(je.text, "invalid Unicode"))
            api_error(e, 400, NULL, "invalid_utf8", "the request body is not valid UTF-8 (byte %d): %s", je.position, je.text);
        else
            api_error(e, 400, NULL, "invalid_json", "the request body is not valid JSON: %s (line %d, column %d)", je.text,
                      je.line, je.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        api_error(e, 400, NULL, "invalid_json", "the request body must be a JSON object");
        return NULL;
    }
    return root;
}

/* Length of the valid UTF-8 character at p (n bytes left), 0 if invalid. */
static size_t utf8_char(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    size_t need = c < 0x80 ? 1 : c >= 0xC2 && c < 0xE0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : c >= 0xF0 && c < 0xF5 ? 4 : 0;
    if (!need || need > n || c == 0) return 0;
    unsigned cp = need == 1 ? c : c & (0x7F >> need);
    for (size_t k = 1; k < need; k++) {
        if ((p[k] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (p[k] & 0x3F);
    }
    if ((need == 3 && (cp < 0x800 || (cp >= 0xD800 && cp < 0xE000))) || (need == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return need;
}

json_t *json_text(const char *p, size_t n) {
    json_t *s = json_stringn(p ? p : "", p ? n : 0);
    if (s) return s;
    /* not UTF-8 (a model can emit any bytes): each bad byte becomes U+FFFD */
    char *q = malloc(n * 3 + 1);
    if (!q) return json_string("");
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_char((const unsigned char *)p + i, n - i);
        if (k) {
            memcpy(q + o, p + i, k);
            o += k;
            i += k;
        } else {
            memcpy(q + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    s = json_stringn(q, o);
    free(q);
    return s ? s : json_string("");
}

static const char *type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* Integer field in [lo, hi]; absent or null leaves *out. */
static int get_int(json_t *o, const char *key, long long lo, long long hi, long long *out, ApiError *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v))
        return api_error(e, 400, key, "invalid_type", "'%s' must be an integer, not %s", key, type_name(v));
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return api_error(e, 400, key, "invalid_value", "'%s' is %lld; it must be in [%lld, %lld]", key, x, lo, hi);
    *out = x;
    return 0;
}

static int get_num(json_t *o, const char *key, double lo, double hi, int lo_open, float *out, ApiError *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return api_error(e, 400, key, "invalid_type", "'%s' must be a number, not %s", key, type_name(v));
    double x = json_number_value(v);
    if (!(lo_open ? x > lo : x >= lo) || !(x <= hi))
        return api_error(e, 400, key, "invalid_value", "'%s' is %g; it must be in %c%g, %g]", key, x, lo_open ? '(' : '[', lo, hi);
    *out = (float)x;
    return 0;
}

static int get_bool(json_t *o, const char *key, int *out, ApiError *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return api_error(e, 400, key, "invalid_type", "'%s' must be a boolean, not %s", key, type_name(v));
    *out = json_is_true(v);
    return 0;
}

static int get_stops(json_t *o, ServeRequest *r, ApiError *e) {
    json_t *v = json_object_get(o, "stop");
    if (!v || json_is_null(v)) return 0;
    if (json_is_string(v)) {
        if (!json_string_length(v) || json_string_length(v) > SERVE_MAX_STOP_LEN)
            return api_error(e, 400, "stop", "invalid_value", "'stop' must have 1 to %d bytes", SERVE_MAX_STOP_LEN);
        r->stops[r->n_stops++] = strdup(json_string_value(v));
        return 0;
    }
    if (!json_is_array(v)) return api_error(e, 400, "stop", "invalid_type", "'stop' must be a string or an array of strings");
    if (json_array_size(v) > SERVE_MAX_STOPS)
        return api_error(e, 400, "stop", "invalid_value", "'stop' has %zu strings; at most %d are allowed", json_array_size(v),
                         SERVE_MAX_STOPS);
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) {
        if (!json_is_string(s) || !json_string_length(s) || json_string_length(s) > SERVE_MAX_STOP_LEN)
            return api_error(e, 400, "stop", "invalid_value", "'stop[%zu]' must be a string of 1 to %d bytes", i,
                             SERVE_MAX_STOP_LEN);
        r->stops[r->n_stops++] = strdup(json_string_value(s));
    }
    return 0;
}

/* Text of a message's content: a string, or an array of {"type":"text","text":...} parts. */
static int content_text(json_t *c, size_t k, char **out, ApiError *e) {
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", k);
    if (json_is_string(c)) {
        *out = strdup(json_string_value(c));
        return 0;
    }
    if (!json_is_array(c))
        return api_error(e, 400, param, "invalid_type", "'%s' must be a string or an array of text parts, not %s", param,
                         type_name(c));
    size_t total = 0, i;
    json_t *p;
    json_array_foreach(c, i, p) {
        json_t *t = json_object_get(p, "type"), *x = json_object_get(p, "text");
        if (!json_is_object(p) || !json_is_string(t) || strcmp(json_string_value(t), "text") || !json_is_string(x))
            return api_error(e, 400, param, "invalid_value",
                             "'%s[%zu]' must be {\"type\": \"text\", \"text\": ...}: only text parts are supported", param, i);
        total += json_string_length(x);
    }
    char *s = malloc(total + 1);
    if (!s) return api_error(e, 500, NULL, NULL, "out of memory");
    size_t o = 0;
    json_array_foreach(c, i, p) {
        json_t *x = json_object_get(p, "text");
        memcpy(s + o, json_string_value(x), json_string_length(x));
        o += json_string_length(x);
    }
    s[o] = 0;
    *out = s;
    return 0;
}

/* messages -> the chat template's text. */
static int render_messages(json_t *root, const InferModel *im, char **text, ApiError *e) {
    json_t *msgs = json_object_get(root, "messages");
    if (!msgs) return api_error(e, 400, "messages", "missing_required_parameter", "'messages' is required");
    if (!json_is_array(msgs))
        return api_error(e, 400, "messages", "invalid_type", "'messages' must be an array, not %s", type_name(msgs));
    size_t n = json_array_size(msgs);
    if (!n) return api_error(e, 400, "messages", "invalid_value", "'messages' must not be empty");
    ChatMessage *cm = calloc(n, sizeof *cm);
    char **owned = calloc(n, sizeof *owned);
    int rc = 0;
    if (!cm || !owned) {
        rc = api_error(e, 500, NULL, NULL, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < n && !rc; k++) {
        json_t *m = json_array_get(msgs, k), *role = json_object_get(m, "role"), *c = json_object_get(m, "content");
        char param[80];
        snprintf(param, sizeof param, "messages[%zu]", k);
        if (!json_is_object(m)) {
            rc = api_error(e, 400, param, "invalid_type", "'%s' must be an object", param);
            break;
        }
        snprintf(param, sizeof param, "messages[%zu].role", k);
        if (!json_is_string(role)) {
            rc = api_error(e, 400, param, role ? "invalid_type" : "missing_required_parameter", "'%s' must be a string", param);
            break;
        }
        const char *r = json_string_value(role);
        if (!strcmp(r, "developer")) r = "system"; /* OpenAI's newer name for the system turn */
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")) {
            rc = api_error(e, 400, param, "invalid_value", "'%s' is '%.40s'; it must be system, user, assistant or developer",
                           param, json_string_value(role));
            break;
        }
        const char *allowed[] = {"role", "content", "name", NULL};
        const char *key;
        json_t *val;
        json_object_foreach(m, key, val) {
            int ok = 0;
            for (int a = 0; allowed[a]; a++) ok |= !strcmp(key, allowed[a]);
            if (!ok) {
                snprintf(param, sizeof param, "messages[%zu].%.24s", k, key);
                rc = api_error(e, 400, param, "unsupported_parameter", "'%s' is not supported (text messages only)", param);
                break;
            }
        }
        if (rc) break;
        if (!c) {
            snprintf(param, sizeof param, "messages[%zu].content", k);
            rc = api_error(e, 400, param, "missing_required_parameter", "'%s' is required", param);
            break;
        }
        if ((rc = content_text(c, k, &owned[k], e))) break;
        cm[k] = (ChatMessage){r, owned[k]};
    }
    if (!rc) {
        Err err = {0};
        if (chat_render(&im->chat, cm, (int)n, 1, text, &err)) rc = api_error(e, 400, "messages", "invalid_value", "%s", err.msg);
    }
done:
    for (size_t k = 0; owned && k < n; k++) free(owned[k]);
    free(owned);
    free(cm);
    return rc;
}

static int check_keys(json_t *root, int chat, ApiError *e) {
    static const char *common[] = {"model", "max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "stop",
                                   "presence_penalty", "frequency_penalty", "repeat_penalty", "logprobs", "n", "user",
                                   "stream", "stream_options", NULL};
    static const char *chat_only[] = {"messages", "max_completion_tokens", "top_logprobs", NULL};
    static const char *compl_only[] = {"prompt", "echo", NULL};
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        int ok = 0;
        for (int i = 0; common[i]; i++) ok |= !strcmp(key, common[i]);
        const char *const *extra = chat ? chat_only : compl_only;
        for (int i = 0; extra[i]; i++) ok |= !strcmp(key, extra[i]);
        if (!ok)
            return api_error(e, 400, key, "unsupported_parameter", "Unrecognized or unsupported request argument: '%.60s'", key);
    }
    return 0;
}

static int parse_sampling(json_t *root, ServeRequest *r, int ctx, ApiError *e) {
    long long x = 0;
    int rc;
    sampler_options_default(&r->so);
    r->so.temperature = 1.0f; /* OpenAI's defaults */
    r->so.top_p = 1.0f;
    r->so.penalty_last_n = 64;
    if ((rc = get_int(root, "n", 1, 1, &x, e))) {
        if (json_is_integer(json_object_get(root, "n")) && json_integer_value(json_object_get(root, "n")) > 1)
            return api_error(e, 400, "n", "unsupported_value", "'n' > 1 is not supported: send one request per completion");
        return rc;
    }
    x = 0;
    if ((rc = get_int(root, "max_tokens", 1, 1LL << 40, &x, e))) return rc;
    if ((rc = get_int(root, "max_completion_tokens", 1, 1LL << 40, &x, e))) return rc;
    r->max_tokens = x > ctx ? ctx : (int)x;
    if ((rc = get_num(root, "temperature", 0, 2, 0, &r->so.temperature, e)) ||
        (rc = get_num(root, "top_p", 0, 1, 1, &r->so.top_p, e)) || (rc = get_num(root, "min_p", 0, 1, 0, &r->so.min_p, e)) ||
        (rc = get_num(root, "presence_penalty", -2, 2, 0, &r->so.presence_penalty, e)) ||
        (rc = get_num(root, "frequency_penalty", -2, 2, 0, &r->so.frequency_penalty, e)) ||
        (rc = get_num(root, "repeat_penalty", 0, 100, 1, &r->so.repeat_penalty, e)))
        return rc;
    if (r->so.min_p >= 1.0f) return api_error(e, 400, "min_p", "invalid_value", "'min_p' must be below 1");
    x = 0;
    if ((rc = get_int(root, "top_k", 0, 1 << 30, &x, e))) return rc;
    r->so.top_k = (int)x;
    json_t *seed = json_object_get(root, "seed");
    x = 0;
    if ((rc = get_int(root, "seed", -(1LL << 62), 1LL << 62, &x, e))) return rc;
    r->so.seed = (uint64_t)x;
    r->has_seed = seed && !json_is_null(seed); /* else the server draws one */
    return 0;
}

static int parse_output(json_t *root, ServeRequest *r, ApiError *e) {
    int rc;
    if ((rc = get_bool(root, "stream", &r->stream, e))) return rc;
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return api_error(e, 400, "stream_options", "invalid_type", "'stream_options' must be an object");
        if (!r->stream)
            return api_error(e, 400, "stream_options", "invalid_value", "'stream_options' is only allowed with 'stream': true");
        const char *key;
        json_t *v;
        json_object_foreach(so, key, v) if (strcmp(key, "include_usage"))
            return api_error(e, 400, "stream_options", "unsupported_parameter", "'stream_options.%.40s' is not supported", key);
        if ((rc = get_bool(so, "include_usage", &r->include_usage, e))) return rc;
    }
    if ((rc = get_stops(root, r, e))) return rc;
    json_t *lp = json_object_get(root, "logprobs");
    long long top = 0;
    if (r->chat) {
        if ((rc = get_bool(root, "logprobs", &r->logprobs, e)) ||
            (rc = get_int(root, "top_logprobs", 0, SERVE_MAX_TOP_LOGPROBS, &top, e)))
            return rc;
        if (top && !r->logprobs)
            return api_error(e, 400, "top_logprobs", "invalid_value", "'top_logprobs' needs 'logprobs': true");
    } else if (lp && !json_is_null(lp)) {
        if ((rc = get_int(root, "logprobs", 0, 5, &top, e))) return rc;
        r->logprobs = 1;
    }
    r->top_logprobs = (int)top;
    return get_bool(root, "echo", &r->echo, e);
}

static int tokenize(const InferModel *im, pthread_mutex_t *tok_lock, const char *text, int add_bos, ServeRequest *r,
                    ApiError *e) {
    Err err = {0};
    size_t n = 0;
    pthread_mutex_lock(tok_lock);
    int rc = infer_tokenize(im, text, strlen(text), add_bos, &r->ids, &n, &err);
    pthread_mutex_unlock(tok_lock);
    if (rc) return api_error(e, 400, r->chat ? "messages" : "prompt", "invalid_value", "%s", err.msg);
    r->n_ids = (int)n;
    return 0;
}

int request_parse(ServeRequest *r, const char *body, size_t len, int chat, const InferModel *im, pthread_mutex_t *tok_lock,
                  int ctx, ApiError *e) {
    memset(r, 0, sizeof *r);
    r->chat = chat;
    json_t *root = body_json(body, len, e);
    if (!root) return e->status;
    int rc;
    json_t *model = json_object_get(root, "model");
    char *text = NULL;
    if ((rc = check_keys(root, chat, e))) goto done;
    if (model && !json_is_string(model) && !json_is_null(model)) {
        rc = api_error(e, 400, "model", "invalid_type", "'model' must be a string, not %s", type_name(model));
        goto done;
    }
    if ((rc = parse_sampling(root, r, ctx, e)) || (rc = parse_output(root, r, e))) goto done;
    if (chat) {
        if ((rc = render_messages(root, im, &text, e))) goto done;
    } else {
        json_t *p = json_object_get(root, "prompt");
        if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0))) p = json_array_get(p, 0);
        if (!p) {
            rc = api_error(e, 400, "prompt", "missing_required_parameter", "'prompt' is required");
            goto done;
        }
        if (!json_is_string(p)) {
            rc = api_error(e, 400, "prompt", "invalid_type",
                           "'prompt' must be a string (or an array of one string; several prompts need several requests)");
            goto done;
        }
        text = strdup(json_string_value(p));
        if (r->echo) r->prompt_text = strdup(text);
    }
    if ((rc = tokenize(im, tok_lock, text, !chat, r, e))) goto done;
    if (r->n_ids == 0) {
        rc = api_error(e, 400, chat ? "messages" : "prompt", "invalid_value", "the prompt is empty (no tokens)");
        goto done;
    }
    if (r->n_ids >= ctx) {
        rc = api_error(e, 400, chat ? "messages" : "prompt", "context_length_exceeded",
                       "the prompt has %d tokens but the context holds %d (at least one must be left for the answer)",
                       r->n_ids, ctx);
        goto done;
    }
    if (!r->max_tokens || r->max_tokens > ctx - r->n_ids) r->max_tokens = ctx - r->n_ids; /* bounded by the room left */
done:
    free(text);
    json_decref(root);
    if (rc) request_free(r);
    return rc;
}

void request_free(ServeRequest *r) {
    for (int i = 0; i < r->n_stops; i++) free(r->stops[i]);
    free(r->ids);
    free(r->prompt_text);
    memset(r, 0, sizeof *r);
}

char *tokenize_handle(const char *body, size_t len, const InferModel *im, pthread_mutex_t *tok_lock, ApiError *e) {
    json_t *root = body_json(body, len, e), *c = root ? json_object_get(root, "content") : NULL;
    if (!root) return NULL;
    char *out = NULL;
    int add = 0;
    if (!json_is_string(c)) {
        api_error(e, 400, "content", c ? "invalid_type" : "missing_required_parameter", "'content' must be a string");
    } else if (!get_bool(root, "add_special", &add, e)) {
        ServeRequest r = {0};
        if (!tokenize(im, tok_lock, json_string_value(c), add, &r, e)) {
            json_t *a = json_array();
            for (int i = 0; i < r.n_ids; i++) json_array_append_new(a, json_integer(r.ids[i]));
            json_t *o = json_pack("{s:o}", "tokens", a);
            out = json_dumps(o, JSON_COMPACT);
            json_decref(o);
        }
        request_free(&r);
    }
    json_decref(root);
    return out;
}

char *detokenize_handle(const char *body, size_t len, const InferModel *im, ApiError *e) {
    json_t *root = body_json(body, len, e), *t = root ? json_object_get(root, "tokens") : NULL;
    if (!root) return NULL;
    char *out = NULL;
    const int V = im->model.cfg.vocab_size;
    if (!json_is_array(t)) {
        api_error(e, 400, "tokens", t ? "invalid_type" : "missing_required_parameter", "'tokens' must be an array of token ids");
        json_decref(root);
        return NULL;
    }
    InferText text = {0};
    GenOptions go = {0};
    size_t i, from, n;
    json_t *v;
    json_array_foreach(t, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= V) {
            api_error(e, 400, "tokens", "invalid_value", "'tokens[%zu]' must be a token id in [0, %d)", i, V);
            goto done;
        }
        size_t bl = 0;
        const uint8_t *b = infer_token_bytes(im, (int32_t)json_integer_value(v), &bl);
        if (infer_text_push(&text, &go, b, bl, &from, &n) < 0) goto done;
    }
    json_t *o = json_object();
    /* bytes that are not UTF-8 (a cut character) cannot go into JSON text */
    json_object_set_new(o, "content", json_text(text.p, text.n));
    out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
done:
    free(text.p);
    json_decref(root);
    return out;
}
