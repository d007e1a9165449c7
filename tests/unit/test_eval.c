/* src/eval on a random llama-tiny and gpt2-tiny (no files needed):
 *  - model_forward_cached_rows: the logits of every row from out0 on equal
 *    what model_forward_cached gives position by position (one token at a
 *    time through the cache), and out0 == n fills the cache without logits;
 *  - a chunk run in batches of 7 gives the logits of one batch of the chunk;
 *    three chunks in one pass (each its own cache) the logits of each alone;
 *  - eval_nll is -log softmax; NllSum gives exp(mean) and llama-perplexity's
 *    error; eval_n_chunks refuses fewer than two chunks;
 *  - llama.cpp's 16-bit log-probability rows reconstruct log p within half
 *    a step, and a file written by LogitsWriter reads back (tokens, rows,
 *    CRC); perplexity with --save-logits equals perplexity without it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "eval/eval.h"

#define N 24

static void fill_tokens(int32_t *t, int n, int V) {
    for (int i = 0; i < n; i++) t[i] = (int32_t)((i * 37 + 11) % V);
}

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fabsf(a[i] - b[i]) > m ? fabsf(a[i] - b[i]) : m;
    return m;
}

static void test_rows(const char *preset) {
    Config c;
    Model m;
    Err err = {0};
    KVCache kv;
    CHECK(!config_preset(&c, preset, &err), "%s", err.msg);
    CHECK(!model_create(&m, &c, 0, &err), "%s", err.msg);
    model_init_weights(&m, 7);
    const int V = c.vocab_size;
    int32_t tok[N];
    fill_tokens(tok, N, V);
    float *rows = malloc((size_t)N * V * sizeof *rows), *one = malloc((size_t)N * V * sizeof *one);
    CHECK(!model_plan_activations(&m, 1, N, 0, &err) && !kvcache_create(&kv, &c, N, DT_F32, &err), "%s", err.msg);
    /* rows 5..N-1 of one call */
    CHECK(!model_forward_cached_rows(&m, &kv, tok, N, 5, rows, &err), "%s", err.msg);
    CHECK(kv.len == N, "cache holds %d", kv.len);
    /* position by position */
    kv.len = 0;
    for (int i = 0; i < N; i++) CHECK(!model_forward_cached(&m, &kv, tok + i, 1, one + (size_t)i * V, &err), "%s", err.msg);
    float d = max_abs_diff(rows, one + (size_t)5 * V, (size_t)(N - 5) * V);
    CHECK(d < 1e-4f, "%s: rows from 5 differ from one-at-a-time by %g", preset, d);
    /* out0 == n: the cache fills, no logits are written */
    kv.len = 0;
    CHECK(!model_forward_cached_rows(&m, &kv, tok, 10, 10, NULL, &err) && kv.len == 10, "out0 == n");
    CHECK(!model_forward_cached_rows(&m, &kv, tok + 10, N - 10, 0, rows, &err), "%s", err.msg);
    d = max_abs_diff(rows, one + (size_t)10 * V, (size_t)(N - 10) * V);
    CHECK(d < 1e-4f, "%s: after a logit-less prefix: %g", preset, d);
    CHECK(model_forward_cached_rows(&m, &kv, tok, 2, 3, rows, &err) != 0, "out0 > n accepted");
    kvcache_free(&kv);
    /* a chunk in batches of 7 = one batch */
    EvalOptions o;
    eval_options_default(&o);
    o.ctx = N;
    o.kv_type = DT_F32;
    ChunkRunner a, b;
    CHECK(!chunk_runner_create(&a, &m, &o, &err), "%s", err.msg);
    CHECK(!chunk_runner_run(&a, tok, 1, 3, &err), "%s", err.msg);
    memcpy(rows, a.logits, (size_t)(N - a.first) * V * sizeof *rows);
    chunk_runner_free(&a);
    o.batch = 7;
    CHECK(!chunk_runner_create(&b, &m, &o, &err), "%s", err.msg);
    CHECK(!chunk_runner_run(&b, tok, 1, 3, &err), "%s", err.msg);
    d = max_abs_diff(rows, b.logits, (size_t)(N - b.first) * V);
    CHECK(d < 1e-4f, "%s: batches of 7 differ by %g", preset, d);
    chunk_runner_free(&b);
    /* three chunks per pass (--batch 3 ctx), each its own cache: each
     * chunk's logits those of the chunk run alone; fewer chunks than the
     * runner takes are fine, more are refused */
    int32_t tok3[3 * N];
    fill_tokens(tok3, 3 * N, V - 1);
    const size_t per = (size_t)(N - N / 2) * V;
    float *alone = malloc(3 * per * sizeof *alone);
    o.batch = N;
    CHECK(!chunk_runner_create(&a, &m, &o, &err) && a.n_seq == 1, "%s", err.msg);
    for (int i = 0; i < 3; i++) {
        CHECK(!chunk_runner_run(&a, tok3 + i * N, 1, 3, &err), "%s", err.msg);
        memcpy(alone + i * per, a.logits, per * sizeof *alone);
    }
    chunk_runner_free(&a); /* runners of one model share its activations: one at a time */
    ChunkRunner s3;
    o.batch = 3 * N;
    CHECK(!chunk_runner_create(&s3, &m, &o, &err) && s3.n_seq == 3, "%s (n_seq %d)", err.msg, s3.n_seq);
    CHECK(!chunk_runner_run(&s3, tok3, 3, 3, &err), "%s", err.msg);
    d = max_abs_diff(alone, s3.logits, 3 * per);
    CHECK(d < 1e-4f, "%s: three chunks in one pass differ from each alone by %g", preset, d);
    CHECK(!chunk_runner_run(&s3, tok3 + N, 2, 3, &err), "%s", err.msg);
    d = max_abs_diff(alone + per, s3.logits, 2 * per);
    CHECK(d < 1e-4f, "%s: the last two in a pass of two differ by %g", preset, d);
    CHECK(chunk_runner_run(&s3, tok3, 4, 3, &err) != 0, "4 chunks in a runner of 3 accepted");
    chunk_runner_free(&s3);
    free(alone);
    free(rows);
    free(one);
    model_free(&m);
}

