/* jarip plan: parameters, compute, memory per device, layouts that fit, time
 * and energy of a training run at any scale (src/plan/, docs/planner.md). */
#include <stdlib.h>
#include <string.h>

#include "model_arg.h"
#include "plan/plan.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: jarip plan (--preset NAME | --config FILE) [options]\n\n"
            "model and data\n"
            "  --preset NAME            a built-in model (list below)\n"
            "  --config FILE            a model config JSON (the schema of jarip train)\n"
            "  --tokens N               training tokens (default 20 per parameter, Chinchilla)\n"
            "  --seq T                  sequence length (default: the model's context_length)\n"
            "  --global-batch B         sequences per optimizer step (default ~4M tokens; cpu: one micro-batch per rank)\n"
            "  --micro-batch b          sequences per micro-batch (default 1)\n"
            "cluster and layout\n"
            "  --gpu TYPE               a100-40g, a100-80g, h100-80g (default), h200-141g, b200, tpu-v4,\n"
            "                           cpu (this machine, measured), or FILE.json (keys in docs/planner.md)\n"
            "  --gpus N                 devices (default tp*pp*dp)\n"
            "  --tp t --pp p --dp d     tensor, pipeline, data parallel sizes (tp*pp*dp = gpus)\n"
            "  --ep e                   expert parallel size (inside dp; MoE models)\n"
            "  --vpp v                  virtual pipeline stages per device (interleaved 1F1B)\n"
            "  --first-stage-layers N --last-stage-layers N\n"
            "                           uneven pipeline ends (Llama 3 405B: 126 layers, pp 16, 7 and 7)\n"
            "  --zero 0|1|2|3           ZeRO stage over the data-parallel group\n"
            "  --recompute none|selective|full   activation recomputation (Korthikanti et al. 2022)\n"
            "  --sequence-parallel      split norms/dropouts over tp too\n"
            "  --flash-attention        attention scores are never stored (fused kernel)\n"
            "  --dropout on|off         keep dropout masks (default: on for gpt2 arch, off for llama)\n"
            "  --precision fp32|bf16    default bf16 on accelerators, fp32 on cpu\n"
            "  --grad-dtype fp32|bf16   bf16 mixed precision: gradient dtype (default fp32, 18 B/param; bf16: 16)\n"
            "rate (one; default: the step-time model)\n"
            "  --mfu X                  model FLOPs utilisation (0..1) of the device peak\n"
            "  --tflops-per-gpu X       achieved hardware TFLOP/s per device (counts recomputation, as Megatron-LM)\n"
            "  --tokens-per-s X         whole-cluster training throughput\n"
            "  --step-time S            seconds per optimizer step\n"
            "  --pue X                  power usage effectiveness of the data centre (default 1.1)\n"
            "output\n"
            "  --search                 enumerate layouts of --gpus devices that fit, rank by modelled step time\n"
            "                           (flags given above stay fixed)\n"
            "  --candidates N           how many layouts --search keeps (default 10)\n"
            "  --json                   one JSON object instead of the report\n"
            "  --svg FILE               chart: the searched layouts, or this model next to the hyperscale presets\n");
    model_arg_list_presets(f);
    fprintf(f, "devices:");
    for (const char *const *n = hw_preset_names(); *n; n++) fprintf(f, " %s", *n);
    fprintf(f, "\n");
}

/* One of the names; index or prints an error and returns -1. */
static int pick(const char *flag, const char *v, const char *const *names) {
    for (int i = 0; names[i]; i++)
        if (strcmp(v, names[i]) == 0) return i;
    cli_error(2, "plan: %s: '%s' is not one of the choices (see jarip plan --help)", flag, v);
    return -1;
}

