/* infer: turning logits into the next token, and the generation loop. */
#ifndef JARIP_SAMPLER_H
#define JARIP_SAMPLER_H

#include <stdint.h>

#include "core/core.h"

typedef struct {
    float temperature;      /* 0 = greedy (argmax) */
    int top_k;              /* 0 = off */
    float top_p;            /* 1 = off */
    float min_p;            /* 0 = off: drop tokens below min_p * p(max) */
    float repeat_penalty;   /* 1 = off: CTRL-style, divides positive logits */
    float frequency_penalty;/* 0 = off: minus count * f (OpenAI semantics) */
    float presence_penalty; /* 0 = off: minus p if seen at all */
    int penalty_last_n;     /* window of history the penalties look at */
    uint64_t seed;
} SamplerOptions;

void sampler_options_default(SamplerOptions *o);
int sampler_validate(const SamplerOptions *o, Err *err);

typedef struct {
    int V;
    float *probs;   /* (V) */
    int32_t *idx;   /* (V) */
    int32_t *count; /* (V) occurrences in the penalty window */
} Sampler;

int sampler_create(Sampler *s, int vocab_size, Err *err);
void sampler_free(Sampler *s);
/* Pick the next token from logits (V, modified in place). history holds the
 * tokens so far (prompt + generated); draw is the 0-based index of this
 * draw, so a seeded run is reproducible token by token. */
int32_t sampler_next(Sampler *s, const SamplerOptions *o, float *logits, const int32_t *history, int n_history,
                     uint64_t draw);

#endif
