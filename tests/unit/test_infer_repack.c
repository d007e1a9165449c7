/* infer_model_repack on small Llamas made here (llama-tiny, exported to
 * GGUF with Q4_0 or Q5_0 weights and a Q8_0 head, as llama.cpp quantizes,
 * and all Q8_0):
 *  - the layers' 7 linear weights and the head are repacked (DT_Q4_0_R16 /
 *    DT_Q5_0_R16 / DT_Q8_0_R16), SmolLM2's tied head too (its embedding
 *    lookup then reads the repacked rows), not an untied token_embd;
 *  - a batched prompt (chunks of 16 and 8 tokens: the panels) and greedy
 *    decoding (the 16-row matvec) give the logits of the unrepacked model
 *    bit for bit, hence the same tokens;
 *  - the same on SmolLM2-135M's Q4_0, Q8_0 and Q4_K (mostly Q5_0) files
 *    when present;
 *  - it leaves alone: weights still in the caller's (read-only) memory, a
 *    GPT-2 model (its prompts dequantize Q4_0), and JARIP_REPACK=0. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"
#include "kernels/quant.h"
#include "train/export.h"

#include "check.h"

/* A random preset model exported as a GGUF of type dtype at path. */
static int make_gguf(const char *preset, const char *path, int dtype) {
    Config c;
    Model m;
    Err err = {0};
    Tokenizer *tok = NULL;
    if (config_preset(&c, preset, &err) || model_create(&m, &c, 1, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    model_init_weights(&m, 11);
    int rc = export_byte_tokenizer(&tok, &err);
    if (!rc) rc = export_model_gguf(&m, tok, NULL, 0, path, dtype, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    tokenizer_free(tok);
    model_free(&m);
    return rc;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) b = x[i] > x[b] ? i : b;
    return b;
}

/* Prompt of P tokens + G greedy tokens on a and b side by side: logits equal bit for bit at every step. */
static void compare_generation(const InferModel *a, const InferModel *b, int P, int G) {
    const int V = a->model.cfg.vocab_size;
    InferSession sa, sb;
    Err err = {0};
    SamplerOptions so;
    sampler_options_default(&so);
    if (infer_session_create(&sa, a, 128, 16, DT_F32, &so, &err) || infer_session_create(&sb, b, 128, 16, DT_F32, &so, &err)) {
        CHECK(0, "session: %s", err.msg);
        return;
    }
    int32_t ids[64];
    for (int i = 0; i < P && i < 64; i++) ids[i] = (int32_t)(rng_u64(rng_key(9, 0, 0), (uint64_t)i) % 256);
    int bad = 0, steps = 0, same_tokens = 1;
    if (infer_session_prompt(&sa, ids, P, &err) || infer_session_prompt(&sb, ids, P, &err)) CHECK(0, "prompt: %s", err.msg);
    for (int t = 0; t <= G && !err.code; t++, steps++) {
        bad += memcmp(sa.logits, sb.logits, (size_t)V * sizeof(float)) != 0;
        const int ta = argmax(sa.logits, V), tb = argmax(sb.logits, V);
        same_tokens &= ta == tb;
        if (t < G && (infer_session_push(&sa, ta, &err) || infer_session_push(&sb, tb, &err))) CHECK(0, "push: %s", err.msg);
    }
    printf("  prompt of %d (chunks of 16) + %d greedy tokens: %d of %d logit rows differ\n", P, G, bad, steps);
    CHECK(bad == 0 && same_tokens, "repacked model: %d of %d logit rows differ from the unrepacked one", bad, steps);
    infer_session_free(&sa);
    infer_session_free(&sb);
}

static void test_llama(const char *path, int dtype) {
    const int packed_type = dtype == DT_Q8_0 ? DT_Q8_0_R16 : dtype == DT_Q5_0 ? DT_Q5_0_R16 : DT_Q4_0_R16;
    InferModel plain, packed;
    Err err = {0};
    if (infer_model_open(&plain, path, &err) || infer_model_open(&packed, path, &err)) {
        CHECK(0, "open: %s", err.msg);
        return;
    }
    int n = -1;
    CHECK(infer_model_repack(&packed, &n, &err) == 0, "repack: %s", err.msg);
    const Model *m = &packed.model;
    if (!quant_r16_available()) {
        printf("  repack: skipped (no AVX-512 VNNI on this CPU, or capped by JARIP_ISA): %d tensors\n", n);
        CHECK(n == 0, "repacked without VNNI");
    } else {
        printf("  repack: %d tensors; token_embd %s, output %s\n", n, dtype_name(m->tok_emb->dtype), dtype_name(m->lm_head->dtype));
        CHECK(n == 7 * m->cfg.n_layer + 1, "%d tensors repacked, want the 7 linear weights of %d layers and the head", n,
              m->cfg.n_layer);
        CHECK(m->layers[0].wq->dtype == packed_type && m->layers[1].w_down->dtype == packed_type, "types after repack");
        CHECK(m->tok_emb->dtype == dtype && m->lm_head->dtype == DT_Q8_0_R16, "untied token_embd untouched / head repacked");
    }
    compare_generation(&plain, &packed, 40, 24);
    infer_model_close(&plain);
    infer_model_close(&packed);
}

/* SmolLM2-135M's Q4_0 or Q8_0 file when present (its real shapes: 576 /
 * 192 / 1536 rows, K 576 and 1536; a Q8_0 tied head). */
static void test_smollm2(const char *type) {
#ifdef __SANITIZE_ADDRESS__
    printf("  SmolLM2 %s: skipped under the sanitizers (minutes there; the release build runs it)\n", type);
    return;
#endif
    char rel[256];
    snprintf(rel, sizeof rel, "models/SmolLM2-135M-Instruct.%s.gguf", type);
    char *path = test_root_path(rel);
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f) {
        printf("  SmolLM2 %s: skipped (%s absent)\n", type, rel);
        free(path);
        return;
    }
    fclose(f);
    InferModel plain, packed;
    Err err = {0};
    int n = 0;
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1); /* one thread: no spinning team on a shared machine (the split is tested in test_quant_r16) */
    if (infer_model_open(&plain, path, &err) || infer_model_open(&packed, path, &err) ||
        infer_model_repack(&packed, &n, &err)) {
        CHECK(0, "SmolLM2: %s", err.msg);
    } else {
        int want = plain.model.lm_head->dtype == DT_Q8_0; /* the tied Q8_0 head, then the layers' Q4_0 / Q5_0 / Q8_0
                                                             linear weights (the Q4_K file: most are Q5_0) */
        for (int l = 0; l < plain.model.cfg.n_layer; l++) {
            const LayerWeights *w = &plain.model.layers[l];
            const Tensor *ts[7] = {w->wq, w->wk, w->wv, w->wo, w->w_gate, w->w_up, w->w_down};
            for (int i = 0; i < 7; i++)
                want += ts[i]->dtype == DT_Q4_0 || ts[i]->dtype == DT_Q5_0 || ts[i]->dtype == DT_Q8_0;
        }
        printf("  SmolLM2 %s: %d tensors repacked\n", type, n);
        CHECK(want > 1 && n == (quant_r16_available() ? want : 0), "SmolLM2 %s: %d tensors repacked, want %d", type, n, want);
        CHECK(packed.model.tok_emb == packed.model.lm_head, "SmolLM2 ties its embeddings: the lookup reads the repacked head");
        compare_generation(&plain, &packed, 20, 8);
        infer_model_close(&plain);
        infer_model_close(&packed);
    }
    omp_set_num_threads(threads);
    free(path);
}

