/* Plan output: a readable report, one JSON object, and an SVG chart. */
#include "plan.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *plan_recompute_name(int r) {
    return r == RECOMPUTE_FULL ? "full" : r == RECOMPUTE_SELECTIVE ? "selective" : "none";
}

static const char *prec_name(const PlanLayout *l) { return l->precision == PREC_BF16 ? "bf16" : "fp32"; }
static const char *grad_name(const PlanLayout *l) {
    return l->precision == PREC_BF16 && l->grad_bf16 ? "bf16" : "fp32";
}

/* 1234567 -> "1.23 M" style with SI prefixes (k, M, G, T, P, E, Z, Y). */
static const char *si(char *buf, size_t n, double v, const char *unit) {
    static const char *const pre[] = {"", "k", "M", "G", "T", "P", "E", "Z", "Y"};
    int i = 0;
    double a = fabs(v);
    while (a >= 1000 && i < 8) {
        a /= 1000;
        v /= 1000;
        i++;
    }
    snprintf(buf, n, "%.3g %s%s", v, pre[i], unit);
    return buf;
}

static double gib(double b) { return b / 1073741824.0; }

static void layout_str(char *buf, size_t n, const PlanLayout *l, const PlanRun *r) {
    snprintf(buf, n, "tp %d  pp %d  dp %d  ep %d  vpp %d  zero %d  recompute %s%s  micro-batch %d", l->tp, l->pp,
             l->dp, l->ep, l->vpp, l->zero, plan_recompute_name(r->recompute), r->seq_parallel && l->tp > 1 ? "  +sp" : "",
             r->micro_batch);
}

