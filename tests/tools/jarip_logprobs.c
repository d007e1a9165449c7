/* jarip_logprobs: the log-probabilities jarip gives the next token after a
 * prompt, optionally with a LoRA adapter, for comparing with llama.cpp
 * (tests/e2e/test_lora_vs_llamacpp.sh). A test tool, not a test.
 *
 *   jarip_logprobs MODEL.gguf ADAPTER.gguf|- PROMPT K
 *
 * The prompt is tokenized as `jarip generate --prompt` does (special tokens
 * recognised, bos when the model asks for it); prints "id logprob" for the
 * K most likely tokens, most likely first (F16 KV cache, as llama.cpp). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: jarip_logprobs MODEL.gguf ADAPTER.gguf|- PROMPT K\n");
        return 2;
    }
    Err err = {0};
    InferModel im;
    InferSession s;
    SamplerOptions so;
    sampler_options_default(&so);
    int32_t *ids = NULL;
    size_t n = 0;
    if (infer_model_open(&im, argv[1], &err)) goto fail;
    if (strcmp(argv[2], "-") && infer_model_add_lora(&im, argv[2], 1.0f, &err)) goto fail;
    if (infer_session_create(&s, &im, 0, 0, DT_F16, &so, &err) ||
        infer_tokenize(&im, argv[3], strlen(argv[3]), 1, &ids, &n, &err) || infer_session_prompt(&s, ids, (int)n, &err))
        goto fail;
    const int V = im.model.cfg.vocab_size, K = atoi(argv[4]);
    double mx = -INFINITY, sum = 0;
    for (int v = 0; v < V; v++) mx = s.logits[v] > mx ? s.logits[v] : mx;
    for (int v = 0; v < V; v++) sum += exp(s.logits[v] - mx);
    char *taken = calloc((size_t)V, 1);
    for (int k = 0; k < K && k < V; k++) {
        int best = -1;
        for (int v = 0; v < V; v++)
            if (!taken[v] && (best < 0 || s.logits[v] > s.logits[best])) best = v;
        taken[best] = 1;
        printf("%d %.9g\n", best, s.logits[best] - mx - log(sum));
    }
    free(taken);
    free(ids);
    infer_session_free(&s);
    infer_model_close(&im);
    return 0;
fail:
    fprintf(stderr, "jarip_logprobs: %s\n", err.msg);
    return 1;
}
