/* Micro-batch scheduling over pipeline stages (see pipeline.c). */
#ifndef JARIP_PIPELINE_H
#define JARIP_PIPELINE_H

#include "data/data.h"
#include "parallel.h"

typedef struct {
    int rows, T, n_micro;     /* micro-batch rows, sequence, micro-batches per step */
    int n_sets;               /* activation sets in flight: min(n_micro, pp) */
    Activations *sets;
    int32_t *inputs, *targets; /* (n_micro, rows, T) */
    float *buf;               /* (rows, T, C) transfer buffer */
    uint64_t seed;            /* the run's seed: LoRA dropout masks (pipeline_run), 0 after init */
} Pipeline;

int pipeline_init(Pipeline *pl, Model *m, int micro_rows, int T, int n_micro, int pp, Err *err);
void pipeline_free(Pipeline *pl, Model *m);
/* Forward and backward of this rank's micro-batches of global batch
 * batch_index, rows from row0 (with LoRA dropout when m's config has it:
 * model_lora_dropout_pass). Sums over micro-batches: *loss_sum of the
 * cross-entropy (last stage; 0 elsewhere), *aux_sum of this stage's MoE
 * load-balancing loss. */
int pipeline_run(Pipeline *pl, Parallel *p, Model *m, DataLoader *dl, uint64_t batch_index, int row0, float loss_scale,
                 double *loss_sum, double *aux_sum, Err *err);
/* Evaluation: one micro-batch forward through all stages (no dropout); *loss on the last. */
int pipeline_forward_only(Pipeline *pl, Parallel *p, Model *m, const int32_t *inputs, const int32_t *targets,
                          double *loss, Err *err);

#endif
