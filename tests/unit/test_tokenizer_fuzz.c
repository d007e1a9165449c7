/* Bounded-time round-trip fuzz: random byte strings built from raw bytes,
 * fragments of many scripts, white space, digits, special-token text and
 * broken UTF-8, through every tokenizer fixture and a freshly trained one.
 * decode(encode(x)) == x, warm cache == fresh, parallel == serial. */
#include <stdio.h>
#include <time.h>

#include "test_tokenizer_fuzz.h"

static const char *frag[] = {
    "the", " the", "The", "'s", "'S", "'ll", " ", "  ", "\t", "\n", "\r\n", "\n\n", "\u3000", "\u00a0", "\u2028",
    "안녕", "하세요", "ㅋㅋ", "ㅠ", "\u1100\u1161", "日本", "語", "カタ", "中文", "👍", "🏽", "\u200d", "👨‍👩‍👧", "❤️",
    "0", "12", "345", "٣", "½", "<|endoftext|>", "<|im_start|>", "<|", "|>", "\xff", "\xc3", "\xe2\x82", "\x80",
    "\xed\xa0\x80", "\xf0\x9f", "\x00", "\x01", "!", "...", "?!", "(", "{", "//", "#", "é", "ñ", "Ω", "ſ", "K",
};

static uint64_t rs = 88172645463325252ULL;
static uint64_t rnd(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}

static size_t make_input(uint8_t *buf, size_t cap) {
    size_t n = 0, want = rnd() % (rnd() % 8 == 0 ? 3000 : 120);
    int mode = (int)(rnd() % 3);
    while (n < want) {
        if (mode == 0 || (mode == 2 && rnd() % 4 == 0)) {
            if (n < cap) buf[n++] = (uint8_t)rnd();
        } else {
            const char *f = frag[rnd() % (sizeof frag / sizeof *frag)];
            size_t L = f[0] ? strlen(f) : 1; /* "\x00" has length 1 */
            if (n + L > cap) break;
            memcpy(buf + n, f, L);
            n += L;
        }
    }
    return n;
}

int main(void) {
    char root[700], path[800];
    snprintf(root, sizeof root, "%s", __FILE__);
    char *s = strstr(root, "/tests/unit/");
    if (s) *s = 0;
    const char *names[] = {"gpt2_hf.json", "llama3_hf.json", NULL};
    Tokenizer *toks[3] = {0};
    Err err = {0};
    for (int i = 0; names[i]; i++) {
        snprintf(path, sizeof path, "%s/tests/fixtures/tokenizer/%s", root, names[i]);
        if (tokenizer_load(&toks[i], path, &err)) {
            fprintf(stderr, "FAIL load %s: %s\n", path, err.msg);
            return 1;
        }
    }
    /* a jarip-trained tokenizer over fuzz text itself */
    const char *tmpd = getenv("JARIP_TEST_DIR");
    snprintf(path, sizeof path, "%s/fuzz_corpus.txt", tmpd ? tmpd : "/tmp");
    if (tmpd) mkdir_p(tmpd, &err);
    static uint8_t buf[1 << 16];
    FILE *f = fopen(path, "wb");
    for (int i = 0; f && i < 400; i++) fwrite(buf, 1, make_input(buf, sizeof buf), f);
    if (f) fclose(f);
    const char *in[] = {path};
    TokTrainOptions o = {.inputs = in, .n_inputs = 1, .vocab_size = 600, .pattern = "llama3", .threads = 2};
    if (tokenizer_train(&toks[2], &o, &err)) {
        fprintf(stderr, "FAIL train: %s\n", err.msg);
        return 1;
    }
    long iters = 0, failures = 0;
    double budget = 3.0; /* seconds, all tokenizers together */
    clock_t t0 = clock();
    for (int k = 0; k < 3; k++) {
        TokEncoder *warm = tok_encoder_new(toks[k], &err);
        while ((double)(clock() - t0) / CLOCKS_PER_SEC < budget * (k + 1) / 3) {
            size_t n = make_input(buf, sizeof buf);
            const char *bad = tok_fuzz_one(toks[k], warm, buf, n);
            iters++;
            if (bad && failures++ < 5) {
                fprintf(stderr, "FAIL tokenizer %d: %s on %zu bytes:", k, bad, n);
                for (size_t i = 0; i < n && i < 64; i++) fprintf(stderr, " %02x", buf[i]);
                fputc('\n', stderr);
            }
        }
        tok_encoder_free(warm);
        tokenizer_free(toks[k]);
    }
    printf("%ld inputs, %ld failures\n", iters, failures);
    return failures != 0;
}
