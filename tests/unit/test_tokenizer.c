/* Tokenizer exactness against Hugging Face `tokenizers` ids (fixtures made
 * by scripts/make_tokenizer_fixtures.py), round trips, save/reload, and
 * the parallel encoder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

#include "check.h"

static char fixdir[900], rootdir[800];

typedef struct {
    uint8_t *b;
    size_t n;
} Bytes;

static Bytes cases[128];
static int ncases;

static void load_cases(void) {
    char path[1100];
    snprintf(path, sizeof path, "%s/cases.hex", fixdir);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    static char line[1 << 16];
    while (fgets(line, sizeof line, f) && ncases < 128) {
        size_t L = strcspn(line, "\n");
        Bytes *c = &cases[ncases++];
        c->n = L / 2;
        c->b = malloc(c->n + 1);
        for (size_t i = 0; i < c->n; i++) {
            unsigned v;
            sscanf(line + 2 * i, "%2x", &v);
            c->b[i] = (uint8_t)v;
        }
    }
    fclose(f);
}

static int has_byte(const Tokenizer *t, uint8_t b) {
    int32_t *ids = NULL;
    size_t n = 0;
    Err err = {0};
    tokenizer_encode(t, &b, 1, 0, &ids, &n, &err);
    free(ids);
    return n == 1;
}

/* Compare our ids with the reference file, line by line. */
static void check_ids(const Tokenizer *t, const char *name, const char *idsfile) {
    char path[1100];
    snprintf(path, sizeof path, "%s/%s", fixdir, idsfile);
    FILE *f = fopen(path, "r");
    CHECK(f, "cannot open %s", path);
    if (!f) return;
    static char line[1 << 17];
    int k = 0, bad = 0;
    int skipped = 0;
    while (fgets(line, sizeof line, f) && k < ncases) {
        if (line[0] == '-') { /* the reference could not take this input */
            k++;
            skipped++;
            continue;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        Err err = {0};
        int rc = tokenizer_encode(t, cases[k].b, cases[k].n, 1, &ids, &n, &err);
        CHECK(rc == 0, "%s case %d: %s", name, k, err.msg);
        size_t m = 0;
        char *p = line;
        int same = 1;
        for (;;) {
            char *e;
            long v = strtol(p, &e, 10);
            if (e == p) break;
            p = e;
            if (m >= n || ids[m] != v) same = 0;
            m++;
        }
        if (m != n) same = 0;
        if (!same) {
            bad++;
            fprintf(stderr, "%s case %d differs (%zu ids, reference %zu)\n  jarip:", name, k, n, m);
            for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n  ref:   %.300s", line);
        }
        CHECK(same, "%s: case %d ids differ from the reference", name, k);
        /* round trip */
        char *out = NULL;
        size_t olen = 0;
        CHECK(tokenizer_decode(t, ids, n, &out, &olen, &err) == 0, "decode: %s", err.msg);
        /* a vocabulary without some byte (SmolLM2 lacks those never seen in
         * UTF-8) drops it, as Hugging Face does; the round trip is promised
         * for byte-complete vocabularies */
        int complete = 1;
        for (size_t i = 0; i < cases[k].n; i++) complete &= has_byte(t, cases[k].b[i]);
        if (complete)
            CHECK(olen == cases[k].n && memcmp(out, cases[k].b, olen) == 0, "%s case %d: decode(encode(x)) != x", name, k);
        free(out);
        free(ids);
        k++;
    }
    fclose(f);
    CHECK(k == ncases, "%s: %d reference lines for %d cases", name, k, ncases);
    printf("%-10s %d/%d cases equal to the reference\n", name, k - bad - skipped, k - skipped);
}

/* Save as tokenizer.json, reload, and expect the same ids everywhere. */
static void check_save_reload(const Tokenizer *t, const char *name) {
    char path[1100];
    const char *tmp = getenv("JARIP_TEST_DIR");
    snprintf(path, sizeof path, "%s/tok_%s_saved.json", tmp ? tmp : "/tmp", name);
    Err err = {0};
    if (tmp) mkdir_p(tmp, &err);
    CHECK(tokenizer_save_json(t, path, &err) == 0, "save: %s", err.msg);
    Tokenizer *r = NULL;
    CHECK(tokenizer_load(&r, path, &err) == 0, "reload %s: %s", path, err.msg);
    if (!r) return;
    CHECK(!strcmp(tokenizer_pattern_name(r), tokenizer_pattern_name(t)), "pattern %s became %s",
          tokenizer_pattern_name(t), tokenizer_pattern_name(r));
    CHECK(tokenizer_vocab_size(r) == tokenizer_vocab_size(t), "vocab size changed");
    for (int k = 0; k < ncases; k++) {
        int32_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        tokenizer_encode(t, cases[k].b, cases[k].n, 1, &a, &na, &err);
        tokenizer_encode(r, cases[k].b, cases[k].n, 1, &b, &nb, &err);
        CHECK(na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a)), "%s: case %d differs after save/reload", name, k);
        free(a);
        free(b);
    }
    tokenizer_free(r);
}

