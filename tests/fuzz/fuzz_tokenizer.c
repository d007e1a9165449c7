/* libFuzzer target for the tokenizer round trip: every input is encoded
 * (fresh, warm and parallel encoders must agree) and decoded back to itself.
 * Built and run by bench/fuzz.sh (the tokenizer is $JARIP_FUZZ_TOKENIZER or
 * tests/fixtures/tokenizer/gpt2_hf.json, relative to the repository root).
 * The bounded-time fuzz that runs in the tests is tests/unit/test_tokenizer_fuzz.c. */
#include <stdio.h>

#include "test_tokenizer_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static Tokenizer *t; /* loaded once per fuzzing process */
    static TokEncoder *warm;
    if (!t) {
        const char *p = getenv("JARIP_FUZZ_TOKENIZER");
        Err err = {0};
        if (tokenizer_load(&t, p ? p : "tests/fixtures/tokenizer/gpt2_hf.json", &err)) {
            fprintf(stderr, "%s\n", err.msg);
            abort();
        }
        warm = tok_encoder_new(t, &err);
    }
    const char *bad = tok_fuzz_one(t, warm, data, size);
    if (bad) {
        fprintf(stderr, "%s\n", bad);
        abort();
    }
    return 0;
}
