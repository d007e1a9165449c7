/* jarip with an F16 KV cache against llama.cpp with its default F16 cache
 * (type_k = type_v = F16, flash attention off) on SmolLM2-135M-Instruct
 * Q4_1: the same checks as test_infer_llamacpp.c (last-position logits of
 * 10 prompts within LOGIT_TOL, 64 greedy tokens each equal), on the
 * fixtures of scripts/make_llamacpp_f16kv_fixtures.py. jarip's llama.cpp-
 * numerics path rounds keys, values, queries and softmax probabilities to
 * half where ggml does and sums in ggml's orders (kernels/quant_llamacpp.c),
 * so the logits are expected bit-identical here too. Skips when the model
 * file is absent, like the F32 test. */
#define FIXTURE "tests/fixtures/llamacpp/smollm2_q4_1_f16kv.json"
#define KV_TYPE DT_F16
#define TEST_NAME "test_infer_llamacpp_f16kv"
#include "test_infer_llamacpp.c"
