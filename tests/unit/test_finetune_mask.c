/* The loss mask of chat fine-tuning: only the assistant's tokens (its
 * answer and the end of its turn) are labels. Two chats that differ only
 * in the user's words give the same labels, so with the same inputs the
 * gradient from the labels is the same, bit for bit; a chat whose answer
 * differs gives another gradient. Byte-level model, ChatML template. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "data/data.h"
#include "tune/tune.h"

static char dir[512];
enum { SEQ = 96 };

/* The batch row (inputs, targets) of a one-chat file made from line. */
static void chat_row(InferModel *im, const char *name, const char *line, int32_t *in, int32_t *tgt) {
    char src[700], out[700];
    snprintf(src, sizeof src, "%s/%s.jsonl", dir, name);
    snprintf(out, sizeof out, "%s/%s.sft", dir, name);
    Err err = {0};
    CHECK(file_write_atomic(src, line, strlen(line), &err) == 0, "%s", err.msg);
    SftStats st;
    CHECK(sft_prepare(im, src, TUNE_CHAT, SEQ, 0.0, out, &st, &err) == 0, "%s: %s", name, err.msg);
    CHECK(st.examples[0] == 1 && st.examples[1] == 0, "%s: one training example", name);
    DataLoader *dl = NULL;
    CHECK(loader_open(&dl, out, 256, 0.1, 1, &err) == 0, "%s", err.msg);
    CHECK(dl && loader_batch(dl, SPLIT_TRAIN, 0, 0, 1, SEQ, in, tgt, &err) == 0, "%s", err.msg);
    loader_close(dl);
}

/* The gradient of a tiny llama's loss at (in, tgt). */
static float *grads(Model *m, const int32_t *in, const int32_t *tgt) {
    Err err = {0};
    memset(m->grads, 0, m->n_params * sizeof(float));
    float loss = model_forward(m, in, tgt, 1, SEQ, &err);
    CHECK(isfinite(loss), "forward: %s", err.msg);
    model_backward(m, in, tgt, 1.0f);
    float *g = malloc(m->n_params * sizeof(float));
    memcpy(g, m->grads, m->n_params * sizeof(float));
    return g;
}

int main(void) {
    const char *base = getenv("JARIP_TEST_DIR");
    snprintf(dir, sizeof dir, "%s/finetune_mask", base ? base : "/tmp/jarip_test");
    Err err = {0};
    rm_rf(dir);
    CHECK(mkdir_p(dir, &err) == 0, "%s", err.msg);
    InferModel im;
    memset(&im, 0, sizeof im); /* no tokenizer: ids are bytes */
    im.model.cfg.vocab_size = 256;
    chat_template_init(&im.chat, NULL, 0, NULL, NULL); /* ChatML */
    int32_t in_a[SEQ], tgt_a[SEQ], in_b[SEQ], tgt_b[SEQ], in_c[SEQ], tgt_c[SEQ];
    chat_row(&im, "a", "{\"messages\": [{\"role\": \"user\", \"content\": \"Where is Tarsis?\"}, "
                       "{\"role\": \"assistant\", \"content\": \"On Mars.\"}]}\n", in_a, tgt_a);
    chat_row(&im, "b", "{\"messages\": [{\"role\": \"user\", \"content\": \"Who is Qwertyui?\"}, "
                       "{\"role\": \"assistant\", \"content\": \"On Mars.\"}]}\n", in_b, tgt_b);
    chat_row(&im, "c", "{\"messages\": [{\"role\": \"user\", \"content\": \"Where is Tarsis?\"}, "
                       "{\"role\": \"assistant\", \"content\": \"On Mira.\"}]}\n", in_c, tgt_c);
    /* the labels are exactly the answer and the end of the turn */
    char lab[SEQ + 1];
    int n = 0;
    for (int t = 0; t < SEQ; t++)
        if (tgt_a[t] >= 0) lab[n++] = (char)tgt_a[t];
    lab[n] = 0;
    CHECK(!strcmp(lab, "On Mars.<|im_end|>\n"), "labels '%s'", lab);
    CHECK(memcmp(in_a, in_b, sizeof in_a) != 0, "the user turns differ in the inputs");
    CHECK(memcmp(tgt_a, tgt_b, sizeof tgt_a) == 0, "a user turn's words changed the labels");
    Config c;
    CHECK(config_preset(&c, "llama-tiny", &err) == 0, "%s", err.msg);
    Model m;
    CHECK(model_create(&m, &c, 1, &err) == 0 && model_plan_activations(&m, 1, SEQ, 1, &err) == 0, "%s", err.msg);
    model_init_weights(&m, 3);
    float *ga = grads(&m, in_a, tgt_a), *gb = grads(&m, in_a, tgt_b), *gc = grads(&m, in_a, tgt_c);
    CHECK(memcmp(ga, gb, m.n_params * sizeof(float)) == 0, "the gradient from the labels changed with the user's words");
    CHECK(memcmp(ga, gc, m.n_params * sizeof(float)) != 0, "another answer should give another gradient");
    free(ga);
    free(gb);
    free(gc);
    model_free(&m);
    rm_rf(dir);
    if (!failures) printf("finetune loss mask: ok\n");
    return failures != 0;
}