int plan_report_text(const Config *c, const char *model_name, const Hardware *hw, const PlanRequest *q,
                     const PlanResult *res, FILE *out) {
    char a[64], b[64], d[64];
    const PlanLayout *l = &res->layout;
    fprintf(out, "model      %s: %d layers, d_model %d, %d heads (%d kv), d_ff %d, vocab %d%s\n", model_name, c->n_layer,
            c->d_model, c->n_head, c->n_kv_head, c->d_ff, c->vocab_size, c->n_expert ? ", mixture of experts" : "");
    if (c->n_expert) fprintf(out, "           %d experts, %d active per token\n", c->n_expert, c->n_expert_active);
    if (c->note[0]) fprintf(out, "note       %s\n", c->note);
    fprintf(out, "parameters %zu total, %zu active per token\n", res->params_total, res->params_active);
    fprintf(out, "compute    %s per token (6N + 12 L d T at T = %d); %s executed (recompute: %s)\n",
            si(a, sizeof a, res->flops_per_token, "FLOP"), res->run.seq, si(b, sizeof b, res->hw_flops_per_token, "FLOP"),
            plan_recompute_name(res->run.recompute));
    fprintf(out, "training   %s tokens%s -> %.3g FLOP (6 N_active D)\n", si(a, sizeof a, res->tokens, ""),
            q->tokens > 0 ? "" : " (20 per parameter)", res->train_flops);
    fprintf(out, "hardware   %d x %s (%s), %.1f GiB each; %s\n", res->devices, hw->name,
            si(d, sizeof d, l->precision == PREC_BF16 ? hw->peak_bf16 : hw->peak_fp32, "FLOP/s"), gib(hw->memory), hw->note);
    char ls[256];
    layout_str(ls, sizeof ls, l, &res->run);
    fprintf(out, "layout     %s\n", ls);
    if (res->engine && l->precision == PREC_BF16) /* what jarip train --precision bf16 does */
        fprintf(out, "precision  bf16 products, fp32 weights/grads/activations (bf16 copies made at each product); "
                     "global batch %lld x %d tokens\n", res->run.global_batch, res->run.seq);
    else
        fprintf(out, "precision  %s weights/activations, %s grads; global batch %lld x %d tokens\n", prec_name(l),
                grad_name(l), res->run.global_batch, res->run.seq);
    fprintf(out, "memory     per device (pipeline stage %d, the most loaded):\n", res->worst_stage);
    fprintf(out, "             weights     %10.2f GiB\n", gib(res->mem.weights));
    fprintf(out, "             grads       %10.2f GiB\n", gib(res->mem.grads));
    fprintf(out, "             optimizer   %10.2f GiB\n", gib(res->mem.optimizer));
    fprintf(out, "             activations %10.2f GiB\n", gib(res->mem.activations));
    if (res->mem.scratch > 0) fprintf(out, "             bf16 scratch%10.2f GiB\n", gib(res->mem.scratch));
    fprintf(out, "             total       %10.2f GiB of %.2f GiB usable -> %s\n", gib(res->mem.total),
            gib(hw->memory * hw->usable_fraction), res->fits ? "fits" : "DOES NOT FIT");
    if (res->time_known) {
        if (res->time_from_model)
            fprintf(out, "step time  %.3f s modelled: compute %.3f, tp %.3f, ep %.3f, pp %.3f, bubble %.3f, dp %.3f\n",
                    res->step_time_s, res->st.compute, res->st.tp_comm, res->st.ep_comm, res->st.pp_comm, res->st.bubble,
                    res->st.dp_comm);
        else
            fprintf(out, "step time  %.3f s (from the given rate)\n", res->step_time_s);
        fprintf(out, "throughput %s tokens/s", si(a, sizeof a, res->tokens_per_s, ""));
        if (res->mfu >= 0) fprintf(out, ", MFU %.1f%%, HFU %.1f%%", 100 * res->mfu, 100 * res->hfu);
        fprintf(out, "\n");
        fprintf(out, "duration   %.1f days, %s GPU-hours\n", res->train_days, si(a, sizeof a, res->gpu_hours, ""));
        fprintf(out, "energy     %.1f MWh (%.0f W per device x PUE %.2f)\n", res->energy_mwh, hw->power_w, q->pue);
    } else {
        fprintf(out, "time       unknown: give --mfu, --tflops-per-gpu, --tokens-per-s or --step-time\n");
    }
    if (q->search) {
        fprintf(out, "\nsearch     %lld layouts of %d devices tried, %d shown that fit (fastest first):\n", res->n_searched,
                q->gpus, res->n_cand);
        for (int i = 0; i < res->n_cand; i++) {
            const PlanCandidate *k = &res->cand[i];
            layout_str(ls, sizeof ls, &k->layout, &k->run);
            fprintf(out, "  %2d. %-78s %9.3f s/step %8.2f GiB\n", i + 1, ls, k->st.total, gib(k->mem.total));
        }
        if (res->n_cand == 0) fprintf(out, "  no layout fits; shown above: the lightest one\n");
    }
    return 0;
}

/* ---- JSON -------------------------------------------------------------------- */
static json_t *num_or_null(int known, double v) { return known && isfinite(v) ? json_real(v) : json_null(); }
static json_t *bytes_json(double v) { return json_integer((json_int_t)llround(v)); }

static json_t *layout_json(const PlanLayout *l, const PlanRun *r) {
    json_t *o = json_object();
    json_object_set_new(o, "tp", json_integer(l->tp));
    json_object_set_new(o, "pp", json_integer(l->pp));
    json_object_set_new(o, "dp", json_integer(l->dp));
    json_object_set_new(o, "ep", json_integer(l->ep));
    json_object_set_new(o, "vpp", json_integer(l->vpp));
    json_object_set_new(o, "zero", json_integer(l->zero));
    json_object_set_new(o, "recompute", json_string(plan_recompute_name(r->recompute)));
    json_object_set_new(o, "sequence_parallel", json_boolean(r->seq_parallel && l->tp > 1));
    json_object_set_new(o, "precision", json_string(prec_name(l)));
    json_object_set_new(o, "grad_dtype", json_string(grad_name(l)));
    json_object_set_new(o, "micro_batch", json_integer(r->micro_batch));
    json_object_set_new(o, "global_batch", json_integer(r->global_batch));
    json_object_set_new(o, "seq", json_integer(r->seq));
    if (l->first_stage_layers) json_object_set_new(o, "first_stage_layers", json_integer(l->first_stage_layers));
    if (l->last_stage_layers) json_object_set_new(o, "last_stage_layers", json_integer(l->last_stage_layers));
    return o;
}

