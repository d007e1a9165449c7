/* The training loop: micro-batches -> gradients -> (communicator) -> clip ->
 * AdamW, with evaluation, log.jsonl, the loss plot and checkpoints. */
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "data/data.h"
#include "pipeline.h"
#include "train.h"

void train_options_default(TrainOptions *o) {
    memset(o, 0, sizeof *o);
    o->steps = 1000;
    o->batch = 8;
    o->seq = 256;
    o->accum = 1;
    o->lr = 6e-4f;
    o->lr_min = -1.0f; /* -1: 10% of lr */
    o->warmup = -1;    /* -1: min(100, steps/10) */
    o->weight_decay = 0.1f;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->eps = 1e-8f;
    o->grad_clip = 1.0f;
    o->seed = 1337;
    o->eval_every = 100;
    o->eval_batches = 8;
    o->save_every = 500;
    o->keep = 2;
    o->max_bad_steps = 5;
    o->precision = -1;
}

/* Whether the JARIP_INJECT_NAN list names 1-based step s with kind
 * 'l' (loss: "7") or 'g' (gradient: "g7"). */
static int inject_at(const char *list, int s, char kind) {
    for (const char *p = list; p && *p;) {
        char k = 'l';
        if (*p == 'g') {
            k = 'g';
            p++;
        }
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) return 0;
        if (v == s && k == kind) return 1;
        p = *end == ',' ? end + 1 : end;
    }
    return 0;
}

float lr_schedule(const TrainOptions *o, int s) {
    float lr_min = o->lr_min >= 0 ? o->lr_min : 0.1f * o->lr;
    int warmup = o->warmup >= 0 ? o->warmup : (o->steps / 10 < 100 ? o->steps / 10 : 100);
    if (s < warmup) return o->lr * (float)(s + 1) / (float)warmup;
    if (o->steps <= warmup) return o->lr;
    double progress = (double)(s - warmup) / (double)(o->steps - warmup);
    if (progress > 1.0) progress = 1.0;
    return lr_min + (o->lr - lr_min) * 0.5f * (float)(1.0 + cos(M_PI * progress));
}

/* Keep the lines of an existing log up to `upto` (a resumed run rewrites
 * the steps after its checkpoint) and rebuild the plot history from them. */
static int log_restore(const char *path, int upto, LossHistory *h, Err *err) {
    char *text;
    size_t len;
    if (file_read_all(path, &text, &len, NULL) != 0) return 0; /* no log yet */
    char *keep = malloc(len + 1);
    if (!keep) {
        free(text);
        return err_set(err, ERR_NOMEM, "out of memory");
    }
    size_t kn = 0;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        json_t *o = json_loads(line, 0, NULL);
        if (!o) continue; /* a torn last line from a crash */
        int step = (int)json_integer_value(json_object_get(o, "step"));
        if (step >= 1 && step <= upto) {
            size_t n = strlen(line);
            memcpy(keep + kn, line, n);
            kn += n;
            keep[kn++] = '\n';
            json_t *l = json_object_get(o, "loss"), *v = json_object_get(o, "val_loss");
            if (json_is_number(l)) history_add(h, step, (float)json_number_value(l), 0);
            if (json_is_number(v)) history_add(h, step, (float)json_number_value(v), 1);
        }
        json_decref(o);
    }
    int rc = file_write_atomic(path, keep, kn, err);
    free(keep);
    free(text);
    return rc;
}

/* Mean validation cross-entropy over eval_batches global batches; every
 * rank takes its rows, in micro-batches, through the pipeline. */
