/* Tokenizer file formats: Hugging Face tokenizer.json (load and save),
 * tiktoken rank files, GGUF tokenizer.ggml.* metadata. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "tok_internal.h"

/* Token text as stored in tokenizer.json / GGUF: byte-level characters,
 * or (for added tokens outside that alphabet) the raw UTF-8. */
static int set_token_text(Tokenizer *t, int32_t id, const char *s, size_t n, Err *err) {
    uint8_t stackbuf[256];
    uint8_t *buf = n <= sizeof stackbuf ? stackbuf : malloc(n);
    if (!buf) return err_set(err, ERR_NOMEM, "out of memory");
    long k = tok_bytelevel_decode(s, n, buf);
    int rc = k >= 0 ? tok_set_token(t, id, buf, (size_t)k, err) : tok_set_token(t, id, s, n, err);
    if (buf != stackbuf) free(buf);
    return rc;
}

/* Bytes of a token text without storing it (for merges). */
static int32_t lookup_text(const Tokenizer *t, const char *s, size_t n, uint8_t *buf) {
    long k = tok_bytelevel_decode(s, n, buf);
    return k >= 0 ? tok_lookup(t, buf, (size_t)k) : tok_lookup(t, s, n);
}

/* Register merge "a b": both sides and their concatenation must be tokens. */
static int add_merge_text(Tokenizer *t, const char *a, size_t na, const char *b, size_t nb, int32_t rank, Err *err) {
    uint8_t *buf = malloc(2 * (na + nb) + 2);
    if (!buf) return err_set(err, ERR_NOMEM, "out of memory");
    int32_t l = lookup_text(t, a, na, buf), r = lookup_text(t, b, nb, buf);
    int32_t out = -1;
    if (l >= 0 && r >= 0) {
        memcpy(buf, t->pool + t->off[l], t->len[l]);
        memcpy(buf + t->len[l], t->pool + t->off[r], t->len[r]);
        out = tok_lookup(t, buf, t->len[l] + t->len[r]);
    }
    free(buf);
    if (out < 0)
        return err_set(err, ERR_FORMAT, "merge %d ('%.*s' '%.*s') uses or makes a token not in the vocabulary", rank,
                       (int)na, a, (int)nb, b);
    return tok_add_merge(t, l, r, out, rank, err);
}

/* Vocabulary map with ordinary tokens first, so a special whose bytes equal
 * an ordinary token's never shadows it. */
static int build_vocab_plain_first(Tokenizer *t, Err *err) {
    /* an empty "vocab" (and no added tokens) has nothing to look up (found by fuzzing: memcpy from NULL) */
    if (t->n_vocab <= 0) return err_set(err, ERR_FORMAT, "the tokenizer has no tokens (\"vocab\" is empty)");
    uint8_t *sp = malloc((size_t)t->n_vocab);
    if (!sp) return err_set(err, ERR_NOMEM, "out of memory");
    memcpy(sp, t->special, (size_t)t->n_vocab);
    uint32_t *len = malloc((size_t)t->n_vocab * sizeof *len);
    if (!len) {
        free(sp);
        return err_set(err, ERR_NOMEM, "out of memory");
    }
    memcpy(len, t->len, (size_t)t->n_vocab * sizeof *len);
    for (int i = 0; i < t->n_vocab; i++)
        if (sp[i]) t->len[i] = UINT32_MAX; /* hide specials for the first pass */
    int rc = tok_build_vocab(t, err);
    memcpy(t->len, len, (size_t)t->n_vocab * sizeof *len);
    if (!rc) {
        for (int i = 0; i < t->n_vocab; i++) {
            if (!sp[i] || len[i] == UINT32_MAX || !len[i]) continue;
            const uint8_t *b = t->pool + t->off[i];
            if (tok_lookup(t, b, len[i]) >= 0) continue;
            size_t mask = t->vmap_cap - 1, j = (size_t)tok_hash_bytes(b, len[i]) & mask;
            while (t->vmap[j]) j = (j + 1) & mask;
            t->vmap[j] = (uint32_t)i + 1;
        }
    }
    free(sp);
    free(len);
    return rc;
}

