/* One continuous-batching step of jarip serve, timed apart from HTTP: S
 * sequences, each with a cache already holding DEPTH tokens, decode one token
 * each through ONE model_forward_batch (FWD_ROWS_EXACT, as the scheduler
 * runs it). Prints, per S, the wall time and the process CPU time of a step
 * (CPU time at OMP_NUM_THREADS=1 is robust to other load on the machine;
 * wall time at 2 threads is what serving gets, on a quiet machine only), and
 * tokens/s. Build and run (after `cmake --build build`):
 *   gcc -O2 -march=native -fopenmp -Isrc bench/serve_step.c build/libjarip_lib.a -ldnnl -ljansson -lpcre2-8 \
 *       -lmicrohttpd -lz -lm -o /tmp/serve_step
 *   OMP_NUM_THREADS=1 /tmp/serve_step models/SmolLM2-135M-Instruct.Q8_0.gguf [DEPTH=100] [STEPS=40] [S...=1 4 16]
 * For where the time goes: perf record -D <ms past the cache fill> -g /tmp/serve_step ... */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "infer/infer.h"

static double seconds(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: serve_step MODEL.gguf [DEPTH] [STEPS] [S...]\n");
        return 2;
    }
    const int depth = argc > 2 ? atoi(argv[2]) : 100, steps = argc > 3 ? atoi(argv[3]) : 40;
    int sizes[16] = {1, 4, 16}, n_sizes = 3, smax = 0;
    if (argc > 4)
        for (n_sizes = 0; n_sizes < 16 && 4 + n_sizes < argc; n_sizes++) sizes[n_sizes] = atoi(argv[4 + n_sizes]);
    for (int i = 0; i < n_sizes; i++) smax = sizes[i] > smax ? sizes[i] : smax;
    if (depth < 2 || depth > 4000 || steps < 1 || smax < 1 || smax > 256) {
        fprintf(stderr, "serve_step: DEPTH in 2..4000, STEPS >= 1, S in 1..256\n");
        return 2;
    }
    InferModel im;
    Err err = {0};
    if (infer_model_open(&im, argv[1], &err)) return fprintf(stderr, "serve_step: %s\n", err.msg), 1;
    Model *m = &im.model;
    const int V = m->cfg.vocab_size, ctx = depth + steps + 1;
    KVCache *kv = calloc((size_t)smax, sizeof *kv);
    SeqSpan *spans = calloc((size_t)smax, sizeof *spans);
    int32_t *prompt = malloc((size_t)depth * sizeof *prompt), *next = malloc((size_t)smax * sizeof *next);
    float *logits = malloc((size_t)smax * V * sizeof *logits); /* (smax, V) */
    if (!kv || !spans || !prompt || !next || !logits) return fprintf(stderr, "serve_step: out of memory\n"), 1;
    if (model_plan_activations(m, 1, depth > smax ? depth : smax, 0, &err)) return fprintf(stderr, "serve_step: %s\n", err.msg), 1;
    /* every cache filled with its own fixed pseudo-random prompt, untimed */
    for (int i = 0; i < smax; i++) {
        if (kvcache_create(&kv[i], &m->cfg, ctx, DT_F16, &err)) return fprintf(stderr, "serve_step: %s\n", err.msg), 1;
        for (int j = 0; j < depth; j++) prompt[j] = (int32_t)(((uint64_t)j * 7919 + (uint64_t)i * 104729) % (uint64_t)V);
        const SeqSpan one = {&kv[i], prompt, depth};
        if (model_forward_batch(m, &one, 1, logits, FWD_ROWS_EXACT, &err)) return fprintf(stderr, "serve_step: %s\n", err.msg), 1;
    }
    printf("%s, depth %d, %d steps each\n", argv[1], depth, steps);
    for (int si = 0; si < n_sizes; si++) {
        const int S = sizes[si];
        for (int i = 0; i < S; i++) {
            kv[i].len = depth; /* every size starts from the same caches */
            next[i] = (int32_t)(100 + i);
            spans[i] = (SeqSpan){&kv[i], &next[i], 1};
        }
        const double w0 = seconds(CLOCK_MONOTONIC), c0 = seconds(CLOCK_PROCESS_CPUTIME_ID);
        for (int t = 0; t < steps; t++)
            if (model_forward_batch(m, spans, S, logits, FWD_ROWS_EXACT, &err)) return fprintf(stderr, "serve_step: %s\n", err.msg), 1;
        const double wall = (seconds(CLOCK_MONOTONIC) - w0) / steps, cpu = (seconds(CLOCK_PROCESS_CPUTIME_ID) - c0) / steps;
        printf("S %3d: step %7.2f ms wall (%7.1f tok/s), %7.2f ms CPU\n", S, wall * 1e3, S / wall, cpu * 1e3);
    }
    for (int i = 0; i < smax; i++) kvcache_free(&kv[i]);
    free(kv), free(spans), free(prompt), free(next), free(logits);
    infer_model_close(&im);
    return 0;
}
