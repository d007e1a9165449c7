/* One optimizer micro-step of a rank: its rows of the global batch cut into
 * micro-batches, run either one after another (one pipeline stage) or in
 * the 1F1B schedule of PipeDream-Flush / Megatron-LM across stages:
 * stage s runs pp-1-s warm-up forwards, then alternates one forward and one
 * backward, then drains the remaining backwards, so at most pp-s
 * micro-batches hold activations at once.
 *
 * Transfers are blocking point-to-point messages. Where a stage both sends
 * to and receives from one neighbour, even stages send first and odd stages
 * receive first, so neighbours never wait on each other's sends. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"

static void swap_in(Model *m, Activations *sets, int n, int mb) {
    Activations t = m->act;
    m->act = sets[mb % n];
    sets[mb % n] = t;
}

int pipeline_init(Pipeline *pl, Model *m, int micro_rows, int T, int n_micro, int pp, Err *err) {
    memset(pl, 0, sizeof *pl);
    pl->rows = micro_rows;
    pl->T = T;
    pl->n_micro = n_micro;
    pl->n_sets = n_micro < pp ? n_micro : pp;
    pl->sets = calloc((size_t)pl->n_sets, sizeof *pl->sets);
    size_t n = (size_t)micro_rows * T;
    pl->inputs = malloc((size_t)n_micro * n * sizeof(int32_t));
    pl->targets = malloc((size_t)n_micro * n * sizeof(int32_t));
    pl->buf = malloc(n * m->cfg.d_model * sizeof(float));
    if (!pl->sets || !pl->inputs || !pl->targets || !pl->buf) return err_set(err, ERR_NOMEM, "out of memory");
    for (int i = 0; i < pl->n_sets; i++) {
        int rc = model_plan_activations(m, micro_rows, T, 1, err);
        if (rc) return rc;
        pl->sets[i] = m->act;
        memset(&m->act, 0, sizeof m->act);
    }
    /* the first set stays in m->act between steps (evaluation uses it) */
    swap_in(m, pl->sets, pl->n_sets, 0);
    return 0;
}

void pipeline_free(Pipeline *pl, Model *m) {
    for (int i = 0; i < pl->n_sets; i++) model_activations_free(&pl->sets[i]);
    model_activations_free(&m->act);
    free(pl->sets);
    free(pl->inputs);
    free(pl->targets);
    free(pl->buf);
    memset(pl, 0, sizeof *pl);
}

/* Exchange with one neighbour: send `out` and receive into `in`. */
static int exchange(Comm *c, int parity, const float *out, float *in, size_t n, int peer, Err *err) {
    int rc;
    if (parity == 0) {
        if ((rc = comm_send(c, out, n * sizeof(float), peer, err))) return rc;
        return comm_recv(c, in, n * sizeof(float), peer, err);
    }
    if ((rc = comm_recv(c, in, n * sizeof(float), peer, err))) return rc;
    return comm_send(c, out, n * sizeof(float), peer, err);
}