static void guess_bos_eos(Tokenizer *t) {
    static const char *const eos[] = {"<|endoftext|>", "<|end_of_text|>", "</s>", "<|eot_id|>", "<|im_end|>"};
    static const char *const bos[] = {"<|begin_of_text|>", "<s>", "<|startoftext|>"};
    for (size_t i = 0; t->eos < 0 && i < sizeof eos / sizeof *eos; i++) t->eos = tokenizer_special_id(t, eos[i]);
    for (size_t i = 0; t->bos < 0 && i < sizeof bos / sizeof *bos; i++) t->bos = tokenizer_special_id(t, bos[i]);
}

/* Name the pattern when its stages are one jarip knows. */
static void name_pattern(Tokenizer *t) {
    const char *g = tokenizer_pattern_regex("gpt2"), *l = tokenizer_pattern_regex("llama3"),
               *d = tokenizer_pattern_regex("digit");
    const char *name = "custom";
    if (t->n_stages == 1 && !strcmp(t->stage_src[0], g)) name = "gpt2";
    if (t->n_stages == 1 && !strcmp(t->stage_src[0], l)) name = "llama3";
    if (t->n_stages == 2 && !strcmp(t->stage_src[0], d) && !strcmp(t->stage_src[1], g)) name = "smollm";
    snprintf(t->pattern_name, sizeof t->pattern_name, "%s", name);
}

