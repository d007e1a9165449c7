/* Shards and the data pipeline: prepare (formats, determinism across
 * thread counts, split, document round trip), shard verification
 * (checksum, truncation, magic, vocab), and the shard loader. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/data.h"
#include "tokenizer/tokenizer.h"

#include "check.h"

static char tmp[512];

static void path_of(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", tmp, name); }

static void write_file(const char *name, const char *text, size_t len) {
    char p[700];
    path_of(p, sizeof p, name);
    Err err = {0};
    CHECK(file_write_atomic(p, text, len, &err) == 0, "%s", err.msg);
}

static int prepare(const Tokenizer *t, const char *in, const char *out, int format, int threads, double val,
                   uint64_t shard_tokens, PrepareStats *st, Err *err) {
    char ip[700], op[700];
    path_of(ip, sizeof ip, in);
    path_of(op, sizeof op, out);
    rm_rf(op);
    const char *inputs[] = {ip};
    PrepareOptions o = {.tok = t, .inputs = inputs, .n_inputs = 1, .out_dir = op, .val_fraction = val,
                        .format = format, .threads = threads, .shard_tokens = shard_tokens};
    return data_prepare(&o, st, err);
}

static int files_equal(const char *a, const char *b) {
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    Err err = {0};
    if (file_read_all(a, &x, &nx, &err) || file_read_all(b, &y, &ny, &err)) {
        free(x);
        return 0;
    }
    int same = nx == ny && !memcmp(x, y, nx);
    free(x);
    free(y);
    return same;
}

/* All tokens of a split through the loader's public window API is not
 * enough to see every token, so read the shards directly. */
static size_t split_tokens(const char *dir, const char *prefix, int32_t **out) {
    size_t n = 0, cap = 0;
    *out = NULL;
    for (int i = 0;; i++) {
        char p[800];
        snprintf(p, sizeof p, "%s/%s_%06d.bin", dir, prefix, i);
        ShardView v;
        Err err = {0};
        if (shard_map(p, 0, &v, &err)) break;
        if (n + v.h.n_tokens > cap) {
            cap = (n + v.h.n_tokens) * 2;
            *out = realloc(*out, cap * sizeof **out);
        }
        for (uint64_t k = 0; k < v.h.n_tokens; k++)
            (*out)[n++] = v.h.width == 2 ? ((const uint16_t *)v.tokens)[k] : (int32_t)((const uint32_t *)v.tokens)[k];
        shard_unmap(&v);
    }
    return n;
}

