/* train: the training loop, checkpoints, the loss curve, the progress line. */
#ifndef JARIP_TRAIN_H
#define JARIP_TRAIN_H

#include <stdint.h>

#include "core/core.h"
#include "dist/comm.h"
#include "model/model.h"

typedef struct TrainOptions_ {
    const char *data;     /* text file or shard directory */
    char data_saved[4096]; /* storage for the path read back from a checkpoint */
    const char *out;      /* run directory */
    int steps;            /* total optimizer steps of the run */
    int stop_after;       /* stop this invocation after N steps (0 = run to the end) */
    int batch;            /* sequences per micro-batch */
    int seq;              /* tokens per sequence */
    int accum;            /* micro-steps accumulated per optimizer step */
    int micro_batch;      /* rows per forward on a rank; 0 = all its rows */
    float lr, lr_min;     /* peak and final learning rate */
    int warmup;           /* linear warmup steps */
    float weight_decay;   /* AdamW decoupled decay (matrices only) */
    float beta1, beta2, eps;
    float grad_clip;      /* global norm; 0 = off */
    uint64_t seed;
    int eval_every;       /* steps; 0 = only at the end */
    int eval_batches;     /* validation batches per evaluation */
    int save_every;       /* steps; 0 = only at the end */
    int keep;             /* checkpoints kept */
    int threads;
    int quiet;            /* no progress line */
    int max_bad_steps;    /* stop after this many steps in a row with a non-finite loss or gradient */
    int precision;        /* PRECISION_* of the linear layers; -1: not chosen (a resumed run keeps its own, else fp32) */
    /* Test hook (JARIP_INJECT_NAN): comma-separated 1-based steps whose loss
     * is made NaN ("7") or whose gradient gets an Inf ("g7"); NULL = none. */
    const char *inject_nan;
    /* Test hook (JARIP_TEST_CKPT_SLEEP_MS): sleep this long at three points
     * inside each checkpoint write (before model.bin, halfway through it,
     * between the rename and `latest`), so a kill -9 test lands there. */
    int test_ckpt_sleep_ms;
    /* --eval-text: tokens of a text whose perplexity (llama-perplexity's
     * definition: chunks of seq tokens, BOS over each chunk's first token
     * when eval_bos >= 0, the second half scored) is reported at each
     * evaluation; NULL: none. Not saved in checkpoints. */
    const int32_t *eval_tokens;
    size_t n_eval_tokens;
    int32_t eval_bos;
} TrainOptions;

void train_options_default(TrainOptions *o);

/* Learning rate at 0-based step s: linear warmup, then cosine to lr_min. */
float lr_schedule(const TrainOptions *o, int s);

/* Run (or continue, when start_step > 0 and m holds the resumed state) a
 * training run. Writes log.jsonl, loss.svg and checkpoints under o->out.
 * A step whose loss or gradient norm is not finite changes nothing (no
 * update: weights and Adam moments stay those of the last good step), is
 * logged as skipped, and the run goes on; o->max_bad_steps such steps in a
 * row end the run with an error naming the last good checkpoint. */
struct Parallel_;
int train_run(Model *m, const TrainOptions *o, int start_step, struct Parallel_ *p, Err *err);

/* ---- checkpoints ---------------------------------------------------------
 * A checkpoint is a directory DIR/ckpt_NNNNNNNN holding config.json,
 * state.json (step, options, data position) and model.bin (registry,
 * weights, Adam moments, CRC-32). DIR/latest names the newest; all are
 * written to temporary names and renamed when complete. */
int checkpoint_save(const Model *m, const TrainOptions *o, int step, Err *err);
/* The same from whole-model buffers (n_params of the unsharded registry);
 * adam_m/adam_v may be NULL (weights only). */
int checkpoint_write(const Config *c, const float *params, const float *adam_m, const float *adam_v,
                     const TrainOptions *o, int step, Err *err);
int checkpoint_read(const char *ckpt, const Config *c, float *params, float *adam_m, float *adam_v, int *step,
                    TrainOptions *o, Err *err);
/* Resolve a run directory (via DIR/latest) or a checkpoint directory. */
int checkpoint_resolve(const char *dir, char *out, size_t out_len, Err *err);
/* Remove what a killed run left half-written in run directory dir: ckpt_*.tmp
 * directories and the temporaries of atomic writes (NAME.tmp.PID). Only
 * for the run's own directory, before it writes again. */
void checkpoint_clean_stale(const char *dir);
/* Load config and weights (and optimizer state when m->grads != NULL after
 * model_create(training=1)). *step and, if o != NULL, the saved options. */
int checkpoint_load_config(const char *ckpt_dir, Config *c, Err *err);
int checkpoint_load(const char *ckpt_dir, Model *m, int *step, TrainOptions *o, Err *err);

/* ---- loss plot ---------------------------------------------------------- */
typedef struct {
    int n, cap;
    int *step;
    float *loss;
    int nval, capval;
    int *val_step;
    float *val_loss;
} LossHistory;

void history_add(LossHistory *h, int step, float loss, int is_val);
void history_free(LossHistory *h);
/* Write an SVG line chart of training and validation loss (atomic). */
int plot_loss_svg(const LossHistory *h, const char *path, Err *err);

#endif