static void test_nll(void) {
    float z[4] = {1.0f, 2.0f, 0.5f, -1.0f};
    double lse = log(exp(1.0) + exp(2.0) + exp(0.5) + exp(-1.0));
    CHECK(fabs(eval_nll(z, 4, 2) - (lse - 0.5)) < 1e-6, "nll %g vs %g", eval_nll(z, 4, 2), lse - 0.5);
    /* a vocabulary-wide row (the vector exp and its scalar tail: V % 8 == 3,
     * the max in the tail), logits over [-40, 22.5], against exp in double:
     * within 1e-6 nats */
    enum { V = 49155 };
    float *row = malloc(V * sizeof *row);
    for (int i = 0; i < V; i++) row[i] = 32.5f * rng_uniform(5, (uint64_t)i) - 40.0f + (i == V - 1 ? 30.0f : 0.0f);
    double mx = -INFINITY, sum = 0.0;
    for (int i = 0; i < V; i++) mx = row[i] > mx ? row[i] : mx;
    for (int i = 0; i < V; i++) sum += exp((double)row[i] - mx);
    for (int t = 0; t < V; t += 12289) {
        const double want = -((double)(row[t] - (float)mx) - log(sum)); /* the difference in float, as llama.cpp */
        CHECK(fabs(eval_nll(row, V, t) - want) < 1e-6, "nll over %d logits, token %d: %.9f vs %.9f", V, t,
              eval_nll(row, V, t), want);
    }
    free(row);
    NllSum s = {0};
    const double v[4] = {1.0, 2.0, 3.0, 2.0};
    for (int i = 0; i < 4; i++) s.nll += v[i], s.nll2 += v[i] * v[i], s.count++;
    CHECK(fabs(nll_ppl(&s) - exp(2.0)) < 1e-12, "ppl");
    /* var = mean(x^2) - mean^2 = 4.5 - 4 = 0.5; error = ppl sqrt(0.5 / 3) */
    CHECK(fabs(nll_ppl_err(&s) - exp(2.0) * sqrt(0.5 / 3)) < 1e-12, "ppl error %g", nll_ppl_err(&s));
    EvalOptions o;
    eval_options_default(&o);
    o.ctx = 10;
    int nc = 0;
    Err err = {0};
    CHECK(eval_n_chunks(19, &o, &nc, &err) != 0 && strstr(err.msg, "two chunks"), "19 tokens at ctx 10: %s", err.msg);
    CHECK(!eval_n_chunks(39, &o, &nc, &err) && nc == 3, "39 tokens: %d chunks", nc);
    o.max_chunks = 2;
    CHECK(!eval_n_chunks(39, &o, &nc, &err) && nc == 2, "--chunks 2: %d", nc);
}