static float evaluate(Model *m, DataLoader *dl, const TrainOptions *o, Parallel *p, Pipeline *pl, Err *err) {
    const int Bl = o->batch / p->dp, mb = pl->rows, T = o->seq;
    double total = 0.0;
    for (int i = 0; i < o->eval_batches; i++)
        for (int k = 0; k < Bl / mb; k++) {
            if (loader_batch(dl, SPLIT_VAL, (uint64_t)i, p->dp_rank * Bl + k * mb, mb, T, pl->inputs, pl->targets, err))
                return NAN;
            double loss;
            if (pipeline_forward_only(pl, p, m, pl->inputs, pl->targets, &loss, err)) return NAN;
            total += loss;
        }
    if (p->zero == 3) parallel_release_layer(p, m, -1);
    double v[1] = {total};
    if (p->world->size > 1 && comm_allreduce_sum_f64(p->world, v, 1, err)) return NAN;
    /* summed over dp ranks and over the last stage's tp ranks */
    return (float)(v[0] / ((double)o->eval_batches * (Bl / mb) * p->dp * p->tp));
}

/* Perplexity of o->eval_tokens as jarip eval perplexity (and llama-perplexity)
 * defines it, at ctx = seq: chunks in rows of micro-batches, targets only on
 * the second half of each chunk. Every data-parallel replica runs all the
 * chunks (the same figure everywhere); rows past the last chunk ignore all
 * their targets. */
static double eval_text_ppl(Model *m, const TrainOptions *o, Parallel *p, Pipeline *pl, Err *err) {
    const int T = o->seq, rows = pl->rows, first = T / 2, scored = T - 1 - first;
    const int n_chunk = (int)(o->n_eval_tokens / (size_t)T);
    double total = 0.0;
    for (int c0 = 0; c0 < n_chunk; c0 += rows) {
        const int nr = n_chunk - c0 < rows ? n_chunk - c0 : rows;
        for (int r = 0; r < rows; r++) {
            int32_t *in = pl->inputs + (size_t)r * T, *tg = pl->targets + (size_t)r * T;
            const int32_t *chunk = o->eval_tokens + (size_t)(c0 + r) * T;
            for (int k = 0; k < T; k++) {
                in[k] = r < nr ? chunk[k] : 0;
                tg[k] = r < nr && k >= first && k < T - 1 ? chunk[k + 1] : -1;
            }
            if (r < nr && o->eval_bos >= 0) in[0] = o->eval_bos;
        }
        double loss;
        if (pipeline_forward_only(pl, p, m, pl->inputs, pl->targets, &loss, err)) return NAN;
        total += loss * nr * scored; /* the loss is the mean over the scored targets */
    }
    if (p->zero == 3) parallel_release_layer(p, m, -1);
    double v[1] = {total};
    if (p->world->size > 1 && comm_allreduce_sum_f64(p->world, v, 1, err)) return NAN;
    return exp(v[0] / ((double)p->dp * p->tp) / ((double)n_chunk * scored));
}

/* Peak resident memory of this process so far, MiB (Linux: ru_maxrss in KiB). */
static double peak_rss_mib(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss / 1024.0 : 0.0;
}

/* OUT/memory.json: each rank's peak resident memory during the last step
 * (before its checkpoint) and its training-state bytes, for comparing
 * layouts and ZeRO stages (and the dry run). Best effort. */
static void write_memory(const char *out, const double *rss, const Parallel *p, size_t n_params) {
    json_t *o = json_object(), *a = json_array(), *b = json_array();
    for (int r = 0; r < p->world->size; r++) {
        json_array_append_new(a, json_real(rss[r]));
        json_array_append_new(b, json_integer((json_int_t)rss[p->world->size + r]));
    }
    json_object_set_new(o, "peak_rss_mib", a);
    /* weights, gradients, optimizer state and ZeRO staging as allocated */
    json_object_set_new(o, "state_bytes", b);
    json_object_set_new(o, "parameters", json_integer((json_int_t)n_params));
    json_object_set_new(o, "tp", json_integer(p->tp));
    json_object_set_new(o, "pp", json_integer(p->pp));
    json_object_set_new(o, "dp", json_integer(p->dp));
    json_object_set_new(o, "zero", json_integer(p->zero));
    char *text = json_dumps(o, JSON_INDENT(1));
    json_decref(o);
    char path[4200];
    snprintf(path, sizeof path, "%s/memory.json", out);
    if (text) file_write_atomic(path, text, strlen(text), NULL);
    free(text);
}

