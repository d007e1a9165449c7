/* Where generation's weights live (infer_model_load_weights), and
 * infer_model_repack: Q4_0, Q5_0 and Q8_0 linear weights into the 16-row
 * layouts of the VNNI kernels (kernels/quant_r16.c), measured faster per
 * token at one thread on Zen 4: Q4_0 matvecs 1.8x (bench/qmm_hot.c tg);
 * SmolLM2 tg128 Q8_0 1.2-1.3x, its Q4_K file (mostly Q5_0) 1.35x. */
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"
#include "kernels/quant.h"

/* Only models whose block matmuls take the integer kernels at every M
 * (model_infer_llamacpp): the others dequantize Q4_0 for prompts of 16
 * tokens and more, which a repacked matrix cannot (its results would
 * differ by rounding). */

/* A linear weight of a type with a 16-row layout: the layers' and the
 * output head (also the token embedding when tied: the lookup reads its
 * rows from the repacked layout). Not an untied token_embd. */
static int repackable_type(int t) { return t == DT_Q4_0 || t == DT_Q5_0 || t == DT_Q8_0; }

static int repackable(const Tensor *t) {
    return t && repackable_type(t->dtype) && t->ndim == 2 && t->shape[0] > 0 && t->shape[0] % 16 == 0 &&
           t->shape[1] % 32 == 0;
}

/* Repacking is on: this CPU has the kernel and JARIP_REPACK is not "0". */
static int repack_enabled(void) {
    const char *env = getenv("JARIP_REPACK");
    return !(env && !strcmp(env, "0")) && quant_r16_available();
}

/* Whether infer_model_repack would rewrite some of g's weights: then they
 * must be a private copy (the file mapping is read-only). */
static int repack_wanted(const GGUFFile *g) {
    if (!repack_enabled()) return 0;
    for (int64_t i = 0; i < gguf_n_tensors(g); i++)
        if (repackable_type(gguf_tensor(g, i)->type)) return 1;
    return 0;
}

int infer_model_load_weights(GGUFFile *g, const char *path, Err *err) {
    const char *env = getenv("JARIP_MAP_WEIGHTS");
    if (!(env && !strcmp(env, "0")) && !repack_wanted(g) && gguf_map_tensor_data(g, path)) return 0;
    return gguf_load_tensor_data(g, err);
}

/* t rewritten in place into its 16-row type when repackable; *n counted. */
static int repack_tensor(Tensor *t, int *n, Err *err) {
    if (!repackable(t)) return 0;
    const int d = t->dtype;
    const int rc = (d == DT_Q8_0 ? quant_repack_q8_0_r16 : d == DT_Q5_0 ? quant_repack_q5_0_r16 : quant_repack_q4_0_r16)(
        t->data, t->shape[0], t->shape[1]);
    if (rc) return err_set(err, rc, "repacking %s (%lld x %lld)", t->name, (long long)t->shape[0], (long long)t->shape[1]);
    t->dtype = d == DT_Q8_0 ? DT_Q8_0_R16 : d == DT_Q5_0 ? DT_Q5_0_R16 : DT_Q4_0_R16;
    if (n) ++*n;
    return 0;
}

int infer_model_repack(InferModel *im, int *n, Err *err) {
    if (n) *n = 0;
    Model *m = &im->model;
    if (!repack_enabled() || !gguf_data_is_copy(im->gguf) || !model_infer_llamacpp(m) || !m->layers) return 0;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        LayerWeights *w = &m->layers[l];
        Tensor *ts[7] = {w->wq, w->wk, w->wv, w->wo, w->w_gate, w->w_up, w->w_down};
        for (int i = 0; i < 7; i++) {
            if (ts[i] == m->tok_emb || ts[i] == m->lm_head) continue;
            const int rc = repack_tensor(ts[i], n, err);
            if (rc) return rc;
        }
    }
    /* the output head: matmul reads it, and the embedding lookup reads a
     * tied one through quant_r16_dequantize_row; an untied token_embd stays */
    return repack_tensor(m->lm_head, n, err);
}
