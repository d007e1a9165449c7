/* The training loop: micro-batches -> gradients -> (communicator) -> clip ->
 * AdamW, with evaluation, log.jsonl, the loss plot and checkpoints. */
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/data.h"
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

static float evaluate(Model *m, DataLoader *dl, const TrainOptions *o, int32_t *inp, int32_t *tgt, Err *err) {
    double total = 0.0;
    for (int i = 0; i < o->eval_batches; i++) {
        if (loader_batch(dl, SPLIT_VAL, (uint64_t)i, 0, o->batch, o->seq, inp, tgt, err)) return NAN;
        float loss = model_forward(m, inp, tgt, o->batch, o->seq, err);
        if (isnan(loss)) return NAN;
        total += loss - m->aux_loss; /* report pure cross-entropy */
    }
    return (float)(total / o->eval_batches);
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

int train_run(Model *m, const TrainOptions *o, int start_step, Comm *comm, Err *err) {
    const Config *c = &m->cfg;
    const int B = o->batch, T = o->seq, lead = comm->rank == 0;
    int rc = 0;
    if (start_step >= o->steps) return err_set(err, ERR_INVALID, "the run already has %d of %d steps; pass a larger --steps to continue", start_step, o->steps);
    DataLoader *dl = NULL;
    if ((rc = loader_open(&dl, o->data, c->vocab_size, 0.1, o->seed, err))) return rc;
    if (loader_tokens(dl, SPLIT_VAL) < (uint64_t)T + 1 && o->eval_batches > 0) {
        loader_close(dl);
        return err_set(err, ERR_INVALID, "%s: validation split too small for sequences of %d tokens", o->data, T);
    }
    if ((rc = model_plan_activations(m, B, T, 1, err))) {
        loader_close(dl);
        return rc;
    }
    int32_t *inp = malloc((size_t)B * T * sizeof *inp), *tgt = malloc((size_t)B * T * sizeof *tgt);
    char log_path[4200], svg_path[4200];
    snprintf(log_path, sizeof log_path, "%s/log.jsonl", o->out);
    snprintf(svg_path, sizeof svg_path, "%s/loss.svg", o->out);
    LossHistory hist = {0};
    FILE *log = NULL;
    if (!inp || !tgt) {
        rc = err_set(err, ERR_NOMEM, "out of memory");
        goto done;
    }
    if (lead) {
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
    const double tokens_per_step = (double)B * T * o->accum * comm->size;
    const int tty = isatty(2) && !o->quiet;
    const int print_every = o->steps >= 20 ? o->steps / 20 : 1;
    if (lead && !o->quiet)
        fprintf(stderr, "training %s model: %zu parameters, batch %d x %d x accum %d, %d steps, %d threads, activations %.1f MiB\n",
                c->arch, m->n_params, B, T, o->accum, o->steps, threads, m->act.n_floats * 4.0 / (1 << 20));
    double run_t0 = time_now();
    int run_steps = 0;
    for (int step = start_step; step < o->steps; step++) {
        double t0 = time_now();
        memset(m->grads, 0, m->n_params * sizeof(float));
        double loss = 0.0;
        for (int micro = 0; micro < o->accum; micro++) {
            uint64_t batch_index = (uint64_t)step * o->accum + micro;
            if ((rc = loader_batch(dl, SPLIT_TRAIN, batch_index, comm->rank * B, B, T, inp, tgt, err))) goto done;
            float l = model_forward(m, inp, tgt, B, T, err);
            if (isnan(l) && err->code) {
                rc = err->code;
                goto done;
            }
            model_backward(m, inp, tgt, 1.0f / o->accum);
            loss += l / o->accum;
        }
        if (comm->size > 1) {
            if ((rc = comm_allreduce_sum(comm, m->grads, m->n_params, err))) goto done;
            double lsum = loss;
            if ((rc = comm_allreduce_sum_f64(comm, &lsum, 1, err))) goto done;
            loss = lsum / comm->size;
            float inv = 1.0f / comm->size;
#pragma omp parallel for simd
            for (size_t i = 0; i < m->n_params; i++) m->grads[i] *= inv;
        }
        if (!isfinite(loss)) {
            rc = err_set(err, ERR_INVALID, "loss is %f at step %d: training diverged (try a lower --lr)", loss, step + 1);
            goto done;
        }
        double norm = sqrt(sumsq(m->grads, m->n_params));
        float scale = (o->grad_clip > 0 && norm > o->grad_clip) ? (float)(o->grad_clip / norm) : 1.0f;
        float lr = lr_schedule(o, step);
        for (int i = 0; i < m->n_tensors; i++) {
            Tensor *t = &m->tensors[i];
            adamw_update(t->data, t->grad, m->adam_m + t->offset, m->adam_v + t->offset, t->numel, lr, o->beta1, o->beta2,
                         o->eps, (t->flags & PF_DECAY) ? o->weight_decay : 0.0f, scale, step + 1);
        }
        double dt = time_now() - t0;
        double tps = tokens_per_step / dt;
        double mfu = peak > 0 ? flops_tok * tps / (peak * comm->size) : 0.0;
        run_steps++;
        int done_steps = step + 1, last = done_steps == o->steps;
        float val = NAN;
        if ((o->eval_every > 0 && done_steps % o->eval_every == 0) || (last && o->eval_batches > 0)) {
            val = evaluate(m, dl, o, inp, tgt, err);
            if (isnan(val)) {
                rc = err->code ? err->code : ERR_INVALID;
                goto done;
            }
        }
        if (lead) {
            fprintf(log, "{\"step\": %d, \"loss\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g, \"tokens_per_s\": %.1f, \"mfu\": %.4f",
                    done_steps, loss, lr, norm, tps, mfu);
            if (c->n_expert) fprintf(log, ", \"aux_loss\": %.9g", m->aux_loss);
            if (!isnan(val)) fprintf(log, ", \"val_loss\": %.9g", val);
            fprintf(log, "}\n");
            fflush(log);
            history_add(&hist, done_steps, (float)loss, 0);
            if (!isnan(val)) history_add(&hist, done_steps, val, 1);
            double elapsed = time_now() - run_t0;
            char eta[32];
            fmt_duration(eta, sizeof eta, elapsed / run_steps * (o->steps - done_steps));
            if (!o->quiet && (tty || done_steps % print_every == 0 || last || !isnan(val))) {
                fprintf(stderr, "%sstep %d/%d | loss %.4f | lr %.2e | %.0f tok/s | MFU %.1f%% | ETA %s", tty ? "\r\033[K" : "",
                        done_steps, o->steps, loss, lr, tps, 100.0 * mfu, eta);
                if (!isnan(val)) fprintf(stderr, " | val %.4f", val);
                if (!tty || !isnan(val) || last) fprintf(stderr, "\n");
            }
            if (!isnan(val) || last || done_steps % print_every == 0) plot_loss_svg(&hist, svg_path, NULL);
        }
        int stop = o->stop_after > 0 && run_steps == o->stop_after && !last;
        if ((o->save_every > 0 && done_steps % o->save_every == 0) || last || stop) {
            if (lead && (rc = checkpoint_save(m, o, done_steps, err))) goto done;
            if (comm->size > 1 && (rc = comm_barrier(comm, err))) goto done;
        }
        if (stop) {
            if (lead && !o->quiet) fprintf(stderr, "stopped after %d steps; continue with: jarip train --resume %s\n", run_steps, o->out);
            break;
        }
    }
done:
    if (log) fclose(log);
    history_free(&hist);
    free(inp);
    free(tgt);
    loader_close(dl);
    return rc;
}
