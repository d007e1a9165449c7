/* Private to kernels/quant_llamacpp.c and kernels/lcpp_attention_batch.c:
 * the half-cache attention's pieces that both files use. */
#ifndef JARIP_KERNELS_LCPP_PRIVATE_H
#define JARIP_KERNELS_LCPP_PRIVATE_H

#include <stdint.h>

#include "kernels/kernels.h"

/* Scores w[0..n) of one query -> probabilities rounded to half, in place,
 * as llama.cpp feeds them to the F16 values: padded with -inf to a
 * multiple of 32 (w holds that many), ggml's softmax, rounding. Needs AVX2;
 * wide: AVX-512 too (sixteen lanes at a time, the same bits). */
void lcpp_probs_half(float *w, int n, int wide);

/* lcpp_attention_f16 for T >= 2 (tinyBLAS's 8-lane orders), on AVX2 or
 * AVX-512VL registers: the same bits. Needs AVX2 and Hq % Hkv == 0, D % 8
 * == 0. 0 or ERR_NOMEM. */
int lcpp_attention_half_batched(float *out, const float *q, const uint16_t *kc, const uint16_t *vc, int T, int pos0,
                                int Hq, int Hkv, int D);

#endif