static void test_lines_roundtrip(const Tokenizer *t) {
    /* 300 documents, blank lines between some, CRLF on some */
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    for (int i = 0; i < 300; i++) {
        len += (size_t)snprintf(text + len, cap - len, "doc %d: 안녕 hello ｗｏｒｌｄ %d 👍🏽%s\n", i, i * 7919,
                                i % 3 ? "" : "\r");
        if (i % 10 == 0) len += (size_t)snprintf(text + len, cap - len, "\n  \n");
    }
    write_file("lines.txt", text, len);
    PrepareStats a, b;
    Err err = {0};
    CHECK(prepare(t, "lines.txt", "sh_lines1", DATA_FORMAT_LINES, 1, 0.1, 1000, &a, &err) == 0, "%s", err.msg);
    CHECK(prepare(t, "lines.txt", "sh_lines2", DATA_FORMAT_LINES, 3, 0.1, 1000, &b, &err) == 0, "%s", err.msg);
    CHECK(a.docs[0] + a.docs[1] == 300, "documents %llu + %llu != 300", (unsigned long long)a.docs[0],
          (unsigned long long)a.docs[1]);
    CHECK(a.docs[1] == 30, "val documents %llu, want 30 (10%%)", (unsigned long long)a.docs[1]);
    CHECK(a.shards[0] > 1, "expected several train shards with 1000 tokens each, got %d", a.shards[0]);
    CHECK(!memcmp(&a, &b, sizeof a), "stats differ between 1 and 3 threads");
    for (int i = 0; i < a.shards[0]; i++) {
        char p1[800], p2[800];
        snprintf(p1, sizeof p1, "%s/sh_lines1/train_%06d.bin", tmp, i);
        snprintf(p2, sizeof p2, "%s/sh_lines2/train_%06d.bin", tmp, i);
        CHECK(files_equal(p1, p2), "shard %d differs between 1 and 3 threads", i);
    }
    /* decode every document: the multiset equals the non-blank lines */
    char dir[700];
    path_of(dir, sizeof dir, "sh_lines1");
    int32_t *tr = NULL, *va = NULL;
    size_t ntr = split_tokens(dir, "train", &tr), nva = split_tokens(dir, "val", &va);
    CHECK(ntr == a.tokens[0] && nva == a.tokens[1], "token counts %zu/%zu vs stats", ntr, nva);
    int32_t eot = tokenizer_eos_id(t);
    int seen[300] = {0}, docs = 0;
    for (int s = 0; s < 2; s++) {
        int32_t *ids = s ? va : tr;
        size_t n = s ? nva : ntr, st = 0;
        CHECK(n > 0 && ids[n - 1] == eot, "split %d does not end with end-of-text", s);
        for (size_t i = 0; i < n; i++) {
            if (ids[i] != eot) continue;
            char *out = NULL;
            size_t ol = 0;
            CHECK(tokenizer_decode(t, ids + st, i - st, &out, &ol, &err) == 0, "%s", err.msg);
            int k = -1;
            if (out && sscanf(out, "doc %d:", &k) == 1 && k >= 0 && k < 300) {
                char want[256];
                snprintf(want, sizeof want, "doc %d: 안녕 hello ｗｏｒｌｄ %d 👍🏽", k, k * 7919);
                CHECK(!strcmp(out, want), "document %d decodes to '%s'", k, out);
                seen[k]++;
            }
            docs++;
            free(out);
            st = i + 1;
        }
    }
    int all = docs == 300;
    for (int k = 0; k < 300; k++) all &= seen[k] == 1;
    CHECK(all, "documents are not exactly the 300 input lines (%d found)", docs);
    /* the loader reads them, windows are reproducible and shifted */
    DataLoader *dl = NULL;
    CHECK(loader_open(&dl, dir, tokenizer_vocab_size(t), 0, 42, &err) == 0, "%s", err.msg);
    if (dl) {
        CHECK(loader_tokens(dl, SPLIT_TRAIN) == ntr && loader_tokens(dl, SPLIT_VAL) == nva, "loader token counts");
        int T = 64, B = 8;
        int32_t in1[8 * 64], tg1[8 * 64], in2[8 * 64], tg2[8 * 64];
        CHECK(loader_batch(dl, SPLIT_TRAIN, 5, 0, B, T, in1, tg1, &err) == 0, "%s", err.msg);
        CHECK(loader_batch(dl, SPLIT_TRAIN, 5, 3, 2, T, in2, tg2, &err) == 0, "%s", err.msg);
        CHECK(!memcmp(in1 + 3 * T, in2, 2 * T * sizeof *in2), "rows 3-4 of a batch differ when asked alone");
        int ok = 1;
        for (int r = 0; r < B; r++) {
            /* each row is a window of the concatenated train tokens */
            int found = 0;
            for (size_t s = 0; s + T + 1 <= ntr && !found; s++)
                found = !memcmp(tr + s, in1 + r * T, T * sizeof *tr) && !memcmp(tr + s + 1, tg1 + r * T, T * sizeof *tr);
            ok &= found;
        }
        CHECK(ok, "a batch row is not a window of the training tokens");
        CHECK(loader_batch(dl, SPLIT_VAL, 0, 0, 1, 32, in2, tg2, &err) == 0, "%s", err.msg);
        loader_close(dl);
    }
    dl = NULL;
    CHECK(loader_open(&dl, dir, 300, 0, 42, &err) != 0 && strstr(err.msg, "vocab"),
          "tokens >= the model's vocab must be refused: %s", err.msg);
    free(tr);
    free(va);
    free(text);
}

