/* Batch invariance of model_forward_batch with FWD_ROWS_EXACT (continuous
 * batching in jarip serve): a sequence decoded beside others gets the same
 * logits, bit for bit, as decoded alone, and a prompt processed in other
 * chunks (two tokens or more) gets the same last logits. For Q8_0 and Q4_1
 * (llama.cpp's integer dots at every M) that is also what
 * model_forward_cached computes alone (jarip generate); F16, Q4_K and Q4_0
 * need FWD_ROWS_EXACT (without it, their GEMM path and the f32 matmul of a
 * lone weight sum batched rows in another order than one row: every
 * batched row differed; checked by running the test without the flag).
 *
 * Runs on SmolLM2-135M-Instruct in every type present in models/ with an
 * F16 cache (only Q4_1 and F16 under AddressSanitizer, which is 20x
 * slower); skips a type whose file is absent. NSEQ sequences (more than 4:
 * the batched linears take the 4-row kernels) with prompts of different
 * lengths decode STEPS tokens each. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "infer/infer.h"

#define NSEQ 6
#define STEPS 2
#define CTX 96

/* Prompt of sequence i: a few words, length growing with i. */
static int make_prompt(const InferModel *im, int i, int32_t **ids, size_t *n) {
    char text[512];
    int o = snprintf(text, sizeof text, "Sequence %d:", i);
    for (int w = 0; w < i % 7 + 1 && o < (int)sizeof text - 32; w++) o += snprintf(text + o, sizeof text - o, " word%d", w * i);
    Err err = {0};
    return infer_tokenize(im, text, strlen(text), 1, ids, n, &err);
}