/* The parallel encoder must give exactly the serial ids. */
static void check_parallel(const Tokenizer *t, const char *name) {
    size_t total = 0;
    for (int rep = 0; rep < 40; rep++)
        for (int k = 0; k < ncases; k++) total += cases[k].n + 1;
    uint8_t *big = malloc(total), *p = big;
    for (int rep = 0; rep < 40; rep++)
        for (int k = 0; k < ncases; k++) {
            memcpy(p, cases[(k + rep) % ncases].b, cases[(k + rep) % ncases].n);
            p += cases[(k + rep) % ncases].n;
            *p++ = "\nx\n "[rep % 4];
        }
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    Err err = {0};
    CHECK(tokenizer_encode(t, big, total, 1, &a, &na, &err) == 0, "%s", err.msg);
    CHECK(tokenizer_encode_parallel(t, big, total, 1, 4, &b, &nb, &err) == 0, "%s", err.msg);
    CHECK(na == nb && !memcmp(a, b, na * sizeof *a), "%s: parallel encode differs (%zu vs %zu ids)", name, na, nb);
    free(a);
    free(b);
    free(big);
}

/* Through GGUF metadata and back: same ids. */
static void check_gguf_roundtrip(const Tokenizer *t, const char *name) {
    GGUFWriter *w = gguf_writer_create();
    Err err = {0};
    CHECK(w && tokenizer_to_gguf(t, w, &err) == 0, "%s: to_gguf: %s", name, err.msg);
    char path[1100];
    const char *tmp = getenv("JARIP_TEST_DIR");
    snprintf(path, sizeof path, "%s/tok_%s.gguf", tmp ? tmp : "/tmp", name);
    CHECK(gguf_writer_write(w, path, &err) == 0, "%s", err.msg);
    gguf_writer_free(w);
    Tokenizer *r = NULL;
    CHECK(tokenizer_load(&r, path, &err) == 0, "%s: reload gguf: %s", name, err.msg);
    if (!r) return;
    CHECK(tokenizer_eos_id(r) == tokenizer_eos_id(t), "eos changed through GGUF");
    for (int k = 0; k < ncases; k++) {
        int32_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        tokenizer_encode(t, cases[k].b, cases[k].n, 1, &a, &na, &err);
        tokenizer_encode(r, cases[k].b, cases[k].n, 1, &b, &nb, &err);
        CHECK(na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a)), "%s: case %d differs after GGUF round trip", name, k);
        free(a);
        free(b);
    }
    tokenizer_free(r);
}

static void check_specials(const Tokenizer *t) {
    int32_t eot = tokenizer_special_id(t, "<|endoftext|>");
    CHECK(eot >= 0 && tokenizer_is_special(t, eot), "no <|endoftext|>");
    CHECK(tokenizer_eos_id(t) == eot, "eos %d != <|endoftext|> %d", tokenizer_eos_id(t), eot);
    int32_t *ids = NULL;
    size_t n = 0;
    Err err = {0};
    tokenizer_encode(t, "a<|endoftext|>", 14, 0, &ids, &n, &err);
    int found = 0;
    for (size_t i = 0; i < n; i++) found |= ids[i] == eot;
    CHECK(!found && n > 2, "allow_special=0 must encode the text of a special token as bytes");
    free(ids);
    CHECK(tokenizer_token_bytes(t, -1, NULL) == NULL && tokenizer_token_bytes(t, 1 << 30, NULL) == NULL,
          "token_bytes out of range must be NULL");
    int32_t bad = tokenizer_vocab_size(t);
    char *out = NULL;
    size_t ol;
    CHECK(tokenizer_decode(t, &bad, 1, &out, &ol, &err) != 0, "decode of an id past the vocabulary must fail");
}

