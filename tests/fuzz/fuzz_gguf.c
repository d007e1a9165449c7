/* libFuzzer target for the GGUF reader (not part of the CTest build):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Itests/unit \
 *     tests/fuzz/fuzz_gguf.c src/io/gguf_*.c src/kernels/dtype.c src/kernels/quant_*.c \
 *     src/core/*.c -lz -lm -o fuzz_gguf && ./fuzz_gguf -max_total_time=60
 * The bounded-time mutation fuzz that runs in the tests is test_gguf_fuzz.c. */
#include "test_gguf_exercise.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    GGUFFile *g;
    Err e;
    if (gguf_open_memory(&g, data, size, &e) == 0) {
        volatile uint64_t h = exercise(g);
        (void)h;
        gguf_close(g);
    }
    return 0;
}