/* Tokens through one sequence's cache as the server runs them. */
static int fwd(Model *m, KVCache *kv, const int32_t *ids, int n, float *logits, Err *err) {
    const SeqSpan one = {kv, ids, n};
    return model_forward_batch(m, &one, 1, logits, FWD_ROWS_EXACT, err);
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static void run_type(const char *type) {
    char rel[128];
    snprintf(rel, sizeof rel, "models/SmolLM2-135M-Instruct.%s.gguf", type);
    char *path = test_root_path(rel);
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("skip %s: %s absent (scripts/fetch_smollm2.sh)\n", type, path);
        free(path);
        return;
    }
    fclose(f);
    InferModel im;
    Err err = {0};
    if (infer_model_open(&im, path, &err)) {
        CHECK(0, "%s: %s", type, err.msg);
        free(path);
        return;
    }
    Model *m = &im.model;
    const int exact_type = !strcmp(type, "Q8_0") || !strcmp(type, "Q4_1");
    int generate_diff = 0;
    const int V = m->cfg.vocab_size;
    CHECK(model_plan_activations(m, 1, CTX, 0, &err) == 0, "plan: %s", err.msg);
    KVCache kv[NSEQ];
    int32_t *ids[NSEQ];
    size_t n[NSEQ];
    float *solo = malloc((size_t)NSEQ * STEPS * V * sizeof(float));  /* (NSEQ, STEPS, V) decoded alone */
    int32_t next[NSEQ][STEPS];                                         /* greedy tokens fed alone */
    float *batch = malloc((size_t)(NSEQ + 1) * V * sizeof(float));    /* (NSEQ + 1, V) one batched step */
    float *tmp = malloc((size_t)V * sizeof(float));
    float *plast = malloc((size_t)NSEQ * V * sizeof(float));          /* (NSEQ, V) prompt in one chunk */
    for (int i = 0; i < NSEQ; i++) {
        CHECK(make_prompt(&im, i, &ids[i], &n[i]) == 0 && n[i] >= 4, "tokenize");
        CHECK(kvcache_create(&kv[i], &m->cfg, CTX, DT_F16, &err) == 0, "cache: %s", err.msg);
        /* alone: the prompt in one chunk, then one token at a time */
        CHECK(fwd(m, &kv[i], ids[i], (int)n[i], tmp, &err) == 0, "%s", err.msg);
        memcpy(plast + (size_t)i * V, tmp, (size_t)V * sizeof(float));
        if (exact_type) { /* the same as jarip generate computes */
            kv[i].len = 0;
            CHECK(model_forward_cached(m, &kv[i], ids[i], (int)n[i], tmp, &err) == 0, "%s", err.msg);
            generate_diff += memcmp(tmp, plast + (size_t)i * V, (size_t)V * sizeof(float)) != 0;
        }
        for (int s = 0; s < STEPS; s++) {
            next[i][s] = argmax(tmp, V);
            CHECK(fwd(m, &kv[i], &next[i][s], 1, solo + ((size_t)i * STEPS + s) * V, &err) == 0, "%s", err.msg);
            memcpy(tmp, solo + ((size_t)i * STEPS + s) * V, (size_t)V * sizeof(float));
        }
    }
    /* the prompts again in chunks of 2 and 3 (never 1: a one-token chunk takes
     * the decoding attention's summation order), last logits compared */
    int chunk_diff = 0;
    for (int i = 0; i < NSEQ; i++) {
        kv[i].len = 0;
        for (size_t p = 0; p < n[i];) {
            size_t k = n[i] - p == 4 ? 2 : n[i] - p < 4 ? n[i] - p : 3;
            CHECK(fwd(m, &kv[i], ids[i] + p, (int)k, tmp, &err) == 0, "%s", err.msg);
            p += k;
        }
        chunk_diff += memcmp(tmp, plast + (size_t)i * V, (size_t)V * sizeof(float)) != 0;
    }
    CHECK(chunk_diff == 0, "%s: %d of %d prompts give other last logits in chunks of 2-3 tokens", type, chunk_diff, NSEQ);
    /* every sequence decoded together: one forward with M = NSEQ rows; at the
     * first step a whole prompt (sequence 0's, on a cache of its own) goes
     * first in the same batch, as the server mixes a new prompt with the
     * decoding rows: its last logits are the prompt's alone */
    int diff = 0, mixed_diff = 0;
    KVCache kx;
    CHECK(kvcache_create(&kx, &m->cfg, CTX, DT_F16, &err) == 0, "cache: %s", err.msg);
    for (int s = 0; s < STEPS; s++) {
        SeqSpan spans[NSEQ + 1];
        const int x = s == 0;
        if (x) spans[0] = (SeqSpan){&kx, ids[0], (int)n[0]};
        for (int i = 0; i < NSEQ; i++) spans[x + i] = (SeqSpan){&kv[i], &next[i][s], 1};
        CHECK(model_forward_batch(m, spans, NSEQ + x, batch, FWD_ROWS_EXACT, &err) == 0, "%s", err.msg);
        if (x) mixed_diff += memcmp(batch, plast, (size_t)V * sizeof(float)) != 0;
        for (int i = 0; i < NSEQ; i++)
            diff += memcmp(batch + (size_t)(x + i) * V, solo + ((size_t)i * STEPS + s) * V, (size_t)V * sizeof(float)) != 0;
    }
    kvcache_free(&kx);
    CHECK(diff == 0, "%s: %d of %d batched rows differ from the same sequence decoded alone", type, diff, NSEQ * STEPS);
    CHECK(mixed_diff == 0, "%s: a prompt batched with decoding rows gives other last logits than alone", type);
    /* a sequence that shares nothing: sizes and errors */
    SeqSpan dup[2] = {{&kv[0], ids[0], 1}, {&kv[0], ids[0], 1}};
    CHECK(model_forward_batch(m, dup, 2, batch, FWD_ROWS_EXACT, &err) != 0, "two spans on one cache must be refused");
    CHECK(generate_diff == 0, "%s: %d prompts' logits differ from model_forward_cached's", type, generate_diff);
    printf("%s: %d batched rows over %d steps equal solo decoding: %s; chunked prompts: %s\n", type, NSEQ * STEPS, STEPS,
           diff ? "NO" : "yes", chunk_diff ? "NO" : "yes");
    for (int i = 0; i < NSEQ; i++) {
        kvcache_free(&kv[i]);
        free(ids[i]);
    }
    free(solo);
    free(batch);
    free(tmp);
    free(plast);
    infer_model_close(&im);
    free(path);
}

int main(void) {
#if defined(__SANITIZE_ADDRESS__)
    const char *types[] = {"Q4_1", "F16"};
#else
    const char *types[] = {"Q8_0", "Q4_1", "F16", "Q4_K", "Q4_0"};
#endif
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) run_type(types[t]);
    return failures != 0;
}
