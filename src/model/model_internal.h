/* Shared between the model's own files; not part of the public API. */
#ifndef JARIP_MODEL_INTERNAL_H
#define JARIP_MODEL_INTERNAL_H

#include "model.h"

/* out (N,C) = FFN of layer l applied to x (N,C) (the normalised input).
 * MoE adds its weighted auxiliary loss to m->aux_loss. */
int ffn_forward(Model *m, int l, const float *x, float *out, int N, Err *err);
/* dx (N,C) += d FFN / dx given dout (N,C); parameter grads accumulated. */
void ffn_backward(Model *m, int l, const float *x, const float *dout, float *dx, int N, float loss_scale);

#endif