static void test_text_and_jsonl(const Tokenizer *t) {
    /* text: one document per file, cut in pieces; ids equal the whole-file encoding */
    size_t cap = 400000, len = 0;
    char *text = malloc(cap);
    while (len < cap - 200)
        len += (size_t)snprintf(text + len, cap - len, "Line %zu of the text, 한국어 문장과 123 numbers.\n%s", len,
                                len % 7 ? "" : "  indented\n\n");
    write_file("doc.txt", text, len);
    PrepareStats st;
    Err err = {0};
    CHECK(prepare(t, "doc.txt", "sh_text", DATA_FORMAT_TEXT, 2, 0, 0, &st, &err) == 0, "%s", err.msg);
    int32_t *ids = NULL, *want = NULL;
    size_t nw = 0;
    char dir[700];
    path_of(dir, sizeof dir, "sh_text");
    size_t n = split_tokens(dir, "train", &ids);
    tokenizer_encode(t, text, len, 0, &want, &nw, &err);
    CHECK(n == nw + 1 && !memcmp(ids, want, nw * sizeof *ids) && ids[nw] == tokenizer_eos_id(t),
          "text shards differ from encoding the whole file (%zu vs %zu+1 tokens)", n, nw);
    CHECK(st.docs[0] == 1, "text file is one document, got %llu", (unsigned long long)st.docs[0]);
    free(ids);
    free(want);
    /* jsonl */
    const char *jl = "{\"text\": \"first doc\", \"id\": 1}\n\n{\"text\": \"second\\ndoc \\u00e9\"}\n{\"text\": \"\"}\n";
    write_file("d.jsonl", jl, strlen(jl));
    CHECK(prepare(t, "d.jsonl", "sh_jsonl", DATA_FORMAT_JSONL, 2, 0, 0, &st, &err) == 0, "%s", err.msg);
    CHECK(st.docs[0] == 2, "jsonl documents %llu, want 2 (the empty one skipped)", (unsigned long long)st.docs[0]);
    const char *badjl = "{\"text\": \"ok\"}\n{\"text\": 5}\n";
    write_file("bad.jsonl", badjl, strlen(badjl));
    CHECK(prepare(t, "bad.jsonl", "sh_bad", DATA_FORMAT_JSONL, 1, 0, 0, &st, &err) != 0 && strstr(err.msg, ":2:"),
          "bad jsonl line 2 must be named: %s", err.msg);
    const char *broken = "{\"text\": \"ok\"\n";
    write_file("broken.jsonl", broken, strlen(broken));
    CHECK(prepare(t, "broken.jsonl", "sh_bad", DATA_FORMAT_JSONL, 1, 0, 0, &st, &err) != 0, "broken JSON accepted");
    char bad[800];
    path_of(bad, sizeof bad, "sh_bad");
    struct stat sb;
    CHECK(stat(bad, &sb) != 0, "a failed prepare left its output directory");
    write_file("empty.txt", "", 0);
    CHECK(prepare(t, "empty.txt", "sh_empty", DATA_FORMAT_TEXT, 1, 0, 0, &st, &err) != 0, "empty input accepted");
    write_file("blank.txt", "\n \n\n", 4);
    CHECK(prepare(t, "blank.txt", "sh_empty", DATA_FORMAT_LINES, 1, 0, 0, &st, &err) != 0, "blank lines accepted");
    /* an existing non-empty output is refused */
    char ip[700], op[700];
    path_of(ip, sizeof ip, "doc.txt");
    path_of(op, sizeof op, "sh_text");
    const char *inputs[] = {ip};
    PrepareOptions o = {.tok = t, .inputs = inputs, .n_inputs = 1, .out_dir = op, .format = DATA_FORMAT_TEXT};
    CHECK(data_prepare(&o, &st, &err) != 0, "prepare over an existing output must fail");
    free(text);
}

