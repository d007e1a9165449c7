/* The planner against published figures. Every expected number below is a
 * paper's or a model card's; the planner computes its own from formulas and
 * the engine's registry, never from these constants. Sources are cited at
 * each check. */
#include "model/model.h"
#include "plan/plan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static double rel(double a, double b) { return fabs(a - b) / fabs(b); }

static Config preset(const char *name) {
    Config c;
    Err err = {0};
    if (config_preset(&c, name, &err)) {
        fprintf(stderr, "preset %s: %s\n", name, err.msg);
        exit(1);
    }
    return c;
}

static Hardware hw(const char *name) {
    Hardware h;
    Err err = {0};
    if (hw_get(&h, name, &err)) {
        fprintf(stderr, "hardware %s: %s\n", name, err.msg);
        exit(1);
    }
    return h;
}

/* Exact parameter counts. GPT-2: the Hugging Face checkpoints (gpt2,
 * gpt2-xl) have 124,439,808 and 1,557,611,200 parameters with the tied
 * lm_head counted once. SmolLM2-135M: HF model card / safetensors total
 * 134,515,008. Llama 3 405B: 405,853,388,800 (safetensors metadata of
 * meta-llama/Llama-3.1-405B; shape from Dubey et al. 2024, Table 3). */
static void test_param_counts(void) {
    struct {
        const char *name;
        size_t n;
    } cases[] = {{"gpt2-small", 124439808ull}, {"gpt2-xl", 1557611200ull}, {"smollm2-135m", 134515008ull},
                 {"llama3-405b", 405853388800ull}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Config c = preset(cases[i].name);
        Hardware h = hw("h100-80g");
        PlanRequest q;
        plan_request_default(&q);
        plan_run_defaults(&c, &h, &q);
        PlanResult r;
        Err err = {0};
        int rc = plan_compute(&c, &h, &q, &r, &err);
        CHECK(rc == 0, "%s: %s", cases[i].name, err.msg);
        CHECK(r.params_total == cases[i].n, "%s: %zu params, expected %zu", cases[i].name, r.params_total, cases[i].n);
        CHECK(r.params_active == cases[i].n, "%s: dense model, active %zu", cases[i].name, r.params_active);
    }
    /* Parameter totals of the published checkpoints (Hugging Face safetensors
     * metadata of gpt2-medium, gpt2-large, Llama-2-{7,13,70}b, Meta-Llama-3-
     * {8,70}B, Mixtral-8x7B-v0.1) and Megatron-LM's 1T row of Narayanan et al.
     * 2021, Table 1 (1008 billion). */
    struct {
        const char *name;
        size_t n;
    } more[] = {{"gpt2-medium", 354823168ull},    {"gpt2-large", 774030080ull},   {"llama2-7b", 6738415616ull},
                {"llama2-13b", 13015864320ull},   {"llama2-70b", 68976648192ull}, {"llama3-8b", 8030261248ull},
                {"llama3-70b", 70553706496ull},   {"mixtral-8x7b", 46702792704ull}};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) {
        Config c = preset(more[i].name);
        CHECK(config_param_count(&c) == more[i].n, "%s: %zu params, checkpoint %zu", more[i].name,
              config_param_count(&c), more[i].n);
    }
    Config t1 = preset("megatron-1t");
    CHECK(fabs((double)config_param_count(&t1) / 1e9 - 1008) < 0.5, "1T: %zu params, Table 1: 1008B",
          config_param_count(&t1));
    /* Mixtral 8x7B: 46.7B total, 12.9B active (Jiang et al. 2024, Sec. 2) */
    Config m = preset("mixtral-8x7b");
    CHECK(rel((double)config_param_count(&m), 46.7e9) < 0.005, "mixtral total %zu", config_param_count(&m));
    CHECK(rel((double)config_active_param_count(&m), 12.9e9) < 0.01, "mixtral active %zu", config_active_param_count(&m));
    /* the article's estimates land on their reported sizes */
    struct {
        const char *name;
        double n;
    } est[] = {{"mai-1-500b", 500e9}, {"gemini-ultra-1.56t", 1.56e12}, {"gpt4-1.76t-moe", 1.76e12}, {"olympus-2t", 2e12}};
    for (size_t i = 0; i < 4; i++) {
        Config c = preset(est[i].name);
        CHECK(rel((double)config_param_count(&c), est[i].n) < 0.02, "%s: %zu params", est[i].name, config_param_count(&c));
        CHECK(strstr(c.note, "ESTIMATE") != NULL, "%s: note must label the estimate", est[i].name);
    }
}