/* Cases where the repack must not happen. */
static void test_left_alone(const char *path, const char *gpt2_path) {
    Err err = {0};
    int n = -1;
    /* weights in the caller's memory (infer_model_from_gguf without a copy) */
    size_t len = 0;
    char *buf = NULL;
    if (file_read_all(path, &buf, &len, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    GGUFFile *g = NULL;
    InferModel im;
    if (gguf_open_memory(&g, buf, len, &err) || infer_model_from_gguf(&im, g, path, &err)) {
        CHECK(0, "%s", err.msg);
    } else {
        CHECK(infer_model_repack(&im, &n, &err) == 0 && n == 0, "weights not copied: %d repacked", n);
        CHECK(im.model.layers[0].wq->dtype == DT_Q4_0, "weights not copied: type changed");
        infer_model_close(&im);
    }
    free(buf);
    /* GPT-2 */
    if (infer_model_open(&im, gpt2_path, &err)) {
        CHECK(0, "%s", err.msg);
    } else {
        CHECK(infer_model_repack(&im, &n, &err) == 0 && n == 0, "gpt2: %d repacked", n);
        infer_model_close(&im);
    }
    /* JARIP_REPACK=0 */
    setenv("JARIP_REPACK", "0", 1);
    if (infer_model_open(&im, path, &err)) {
        CHECK(0, "%s", err.msg);
    } else {
        CHECK(infer_model_repack(&im, &n, &err) == 0 && n == 0, "JARIP_REPACK=0: %d repacked", n);
        infer_model_close(&im);
    }
    unsetenv("JARIP_REPACK");
    printf("  left alone: weights in the caller's memory, gpt2, JARIP_REPACK=0\n");
}

int main(void) {
    const char *dir = getenv("JARIP_TEST_DIR");
    char path[4096], path5[4096], path8[4096], gpt2[4096];
    if (dir) mkdir_p(dir, NULL);
    snprintf(path, sizeof path, "%s/repack_llama_q4_0.gguf", dir ? dir : "/tmp");
    snprintf(path5, sizeof path5, "%s/repack_llama_q5_0.gguf", dir ? dir : "/tmp");
    snprintf(path8, sizeof path8, "%s/repack_llama_q8_0.gguf", dir ? dir : "/tmp");
    snprintf(gpt2, sizeof gpt2, "%s/repack_gpt2_q4_0.gguf", dir ? dir : "/tmp");
    if (make_gguf("llama-tiny", path, DT_Q4_0) || make_gguf("llama-tiny", path5, DT_Q5_0) ||
        make_gguf("llama-tiny", path8, DT_Q8_0) ||
        make_gguf("gpt2-tiny", gpt2, DT_Q4_0))
        return 1;
    test_llama(path, DT_Q4_0);
    test_llama(path5, DT_Q5_0);
    test_llama(path8, DT_Q8_0);
    test_smollm2("Q4_0");
    test_smollm2("Q8_0");
    test_smollm2("Q4_K");
    test_left_alone(path, gpt2);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("test_infer_repack: ok\n");
    return 0;
}