static void test_corruption(void) {
    char dir[700], p[800];
    path_of(dir, sizeof dir, "sh_wide");
    rm_rf(dir);
    Err err = {0};
    mkdir_p(dir, &err);
    ShardWriter *w = NULL;
    CHECK(shard_writer_open(&w, dir, "train", SPLIT_TRAIN, 70000, 69999, 0, &err) == 0, "%s", err.msg);
    int32_t ids[1000];
    for (int i = 0; i < 1000; i++) ids[i] = (i * 7717) % 70000;
    ids[999] = 69999;
    CHECK(shard_writer_put(w, ids, 1000, &err) == 0, "%s", err.msg);
    int bad_id = 70000;
    CHECK(shard_writer_put(w, &bad_id, 1, &err) != 0, "id past the vocabulary written");
    int ns = 0;
    CHECK(shard_writer_close(w, &ns, &err) == 0 && ns == 1, "close: %s", err.msg);
    snprintf(p, sizeof p, "%s/train_000000.bin", dir);
    ShardView v;
    CHECK(shard_map(p, 70000, &v, &err) == 0, "%s", err.msg);
    CHECK(v.h.width == 4 && v.h.n_tokens == 1000 && v.h.n_docs == 1 && ((const uint32_t *)v.tokens)[1] == 7717,
          "uint32 shard header/contents wrong");
    shard_unmap(&v);
    CHECK(shard_map(p, 1000, &v, &err) != 0 && strstr(err.msg, "vocab"), "vocab limit not enforced");
    char *data = NULL;
    size_t len = 0;
    file_read_all(p, &data, &len, &err);
    char q[800];
    snprintf(q, sizeof q, "%s/val_000000.bin", dir);
    /* corrupt a token */
    data[100] ^= 1;
    file_write_atomic(p, data, len, &err);
    CHECK(shard_map(p, 0, &v, &err) != 0 && strstr(err.msg, "checksum"), "flipped token byte: %s", err.msg);
    data[100] ^= 1;
    /* truncate */
    file_write_atomic(p, data, len - 6, &err);
    CHECK(shard_map(p, 0, &v, &err) != 0 && strstr(err.msg, "truncated"), "truncated shard: %s", err.msg);
    file_write_atomic(p, data, 20, &err);
    CHECK(shard_map(p, 0, &v, &err) != 0 && strstr(err.msg, "truncated"), "truncated header: %s", err.msg);
    /* header */
    data[20] ^= 1;
    file_write_atomic(p, data, len, &err);
    CHECK(shard_map(p, 0, &v, &err) != 0 && strstr(err.msg, "header"), "corrupt header: %s", err.msg);
    data[20] ^= 1;
    data[0] = 'X';
    file_write_atomic(p, data, len, &err);
    CHECK(shard_map(p, 0, &v, &err) != 0 && strstr(err.msg, "magic"), "bad magic: %s", err.msg);
    DataLoader *dl = NULL;
    CHECK(loader_open(&dl, dir, 70000, 0, 1, &err) != 0, "loader opened a corrupt directory");
    /* abort leaves no shard */
    rm_rf(dir);
    mkdir_p(dir, &err);
    CHECK(shard_writer_open(&w, dir, "train", SPLIT_TRAIN, 100, 0, 10, &err) == 0, "%s", err.msg);
    int32_t few[5] = {1, 2, 3, 4, 5};
    shard_writer_put(w, few, 5, &err);
    shard_writer_abort(w);
    struct stat sb;
    CHECK(stat(p, &sb) != 0, "an aborted shard was left behind");
    CHECK(loader_open(&dl, dir, 100, 0, 1, &err) != 0 && strstr(err.msg, "no training tokens"),
          "empty dir: %s", err.msg);
    free(data);
}

int main(void) {
    const char *base = getenv("JARIP_TEST_DIR");
    snprintf(tmp, sizeof tmp, "%s/data_shards", base ? base : "/tmp/jarip_test");
    Err err = {0};
    rm_rf(tmp);
    CHECK(mkdir_p(tmp, &err) == 0, "%s", err.msg);
    char fix[600];
    snprintf(fix, sizeof fix, "%s", __FILE__);
    char *s = strstr(fix, "/tests/unit/");
    if (s) strcpy(s, "/tests/fixtures/tokenizer/gpt2_hf.json");
    Tokenizer *t = NULL;
    CHECK(tokenizer_load(&t, fix, &err) == 0, "%s", err.msg);
    if (t) {
        test_lines_roundtrip(t);
        test_text_and_jsonl(t);
        tokenizer_free(t);
    }
    test_corruption();
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