/* ---- tokenizer.json ------------------------------------------------------ */
static int parse_pretok(json_t *p, const char **srcs, char **owned, int *n, int *prefix, Err *err) {
    if (!p || json_is_null(p)) return 0;
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!type) return err_set(err, ERR_FORMAT, "pre_tokenizer has no type");
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(p, "pretokenizers");
        for (size_t i = 0; i < json_array_size(arr); i++)
            if (parse_pretok(json_array_get(arr, i), srcs, owned, n, prefix, err)) return err->code;
        return 0;
    }
    if (*n >= TOK_MAX_STAGES) return err_set(err, ERR_UNSUPPORTED, "too many pre-tokenizer stages");
    if (!strcmp(type, "ByteLevel")) {
        *prefix = json_is_true(json_object_get(p, "add_prefix_space"));
        json_t *ur = json_object_get(p, "use_regex");
        if (!ur || json_is_true(ur)) srcs[(*n)++] = tokenizer_pattern_regex("gpt2");
        return 0;
    }
    if (!strcmp(type, "Digits")) {
        srcs[(*n)++] = json_is_true(json_object_get(p, "individual_digits")) ? "\\p{N}" : "\\p{N}+";
        return 0;
    }
    if (!strcmp(type, "Split")) {
        const char *beh = json_string_value(json_object_get(p, "behavior"));
        if (!beh || strcmp(beh, "Isolated") || json_is_true(json_object_get(p, "invert")))
            return err_set(err, ERR_UNSUPPORTED, "Split pre-tokenizer with behavior %s is not supported (only Isolated)",
                           beh ? beh : "(none)");
        json_t *pat = json_object_get(p, "pattern");
        const char *re = json_string_value(json_object_get(pat, "Regex"));
        const char *lit = json_string_value(json_object_get(pat, "String"));
        if (re) {
            srcs[(*n)++] = re;
            return 0;
        }
        if (!lit) return err_set(err, ERR_FORMAT, "Split pre-tokenizer without a pattern");
        char *esc = malloc(2 * strlen(lit) + 1), *o = esc;
        if (!esc) return err_set(err, ERR_NOMEM, "out of memory");
        for (const char *c = lit; *c; c++) {
            if ((unsigned char)*c < 0x80 && !((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
                *o++ = '\\';
            *o++ = *c;
        }
        *o = 0;
        owned[*n] = esc;
        srcs[(*n)++] = esc;
        return 0;
    }
    return err_set(err, ERR_UNSUPPORTED, "pre_tokenizer type %s is not supported", type);
}

static int from_json_root(Tokenizer *t, json_t *root, Err *err) {
    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm))
        return err_set(err, ERR_UNSUPPORTED, "normalizer %s is not supported",
                       json_string_value(json_object_get(norm, "type")) ? json_string_value(json_object_get(norm, "type"))
                                                                          : "?");
    json_t *model = json_object_get(root, "model");
    const char *type = json_string_value(json_object_get(model, "type"));
    if (!json_is_object(model) || (type && strcmp(type, "BPE")))
        return err_set(err, ERR_UNSUPPORTED, "model type %s is not supported (only BPE)", type ? type : "(missing)");
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab) || !json_is_array(merges))
        return err_set(err, ERR_FORMAT, "model has no vocab object or merges array");
    const char *key;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach(vocab, key, klen, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= TOK_MAX_VOCAB)
            return err_set(err, ERR_FORMAT, "vocab entry '%.*s' has no valid id", (int)klen, key);
        if (set_token_text(t, (int32_t)json_integer_value(v), key, klen, err)) return err->code;
    }
    json_t *added = json_object_get(root, "added_tokens");
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i), *c = json_object_get(a, "content");
        json_int_t id = json_integer_value(json_object_get(a, "id"));
        if (!json_is_string(c) || id < 0 || id >= TOK_MAX_VOCAB) return err_set(err, ERR_FORMAT, "added token %zu is malformed", i);
        if (tok_set_token(t, (int32_t)id, json_string_value(c), json_string_length(c), err)) return err->code;
        t->special[id] = 1;
    }
    if (build_vocab_plain_first(t, err)) return err->code;
    for (size_t i = 0; i < json_array_size(merges); i++) {
        json_t *m = json_array_get(merges, i);
        const char *a, *b;
        size_t na, nb;
        if (json_is_string(m)) {
            a = json_string_value(m);
            const char *sp = strchr(a, ' ');
            if (!sp) return err_set(err, ERR_FORMAT, "merge %zu ('%s') has no space", i, a);
            na = (size_t)(sp - a);
            b = sp + 1;
            nb = strlen(b);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            na = strlen(a);
            nb = strlen(b);
        } else {
            return err_set(err, ERR_FORMAT, "merge %zu is neither \"a b\" nor [a, b]", i);
        }
        if (add_merge_text(t, a, na, b, nb, (int32_t)i, err)) return err->code;
    }
    t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    if (unk) t->unk = tok_lookup(t, unk, strlen(unk));
    const char *srcs[TOK_MAX_STAGES];
    char *owned[TOK_MAX_STAGES] = {0};
    int n = 0, rc = parse_pretok(json_object_get(root, "pre_tokenizer"), srcs, owned, &n, &t->add_prefix_space, err);
    if (!rc) rc = tok_set_stages(t, "custom", srcs, n, err);
    for (int i = 0; i < TOK_MAX_STAGES; i++) free(owned[i]);
    if (rc) return rc;
    name_pattern(t);
    if (tok_finish_specials(t, err)) return err->code;
    /* BOS from a TemplateProcessing post-processor ("<|begin_of_text|> $A") */
    json_t *post = json_object_get(root, "post_processor"), *single = json_object_get(post, "single");
    const char *ptype = json_string_value(json_object_get(post, "type"));
    if (ptype && !strcmp(ptype, "TemplateProcessing") && json_array_size(single) > 0) {
        const char *bos = json_string_value(json_object_get(json_object_get(json_array_get(single, 0), "SpecialToken"), "id"));
        if (bos && tokenizer_special_id(t, bos) >= 0) {
            t->bos = tokenizer_special_id(t, bos);
            t->add_bos = 1;
        }
    }
    guess_bos_eos(t);
    return 0;
}

int tokenizer_from_json(Tokenizer **out, const char *json, size_t len, Err *err) {
    *out = NULL;
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    if (!root) return err_set(err, ERR_FORMAT, "tokenizer.json does not parse: %s (line %d)", je.text, je.line);
    Tokenizer *t = tok_new(err);
    int rc = t ? from_json_root(t, root, err) : ERR_NOMEM;
    json_decref(root);
    if (rc) {
        tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

static json_t *pretok_json(const Tokenizer *t) {
    json_t *list = json_array();
    const char *gpt2 = tokenizer_pattern_regex("gpt2");
    int last_is_gpt2 = t->n_stages > 0 && !strcmp(t->stage_src[t->n_stages - 1], gpt2);
    int n = t->n_stages - last_is_gpt2;
    for (int i = 0; i < n; i++) {
        const char *s = t->stage_src[i];
        if (!strcmp(s, "\\p{N}") || !strcmp(s, "\\p{N}+")) {
            json_array_append_new(list, json_pack("{s:s, s:b}", "type", "Digits", "individual_digits", s[5] == 0));
        } else {
            json_array_append_new(list, json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex", s,
                                                  "behavior", "Isolated", "invert", 0));
        }
    }
    json_array_append_new(list, json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space",
                                          t->add_prefix_space, "trim_offsets", 1, "use_regex", last_is_gpt2));
    if (json_array_size(list) == 1) {
        json_t *only = json_incref(json_array_get(list, 0));
        json_decref(list);
        return only;
    }
    return json_pack("{s:s, s:o}", "type", "Sequence", "pretokenizers", list);
}