static json_t *memory_json(const PlanMemory *m) {
    json_t *o = json_object();
    json_object_set_new(o, "weights", bytes_json(m->weights));
    json_object_set_new(o, "grads", bytes_json(m->grads));
    json_object_set_new(o, "optimizer", bytes_json(m->optimizer));
    json_object_set_new(o, "activations", bytes_json(m->activations));
    json_object_set_new(o, "scratch", bytes_json(m->scratch));
    json_object_set_new(o, "total", bytes_json(m->total));
    return o;
}

char *plan_report_json(const Config *c, const char *model_name, const Hardware *hw, const PlanRequest *q,
                       const PlanResult *res) {
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(model_name));
    if (c->note[0]) json_object_set_new(o, "note", json_string(c->note));
    json_object_set_new(o, "params_total", json_integer((json_int_t)res->params_total));
    json_object_set_new(o, "params_active", json_integer((json_int_t)res->params_active));
    json_object_set_new(o, "flops_per_token", json_real(res->flops_per_token));
    json_object_set_new(o, "hw_flops_per_token", json_real(res->hw_flops_per_token));
    json_object_set_new(o, "tokens", json_real(res->tokens));
    json_object_set_new(o, "train_flops", json_real(res->train_flops));
    json_object_set_new(o, "devices", json_integer(res->devices));
    json_t *h = json_object();
    json_object_set_new(h, "name", json_string(hw->name));
    json_object_set_new(h, "peak_flops", json_real(res->layout.precision == PREC_BF16 ? hw->peak_bf16 : hw->peak_fp32));
    json_object_set_new(h, "memory_bytes", bytes_json(hw->memory));
    json_object_set_new(h, "usable_bytes", bytes_json(hw->memory * hw->usable_fraction));
    json_object_set_new(h, "power_w", json_real(hw->power_w));
    json_object_set_new(o, "hardware", h);
    json_object_set_new(o, "layout", layout_json(&res->layout, &res->run));
    json_object_set_new(o, "memory_per_device_bytes", memory_json(&res->mem));
    json_object_set_new(o, "fits", json_boolean(res->fits));
    json_object_set_new(o, "step_time_s", num_or_null(res->time_known && res->step_known, res->step_time_s));
    json_object_set_new(o, "tokens_per_s", num_or_null(res->time_known, res->tokens_per_s));
    json_object_set_new(o, "train_days", num_or_null(res->time_known, res->train_days));
    json_object_set_new(o, "gpu_hours", num_or_null(res->time_known, res->gpu_hours));
    json_object_set_new(o, "mfu", num_or_null(res->time_known && res->mfu >= 0, res->mfu));
    json_object_set_new(o, "hfu", num_or_null(res->time_known && res->hfu >= 0, res->hfu));
    json_object_set_new(o, "energy_mwh", num_or_null(res->time_known, res->energy_mwh));
    json_object_set_new(o, "time_source", json_string(!res->time_known ? "none" : res->time_from_model ? "model" : "rate"));
    if (res->time_from_model) {
        json_t *s = json_object();
        json_object_set_new(s, "compute", json_real(res->st.compute));
        json_object_set_new(s, "tp_comm", json_real(res->st.tp_comm));
        json_object_set_new(s, "ep_comm", json_real(res->st.ep_comm));
        json_object_set_new(s, "pp_comm", json_real(res->st.pp_comm));
        json_object_set_new(s, "bubble", json_real(res->st.bubble));
        json_object_set_new(s, "dp_comm", json_real(res->st.dp_comm));
        json_object_set_new(o, "step_time_breakdown_s", s);
    }
    if (q->search) {
        json_t *arr = json_array();
        for (int i = 0; i < res->n_cand; i++) {
            const PlanCandidate *k = &res->cand[i];
            json_t *e = json_object();
            json_object_set_new(e, "layout", layout_json(&k->layout, &k->run));
            json_object_set_new(e, "memory_per_device_bytes", memory_json(&k->mem));
            json_object_set_new(e, "fits", json_boolean(k->fits));
            json_object_set_new(e, "step_time_s", json_real(k->st.total));
            json_array_append_new(arr, e);
        }
        json_object_set_new(o, "candidates", arr);
        json_object_set_new(o, "layouts_searched", json_integer(res->n_searched));
    }
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(o);
    return s;
}