int cmd_plan(int argc, char **argv) {
    const char *preset = NULL, *config = NULL, *gpu = "h100-80g", *svg = NULL, *s = NULL;
    int json = 0, precision = -1, set_rate = 0, rc = 0;
    unsigned fix = 0;
    PlanRequest q;
    plan_request_default(&q);
    int dp = 0;
    double tokens = 0;
    static const char *const recs[] = {"none", "selective", "full", NULL};
    static const char *const precs[] = {"fp32", "bf16", NULL};
    static const char *const onoff[] = {"off", "on", NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int k;
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        }
#define FLAG(name) else if (!strcmp(a, name))
#define RATE(kind, lo, hi)                                                                                  \
    {                                                                                                       \
        if (set_rate++) return cli_error(2, "plan: give one rate: --mfu, --tflops-per-gpu, --tokens-per-s or --step-time"); \
        q.rate_kind = kind;                                                                                 \
        rc = cli_double(argc, argv, &i, lo, hi, &q.rate);                                                   \
    }
        if (0) {
        }
        FLAG("--preset") rc = cli_str(argc, argv, &i, &preset);
        FLAG("--config") rc = cli_str(argc, argv, &i, &config);
        FLAG("--tokens") rc = cli_double(argc, argv, &i, 1, 1e18, &tokens);
        FLAG("--seq") rc = cli_int(argc, argv, &i, 1, 1 << 24, &q.run.seq);
        FLAG("--global-batch") rc = cli_long(argc, argv, &i, 1, 1LL << 40, &q.run.global_batch);
        FLAG("--micro-batch") { rc = cli_int(argc, argv, &i, 1, 1 << 20, &q.run.micro_batch); fix |= PLAN_FIX_MB; }
        FLAG("--gpu") rc = cli_str(argc, argv, &i, &gpu);
        FLAG("--gpus") rc = cli_int(argc, argv, &i, 1, 1 << 24, &q.gpus);
        FLAG("--tp") { rc = cli_int(argc, argv, &i, 1, 1 << 16, &q.layout.tp); fix |= PLAN_FIX_TP; }
        FLAG("--pp") { rc = cli_int(argc, argv, &i, 1, 1 << 16, &q.layout.pp); fix |= PLAN_FIX_PP; }
        FLAG("--dp") { rc = cli_int(argc, argv, &i, 1, 1 << 24, &dp); fix |= PLAN_FIX_DP; }
        FLAG("--ep") { rc = cli_int(argc, argv, &i, 1, 1 << 16, &q.layout.ep); fix |= PLAN_FIX_EP; }
        FLAG("--vpp") { rc = cli_int(argc, argv, &i, 1, 1 << 10, &q.layout.vpp); fix |= PLAN_FIX_VPP; }
        FLAG("--first-stage-layers") rc = cli_int(argc, argv, &i, 1, 1 << 20, &q.layout.first_stage_layers);
        FLAG("--last-stage-layers") rc = cli_int(argc, argv, &i, 1, 1 << 20, &q.layout.last_stage_layers);
        FLAG("--zero") { rc = cli_int(argc, argv, &i, 0, 3, &q.layout.zero); fix |= PLAN_FIX_ZERO; }
        FLAG("--recompute") {
            if (!(rc = cli_str(argc, argv, &i, &s))) {
                if ((k = pick(a, s, recs)) < 0) return 2;
                q.run.recompute = k;
                fix |= PLAN_FIX_RECOMPUTE;
            }
        }
        FLAG("--sequence-parallel") { q.run.seq_parallel = 1; fix |= PLAN_FIX_SP; }
        FLAG("--flash-attention") q.run.flash = 1;
        FLAG("--dropout") {
            if (!(rc = cli_str(argc, argv, &i, &s))) {
                if ((k = pick(a, s, onoff)) < 0) return 2;
                q.run.dropout = k;
            }
        }
        FLAG("--precision") {
            if (!(rc = cli_str(argc, argv, &i, &s))) {
                if ((precision = pick(a, s, precs)) < 0) return 2;
            }
        }
        FLAG("--grad-dtype") {
            if (!(rc = cli_str(argc, argv, &i, &s))) {
                if ((k = pick(a, s, precs)) < 0) return 2;
                q.layout.grad_bf16 = k;
            }
        }
        FLAG("--mfu") RATE(RATE_MFU, 1e-6, 1)
        FLAG("--tflops-per-gpu") RATE(RATE_TFLOPS, 1e-9, 1e9)
        FLAG("--tokens-per-s") RATE(RATE_TOKENS_PER_S, 1e-9, 1e18)
        FLAG("--step-time") RATE(RATE_STEP_TIME, 1e-9, 1e12)
        FLAG("--pue") rc = cli_double(argc, argv, &i, 1, 10, &q.pue);
        FLAG("--search") q.search = 1;
        FLAG("--candidates") rc = cli_int(argc, argv, &i, 1, 1000, &q.max_candidates);
        FLAG("--json") json = 1;
        FLAG("--svg") rc = cli_str(argc, argv, &i, &svg);
        else return cli_error(2, "plan: unknown flag '%s' (see jarip plan --help)", a);
#undef FLAG
#undef RATE
        if (rc) return rc;
    }
    Config c;
    if ((rc = model_arg_config(preset, config, &c))) return rc;
    Err err = {0};
    Hardware hw;
    if (hw_get(&hw, gpu, &err)) return cli_error(2, "plan: %s", err.msg);
    q.layout.precision = precision >= 0 ? precision : (strcmp(hw.name, "cpu") == 0 ? PREC_FP32 : PREC_BF16);
    if (q.layout.grad_bf16 && q.layout.precision != PREC_BF16)
        return cli_error(2, "plan: --grad-dtype bf16 needs --precision bf16");
    q.tokens = tokens;
    /* dp follows from --gpus when not given; gpus from the layout when not given */
    int tpp = q.layout.tp * q.layout.pp;
    if (dp) q.layout.dp = dp;
    else if (q.gpus > 0 && !q.search) {
        if (q.gpus % tpp) return cli_error(2, "plan: --gpus %d is not divisible by tp*pp = %d", q.gpus, tpp);
        q.layout.dp = q.gpus / tpp;
    }
    if (q.gpus <= 0 && !q.search) q.gpus = tpp * q.layout.dp;
    if (q.search && q.gpus <= 0) return cli_error(2, "plan: --search needs --gpus N");
    if (q.search && !(fix & PLAN_FIX_DP) && (fix & (PLAN_FIX_TP | PLAN_FIX_PP)) == (PLAN_FIX_TP | PLAN_FIX_PP)) {
        if (q.gpus % tpp) return cli_error(2, "plan: --gpus %d is not divisible by tp*pp = %d", q.gpus, tpp);
        q.layout.dp = q.gpus / tpp;
    }
    long long gb_given = q.run.global_batch;
    plan_run_defaults(&c, &hw, &q);
    if (!gb_given && !q.search) { /* a default batch must divide over the layout */
        long long per = (long long)q.layout.dp * q.run.micro_batch * (q.layout.vpp > 1 ? q.layout.pp : 1);
        q.run.global_batch = (q.run.global_batch + per - 1) / per * per;
    }
    PlanResult res;
    rc = q.search ? plan_search(&c, &hw, &q, fix, &res, &err) : plan_compute(&c, &hw, &q, &res, &err);
    if (rc) return cli_error(rc == ERR_INVALID ? 2 : 1, "plan: %s", err.msg);
    const char *name = preset ? preset : config;
    if (json) {
        char *js = plan_report_json(&c, name, &hw, &q, &res);
        if (!js) {
            plan_result_free(&res);
            return cli_error(1, "plan: out of memory");
        }
        printf("%s\n", js);
        free(js);
    } else {
        plan_report_text(&c, name, &hw, &q, &res, stdout);
    }
    if (svg && plan_report_svg(&c, name, &hw, &q, &res, svg, &err)) {
        plan_result_free(&res);
        return cli_error(1, "plan: %s", err.msg);
    }
    plan_result_free(&res);
    return 0;
}
