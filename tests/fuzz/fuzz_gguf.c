/* libFuzzer target: the GGUF reader (header, metadata, tensor infos, data
 * layout), every accessor of an opened file, then building a model from it
 * the way `jarip generate` opens one (infer_model_from_gguf: model_load_gguf
 * with its config from {arch}.* keys and each tensor's shape and type
 * checked, tokenizer, chat template). A small model that loads runs a few
 * tokens through the forward pass: whatever the loader accepts must run.
 * Built and run by bench/fuzz.sh; seeds by tests/fuzz/make_corpus.sh.
 * The bounded-time mutation fuzz inside ctest is tests/unit/test_gguf_fuzz.c. */
#include <omp.h>

#include "fuzz_util.h"
#include "infer/infer.h"
#include "test_gguf_exercise.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Run the forward only for small models: the fuzzer's time goes to parsing. */
#define FORWARD_MAX_PARAMS ((size_t)1 << 18)

/* A model that loaded: a few tokens through the forward pass. */
static void run_model(InferModel *im) {
    InferSession s;
    SamplerOptions so;
    Err e = {0};
    sampler_options_default(&so);
    if (infer_session_create(&s, im, 8, 4, DT_F32, &so, &e) == 0) {
        int32_t ids[3] = {0, 1, 2};
        int V = im->model.cfg.vocab_size, n = V < 3 ? V : 3;
        if (infer_session_prompt(&s, ids, n, &e) == 0) (void)infer_session_push(&s, 0, &e);
        infer_session_free(&s);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int once;
    if (!once++) omp_set_num_threads(1); /* a team for a 4-token forward was a third of the time, spinning */
    GGUFFile *g;
    Err e = {0};
    if (gguf_open_memory(&g, data, size, &e) != 0) return 0;
    volatile uint64_t h = exercise(g);
    (void)h;
    if (gguf_load_tensor_data(g, &e)) {
        gguf_close(g);
        return 0;
    }
    /* opened as `jarip generate` opens a file (model, tokenizer, chat
     * template), from the parsed file: parsing it again from a scratch file
     * was a quarter of the time */
    InferModel im;
    if (infer_model_from_gguf(&im, g, "fuzz.gguf", &e) != 0) return 0;
    if (config_param_count(&im.model.cfg) <= FORWARD_MAX_PARAMS) run_model(&im);
    infer_model_close(&im);
    return 0;
}