/* Training FLOPs = 6 N D. GPT-3 175B on 300B tokens: 3.14e23 (Brown et al.
 * 2020, Table D.1). Llama 3 405B on 15.6T tokens: 3.8e25 (Dubey et al. 2024,
 * Sec. 3.2.1). PaLM's per-token count 6N + 12 L d T (Chowdhery et al. 2022,
 * App. B) for GPT-2 small at T = 1024. */
static void test_train_flops(void) {
    Hardware h = hw("a100-80g");
    struct {
        const char *name;
        double tokens, flops, tol;
    } cases[] = {{"gpt3-175b", 300e9, 3.14e23, 0.005}, {"llama3-405b", 15.6e12, 3.8e25, 0.01}};
    for (int i = 0; i < 2; i++) {
        Config c = preset(cases[i].name);
        PlanRequest q;
        plan_request_default(&q);
        q.tokens = cases[i].tokens;
        plan_run_defaults(&c, &h, &q);
        PlanResult r;
        Err err = {0};
        CHECK(plan_compute(&c, &h, &q, &r, &err) == 0, "%s", err.msg);
        CHECK(rel(r.train_flops, cases[i].flops) < cases[i].tol, "%s: %.4g FLOPs, paper %.3g", cases[i].name,
              r.train_flops, cases[i].flops);
    }
    Config g = preset("gpt2-small");
    PlanRequest q;
    plan_request_default(&q);
    plan_run_defaults(&g, &h, &q);
    PlanResult r;
    Err err = {0};
    CHECK(plan_compute(&g, &h, &q, &r, &err) == 0, "%s", err.msg);
    double palm = 6.0 * 124439808 + 12.0 * 12 * 768 * 1024;
    CHECK(rel(r.flops_per_token, palm) < 1e-12, "gpt2 flops/token %.6g vs %.6g", r.flops_per_token, palm);
    CHECK(rel(r.tokens, 20.0 * 124439808) < 1e-12, "default tokens: 20 per parameter (Chinchilla)");
}

/* ZeRO (Rajbhandari et al. 2020), Figure 1: Psi = 7.5B, N_d = 64, K = 12
 * (mixed-precision Adam: 2 + 2 + 12 bytes per parameter): 120 GB, 31.4 GB,
 * 16.6 GB and 1.9 GB per device for baseline, P_os, P_os+g, P_os+g+p. */
static void test_zero_figure1(void) {
    const double paper[4] = {120, 31.4, 16.6, 1.9};
    for (int z = 0; z < 4; z++) {
        PlanLayout l;
        plan_layout_default(&l);
        l.precision = PREC_BF16;
        l.grad_bf16 = 1;
        l.dp = 64;
        l.zero = z;
        PlanMemory m = {0};
        plan_state_memory(&l, 7500000000ull, 0, &m);
        double gb = (m.weights + m.grads + m.optimizer) / 1e9;
        /* the figure rounds to one decimal (two significant digits for 1.9) */
        CHECK(fabs(gb - paper[z]) < 0.05 || (z == 3 && fabs(gb - paper[z]) < 0.03), "zero %d: %.3f GB, paper %.1f", z, gb,
              paper[z]);
    }
    /* Megatron keeps fp32 gradients: 18 bytes per parameter unsharded */
    PlanLayout l;
    plan_layout_default(&l);
    l.precision = PREC_BF16;
    l.grad_bf16 = 0;
    StateBytes b = plan_state_bytes_per_param(&l);
    CHECK(b.weights + b.grads + b.optimizer == 18, "bf16 with fp32 grads: %g B/param", b.weights + b.grads + b.optimizer);
    plan_layout_default(&l);
    b = plan_state_bytes_per_param(&l);
    CHECK(b.weights == 4 && b.grads == 4 && b.optimizer == 8, "fp32 Adam: 4 + 4 + 8 bytes per parameter");
}

/* Korthikanti et al. 2022, Table 2: activation bytes per layer for a GPT
 * layer (16-bit activations, dropout, 4h GELU MLP, MHA) with s, b, h, a, t:
 *   no parallelism            sbh (34 + 5as/h)
 *   tensor parallel           sbh (10 + 24/t + 5as/(ht))
 *   tensor + sequence par.    sbh/t (34 + 5as/h)
 *   tensor + selective        sbh (10 + 24/t)
 *   tensor + seq. + selective sbh/t 34
 *   full recompute            2sbh (2sbh/t with sequence parallel) */
