/* Chat templates: ChatML, Llama 3 and Llama 2, chosen from the Jinja text in
 * tokenizer.chat_template by their marker tokens and rendered here in C
 * (jarip has no Jinja interpreter). The renderings follow the reference
 * templates of those families exactly, so the prompt ids equal those of
 * llama.cpp / transformers' apply_chat_template. */
#include "infer/infer.h"

#include <stdlib.h>
#include <string.h>

const char *chat_style_name(ChatStyle s) {
    switch (s) {
    case CHAT_CHATML: return "chatml";
    case CHAT_LLAMA3: return "llama3";
    case CHAT_LLAMA2: return "llama2";
    default: return "none";
    }
}

static const char *find_n(const char *hay, size_t len, const char *needle) {
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= len; i++)
        if (!memcmp(hay + i, needle, nl)) return hay + i;
    return NULL;
}

/* Copy a Jinja string literal's text (from p up to the delimiter `<|im_end|>`)
 * into out, turning the escapes \n, \t, \', \" and \\ into their characters. */
static void unescape_until(const char *p, const char *end, char *out, size_t cap) {
    size_t o = 0;
    while (p < end && o + 1 < cap) {
        char ch = *p++;
        if (ch == '\\' && p < end) {
            char e = *p++;
            ch = e == 'n' ? '\n' : e == 't' ? '\t' : e;
        }
        out[o++] = ch;
    }
    out[o] = 0;
}

void chat_template_init(ChatTemplate *t, const char *tmpl, size_t len, const char *bos, const char *eos) {
    memset(t, 0, sizeof *t);
    snprintf(t->bos, sizeof t->bos, "%s", bos ? bos : "");
    snprintf(t->eos, sizeof t->eos, "%s", eos ? eos : "");
    if (!tmpl || !len) {
        t->style = CHAT_CHATML;
        return;
    }
    if (find_n(tmpl, len, "<|start_header_id|>")) t->style = CHAT_LLAMA3;
    else if (find_n(tmpl, len, "<|im_start|>")) t->style = CHAT_CHATML;
    else if (find_n(tmpl, len, "[INST]")) t->style = CHAT_LLAMA2;
    else t->style = CHAT_NONE;
    if (t->style == CHAT_LLAMA2 && !t->bos[0]) snprintf(t->bos, sizeof t->bos, "<s>");
    if (t->style == CHAT_LLAMA2 && !t->eos[0]) snprintf(t->eos, sizeof t->eos, "</s>");
    /* a ChatML template that writes a system turn when the conversation has
     * none (SmolLM2, Qwen): its text is the literal after '<|im_start|>system' */
    if (t->style == CHAT_CHATML && find_n(tmpl, len, "!= 'system'")) {
        const char *open = find_n(tmpl, len, "'<|im_start|>system\\n");
        size_t skip = open ? strlen("'<|im_start|>system\\n") : 0;
        if (!open) {
            open = find_n(tmpl, len, "'<|im_start|>system\n");
            skip = strlen("'<|im_start|>system\n");
        }
        if (open) {
            const char *body = open + skip, *end = find_n(body, len - (size_t)(body - tmpl), "<|im_end|>");
            if (end) unescape_until(body, end, t->default_system, sizeof t->default_system);
        }
    }
}

/* Growable output string. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} Buf;

static void put(Buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void puts_(Buf *b, const char *s) { put(b, s, strlen(s)); }

/* Jinja's `| trim` / Python's strip(): drop leading and trailing white space. */
static void put_trimmed(Buf *b, const char *s) {
    size_t n = strlen(s);
    while (n && strchr(" \t\n\r\f\v", s[0])) s++, n--;
    while (n && strchr(" \t\n\r\f\v", s[n - 1])) n--;
    put(b, s, n);
}

/* ChatML and Llama 3 share one shape: per message an opening marker, the
 * role, a separator, the content and a closing marker; the assistant's turn
 * is opened the same way. Llama 3 writes bos first and trims contents. */
typedef struct {
    const char *open, *mid, *close;
    int trim;
} TurnShape;

static const TurnShape chatml_shape = {"<|im_start|>", "\n", "<|im_end|>\n", 0};
static const TurnShape llama3_shape = {"<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>", 1};

static void render_turns(const TurnShape *sh, Buf *b, const ChatMessage *m, int n, int add) {
    for (int i = 0; i < n; i++) {
        puts_(b, sh->open);
        puts_(b, m[i].role);
        puts_(b, sh->mid);
        if (sh->trim) put_trimmed(b, m[i].content);
        else puts_(b, m[i].content);
        puts_(b, sh->close);
    }
    if (add) {
        puts_(b, sh->open);
        puts_(b, "assistant");
        puts_(b, sh->mid);
    }
}

/* SmolLM2-style ChatML templates add their own system turn when the
 * conversation starts without one. */
static void render_chatml(const ChatTemplate *t, Buf *b, const ChatMessage *m, int n, int add) {
    if (t->default_system[0] && n > 0 && strcmp(m[0].role, "system") != 0) {
        ChatMessage sys = {"system", t->default_system};
        render_turns(&chatml_shape, b, &sys, 1, 0);
    }
    render_turns(&chatml_shape, b, m, n, add);
}

/* Meta's Llama 2 template: the system prompt folds into the first user turn
 * between <<SYS>> markers; each user turn is bos [INST] ... [/INST], each
 * answer is followed by eos. The assistant opening is implicit. */
static void render_llama2(const ChatTemplate *t, Buf *b, const ChatMessage *m, int n) {
    int i = 0;
    const char *sys = NULL;
    if (n > 0 && !strcmp(m[0].role, "system")) sys = m[0].content, i = 1;
    for (int first = 1; i < n; i++) {
        if (!strcmp(m[i].role, "user")) {
            puts_(b, t->bos);
            puts_(b, "[INST] ");
            if (first && sys) {
                puts_(b, "<<SYS>>\n");
                puts_(b, sys);
                puts_(b, "\n<</SYS>>\n\n");
            }
            put_trimmed(b, m[i].content);
            puts_(b, " [/INST]");
            first = 0;
        } else if (!strcmp(m[i].role, "assistant")) {
            puts_(b, " ");
            put_trimmed(b, m[i].content);
            puts_(b, " ");
            puts_(b, t->eos);
        }
    }
}

int chat_render(const ChatTemplate *t, const ChatMessage *msgs, int n, int add_assistant, char **out, Err *err) {
    *out = NULL;
    for (int i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content ||
            (strcmp(msgs[i].role, "system") && strcmp(msgs[i].role, "user") && strcmp(msgs[i].role, "assistant")))
            return err_set(err, ERR_INVALID, "chat message %d: role must be system, user or assistant", i);
    Buf b = {0};
    puts_(&b, "");
    switch (t->style) {
    case CHAT_LLAMA3: /* Meta's template: bos once, then the turns */
        puts_(&b, t->bos);
        render_turns(&llama3_shape, &b, msgs, n, add_assistant);
        break;
    case CHAT_LLAMA2: render_llama2(t, &b, msgs, n); break;
    case CHAT_NONE: /* plain transcript: what a base model can continue */
        for (int i = 0; i < n; i++) {
            puts_(&b, msgs[i].role);
            puts_(&b, ": ");
            puts_(&b, msgs[i].content);
            puts_(&b, "\n");
        }
        if (add_assistant) puts_(&b, "assistant:");
        break;
    default: render_chatml(t, &b, msgs, n, add_assistant); break;
    }
    if (b.oom) {
        free(b.p);
        return err_set(err, ERR_NOMEM, "out of memory rendering the chat");
    }
    *out = b.p;
    return 0;
}
