/* Pre-tokenization: split patterns compiled with PCRE2 (UTF + UCP, JIT),
 * UTF-8 validation, and the invalid-byte policy. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

/* Hugging Face compiles its patterns with Oniguruma, whose \s is Unicode
 * White_Space. PCRE2's \s under UCP also takes U+180E, so \s is spelled out
 * as this class to give the same pieces. */
#define WS_CLASS "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

static const char GPT2_HF[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char LLAMA3_HF[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char DIGIT_HF[] = "\\p{N}";

const char *tokenizer_pattern_regex(const char *name) {
    if (!name) return NULL;
    if (!strcmp(name, "gpt2")) return GPT2_HF;
    if (!strcmp(name, "llama3")) return LLAMA3_HF;
    if (!strcmp(name, "digit")) return DIGIT_HF;
    return NULL;
}

char *tok_regex_from_hf(const char *src) {
    size_t n = strlen(src);
    char *out = malloc(n * (sizeof WS_CLASS + 4) + 1);
    if (!out) return NULL;
    size_t o = 0;
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '\\' && i + 1 < n) {
            char d = src[i + 1];
            if (d == 's' || d == 'S') {
                const char *pre = in_class ? "" : (d == 's' ? "[" : "[^");
                o += (size_t)sprintf(out + o, "%s%s%s", pre, WS_CLASS, in_class ? "" : "]");
                /* \S inside a class cannot be spelled out; keep PCRE2's (differs only on U+180E) */
                if (in_class && d == 'S') {
                    o -= strlen(WS_CLASS);
                    out[o++] = '\\';
                    out[o++] = 'S';
                }
            } else {
                out[o++] = c;
                out[o++] = d;
            }
            i++;
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            out[o++] = c;
            if (i + 1 < n && src[i + 1] == '^') out[o++] = src[++i];
            if (i + 1 < n && src[i + 1] == ']') out[o++] = src[++i]; /* literal ] first */
            continue;
        }
        if (c == ']' && in_class) in_class = 0;
        out[o++] = c;
    }
    out[o] = 0;
    return out;
}

int tok_set_stages(Tokenizer *t, const char *name, const char *const *srcs, int n, Err *err) {
    if (n > TOK_MAX_STAGES) return err_set(err, ERR_UNSUPPORTED, "more than %d split stages", TOK_MAX_STAGES);
    for (int i = 0; i < t->n_stages; i++) {
        free(t->stage_src[i]);
        pcre2_code_free(t->stage_re[i]);
    }
    t->n_stages = 0;
    snprintf(t->pattern_name, sizeof t->pattern_name, "%s", name);
    for (int i = 0; i < n; i++) {
        char *pcre = tok_regex_from_hf(srcs[i]);
        char *keep = strdup(srcs[i]);
        if (!pcre || !keep) {
            free(pcre);
            free(keep);
            return err_set(err, ERR_NOMEM, "out of memory");
        }
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)pcre, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
        free(pcre);
        if (!re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            free(keep);
            return err_set(err, ERR_FORMAT, "split pattern '%s' does not compile: %s", srcs[i], (char *)msg);
        }
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if JIT is unavailable */
        t->stage_src[i] = keep;
        t->stage_re[i] = re;
        t->n_stages = i + 1;
    }
    return 0;
}

int tok_set_pattern(Tokenizer *t, const char *name, Err *err) {
    if (!strcmp(name, "gpt2")) {
        const char *s[] = {GPT2_HF};
        return tok_set_stages(t, name, s, 1, err);
    }
    if (!strcmp(name, "llama3") || !strcmp(name, "llama-bpe") || !strcmp(name, "cl100k")) {
        const char *s[] = {LLAMA3_HF};
        return tok_set_stages(t, "llama3", s, 1, err);
    }
    if (!strcmp(name, "smollm")) {
        const char *s[] = {DIGIT_HF, GPT2_HF};
        return tok_set_stages(t, name, s, 2, err);
    }
    return err_set(err, ERR_UNSUPPORTED, "unknown split pattern '%s' (known: gpt2, llama3, smollm)", name);
}

int tok_splitter_init(TokSplitter *s, const Tokenizer *t, Err *err) {
    memset(s, 0, sizeof *s);
    for (int i = 0; i < t->n_stages; i++) {
        s->md[i] = pcre2_match_data_create(1, NULL);
        if (!s->md[i]) {
            tok_splitter_free(s);
            return err_set(err, ERR_NOMEM, "out of memory");
        }
    }
    return 0;
}

void tok_splitter_free(TokSplitter *s) {
    for (int i = 0; i < TOK_MAX_STAGES; i++) pcre2_match_data_free(s->md[i]);
    memset(s, 0, sizeof *s);
}

static size_t utf8_char_len(uint8_t c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

static void split_stage(const Tokenizer *t, TokSplitter *s, int k, const uint8_t *san, const uint8_t *orig, size_t len,
                        TokPieceFn fn, void *ctx) {
    if (k == t->n_stages) {
        fn(ctx, orig, len);
        return;
    }
    pcre2_code *re = t->stage_re[k];
    pcre2_match_data *md = s->md[k];
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    size_t pos = 0, last = 0;
    while (pos < len) {
        /* The text was validated (or sanitized) once up front, so each match
         * skips PCRE2's own whole-subject UTF check. */
        int rc = pcre2_jit_match(re, san, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        /* no JIT, or its stack ran out on a huge piece: the interpreter
         * (heap-based) gives the same match */
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) rc = pcre2_match(re, san, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) { /* cannot split: keep the bytes (as one piece) and report */
            s->failed = rc;
            break;
        }
        size_t a = ov[0], b = ov[1];
        if (a > last) split_stage(t, s, k + 1, san + last, orig + last, a - last, fn, ctx);
        if (b > a) {
            split_stage(t, s, k + 1, san + a, orig + a, b - a, fn, ctx);
            last = b;
            pos = b;
        } else {
            pos = a + utf8_char_len(san[a]);
        }
    }
    if (last < len) split_stage(t, s, k + 1, san + last, orig + last, len - last, fn, ctx);
}

void tok_split(const Tokenizer *t, TokSplitter *s, const uint8_t *san, const uint8_t *orig, size_t len, TokPieceFn fn,
               void *ctx) {
    if (len) split_stage(t, s, 0, san, orig, len, fn, ctx);
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF), 0 when none starts there. */
static size_t utf8_seq(const uint8_t *p, size_t n) {
    uint8_t c = p[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (p[2] & 0xC0) != 0x80) return 0;
        uint8_t lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return p[1] >= lo && p[1] <= hi ? 3 : 0;
    }
    if (c < 0xF5) {
        if (n < 4 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
        uint8_t lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return p[1] >= lo && p[1] <= hi ? 4 : 0;
    }
    return 0;
}

size_t tok_utf8_valid_prefix(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (!(w & 0x8080808080808080ULL)) {
                i += 8;
                continue;
            }
        }
        size_t k = utf8_seq(p + i, n - i);
        if (!k) return i;
        i += k;
    }
    return n;
}

size_t tok_utf8_sanitize(const uint8_t *src, size_t n, uint8_t *dst) {
    size_t bad = 0, i = 0;
    while (i < n) {
        size_t k = utf8_seq(src + i, n - i);
        if (!k) {
            dst[i++] = 0x01;
            bad++;
            continue;
        }
        memcpy(dst + i, src + i, k);
        i += k;
    }
    return bad;
}
