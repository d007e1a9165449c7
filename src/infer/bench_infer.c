/* jarip bench infer: llama-bench's two figures for a GGUF model.
 *   pp512: one 512-token prompt through the model from an empty cache
 *          (processed in --batch chunks), tokens/s;
 *   tg128: 128 tokens decoded one at a time from an empty cache, tokens/s
 *          (each step computes the full-vocabulary logits, as llama.cpp).
 * With -d N (llama-bench's depth) both start from a cache already holding N
 * tokens, filled untimed before each run: long-context speed.
 * Each figure is the mean (and standard deviation) over -r repetitions after
 * one warm-up run; token ids are fixed pseudo-random ones. Peak resident
 * memory of the whole process is reported last.
 *
 * Called from src/cli/cmd_bench.c (weak reference), so it prints itself. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "infer/infer.h"

/* Strong reference target for cmd_bench.c's weak declaration. */
int bench_infer_main(int argc, char **argv);

static int arg_int(int argc, char **argv, int *i, int lo, int hi, int *out) {
    if (*i + 1 >= argc) return fprintf(stderr, "jarip: %s needs a value\n", argv[*i]), 2;
    char *end;
    long v = strtol(argv[++*i], &end, 10);
    if (*end || end == argv[*i] || v < lo || v > hi)
        return fprintf(stderr, "jarip: %s: '%s' is not an integer in [%d, %d]\n", argv[*i - 1], argv[*i], lo, hi), 2;
    *out = (int)v;
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: jarip bench infer --model FILE.gguf [--threads N] [-p 512] [-n 128] [-d 0] [-r 5] [--batch 512]\n"
               "                         [--kv-type f16|f32]\n\n"
               "Prompt processing (pp) and generation (tg) speed, as llama-bench measures them:\n"
               "  -p N         prompt tokens for pp (default 512; 0 skips pp)\n"
               "  -n N         generated tokens for tg (default 128; 0 skips tg)\n"
               "  -d N         depth: tokens already in the cache when pp and tg start (default 0)\n"
               "  -r N         repetitions after one warm-up (default 5)\n"
               "  --batch N    prompt tokens per forward pass (default 512)\n"
               "  --kv-type T  KV cache type: f16 (default, as llama.cpp) or f32\n"
               "  --threads N  OpenMP threads (default: all cores)\n"
               "Prints pp<N> and tg<N> (with -d: pp<N> @ d<D>) in tokens/s (mean +- sd) and peak RSS.\n");
}

static void stats(const double *x, int n, double *mean, double *sd) {
    double s = 0, q = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) q += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0.0;
}

