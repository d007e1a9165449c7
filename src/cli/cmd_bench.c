/* jarip bench train: training throughput on random tokens (no data). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model_arg.h"

int bench_infer_main(int argc, char **argv) __attribute__((weak));

static void usage(FILE *f) {
    fprintf(f, "usage: jarip bench train (--preset NAME | --config FILE) [--batch B] [--seq T] [--steps N] [--threads N]\n"
               "                         [--precision fp32|bf16]\n"
               "       jarip bench infer --model FILE.gguf [--threads N] [--kv-type f16|f32]\n\n"
               "bench train: forward + backward + AdamW on random tokens; prints tokens/s and MFU\n"
               "(model FLOPs 6N + 12 L d T per token, PaLM) against this CPU's measured fp32 FMA peak.\n"
               "  --batch B     sequences per step (default 8)\n"
               "  --seq T       tokens per sequence (default 256)\n"
               "  --steps N     timed steps after one warmup step (default 5)\n"
               "  --threads N   OpenMP threads (default: all cores)\n"
               "  --precision P fp32 (default) or bf16 (see jarip train --help); mfu is against the fp32 FMA\n"
               "                peak; bf16 also prints the bf16 GEMM's measured peak and mfu_bf16 against it\n"
               "bench infer: see `jarip bench infer --help`.\n");
}

static int bench_train(int argc, char **argv) {
    const char *preset = NULL, *config = NULL;
    int B = 8, T = 256, steps = 5, threads = 0, precision = PRECISION_FP32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc = 0;
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--preset")) rc = cli_str(argc, argv, &i, &preset);
        else if (!strcmp(a, "--config")) rc = cli_str(argc, argv, &i, &config);
        else if (!strcmp(a, "--batch")) rc = cli_int(argc, argv, &i, 1, 65536, &B);
        else if (!strcmp(a, "--seq")) rc = cli_int(argc, argv, &i, 1, 1 << 20, &T);
        else if (!strcmp(a, "--steps")) rc = cli_int(argc, argv, &i, 1, 1000000, &steps);
        else if (!strcmp(a, "--threads")) rc = cli_int(argc, argv, &i, 1, 1024, &threads);
        else if (!strcmp(a, "--precision")) {
            const char *p = NULL;
            if (!(rc = cli_str(argc, argv, &i, &p)) && (precision = precision_from_name(p)) < 0)
                rc = cli_error(2, "--precision: '%s' is not fp32 or bf16", p);
        } else return cli_error(2, "bench train: unknown flag '%s'", a);
        if (rc) return rc;
    }
    Config c;
    if (model_arg_config(preset, config, &c)) return 2;
    if (T > c.context_length) return cli_error(2, "--seq %d exceeds context_length %d", T, c.context_length);
    if (threads) omp_set_num_threads(threads);
    Err err = {0};
    Model m;
    if (model_create(&m, &c, 1, &err)) return cli_error(1, "%s", err.msg);
    model_init_weights(&m, 1);
    if (model_set_precision(&m, precision, &err) || model_plan_activations(&m, B, T, 1, &err)) {
        model_free(&m);
        return cli_error(1, "%s", err.msg);
    }
    int32_t *tok = malloc((size_t)B * T * sizeof *tok), *tgt = malloc((size_t)B * T * sizeof *tgt);
    if (!tok || !tgt) return cli_error(1, "out of memory");
    uint64_t key = rng_key(7, 0, 0);
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)(rng_u64(key, (uint64_t)i) % (uint64_t)c.vocab_size);
        tgt[i] = (int32_t)(rng_u64(key, (uint64_t)(i + B * T)) % (uint64_t)c.vocab_size);
    }
    double best = INFINITY, total = 0.0;
    for (int s = 0; s <= steps; s++) {
        double t0 = time_now();
        mem_zero(m.grads, m.n_params * sizeof(float));
        float loss = model_forward(&m, tok, tgt, B, T, &err);
        if (isnan(loss)) return cli_error(1, "%s", err.msg);
        model_backward(&m, tok, tgt, 1.0f);
        double norm = sqrt(sumsq(m.grads, m.n_params));
        for (int i = 0; i < m.n_tensors; i++) {
            Tensor *t = &m.tensors[i];
            adamw_update(t->data, t->grad, m.adam_m + t->offset, m.adam_v + t->offset, t->numel, 1e-4f, 0.9f, 0.95f, 1e-8f,
                         (t->flags & PF_DECAY) ? 0.1f : 0.0f, norm > 1.0 ? (float)(1.0 / norm) : 1.0f, s + 1);
        }
        double dt = time_now() - t0;
        if (s == 0) continue; /* warmup: first-touch page faults, oneDNN JIT */
        total += dt;
        if (dt < best) best = dt;
    }
    int nthreads = omp_get_max_threads();
    double peak = cpu_peak_flops(nthreads);
    double flops_tok = model_flops_per_token(&c, T);
    double tps = (double)B * T * steps / total;
    printf("model: %s, %zu parameters, batch %d, seq %d, threads %d, precision %s\n", preset ? preset : config, m.n_params,
           B, T, nthreads, precision_name(precision));
    printf("activations: %.1f MiB\n", m.act.n_floats * 4.0 / 1048576.0);
    printf("step_time_s: %.4f (best %.4f)\n", total / steps, best);
    printf("flops_per_token: %.4g\n", flops_tok);
    printf("peak_gflops: %.1f\n", peak / 1e9);
    printf("tokens_per_s: %.1f\n", tps);
    printf("mfu: %.4f\n", flops_tok * tps / peak);
    if (precision == PRECISION_BF16) { /* against what the bf16 units can do */
        const double peak16 = gemm_bf16_peak_flops(nthreads);
        printf("bf16_peak_gflops: %.1f\n", peak16 / 1e9);
        if (peak16 > 0) printf("mfu_bf16: %.4f\n", flops_tok * tps / peak16);
    }
    free(tok);
    free(tgt);
    model_free(&m);
    return 0;
}

int cmd_bench(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "train")) return bench_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "infer")) {
        if (!bench_infer_main) return cli_error(1, "bench infer is not built in");
        return bench_infer_main(argc - 1, argv + 1);
    }
    return cli_error(2, "bench: unknown benchmark '%s' (train or infer)", argv[1]);
}