int tokenizer_save_json(const Tokenizer *t, const char *path, Err *err) {
    json_t *vocab = json_object(), *merges = json_array(), *added = json_array();
    char *buf = malloc(2 * 4096 + 16), *key = NULL;
    size_t cap = 4096;
    int rc = 0;
    if (!vocab || !merges || !added || !buf) rc = err_set(err, ERR_NOMEM, "out of memory");
    for (int id = 0; !rc && id < t->n_vocab; id++) {
        if (t->len[id] == UINT32_MAX) continue;
        if (2 * t->len[id] + 1 > 2 * cap) {
            cap = t->len[id] + 1;
            free(buf);
            buf = malloc(2 * cap + 16);
            if (!buf) {
                rc = err_set(err, ERR_NOMEM, "out of memory");
                break;
            }
        }
        size_t n = tok_bytelevel_encode(t->pool + t->off[id], t->len[id], buf);
        buf[n] = 0;
        if (t->special[id]) {
            json_array_append_new(added, json_pack("{s:i, s:s%, s:b, s:b, s:b, s:b, s:b}", "id", id, "content",
                                                   (const char *)t->pool + t->off[id], (size_t)t->len[id], "single_word", 0,
                                                   "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1));
            if (json_object_get(vocab, buf)) continue; /* an ordinary token already has these bytes */
        }
        json_object_set_new(vocab, buf, json_integer(id));
    }
    for (int32_t i = 0; !rc && i < t->n_merges; i++) {
        int32_t l = t->merge_l[i], r = t->merge_r[i];
        char *s = malloc(2 * ((size_t)t->len[l] + t->len[r]) + 2);
        if (!s) {
            rc = err_set(err, ERR_NOMEM, "out of memory");
            break;
        }
        size_t n = tok_bytelevel_encode(t->pool + t->off[l], t->len[l], s);
        s[n++] = ' ';
        n += tok_bytelevel_encode(t->pool + t->off[r], t->len[r], s + n);
        json_array_append_new(merges, json_stringn(s, n));
        free(s);
    }
    free(buf);
    json_t *root = NULL;
    if (!rc) {
        json_t *model = json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:O, s:O}", "type", "BPE", "dropout",
                                  "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0,
                                  "byte_fallback", 0, "ignore_merges", t->ignore_merges, "vocab", vocab, "merges", merges);
        json_t *dec = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 1,
                                "use_regex", 1);
        root = json_pack("{s:s, s:n, s:n, s:O, s:n, s:o, s:n, s:o, s:o}", "version", "1.0", "truncation", "padding",
                         "added_tokens", added, "normalizer", "pre_tokenizer", pretok_json(t), "post_processor", "decoder",
                         dec, "model", model);
        if (!root) rc = err_set(err, ERR_NOMEM, "cannot build tokenizer.json");
    }
    if (!rc) {
        key = json_dumps(root, JSON_INDENT(1));
        if (!key) rc = err_set(err, ERR_NOMEM, "cannot serialize tokenizer.json");
    }
    if (!rc) rc = file_write_atomic(path, key, strlen(key), err);
    free(key);
    json_decref(root);
    json_decref(vocab);
    json_decref(merges);
    json_decref(added);
    return rc;
}

