/* libFuzzer target: the GGUF reader (header, metadata, tensor infos, data
 * layout), every accessor of an opened file, then building a model from it
 * (model_load_gguf: config from {arch}.* keys, each tensor's shape and type
 * checked). Built and run by bench/fuzz.sh; seeds by tests/fuzz/make_corpus.sh.
 * The bounded-time mutation fuzz inside ctest is tests/unit/test_gguf_fuzz.c. */
#include "infer/infer.h"
#include "test_gguf_exercise.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    GGUFFile *g;
    Err e = {0};
    if (gguf_open_memory(&g, data, size, &e) != 0) return 0;
    volatile uint64_t h = exercise(g);
    (void)h;
    Model m;
    memset(&m, 0, sizeof m);
    if (model_load_gguf(&m, g, &e) == 0) model_free_gguf(&m);
    gguf_close(g);
    return 0;
}