/* ---- SVG ------------------------------------------------------------------------- */
typedef struct {
    char label[96];
    double v[4];
} Row;

static void svg_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else fputc(*s, f);
    }
}

/* Four panels of horizontal bars, one row per item; log panels for values
 * spanning orders of magnitude. */
static void svg_panels(FILE *f, const char *title, const Row *rows, int n, const char *const *heads, const int *logp,
                       const char *const *units, double limit3) {
    const int lw = 250, pw = 230, rh = 22, top = 60;
    int W = lw + 4 * (pw + 20) + 20, H = top + n * rh + 40;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<text x=\"10\" y=\"22\" font-size=\"16\">");
    svg_escape(f, title);
    fprintf(f, "</text>\n");
    static const char *const colors[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759"};
    for (int p = 0; p < 4; p++) {
        double mx = 0, mn = 1e300;
        for (int i = 0; i < n; i++) {
            if (rows[i].v[p] > mx) mx = rows[i].v[p];
            if (rows[i].v[p] > 0 && rows[i].v[p] < mn) mn = rows[i].v[p];
        }
        if (p == 3 && limit3 > mx) mx = limit3;
        int x0 = lw + p * (pw + 20);
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-weight=\"bold\">", x0, top - 10);
        svg_escape(f, heads[p]);
        fprintf(f, "</text>\n");
        double lo = logp[p] && mn < 1e300 ? floor(log10(mn)) - 0.3 : 0;
        for (int i = 0; i < n; i++) {
            double v = rows[i].v[p], frac = 0;
            if (mx > 0 && v > 0) frac = logp[p] ? (log10(v) - lo) / (log10(mx) - lo + 1e-12) : v / mx;
            if (frac < 0) frac = 0;
            int y = top + i * rh;
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>\n", x0, y, frac * (pw - 70),
                    rh - 6, colors[p]);
            char buf[64];
            fprintf(f, "<text x=\"%.1f\" y=\"%d\">%s</text>\n", x0 + frac * (pw - 70) + 4, y + rh - 10,
                    si(buf, sizeof buf, v, units[p]));
        }
        if (p == 3 && limit3 > 0 && mx > 0) {
            double x = x0 + limit3 / mx * (pw - 70);
            fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"black\" stroke-dasharray=\"4\"/>\n", x,
                    top - 5, x, top + n * rh);
        }
    }
    for (int i = 0; i < n; i++) {
        fprintf(f, "<text x=\"10\" y=\"%d\">", top + i * rh + rh - 10);
        svg_escape(f, rows[i].label);
        fprintf(f, "</text>\n");
    }
    fprintf(f, "<text x=\"10\" y=\"%d\" fill=\"#555\">jarip plan; conventions in docs/planner.md</text>\n</svg>\n", H - 12);
}

/* Reference models drawn next to the planned one. */
static const char *const svg_presets[] = {"gpt2-xl", "llama3-70b", "gpt3-175b", "llama3-405b", "mai-1-500b",
                                          "megatron-1t", "gemini-ultra-1.56t", "gpt4-1.76t-moe", "olympus-2t", NULL};