int bench_infer_main(int argc, char **argv) {
    const char *model = NULL;
    int threads = 0, P = 512, N = 128, R = 5, batch = 512, depth = 0, kv_type = INFER_KV_DEFAULT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") || !strcmp(a, "-m")) {
            if (i + 1 >= argc) return fprintf(stderr, "jarip: --model needs a value\n"), 2;
            model = argv[++i];
        } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) rc = arg_int(argc, argv, &i, 1, 1024, &threads);
        else if (!strcmp(a, "-p")) rc = arg_int(argc, argv, &i, 0, 1 << 20, &P);
        else if (!strcmp(a, "-n")) rc = arg_int(argc, argv, &i, 0, 1 << 20, &N);
        else if (!strcmp(a, "-d")) rc = arg_int(argc, argv, &i, 0, 1 << 20, &depth);
        else if (!strcmp(a, "-r")) rc = arg_int(argc, argv, &i, 1, 1000, &R);
        else if (!strcmp(a, "--batch")) rc = arg_int(argc, argv, &i, 1, 1 << 16, &batch);
        else if (!strcmp(a, "--kv-type")) {
            if (i + 1 >= argc) return fprintf(stderr, "jarip: --kv-type needs a value (f16 or f32)\n"), 2;
            if ((kv_type = infer_kv_type_from_name(argv[++i])) < 0)
                return fprintf(stderr, "jarip: --kv-type: '%s' is not f16 or f32\n", argv[i]), 2;
        }
        else return fprintf(stderr, "jarip: bench infer: unknown flag '%s' (see jarip bench infer --help)\n", a), 2;
        if (rc) return rc;
    }
    if (!model) return fprintf(stderr, "jarip: bench infer: --model FILE is required\n"), 2;
    if (P == 0 && N == 0) return fprintf(stderr, "jarip: bench infer: nothing to measure (-p 0 -n 0)\n"), 2;
    if (threads) omp_set_num_threads(threads);
    Err err = {0};
    InferModel im;
    if (infer_model_open(&im, model, &err)) return fprintf(stderr, "jarip: %s\n", err.msg), 1;
    if (infer_model_repack(&im, NULL, &err)) {
        infer_model_close(&im);
        return fprintf(stderr, "jarip: %s\n", err.msg), 1;
    }
    const Config *c = &im.model.cfg;
    int ctx = depth + (P > N ? P : N) + 1;
    if (ctx > c->context_length) {
        const int limit = c->context_length; /* read before the model (and its config) is closed */
        infer_model_close(&im);
        return fprintf(stderr, "jarip: bench infer: %d tokens exceed the model's context of %d\n", ctx - 1, limit), 2;
    }
    InferSession s;
    int32_t *tok = malloc((size_t)(depth + P + N + 1) * sizeof *tok);
    double *pp = malloc((size_t)R * sizeof *pp), *tg = malloc((size_t)R * sizeof *tg);
    if (!tok || !pp || !tg || infer_session_create(&s, &im, ctx, batch, kv_type, NULL, &err)) {
        free(tok), free(pp), free(tg);
        infer_model_close(&im);
        return fprintf(stderr, "jarip: %s\n", err.msg[0] ? err.msg : "out of memory"), 1;
    }
    uint64_t key = rng_key(1234, 0x62656e63ULL, 0);
    for (int i = 0; i < depth + P + N + 1; i++) tok[i] = (int32_t)(rng_u64(key, (uint64_t)i) % (uint64_t)c->vocab_size);
    const int32_t *run = tok + depth; /* the timed tokens follow the depth's */
    int rc = 0;
    for (int r = -1; r < R && !rc; r++) { /* r = -1: warm-up (page faults, oneDNN JIT) */
        if (P > 0) {
            infer_session_reset(&s);
            if (depth) rc = infer_session_prompt(&s, tok, depth, &err);
            double t0 = time_now();
            /* the whole sequence: the session keeps the cached depth (its
             * common prefix) and runs only the P new tokens */
            if (!rc) rc = infer_session_prompt(&s, tok, depth + P, &err);
            if (r >= 0) pp[r] = P / (time_now() - t0);
        }
        if (N > 0 && !rc) {
            infer_session_reset(&s);
            if (depth) rc = infer_session_prompt(&s, tok, depth, &err);
            double t0 = time_now();
            for (int i = 0; i < N && !rc; i++) rc = infer_session_push(&s, run[P + i], &err);
            if (r >= 0) tg[r] = N / (time_now() - t0);
        }
    }
    if (rc) {
        fprintf(stderr, "jarip: %s\n", err.msg);
    } else {
        const Tensor *w = im.model.layers[0].w_up;
        printf("model: %s, %zu parameters, weights %s, threads %d, batch %d, kv cache %s\n", im.name,
               im.model.n_params, dtype_name(w->dtype), omp_get_max_threads(), s.batch, dtype_name(kv_type));
        printf("kernels: jarip %s, oneDNN %s\n", kernel_isa_name(kernel_isa()), gemm_isa_name());
        printf("weights: %s\n", gguf_data_is_copy(im.gguf) ? "private copy (2 MiB pages)"
                                                           : "the file's page cache, mapped in place (2 MiB pages)");
        double m, sd;
        char at[32] = "";
        if (depth) snprintf(at, sizeof at, " @ d%d", depth);
        if (P > 0) {
            stats(pp, R, &m, &sd);
            printf("pp%d%s: %.2f +- %.2f tokens/s\n", P, at, m, sd);
        }
        if (N > 0) {
            stats(tg, R, &m, &sd);
            printf("tg%d%s: %.2f +- %.2f tokens/s\n", N, at, m, sd);
        }
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("peak_rss_mib: %.1f\n", ru.ru_maxrss / 1024.0);
    }
    free(tok), free(pp), free(tg);
    infer_session_free(&s);
    infer_model_close(&im);
    return rc ? 1 : 0;
}
