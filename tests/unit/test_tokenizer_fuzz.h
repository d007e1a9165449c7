/* Shared by the bounded fuzz test and the libFuzzer target: encode one
 * input every way jarip can and check the promises. Returns 0 when they
 * hold, else a short description of the broken one. */
#ifndef TEST_TOKENIZER_FUZZ_H
#define TEST_TOKENIZER_FUZZ_H

#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

static const char *tok_fuzz_one(const Tokenizer *t, TokEncoder *warm, const uint8_t *data, size_t size) {
    Err err = {0};
    int32_t *a = NULL, *b = NULL, *c = NULL;
    size_t na = 0, nb = 0, nc = 0, cap = 0;
    const char *bad = NULL;
    if (tokenizer_encode(t, data, size, 1, &a, &na, &err)) return "encode failed";
    /* a warm encoder (cache filled by earlier inputs) must agree */
    if (tok_encoder_append(warm, data, size, 1, &b, &nb, &cap, &err)) bad = "warm encode failed";
    else if (na != nb || (na && memcmp(a, b, na * sizeof *a))) bad = "warm encoder differs from a fresh one";
    if (!bad && tokenizer_encode_parallel(t, data, size, 1, 3, &c, &nc, &err)) bad = "parallel encode failed";
    else if (!bad && (na != nc || (na && memcmp(a, c, na * sizeof *a)))) bad = "parallel encode differs";
    char *out = NULL;
    size_t olen = 0;
    if (!bad && tokenizer_decode(t, a, na, &out, &olen, &err)) bad = "decode failed";
    else if (!bad && (olen != size || (size && memcmp(out, data, size)))) bad = "decode(encode(x)) != x";
    for (size_t i = 0; !bad && i < na; i++)
        if (a[i] < 0 || a[i] >= tokenizer_vocab_size(t)) bad = "id out of range";
    free(out);
    free(a);
    free(b);
    free(c);
    return bad;
}

#endif