static void check_bad_files(void) {
    Err err = {0};
    Tokenizer *t = NULL;
    const char *tmp = getenv("JARIP_TEST_DIR");
    char path[1100];
    snprintf(path, sizeof path, "%s/tok_bad.json", tmp ? tmp : "/tmp");
    const char *bad[] = {"{", "{\"model\": {\"type\": \"WordPiece\"}}", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, "
                         "\"merges\": [\"a b\"]}}", "not base64!! 3\n", "{\"model\": {\"type\": \"BPE\", \"vocab\": "
                         "{\"a\": -4}, \"merges\": []}}",
                         "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}" /* no tokens at all */};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        file_write_atomic(path, bad[i], strlen(bad[i]), &err);
        memset(&err, 0, sizeof err);
        CHECK(tokenizer_load(&t, path, &err) != 0 && t == NULL && err.msg[0], "bad tokenizer %zu loaded", i);
    }
    CHECK(tokenizer_load(&t, "/nonexistent/tok.json", &err) != 0, "missing file loaded");
    /* BOS from a TemplateProcessing post-processor */
    const char *bosjson = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 3}, \"merges\": "
                          "[\"a b\"]}, \"added_tokens\": [{\"id\": 2, \"content\": \"<s>\", \"special\": true}], "
                          "\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": "
                          "{\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}]}}";
    CHECK(tokenizer_from_json(&t, bosjson, strlen(bosjson), &err) == 0, "%s", err.msg);
    if (t) {
        CHECK(tokenizer_bos_id(t) == 2 && tokenizer_add_bos(t), "TemplateProcessing BOS not found");
        int32_t *ids = NULL;
        size_t n = 0;
        tokenizer_encode(t, "ab<s>ba", 7, 1, &ids, &n, &err);
        CHECK(n == 4 && ids[0] == 3 && ids[1] == 2 && ids[2] == 1 && ids[3] == 0, "tiny tokenizer ids");
        free(ids);
        tokenizer_free(t);
    }
}

int main(void) {
    snprintf(rootdir, sizeof rootdir, "%s", __FILE__);
    char *s = strstr(rootdir, "/tests/unit/");
    if (s) *s = 0;
    snprintf(fixdir, sizeof fixdir, "%s/tests/fixtures/tokenizer", rootdir);
    load_cases();
    const char *names[] = {"gpt2_hf", "llama3_hf"};
    for (int i = 0; i < 2; i++) {
        char path[1100], ids[64];
        snprintf(path, sizeof path, "%s/%s.json", fixdir, names[i]);
        snprintf(ids, sizeof ids, "%s.ids", names[i]);
        Tokenizer *t = NULL;
        Err err = {0};
        CHECK(tokenizer_load(&t, path, &err) == 0, "load %s: %s", path, err.msg);
        if (!t) continue;
        check_ids(t, names[i], ids);
        check_save_reload(t, names[i]);
        check_parallel(t, names[i]);
        check_specials(t);
        if (i == 0) check_gguf_roundtrip(t, names[i]);
        tokenizer_free(t);
    }
    {
        char path[1100];
        snprintf(path, sizeof path, "%s/llama3_hf.tiktoken", fixdir);
        Tokenizer *t = NULL;
        Err err = {0};
        CHECK(tokenizer_load(&t, path, &err) == 0, "load %s: %s", path, err.msg);
        if (t) {
            CHECK(!strcmp(tokenizer_pattern_name(t), "llama3"), "tiktoken pattern %s", tokenizer_pattern_name(t));
            check_ids(t, "tiktoken", "tiktoken.ids");
            tokenizer_free(t);
        }
    }
    char gg[1000];
    snprintf(gg, sizeof gg, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", rootdir);
    FILE *probe = fopen(gg, "rb");
    if (!probe) {
        printf("SKIP SmolLM2 exactness: %s is absent (run scripts/fetch_smollm2.sh)\n", gg);
    } else {
        fclose(probe);
        Tokenizer *t = NULL;
        Err err = {0};
        CHECK(tokenizer_load(&t, gg, &err) == 0, "load %s: %s", gg, err.msg);
        if (t) {
            CHECK(!strcmp(tokenizer_pattern_name(t), "smollm"), "SmolLM2 pattern is %s", tokenizer_pattern_name(t));
            CHECK(tokenizer_vocab_size(t) == 49152, "SmolLM2 vocab %d", tokenizer_vocab_size(t));
            CHECK(tokenizer_bos_id(t) == 1 && tokenizer_eos_id(t) == 2 && !tokenizer_add_bos(t), "SmolLM2 bos/eos");
            check_ids(t, "smollm2", "smollm2.ids");
            check_save_reload(t, "smollm2");
            check_parallel(t, "smollm2");
            check_gguf_roundtrip(t, "smollm2");
            tokenizer_free(t);
        }
    }
    check_bad_files();
    for (int k = 0; k < ncases; k++) free(cases[k].b);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
