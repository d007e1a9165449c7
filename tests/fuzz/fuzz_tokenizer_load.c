/* libFuzzer target: loading a tokenizer from hostile bytes, chosen by
 * content as tokenizer_load does (a JSON object -> tokenizer.json, "GGUF"
 * -> the tokenizer.ggml.* metadata, otherwise a tiktoken rank file), then
 * encoding a fixed text and the input itself, and decoding every id back.
 * The encode round trip on a fixed, valid tokenizer is fuzz_tokenizer.c. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void use(const Tokenizer *t, const uint8_t *text, size_t n) {
    Err e = {0};
    int32_t *ids = NULL;
    size_t nid = 0;
    if (tokenizer_encode(t, text, n, 1, &ids, &nid, &e) == 0) {
        char *out = NULL;
        size_t len = 0;
        if (tokenizer_decode(t, ids, nid, &out, &len, &e) == 0) free(out);
        for (size_t i = 0; i < nid; i++)
            if (ids[i] < 0 || ids[i] >= tokenizer_vocab_size(t)) abort(); /* encode promised ids in range */
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Tokenizer *t = NULL;
    GGUFFile *g = NULL;
    Err e = {0};
    size_t i = 0;
    while (i < size && (data[i] == ' ' || data[i] == '\n' || data[i] == '\t' || data[i] == '\r')) i++;
    int rc;
    if (size >= 4 && memcmp(data, "GGUF", 4) == 0) {
        rc = gguf_open_memory(&g, data, size, &e);
        if (!rc) rc = tokenizer_from_gguf(&t, g, &e);
    } else if (i < size && data[i] == '{') {
        rc = tokenizer_from_json(&t, (const char *)data, size, &e);
    } else {
        rc = tokenizer_from_tiktoken(&t, (const char *)data, size, NULL, &e);
    }
    if (!rc) {
        static const char sample[] = "Hello, world! It's 2024: <|endoftext|> caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd  \n\n\t123456";
        use(t, (const uint8_t *)sample, sizeof sample - 1);
        use(t, data, size < 256 ? size : 256);
        int v = tokenizer_vocab_size(t);
        for (int32_t id = -1; id <= v && id < 4096; id++) {
            size_t len;
            (void)tokenizer_token_bytes(t, id, &len);
            (void)tokenizer_is_special(t, id);
        }
        (void)tokenizer_eos_id(t);
        (void)tokenizer_bos_id(t);
        (void)tokenizer_add_bos(t);
        tokenizer_free(t);
    }
    gguf_close(g);
    return 0;
}