int pipeline_run(Pipeline *pl, Parallel *p, Model *m, DataLoader *dl, uint64_t batch_index, int row0, float loss_scale,
                 double *loss_sum, double *aux_sum, Err *err) {
    const int M = pl->n_micro, rows = pl->rows, T = pl->T, s = p->pp_rank, P = p->pp;
    const size_t n = (size_t)rows * T, act_n = n * m->cfg.d_model;
    const int first = s == 0, last = s == P - 1, parity = s % 2;
    Comm *c = p->pp_comm;
    int rc;
    for (int i = 0; i < M; i++)
        if ((rc = loader_batch(dl, SPLIT_TRAIN, batch_index, row0 + i * rows, rows, T, pl->inputs + i * n,
                               pl->targets + i * n, err)))
            return rc;
    /* the set that was in m->act belongs to micro-batch 0 */
    swap_in(m, pl->sets, pl->n_sets, 0);
    *loss_sum = *aux_sum = 0.0;
    int warm = P - 1 - s < M ? P - 1 - s : M;
    /* forward of micro-batch i; x_in is in pl->buf when not first */
    int fwd_done = 0, bwd_done = 0;
#define FORWARD(i)                                                                                                 \
    do {                                                                                                           \
        swap_in(m, pl->sets, pl->n_sets, (i));                                                                     \
        model_lora_dropout_pass(m, pl->seed, batch_index, row0 + (i) * rows, T);                                   \
        if ((rc = model_forward_stage(m, pl->inputs + (size_t)(i) * n, first ? NULL : pl->buf, rows, T, err)))     \
            goto out;                                                                                              \
        double l = 0.0;                                                                                            \
        if (last && (rc = model_stage_loss(m, pl->targets + (size_t)(i) * n, rows, T, &l, err))) goto out;         \
        *loss_sum += l;                                                                                            \
        *aux_sum += m->aux_loss;                                                                                   \
        swap_in(m, pl->sets, pl->n_sets, (i));                                                                     \
        fwd_done++;                                                                                                \
    } while (0)
#define BACKWARD(j)                                                                                                \
    do {                                                                                                           \
        swap_in(m, pl->sets, pl->n_sets, (j));                                                                     \
        model_lora_dropout_pass(m, pl->seed, batch_index, row0 + (j) * rows, T);                                   \
        if ((rc = model_backward_stage(m, pl->inputs + (size_t)(j) * n, pl->targets + (size_t)(j) * n,            \
                                       last ? NULL : pl->buf, loss_scale, err)))                                   \
            goto out;                                                                                              \
        swap_in(m, pl->sets, pl->n_sets, (j));                                                                     \
        bwd_done++;                                                                                                \
    } while (0)
    for (int i = 0; i < warm; i++) {
        if (!first && (rc = comm_recv(c, pl->buf, act_n * sizeof(float), s - 1, err))) goto out;
        FORWARD(i);
        if (!last) {
            swap_in(m, pl->sets, pl->n_sets, i);
            rc = comm_send(c, model_stage_output(m), act_n * sizeof(float), s + 1, err);
            swap_in(m, pl->sets, pl->n_sets, i);
            if (rc) goto out;
        }
    }
    int steady = M - warm;
    if (steady > 0 && !first && (rc = comm_recv(c, pl->buf, act_n * sizeof(float), s - 1, err))) goto out;
    for (int j = 0; j < steady; j++) {
        int i = warm + j;
        FORWARD(i);
        if (!last) { /* send this forward's output, receive micro-batch j's output gradient */
            swap_in(m, pl->sets, pl->n_sets, i);
            rc = exchange(c, parity, model_stage_output(m), pl->buf, act_n, s + 1, err);
            swap_in(m, pl->sets, pl->n_sets, i);
            if (rc) goto out;
        }
        BACKWARD(j);
        if (!first) {
            swap_in(m, pl->sets, pl->n_sets, j);
            if (j < steady - 1) /* send input gradient, receive the next forward's input */
                rc = exchange(c, parity, m->act.d_res, pl->buf, act_n, s - 1, err);
            else
                rc = comm_send(c, m->act.d_res, act_n * sizeof(float), s - 1, err);
            swap_in(m, pl->sets, pl->n_sets, j);
            if (rc) goto out;
        }
    }
    for (int j = steady; j < M; j++) {
        if (!last && (rc = comm_recv(c, pl->buf, act_n * sizeof(float), s + 1, err))) goto out;
        BACKWARD(j);
        if (!first) {
            swap_in(m, pl->sets, pl->n_sets, j);
            rc = comm_send(c, m->act.d_res, act_n * sizeof(float), s - 1, err);
            swap_in(m, pl->sets, pl->n_sets, j);
            if (rc) goto out;
        }
    }
    rc = 0;
out:
#undef FORWARD
#undef BACKWARD
    (void)fwd_done;
    (void)bwd_done;
    /* leave micro-batch 0's set in m->act, as at entry */
    swap_in(m, pl->sets, pl->n_sets, 0);
    model_lora_dropout_off(m);
    return rc;
}

int pipeline_forward_only(Pipeline *pl, Parallel *p, Model *m, const int32_t *inputs, const int32_t *targets,
                          double *loss, Err *err) {
    const int rows = pl->rows, T = pl->T, s = p->pp_rank, P = p->pp;
    const size_t act_n = (size_t)rows * T * m->cfg.d_model;
    int rc;
    *loss = 0.0;
    if (s > 0 && (rc = comm_recv(p->pp_comm, pl->buf, act_n * sizeof(float), s - 1, err))) return rc;
    if ((rc = model_forward_stage(m, inputs, s > 0 ? pl->buf : NULL, rows, T, err))) return rc;
    if (s < P - 1) return comm_send(p->pp_comm, model_stage_output(m), act_n * sizeof(float), s + 1, err);
    return model_stage_loss(m, targets, rows, T, loss, err);
}