static void test_korthikanti_table2(void) {
    Config c = preset("gpt3-175b");
    const double s = 2048, b = 1, h = c.d_model, a = c.n_head, t = 8;
    const double sbh = s * b * h;
    struct {
        int tp, sp, rec;
        double expect;
    } cases[] = {
        {1, 0, RECOMPUTE_NONE, sbh * (34 + 5 * a * s / h)},
        {8, 0, RECOMPUTE_NONE, sbh * (10 + 24 / t + 5 * a * s / (h * t))},
        {8, 1, RECOMPUTE_NONE, sbh / t * (34 + 5 * a * s / h)},
        {8, 0, RECOMPUTE_SELECTIVE, sbh * (10 + 24 / t)},
        {8, 1, RECOMPUTE_SELECTIVE, sbh / t * 34},
        {8, 0, RECOMPUTE_FULL, 2 * sbh},
        {8, 1, RECOMPUTE_FULL, 2 * sbh / t},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        PlanLayout l;
        plan_layout_default(&l);
        l.precision = PREC_BF16;
        l.tp = cases[i].tp;
        PlanRun r = {.seq = 2048, .micro_batch = 1, .recompute = cases[i].rec, .seq_parallel = cases[i].sp, .dropout = 1};
        double got = plan_layer_activation_bytes(&c, &l, &r);
        CHECK(rel(got, cases[i].expect) < 1e-12, "Table 2 row %zu: %.6g bytes, formula %.6g", i, got, cases[i].expect);
    }
    /* Sec. 4.2.3 / eq. (5): the first pipeline stage holds p micro-batches
     * of L/p layers, i.e. 34 sbhL/t with selective + sequence parallel, plus
     * the embedding dropout mask sbhp/t; interleaving multiplies by
     * (1 + (p - 1)/(p v)). Megatron-LM 1T: L = 128, h = 25600, t = 8, p = 64. */
    Config m = preset("megatron-1t");
    for (int v = 1; v <= 2; v++) {
        PlanLayout l;
        plan_layout_default(&l);
        l.precision = PREC_BF16;
        l.tp = 8, l.pp = 64, l.dp = 6, l.vpp = v;
        PlanRun r = {.seq = 2048, .micro_batch = 1, .global_batch = 3072, .recompute = RECOMPUTE_SELECTIVE,
                     .seq_parallel = 1, .dropout = 1};
        double sbh1 = 2048.0 * m.d_model, p = 64, L = m.n_layer;
        double factor = v > 1 ? 1 + (p - 1) / (p * v) : 1; /* the factor is the interleaved schedule's */
        double expect = (34 * sbh1 * L / 8 + sbh1 * p / 8) * factor;
        double got = plan_stage_activation_bytes(&m, &l, &r, 0);
        CHECK(rel(got, expect) < 1e-9, "1T first stage v=%d: %.6g bytes, eq. (5) %.6g", v, got, expect);
    }
}

/* Korthikanti et al. 2022, Table 3 / Figure 1: the 1T model on 512 A100-80GB
 * (t 8, p 64, micro-batch 1, global batch 512, s 2048, Megatron mixed
 * precision, no ZeRO) does not fit with tensor parallelism alone (the
 * activations by themselves exceed the device), and fits with sequence
 * parallelism + selective recomputation, the paper's method. */
static void test_korthikanti_fit(void) {
    Config c = preset("megatron-1t");
    Hardware h = hw("a100-80g");
    for (int method = 0; method < 2; method++) {
        PlanRequest q;
        plan_request_default(&q);
        q.gpus = 512;
        q.layout.tp = 8, q.layout.pp = 64, q.layout.dp = 1;
        q.layout.precision = PREC_BF16;
        q.layout.grad_bf16 = 0;
        q.run.seq = 2048;
        q.run.global_batch = 512;
        q.run.recompute = method ? RECOMPUTE_SELECTIVE : RECOMPUTE_NONE;
        q.run.seq_parallel = method;
        q.rate_kind = RATE_MFU;
        q.rate = 0.5;
        plan_run_defaults(&c, &h, &q);
        PlanResult r;
        Err err = {0};
        CHECK(plan_compute(&c, &h, &q, &r, &err) == 0, "%s", err.msg);
        if (method == 0) {
            CHECK(!r.fits && r.mem.activations > h.memory, "1T tp only: activations %.1f GB must exceed 80 GB",
                  r.mem.activations / 1e9);
        } else {
            CHECK(r.fits, "1T with sp + selective must fit: %.1f GB", r.mem.total / 1e9);
        }
    }
}