static void test_logits_file(void) {
    Config c;
    Model m;
    Err err = {0};
    CHECK(!config_preset(&c, "llama-tiny", &err) && !model_create(&m, &c, 0, &err), "%s", err.msg);
    model_init_weights(&m, 3);
    const int V = c.vocab_size, ctx = 16, n = 3 * ctx + 5;
    int32_t tok[3 * 16 + 5];
    fill_tokens(tok, n, V);
    EvalOptions o;
    eval_options_default(&o);
    o.ctx = ctx;
    o.kv_type = DT_F32;
    char path[256];
    snprintf(path, sizeof path, "/tmp/jarip_test_eval_%d.logits", (int)getpid());
    LogitsWriter w;
    PplResult plain, saved;
    CHECK(!eval_perplexity(&m, tok, (size_t)n, &o, NULL, NULL, NULL, &plain, &err), "%s", err.msg);
    CHECK(!logits_writer_open(&w, path, ctx, V, 3, tok, &err), "%s", err.msg);
    CHECK(!eval_perplexity(&m, tok, (size_t)n, &o, &w, NULL, NULL, &saved, &err), "%s", err.msg);
    CHECK(!logits_writer_finish(&w, 1, &err), "%s", err.msg);
    CHECK(plain.n_chunk == 3 && plain.scored == 3 * 7, "%d chunks, %ld scored", plain.n_chunk, plain.scored);
    CHECK(fabs(plain.ppl / saved.ppl - 1) < 1e-6, "ppl %g, with --save-logits %g", plain.ppl, saved.ppl);
    LogitsFile f;
    CHECK(!logits_file_open(&f, path, &err), "%s", err.msg);
    CHECK(f.ctx == ctx && f.n_vocab == V && f.n_chunk == 3 && !memcmp(f.tokens, tok, 3 * ctx * sizeof *tok), "header");
    /* each stored row: log p within half a quantization step of the truth */
    ChunkRunner r;
    CHECK(!chunk_runner_create(&r, &m, &o, &err) && !chunk_runner_run(&r, tok + ctx, 1, -1, &err), "%s", err.msg);
    const int nv = f.nv, scored = ctx - 1 - ctx / 2;
    float worst = 0, worst_step = 0;
    for (int i = 0; i < scored; i++) {
        const uint16_t *row = f.rows + ((size_t)1 * scored + i) * nv;
        float scale, minlp;
        memcpy(&scale, row, 4);
        memcpy(&minlp, row + 2, 4);
        const float *z = r.logits + (size_t)i * V;
        for (int t = 0; t < V; t++) {
            const double lp = -eval_nll(z, V, t);
            if (lp < minlp) continue; /* below max - 16: stored as the floor */
            const float d = fabsf((float)lp - (scale * row[4 + t] + minlp));
            if (d > worst) worst = d, worst_step = scale;
        }
    }
    CHECK(worst <= 0.5f * worst_step + 1e-5f, "stored log p off by %g (step %g)", worst, worst_step);
    chunk_runner_free(&r);
    logits_file_close(&f);
    unlink(path);
    model_free(&m);
}

int main(void) {
    test_rows("llama-tiny");
    test_rows("gpt2-tiny");
    test_nll();
    test_logits_file();
    if (failures) fprintf(stderr, "%d failure(s)\n", failures);
    else printf("test_eval: ok\n");
    return failures != 0;
}
