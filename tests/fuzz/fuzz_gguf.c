/* libFuzzer target: the GGUF reader (header, metadata, tensor infos, data
 * layout), every accessor of an opened file, then building a model from it
 * (model_load_gguf: config from {arch}.* keys, each tensor's shape and type
 * checked). A small file that loads is then opened the way `jarip generate`
 * opens one (model, tokenizer, chat template) and runs a few tokens through
 * the forward pass: whatever the loader accepts, the model must run.
 * Built and run by bench/fuzz.sh; seeds by tests/fuzz/make_corpus.sh.
 * The bounded-time mutation fuzz inside ctest is tests/unit/test_gguf_fuzz.c. */
#include <omp.h>

#include "fuzz_util.h"
#include "infer/infer.h"
#include "test_gguf_exercise.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Run the forward only for small models: the fuzzer's time goes to parsing. */
#define FORWARD_MAX_PARAMS ((size_t)1 << 18)

static void run_model(const uint8_t *data, size_t size) {
    char path[512];
    fuzz_put_file("model.gguf", data, size, path);
    InferModel im;
    Err e = {0};
    if (infer_model_open(&im, path, &e) != 0) return;
    InferSession s;
    SamplerOptions so;
    sampler_options_default(&so);
    if (infer_session_create(&s, &im, 8, 4, DT_F32, &so, &e) == 0) {
        int32_t ids[3] = {0, 1, 2};
        int V = im.model.cfg.vocab_size, n = V < 3 ? V : 3;
        if (infer_session_prompt(&s, ids, n, &e) == 0) (void)infer_session_push(&s, 0, &e);
        infer_session_free(&s);
    }
    infer_model_close(&im);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int once;
    if (!once++) omp_set_num_threads(1); /* a team for a 4-token forward was a third of the time, spinning */
    GGUFFile *g;
    Err e = {0};
    if (gguf_open_memory(&g, data, size, &e) != 0) return 0;
    volatile uint64_t h = exercise(g);
    (void)h;
    Model m;
    memset(&m, 0, sizeof m);
    int small = 0;
    if (model_load_gguf(&m, g, &e) == 0) {
        small = config_param_count(&m.cfg) <= FORWARD_MAX_PARAMS;
        model_free_gguf(&m);
    }
    gguf_close(g);
    if (small) run_model(data, size);
    return 0;
}