/* Narayanan et al. 2021 ("Efficient Large-Scale Language Model Training on
 * GPU Clusters Using Megatron-LM"): Table 1, GPT 1T on 3072 A100s with
 * tp 8, pp 64, batch 3072: 163 TFLOP/s per GPU = 52% of the 312 TFLOP/s peak,
 * 502 PFLOP/s in aggregate; their hardware-FLOP count with full recompute is
 * 96 B s l h^2 (1 + s/6h + V/16lh) per iteration (eq. 3). Sec. 5.1: training
 * on 450B tokens takes ~84 days; GPT-3 175B on 300B tokens with 1024 GPUs at
 * 140 TFLOP/s ~34 days. Tolerance 3%: our count adds the attention term of
 * the PaLM convention to the 8 T P estimate the paper uses for days. */
static void test_megatron_1t(void) {
    Config c = preset("megatron-1t");
    Hardware h = hw("a100-80g");
    PlanRequest q;
    plan_request_default(&q);
    q.gpus = 3072;
    q.layout.tp = 8, q.layout.pp = 64, q.layout.dp = 6;
    q.layout.precision = PREC_BF16;
    q.run.global_batch = 3072;
    q.run.seq = 2048;
    q.run.recompute = RECOMPUTE_FULL;
    q.rate_kind = RATE_TFLOPS;
    q.rate = 163;
    q.tokens = 450e9;
    plan_run_defaults(&c, &h, &q);
    PlanResult r;
    Err err = {0};
    CHECK(plan_compute(&c, &h, &q, &r, &err) == 0, "%s", err.msg);
    CHECK(fabs(r.hfu - 0.52) < 0.005, "1T: HFU %.3f, paper 52%%", r.hfu);
    CHECK(rel(r.devices * q.rate, 502e3) < 0.003, "aggregate %.0f TFLOP/s, paper 502 PFLOP/s", r.devices * q.rate);
    const double s = 2048, l = c.n_layer, hh = c.d_model, V = c.vocab_size;
    double eq3 = 96 * s * l * hh * hh * (1 + s / (6 * hh) + V / (16 * l * hh)) / s; /* per token */
    CHECK(rel(r.hw_flops_per_token, eq3) < 0.005, "hardware FLOPs/token %.6g vs eq. (3) %.6g", r.hw_flops_per_token, eq3);
    CHECK(rel(r.train_days, 84) < 0.03, "1T: %.1f days, paper ~84", r.train_days);
    /* iteration time from eq. (3) and the achieved rate */
    double iter = 96 * 3072 * s * l * hh * hh * (1 + s / (6 * hh) + V / (16 * l * hh)) / (3072 * 163e12);
    CHECK(rel(r.step_time_s, iter) < 0.005, "1T step %.2f s vs %.2f s", r.step_time_s, iter);

    Config g = preset("gpt3-175b");
    plan_request_default(&q);
    q.gpus = 1024;
    q.layout.tp = 8, q.layout.pp = 8, q.layout.dp = 16;
    q.layout.precision = PREC_BF16;
    q.run.seq = 2048;
    q.run.global_batch = 1536;
    q.run.recompute = RECOMPUTE_FULL;
    q.rate_kind = RATE_TFLOPS;
    q.rate = 140;
    q.tokens = 300e9;
    plan_run_defaults(&g, &h, &q);
    CHECK(plan_compute(&g, &h, &q, &r, &err) == 0, "%s", err.msg);
    CHECK(rel(r.train_days, 34) < 0.03, "GPT-3: %.1f days, paper ~34", r.train_days);
}

/* Llama 3 405B (Dubey et al. 2024): Table 4, 16,384 H100s with tp 8, pp 16,
 * dp 128, seq 8192, 16M tokens per batch, 400 TFLOP/s per GPU at 41% BF16
 * MFU (38-43% over the table's rows); Sec. 3.3.2: one layer fewer on the
 * first and last stages (126 layers over 16 stages). The model card reports
 * 30.84M H100 GPU-hours for the 405B pretraining; our figure from 400
 * TFLOP/s over 15.6T tokens must fall within 15% (the card's total includes
 * the slower 8K-GPU and long-context phases and restarts). */