/* ---- tiktoken ------------------------------------------------------------ */
static int b64(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

static long b64_decode(const char *s, size_t n, uint8_t *out) {
    uint32_t acc = 0;
    int bits = 0;
    long o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=') break;
        int v = b64(s[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return o;
}

static int add_special(Tokenizer *t, int32_t id, const char *text, Err *err) {
    if (tok_set_token(t, id, text, strlen(text), err)) return err->code;
    t->special[id] = 1;
    return 0;
}

int tokenizer_from_tiktoken(Tokenizer **out, const char *text, size_t len, const char *pattern, Err *err) {
    *out = NULL;
    Tokenizer *t = tok_new(err);
    if (!t) return ERR_NOMEM;
    uint8_t buf[1024];
    int rc = 0, line = 0, n = 0;
    for (size_t i = 0; i < len && !rc;) {
        size_t e = i;
        while (e < len && text[e] != '\n') e++;
        line++;
        size_t sp = i;
        while (sp < e && text[sp] != ' ') sp++;
        if (e > i && !(e == i + 1 && text[i] == '\r')) {
            /* the rank: decimal digits up to the line's end (or a '\r' before
             * it), read within [sp+1, e): text need not be NUL-terminated */
            size_t d = sp + 1, de = e > i && text[e - 1] == '\r' ? e - 1 : e;
            long rank = sp < e && d < de ? 0 : -1;
            for (; rank >= 0 && d < de; d++)
                rank = text[d] >= '0' && text[d] <= '9' && rank < TOK_MAX_VOCAB ? rank * 10 + (text[d] - '0') : -1;
            long k = sp - i <= 4 * sizeof buf / 3 ? b64_decode(text + i, sp - i, buf) : -1;
            if (sp >= e || rank < 0 || rank >= TOK_MAX_VOCAB || k <= 0)
                rc = err_set(err, ERR_FORMAT, "tiktoken line %d is not '<base64> <rank>'", line);
            else
                rc = tok_set_token(t, (int32_t)rank, buf, (size_t)k, err);
            n++;
        }
        i = e + 1;
    }
    if (!rc && n == 0) rc = err_set(err, ERR_FORMAT, "not a tokenizer: no tiktoken ranks, no JSON, no GGUF header");
    if (!rc) rc = tok_build_vocab(t, err);
    /* Rank files have no merge list: any two tokens whose concatenation is a
     * token merge, at that token's rank -- tiktoken's own rule. */
    for (int32_t id = 0; !rc && id < t->n_vocab; id++) {
        if (t->len[id] == UINT32_MAX) continue;
        const uint8_t *b = t->pool + t->off[id];
        for (uint32_t k = 1; k < t->len[id] && !rc; k++) {
            int32_t l = tok_lookup(t, b, k), r = tok_lookup(t, b + k, t->len[id] - k);
            if (l >= 0 && r >= 0) rc = tok_add_merge(t, l, r, id, id, err);
        }
    }
    int base = t->n_vocab;
    t->ignore_merges = 1; /* tiktoken takes a piece that is a token as is */
    if (!rc) {
        const char *pat = pattern ? pattern : base == 50256 ? "gpt2" : "llama3";
        rc = tok_set_pattern(t, pat, err);
    }
    if (!rc && base == 50256) rc = add_special(t, 50256, "<|endoftext|>", err);
    if (!rc && base == 100256) {
        const char *names[] = {"<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"};
        for (int i = 0; i < 4 && !rc; i++) rc = add_special(t, 100257 + i, names[i], err);
        if (!rc) rc = add_special(t, 100276, "<|endofprompt|>", err);
    }
    if (!rc && base == 128000) { /* Llama 3's tokenizer.model: its 256 specials follow the ranks */
        const char *names[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                               "<|reserved_special_token_1|>", "<|reserved_special_token_2|>",
                               "<|reserved_special_token_3|>", "<|start_header_id|>", "<|end_header_id|>",
                               "<|reserved_special_token_4|>", "<|eot_id|>"};
        for (int i = 0; i < 10 && !rc; i++) rc = add_special(t, 128000 + i, names[i], err);
        for (int i = 5; i < 251 && !rc; i++) {
            char name[48];
            snprintf(name, sizeof name, "<|reserved_special_token_%d|>", i);
            rc = add_special(t, 128005 + i, name, err);
        }
    }
    if (!rc) rc = tok_finish_specials(t, err);
    if (rc) {
        tokenizer_free(t);
        return rc;
    }
    guess_bos_eos(t);
    *out = t;
    return 0;
}

/* ---- GGUF ------------------------------------------------------------------ */
int tokenizer_from_gguf(Tokenizer **out, const GGUFFile *g, Err *err) {
    *out = NULL;
    GGUFStr model;
    if (gguf_get_str(g, "tokenizer.ggml.model", &model, err)) return err_wrap(err, "GGUF has no tokenizer");
    if (!gguf_str_eq(model, "gpt2"))
        return err_set(err, ERR_UNSUPPORTED, "GGUF tokenizer model '%.*s' is not supported (only gpt2 byte-level BPE)",
                       (int)model.len, model.ptr);
    uint64_t nt = 0, nm = 0, ntype = 0;
    int et;
    if (gguf_get_arr_info(g, "tokenizer.ggml.tokens", &et, &nt, err)) return err->code;
    if (gguf_get_arr_info(g, "tokenizer.ggml.merges", &et, &nm, err)) return err->code;
    int have_types = gguf_find_key(g, "tokenizer.ggml.token_type") >= 0;
    if (have_types && gguf_get_arr_info(g, "tokenizer.ggml.token_type", &et, &ntype, err)) return err->code;
    if (nt >= (1u << 30)) return err_set(err, ERR_FORMAT, "GGUF has %llu tokens", (unsigned long long)nt);
    Tokenizer *t = tok_new(err);
    if (!t) return ERR_NOMEM;
    int rc = 0;
    for (uint64_t i = 0; i < nt && !rc; i++) {
        GGUFStr s;
        rc = gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s, err);
        if (!rc) rc = set_token_text(t, (int32_t)i, s.ptr, s.len, err);
        int64_t ty = 1;
        if (!rc && have_types && i < ntype) rc = gguf_get_arr_int(g, "tokenizer.ggml.token_type", i, &ty, err);
        if (!rc && (ty == 3 || ty == 4)) t->special[i] = 1; /* control and user-defined: matched before splitting */
        if (!rc && ty == 2) t->unk = (int32_t)i;
    }
    if (!rc) rc = build_vocab_plain_first(t, err);
    for (uint64_t i = 0; i < nm && !rc; i++) {
        GGUFStr s;
        rc = gguf_get_arr_str(g, "tokenizer.ggml.merges", i, &s, err);
        if (rc) break;
        const char *sp = memchr(s.ptr, ' ', s.len);
        if (!sp) {
            rc = err_set(err, ERR_FORMAT, "GGUF merge %llu has no space", (unsigned long long)i);
            break;
        }
        rc = add_merge_text(t, s.ptr, (size_t)(sp - s.ptr), sp + 1, s.len - (size_t)(sp - s.ptr) - 1, (int32_t)i, err);
    }
    const char *pat = "gpt2";
    int64_t v;
    if (!rc && gguf_find_key(g, "tokenizer.ggml.pre") >= 0) {
        GGUFStr pre;
        rc = gguf_get_str(g, "tokenizer.ggml.pre", &pre, err);
        if (!rc) {
            if (gguf_str_eq(pre, "gpt2") || gguf_str_eq(pre, "gpt-2") || gguf_str_eq(pre, "default"))
                pat = "gpt2";
            else if (gguf_str_eq(pre, "llama-bpe") || gguf_str_eq(pre, "llama3") || gguf_str_eq(pre, "llama-v3"))
                pat = "llama3";
            else if (gguf_str_eq(pre, "smollm") || gguf_str_eq(pre, "starcoder") || gguf_str_eq(pre, "refact"))
                pat = "smollm";
            else
                rc = err_set(err, ERR_UNSUPPORTED, "GGUF pre-tokenizer '%.*s' is not supported (gpt2, llama-bpe, smollm)",
                             (int)pre.len, pre.ptr);
        }
    }
    if (!rc) rc = tok_set_pattern(t, pat, err);
    if (!rc && !strcmp(pat, "llama3")) t->ignore_merges = 1; /* as llama.cpp and HF do for Llama 3 */
    t->add_bos = !strcmp(pat, "llama3");
    if (!rc && gguf_find_key(g, "tokenizer.ggml.add_bos_token") >= 0 &&
        !gguf_get_int(g, "tokenizer.ggml.add_bos_token", &v, err))
        t->add_bos = v != 0;
    if (!rc && gguf_find_key(g, "tokenizer.ggml.bos_token_id") >= 0 &&
        !gguf_get_int(g, "tokenizer.ggml.bos_token_id", &v, err) && v >= 0 && v < t->n_vocab)
        t->bos = (int32_t)v;
    if (!rc && gguf_find_key(g, "tokenizer.ggml.eos_token_id") >= 0 &&
        !gguf_get_int(g, "tokenizer.ggml.eos_token_id", &v, err) && v >= 0 && v < t->n_vocab)
        t->eos = (int32_t)v;
    if (!rc) rc = tok_finish_specials(t, err);
    if (rc) {
        tokenizer_free(t);
        return rc;
    }
    guess_bos_eos(t);
    *out = t;
    return 0;
}

int tokenizer_to_gguf(const Tokenizer *t, GGUFWriter *w, Err *err) {
    static const struct { const char *ours, *gguf; } pre[] = {{"gpt2", "gpt2"}, {"llama3", "llama-bpe"}, {"smollm", "smollm"}};
    const char *pname = NULL;
    for (size_t i = 0; i < sizeof pre / sizeof *pre; i++)
        if (!strcmp(t->pattern_name, pre[i].ours)) pname = pre[i].gguf;
    if (!pname)
        return err_set(err, ERR_UNSUPPORTED, "GGUF has no name for the split pattern '%s'", t->pattern_name);
    if (t->add_prefix_space) return err_set(err, ERR_UNSUPPORTED, "GGUF gpt2 tokenizers cannot add a prefix space");
    size_t n = (size_t)t->n_vocab, nm = (size_t)t->n_merges;
    char **str = calloc(n + nm, sizeof *str);
    uint64_t *len = calloc(n + nm, sizeof *len);
    int32_t *type = calloc(n ? n : 1, sizeof *type);
    int rc = 0;
    if (!str || !len || !type) rc = err_set(err, ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        char name[32];
        if (t->len[i] == UINT32_MAX) {
            len[i] = (uint64_t)snprintf(name, sizeof name, "<unused_%zu>", i);
            str[i] = strdup(name);
            type[i] = 5; /* unused */
        } else if (t->special[i]) {
            str[i] = malloc(t->len[i] + 1);
            if (str[i]) memcpy(str[i], t->pool + t->off[i], t->len[i]);
            len[i] = t->len[i];
            type[i] = 3; /* control */
        } else {
            str[i] = malloc(2 * (size_t)t->len[i] + 1);
            if (str[i]) len[i] = tok_bytelevel_encode(t->pool + t->off[i], t->len[i], str[i]);
            type[i] = 1; /* normal */
        }
        if (!str[i]) rc = err_set(err, ERR_NOMEM, "out of memory");
    }
    for (size_t m = 0; m < nm && !rc; m++) {
        int32_t l = t->merge_l[m], r = t->merge_r[m];
        char *s = malloc(2 * ((size_t)t->len[l] + t->len[r]) + 2);
        if (!s) {
            rc = err_set(err, ERR_NOMEM, "out of memory");
            break;
        }
        size_t k = tok_bytelevel_encode(t->pool + t->off[l], t->len[l], s);
        s[k++] = ' ';
        k += tok_bytelevel_encode(t->pool + t->off[r], t->len[r], s + k);
        str[n + m] = s;
        len[n + m] = k;
    }
    if (!rc && (gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2") || gguf_writer_set_str(w, "tokenizer.ggml.pre", pname) ||
                gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)str, len, n) ||
                gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", type, n) ||
                gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)(str + n), len + n, nm) ||
                (t->bos >= 0 && gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)t->bos)) ||
                (t->eos >= 0 && gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)t->eos)) ||
                gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", tokenizer_add_bos(t))))
        rc = err_set(err, ERR_NOMEM, "out of memory writing tokenizer metadata");
    for (size_t i = 0; str && i < n + nm; i++) free(str[i]);
    free(str);
    free(len);
    free(type);
    return rc;
}
