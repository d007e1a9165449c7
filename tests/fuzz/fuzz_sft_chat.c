/* libFuzzer target: the chat JSONL reader of fine-tuning data (`jarip
 * finetune --format chat`): sft_prepare reads lines of {"messages": [{"role",
 * "content"}]}, renders each chat with the model's template prefix by prefix
 * to find the assistant's tokens, and writes padded rows with label flags.
 * An input is a chat template (Jinja text: its family is chosen by its
 * marker tokens, a ChatML one may carry a default system prompt) and the
 * JSONL, cut at FUZZ_SEP; without the separator the whole input is JSONL
 * and the template ChatML. What sft_prepare accepts must read back:
 * examples_check passes (magic, sizes, CRC, ids < vocab) and the label
 * count equals the one it reported. The model is fuzz_model.h's. */
#include <sys/mman.h>
#include <sys/stat.h>

#include "data/data.h"
#include "fuzz_model.h"
#include "infer/infer.h"
#include "tune/tune.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SEQ 192 /* tokens per row (bytes here: a short chat fits, a long one is cut) */

static InferModel im;
static int have_model;

/* Map the written examples and check them against what sft_prepare said. */
static void check_rows(const char *path, const SftStats *st) {
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb)) abort();
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) abort();
    Examples ex;
    Err e = {0};
    if (examples_check(p, (size_t)sb.st_size, path, &ex, &e)) {
        fprintf(stderr, "fuzz_sft_chat: what sft_prepare wrote does not check: %s\n", e.msg);
        abort();
    }
    uint64_t labels = 0, rows = ex.n[0] + ex.n[1];
    for (uint64_t i = 0; i < rows * (uint64_t)ex.row; i++) labels += ex.labels[i] != 0;
    if (ex.row != SEQ + 1 || rows != st->examples[0] + st->examples[1] || labels != st->labels || !labels) abort();
    munmap(p, (size_t)sb.st_size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Err e = {0};
    if (!have_model) {
        char path[512];
        fuzz_tiny_gguf("sft.gguf", path);
        if (infer_model_open(&im, path, &e)) abort();
        have_model = 1;
    }
    FuzzPart part[2];
    int n = fuzz_split(data, size, part, 2);
    FuzzPart tmpl = n == 2 ? part[0] : (FuzzPart){NULL, 0}, jsonl = n == 2 ? part[1] : part[0];
    chat_template_init(&im.chat, (const char *)tmpl.p, tmpl.n, NULL, NULL);
    char in[512], out[512];
    fuzz_put_file("chat.jsonl", jsonl.p, jsonl.n, in);
    snprintf(out, sizeof out, "%s/rows.bin", fuzz_dir());
    SftStats st;
    int rc = sft_prepare(&im, in, TUNE_CHAT, SEQ, 0.25, out, &st, &e);
    if (getenv("FUZZ_VERBOSE")) /* checking seeds */
        fprintf(stderr, "sft_prepare: %s (%llu rows, %llu labels)\n", rc ? e.msg : "ok",
                (unsigned long long)(st.examples[0] + st.examples[1]), (unsigned long long)st.labels);
    if (rc == 0) check_rows(out, &st);
    return 0;
}