static void test_llama3_405b(void) {
    Config c = preset("llama3-405b");
    Hardware h = hw("h100-80g");
    PlanRequest q;
    plan_request_default(&q);
    q.gpus = 16384;
    q.layout.tp = 8, q.layout.pp = 16, q.layout.dp = 128;
    q.layout.precision = PREC_BF16;
    q.run.seq = 8192;
    q.run.global_batch = 2048;
    q.rate_kind = RATE_TFLOPS;
    q.rate = 400;
    q.tokens = 15.6e12;
    plan_run_defaults(&c, &h, &q);
    PlanResult r;
    Err err = {0};
    CHECK(plan_compute(&c, &h, &q, &r, &err) == ERR_INVALID, "126 layers over pp 16 must be rejected without the uneven split");
    CHECK(strstr(err.msg, "layers") != NULL, "message names the layers: %s", err.msg);
    q.layout.first_stage_layers = 7;
    q.layout.last_stage_layers = 7;
    CHECK(plan_compute(&c, &h, &q, &r, &err) == 0, "%s", err.msg);
    CHECK(r.mfu >= 0.38 && r.mfu <= 0.43, "405B MFU %.3f, paper 38-43%%", r.mfu);
    CHECK(rel(r.gpu_hours, 30.84e6) < 0.15, "405B: %.2fM GPU-hours, model card 30.84M", r.gpu_hours / 1e6);
    CHECK(rel(r.step_time_s, 2048.0 * 8192 * r.flops_per_token / (16384 * 400e12)) < 1e-9, "step time from the rate");
    double e = 16384 * 700.0 * r.train_days * 86400 * q.pue / 3.6e9;
    CHECK(rel(r.energy_mwh, e) < 1e-9, "energy = power x time x PUE");
    int f, n;
    plan_stage_layers(&c, &q.layout, 0, 0, &f, &n);
    CHECK(f == 0 && n == 7, "first stage layers %d+%d", f, n);
    plan_stage_layers(&c, &q.layout, 5, 0, &f, &n);
    CHECK(f == 7 + 4 * 8 && n == 8, "middle stage layers %d+%d", f, n);
    plan_stage_layers(&c, &q.layout, 15, 0, &f, &n);
    CHECK(f == 119 && n == 7, "last stage layers %d+%d", f, n);
}

/* Inconsistent layouts are refused with a message naming the rule. */
static void test_rejections(void) {
    Config g = preset("gpt2-small"), moe = preset("moe-tiny"), c;
    Err err = {0};
    PlanLayout l;
    plan_layout_default(&l);
    l.tp = 2, l.pp = 2, l.dp = 2;
    CHECK(plan_layout_check(&g, &l, 16, &err) && strstr(err.msg, "--gpus"), "tp*pp*dp != gpus: %s", err.msg);
    plan_layout_default(&l);
    l.tp = 5;
    CHECK(plan_layout_check(&g, &l, 5, &err) && strstr(err.msg, "heads"), "heads %% tp: %s", err.msg);
    plan_layout_default(&l);
    l.pp = 5;
    CHECK(plan_layout_check(&g, &l, 5, &err) && strstr(err.msg, "layers"), "layers %% pp: %s", err.msg);
    plan_layout_default(&l);
    l.pp = 2, l.vpp = 4;
    CHECK(plan_layout_check(&g, &l, 2, &err) && strstr(err.msg, "pp*vpp"), "layers %% pp*vpp: %s", err.msg);
    plan_layout_default(&l);
    l.dp = 3, l.ep = 3;
    CHECK(plan_layout_check(&moe, &l, 3, &err) && strstr(err.msg, "experts"), "experts %% ep: %s", err.msg);
    plan_layout_default(&l);
    l.dp = 2, l.ep = 2;
    CHECK(plan_layout_check(&g, &l, 2, &err) && strstr(err.msg, "mixture"), "ep on a dense model: %s", err.msg);
    plan_layout_default(&l);
    l.dp = 2, l.ep = 4;
    Config m8 = moe;
    m8.n_expert = 8;
    CHECK(plan_layout_check(&m8, &l, 2, &err) && strstr(err.msg, "divide dp"), "ep | dp: %s", err.msg);
    c = preset("llama-tiny");
    c.n_head = 12, c.n_kv_head = 4, c.d_model = 12 * 32, c.head_dim = 32, c.d_ff = 1152;
    plan_layout_default(&l);
    l.tp = 6;
    CHECK(plan_layout_check(&c, &l, 6, &err) && strstr(err.msg, "kv heads"), "kv heads vs tp: %s", err.msg);
    l.tp = 4; /* kv 4 split over 4 */
    CHECK(plan_layout_check(&c, &l, 4, &err) == 0, "kv heads 4 over tp 4: %s", err.msg);
    l.tp = 12; /* replicated kv heads: 12 % 4 == 0 */
    CHECK(plan_layout_check(&c, &l, 12, &err) == 0, "tp 12 > kv 4: %s", err.msg);
    /* a batch that does not divide over dp x micro-batch */
    Hardware h = hw("a100-80g");
    PlanRequest q;
    plan_request_default(&q);
    q.gpus = 4, q.layout.dp = 4, q.run.global_batch = 6;
    plan_run_defaults(&g, &h, &q);
    PlanResult r;
    CHECK(plan_compute(&g, &h, &q, &r, &err) && strstr(err.msg, "global batch"), "batch %% dp: %s", err.msg);
}