static void fmt_duration(char *buf, size_t n, double s) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60)
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, n, "%lds", t);
}

int train_run(Model *m, const TrainOptions *o, int start_step, Parallel *p, Err *err) {
    const Config *c = &m->cfg;
    const int T = o->seq, lead = p->rank == 0;
    int rc = 0;
    if (start_step >= o->steps)
        return err_set(err, ERR_INVALID, "the run already has %d of %d steps; pass a larger --steps to continue", start_step, o->steps);
    if (o->batch % p->dp)
        return err_set(err, ERR_INVALID, "--batch %d is not divisible by the %d data-parallel ranks", o->batch, p->dp);
    const int Bl = o->batch / p->dp, mb = o->micro_batch > 0 ? o->micro_batch : Bl;
    if (Bl % mb)
        return err_set(err, ERR_INVALID, "each data-parallel rank's %d rows are not divisible by --micro-batch %d", Bl, mb);
    if ((rc = model_set_precision(m, o->precision > 0 ? o->precision : PRECISION_FP32, err))) return rc;
    DataLoader *dl = NULL;
    if ((rc = loader_open(&dl, o->data, c->vocab_size, 0.1, o->seed, err))) return rc;
    if (loader_tokens(dl, SPLIT_VAL) < (uint64_t)T + 1 && o->eval_batches > 0) {
        loader_close(dl);
        return err_set(err, ERR_INVALID, "%s: validation split too small for sequences of %d tokens", o->data, T);
    }
    Pipeline pl;
    if ((rc = pipeline_init(&pl, m, mb, T, Bl / mb, p->pp, err)) ||
        (rc = parallel_reduce_in_backward(p, m, o->accum * (Bl / mb), err))) {
        pipeline_free(&pl, m);
        loader_close(dl);
        return rc;
    }
    pl.seed = o->seed;
    char log_path[4200], svg_path[4200];
    snprintf(log_path, sizeof log_path, "%s/log.jsonl", o->out);
    snprintf(svg_path, sizeof svg_path, "%s/loss.svg", o->out);
    LossHistory hist = {0};
    int run_steps = 0, bad_run = 0;
    /* step of the newest checkpoint of this run (a resumed run starts from one) */
    int last_saved = start_step;
    double *red = NULL; /* loss, aux loss, each rank's peak RSS and state bytes: summed over the world */
    FILE *log = NULL;
    size_t n_whole = config_param_count(c);
    float *full[3] = {NULL, NULL, NULL};
    if (lead) {
        checkpoint_clean_stale(o->out);
        if (start_step > 0) {
            if ((rc = log_restore(log_path, start_step, &hist, err))) goto done;
        } else {
            unlink(log_path);
        }
        log = fopen(log_path, "a");
        if (!log) {
            rc = err_set(err, ERR_IO, "cannot open %s for writing", log_path);
            goto done;
        }
    }
    const int threads = omp_get_max_threads();
    const double peak = cpu_peak_flops(threads);
    const double flops_tok = model_flops_per_token(c, T);
    const double tokens_per_step = (double)o->batch * T * o->accum;
    const int tty = isatty(2) && !o->quiet;
    const int print_every = o->steps >= 20 ? o->steps / 20 : 1;
    const float loss_scale = 1.0f / ((float)o->accum * (float)(Bl / mb));
    if (lead && !o->quiet)
        fprintf(stderr, "training %s model: %zu parameters, batch %d x %d x accum %d, %d steps, %d threads x %d ranks "
                        "(tp %d, pp %d, dp %d, zero %d), activations %.1f MiB per set\n",
                c->arch, n_whole, o->batch, T, o->accum, o->steps, threads, p->world->size, p->tp, p->pp, p->dp,
                p->zero, m->act.n_floats * 4.0 / (1 << 20));
    double run_t0 = time_now();
    red = malloc((2 + 2 * (size_t)p->world->size) * sizeof *red);
    if (!red) {
        rc = err_set(err, ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int step = start_step; step < o->steps; step++) {
        double t0 = time_now();
        parallel_zero_grad(p, m);
        double loss = 0.0, aux = 0.0;
        for (int micro = 0; micro < o->accum; micro++) {
            uint64_t batch_index = (uint64_t)step * o->accum + micro;
            double l = 0.0, x = 0.0;
            if ((rc = pipeline_run(&pl, p, m, dl, batch_index, p->dp_rank * Bl, loss_scale, &l, &x, err))) goto done;
            loss += l;
            aux += x;
        }
        /* mean over micro-batches and dp ranks; every tp rank holds the same
         * values, the last stage the cross-entropy, each stage its aux loss */
        /* with every rank's peak resident memory so far and its state bytes (memory.json) */
        const size_t W = (size_t)p->world->size;
        memset(red, 0, (2 + 2 * W) * sizeof *red);
        red[0] = loss;
        red[1] = aux;
        red[2 + p->rank] = peak_rss_mib();
        red[2 + W + p->rank] = (double)parallel_state_bytes(p, m);
        if (W > 1 && (rc = comm_allreduce_sum_f64(p->world, red, 2 + 2 * W, err))) goto done;
        const double per = (double)o->accum * (Bl / mb) * p->dp * p->tp;
        loss = (red[0] + red[1]) / per;
        if (inject_at(o->inject_nan, step + 1, 'l')) loss = NAN;
        if (inject_at(o->inject_nan, step + 1, 'g') && p->zero < 2 && m->n_params) m->grads[0] = INFINITY;
        double norm = 0.0;
        /* every rank has the same loss and norm, so all skip a bad step together */
        AdamOptions ao = {lr_schedule(o, step), o->beta1, o->beta2, o->eps, o->weight_decay, o->grad_clip, step + 1,
                          !isfinite(loss)};
        if ((rc = parallel_optimizer_step(p, m, &ao, &norm, err))) goto done;
        const int skipped = !isfinite(loss) || !isfinite(norm);
        if (skipped) {
            bad_run++;
            const char *what = !isfinite(loss) ? "loss" : "gradient norm";
            double val_bad = !isfinite(loss) ? loss : norm;
            if (lead) {
                fprintf(stderr, "%sjarip: warning: step %d: %s is %g: step skipped, weights unchanged (%d in a row; "
                                "the run stops at %d)\n", tty ? "\r\033[K" : "", step + 1, what, val_bad, bad_run,
                        o->max_bad_steps);
                fprintf(log, "{\"step\": %d, \"skipped\": \"%s is %g\"}\n", step + 1, what, val_bad);
                fflush(log);
            }
            if (bad_run >= o->max_bad_steps) {
                if (last_saved > 0)
                    rc = err_set(err, ERR_INVALID, "%d steps in a row (%d-%d) had a non-finite loss or gradient: stopped; "
                                 "the last good checkpoint is %s/ckpt_%08d (try a lower --lr)", bad_run,
                                 step + 2 - bad_run, step + 1, o->out, last_saved);
                else
                    rc = err_set(err, ERR_INVALID, "%d steps in a row (%d-%d) had a non-finite loss or gradient: stopped "
                                 "before any checkpoint (try a lower --lr)", bad_run, step + 2 - bad_run, step + 1);
                goto done;
            }
        } else {
            bad_run = 0;
        }
        double dt = time_now() - t0;
        double tps = tokens_per_step / dt;
        double mfu = peak > 0 ? flops_tok * tps / (peak * p->world->size) : 0.0;
        run_steps++;
        int done_steps = step + 1, last = done_steps == o->steps;
        float val = NAN;
        double ppl = NAN;
        if ((o->eval_every > 0 && done_steps % o->eval_every == 0) || (last && o->eval_batches > 0)) {
            val = evaluate(m, dl, o, p, &pl, err);
            if (!isnan(val) && o->eval_tokens) ppl = eval_text_ppl(m, o, p, &pl, err);
            if (isnan(val) || (o->eval_tokens && isnan(ppl))) {
                rc = err->code ? err->code : ERR_INVALID;
                goto done;
            }
        }
        if (lead && !skipped) {
            fprintf(log, "{\"step\": %d, \"loss\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g, \"tokens_per_s\": %.1f, \"mfu\": %.4f",
                    done_steps, loss, ao.lr, norm, tps, mfu);
            if (c->n_expert) fprintf(log, ", \"aux_loss\": %.9g", red[1] / per);

            if (!isnan(val)) fprintf(log, ", \"val_loss\": %.9g", val);
            if (!isnan(ppl)) fprintf(log, ", \"eval_ppl\": %.9g", ppl);
            fprintf(log, "}\n");
            fflush(log);
            history_add(&hist, done_steps, (float)loss, 0);
            if (!isnan(val)) history_add(&hist, done_steps, val, 1);
            double elapsed = time_now() - run_t0;
            char eta[32];
            fmt_duration(eta, sizeof eta, elapsed / run_steps * (o->steps - done_steps));
            if (!o->quiet && (tty || done_steps % print_every == 0 || last || !isnan(val))) {
                fprintf(stderr, "%sstep %d/%d | loss %.4f | lr %.2e | %.0f tok/s | MFU %.1f%% | ETA %s", tty ? "\r\033[K" : "",
                        done_steps, o->steps, loss, ao.lr, tps, 100.0 * mfu, eta);
                if (!isnan(val)) fprintf(stderr, " | val %.4f", val);
                if (!isnan(ppl)) fprintf(stderr, " | ppl %.4f", ppl);
                if (!tty || !isnan(val) || last) fprintf(stderr, "\n");
            }
            if (!isnan(val) || last || done_steps % print_every == 0) plot_loss_svg(&hist, svg_path, NULL);
        }
        int stop = o->stop_after > 0 && run_steps == o->stop_after && !last;
        if ((o->save_every > 0 && done_steps % o->save_every == 0) || last || stop) {
            if (p->world->size > 1) {
                /* whole-model buffers on rank 0, only while it saves (they are
                 * as large as the weights and both Adam moments together) */
                for (int k = 0; k < 3 && lead; k++)
                    if (!(full[k] = calloc(n_whole ? n_whole : 1, sizeof(float)))) {
                        rc = err_set(err, ERR_NOMEM, "out of memory gathering the checkpoint (%zu parameters)", n_whole);
                        goto done;
                    }
                if ((rc = parallel_gather_full(p, m, full[0], full[1], full[2], err))) goto done;
                if (lead && (rc = checkpoint_write(c, full[0], full[1], full[2], o, done_steps, err))) goto done;
                for (int k = 0; k < 3; k++) {
                    free(full[k]);
                    full[k] = NULL;
                }
                if ((rc = comm_barrier(p->world, err))) goto done;
            } else if ((rc = checkpoint_save(m, o, done_steps, err))) {
                goto done;
            }
            last_saved = done_steps;
        }
        if (stop) {
            if (lead && !o->quiet) fprintf(stderr, "stopped after %d steps; continue with: jarip train --resume %s\n", run_steps, o->out);
            break;
        }
    }
done:
    if (!rc && lead && red && run_steps > 0) write_memory(o->out, red + 2, p, n_whole);
    free(red);
    if (log) fclose(log);
    history_free(&hist);
    for (int k = 0; k < 3; k++) free(full[k]);
    pipeline_free(&pl, m);
    loader_close(dl);
    return rc;
}