int plan_report_svg(const Config *c, const char *model_name, const Hardware *hw, const PlanRequest *q,
                    const PlanResult *res, const char *path, Err *err) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return err_set(err, ERR_NOMEM, "out of memory");
    char title[256];
    if (q->search && res->n_cand > 0) {
        Row *rows = calloc((size_t)res->n_cand, sizeof *rows);
        if (!rows) {
            fclose(f);
            free(buf);
            return err_set(err, ERR_NOMEM, "out of memory");
        }
        for (int i = 0; i < res->n_cand; i++) {
            const PlanCandidate *k = &res->cand[i];
            snprintf(rows[i].label, sizeof rows[i].label, "tp%d pp%d dp%d ep%d v%d z%d %s mb%d", k->layout.tp, k->layout.pp,
                     k->layout.dp, k->layout.ep, k->layout.vpp, k->layout.zero, plan_recompute_name(k->run.recompute),
                     k->run.micro_batch);
            rows[i].v[0] = k->st.total;
            rows[i].v[1] = k->st.bubble + k->st.tp_comm + k->st.pp_comm + k->st.dp_comm + k->st.ep_comm;
            rows[i].v[2] = k->mem.weights + k->mem.grads + k->mem.optimizer;
            rows[i].v[3] = k->mem.total;
        }
        static const char *const heads[] = {"step time", "communication + bubble", "model state / device", "memory / device"};
        static const int logp[] = {0, 0, 0, 0};
        static const char *const units[] = {"s", "s", "B", "B"};
        snprintf(title, sizeof title, "%s on %d x %s: layouts that fit, fastest first", model_name, q->gpus, hw->name);
        svg_panels(f, title, rows, res->n_cand, heads, logp, units, hw->memory * hw->usable_fraction);
        free(rows);
    } else {
        Row rows[16];
        int n = 0;
        const double peak = hw->peak_bf16 > 0 ? hw->peak_bf16 : hw->peak_fp32;
        const double mfu = q->rate_kind == RATE_MFU ? q->rate : 0.4;
        const int gpus = res->devices > 0 ? res->devices : 1;
        for (int i = -1; svg_presets[i < 0 ? 0 : i] && n < 16; i++) {
            Config pc;
            const Config *cc = c;
            const char *name = model_name;
            if (i >= 0) {
                if (strcmp(svg_presets[i], model_name) == 0 || config_preset(&pc, svg_presets[i], NULL)) continue;
                cc = &pc;
                name = svg_presets[i];
            }
            Row *r = &rows[n++];
            double np = (double)config_param_count(cc), na = (double)config_active_param_count(cc);
            double tokens = i < 0 && q->tokens > 0 ? q->tokens : 20 * np;
            snprintf(r->label, sizeof r->label, "%s%s", name, i < 0 ? " (this plan)" : "");
            r->v[0] = np;
            r->v[1] = 6 * na * tokens;
            r->v[2] = peak > 0 ? model_flops_per_token(cc, cc->context_length) * tokens / (mfu * peak) / 86400 : 0;
            r->v[3] = 16.0 * np / gpus; /* bf16 mixed-precision Adam, ZeRO-3 over all devices */
        }
        static const char *const heads[] = {"parameters", "training compute (20 tok/param)", "GPU-days",
                                            "model state / device"};
        static const int logp[] = {1, 1, 1, 1};
        static const char *const units[] = {"", "FLOP", "", "B"};
        snprintf(title, sizeof title, "%s next to the hyperscale models: %s at %.0f%% MFU, state at 16 B/param over %d devices",
                 model_name, hw->name, 100 * mfu, gpus);
        svg_panels(f, title, rows, n, heads, logp, units, 0);
    }
    fclose(f);
    int rc = file_write_atomic(path, buf, len, err);
    free(buf);
    return rc;
}