/* The step-time model: its pipeline bubble is (p-1)/(m v) of the ideal
 * time (Narayanan et al. 2021, Sec. 2.2), and --search returns only layouts
 * that fit, fastest first, each a valid layout. */
static void test_step_model_and_search(void) {
    Config c = preset("llama3-70b");
    Hardware h = hw("h100-80g");
    PlanLayout l;
    plan_layout_default(&l);
    l.precision = PREC_BF16;
    l.tp = 8, l.pp = 8, l.dp = 4, l.vpp = 2, l.zero = 1;
    PlanRun r = {.seq = 8192, .micro_batch = 1, .global_batch = 256, .recompute = RECOMPUTE_SELECTIVE, .seq_parallel = 1};
    StepTime st;
    Err err = {0};
    CHECK(plan_step_time_model(&c, &l, &r, &h, &st, &err) == 0, "%s", err.msg);
    double m = 256.0 / 4, ideal = st.compute + st.tp_comm + st.ep_comm + st.pp_comm;
    CHECK(rel(st.bubble / ideal, (8 - 1) / (m * 2)) < 1e-9, "bubble %.4f of ideal, (p-1)/(mv) = %.4f", st.bubble / ideal,
          7 / (m * 2));
    CHECK(st.dp_comm > 0 && st.tp_comm > 0 && st.total > st.compute, "communication terms present");

    PlanRequest q;
    plan_request_default(&q);
    q.gpus = 64;
    q.layout.precision = PREC_BF16;
    q.run.global_batch = 512;
    q.search = 1;
    plan_run_defaults(&c, &h, &q);
    PlanResult res;
    CHECK(plan_search(&c, &h, &q, 0, &res, &err) == 0, "%s", err.msg);
    CHECK(res.n_cand > 0, "llama3-70b on 64 H100s: some layout fits");
    for (int i = 0; i < res.n_cand; i++) {
        const PlanCandidate *k = &res.cand[i];
        CHECK(k->fits && k->mem.total <= h.memory * h.usable_fraction, "candidate %d fits", i);
        CHECK(plan_layout_check(&c, &k->layout, 64, &err) == 0, "candidate %d valid: %s", i, err.msg);
        CHECK(i == 0 || k->st.total >= res.cand[i - 1].st.total, "candidates ranked by step time");
        CHECK(k->layout.tp <= h.devices_per_node, "tensor parallel inside a node");
    }
    if (res.n_cand > 0) {
        CHECK(res.layout.tp == res.cand[0].layout.tp && res.layout.pp == res.cand[0].layout.pp && res.fits,
              "the plan is the best candidate");
    }
    plan_result_free(&res);
    /* a model too large for the cluster: nothing fits, the lightest shown */
    Config big = preset("olympus-2t");
    plan_request_default(&q);
    q.gpus = 8;
    q.layout.precision = PREC_BF16;
    q.run.global_batch = 64;
    q.search = 1;
    plan_run_defaults(&big, &h, &q);
    CHECK(plan_search(&big, &h, &q, 0, &res, &err) == 0, "%s", err.msg);
    CHECK(res.n_cand == 0 && !res.fits, "2T on 8 GPUs cannot fit");
    plan_result_free(&res);
}

int main(void) {
    test_param_counts();
    test_train_flops();
    test_zero_figure1();
    test_korthikanti_table2();
    test_korthikanti_fit();
    test_megatron_1t();
    test_llama3_405b();
    test_rejections();
    test_step_model_and_search();
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("test_plan: all checks passed\n");
    return 0;
}
