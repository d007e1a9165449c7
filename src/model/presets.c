/* Named model presets. Published architectures use their papers' / model
 * cards' shapes; "estimate" presets are labelled guesses (see note). */
#include "model.h"

#include <string.h>

typedef struct {
    const char *name;
    const char *arch;
    int vocab, ctx, layers, d, heads, kv_heads, d_ff, experts, active;
    float theta;
    int tie;
    const char *note;
} Preset;

/* d_ff 0 = the arch's default; kv_heads 0 = n_head. */
static const Preset presets[] = {
    /* small models for tests and demos (byte-level vocab) */
    {"gpt2-tiny", "gpt2", 256, 256, 4, 128, 4, 0, 0, 0, 0, 0, 1, "test/demo model, byte vocabulary"},
    {"llama-tiny", "llama", 256, 256, 4, 128, 4, 2, 352, 0, 0, 10000, 0, "test/demo model, byte vocabulary, GQA"},
    {"moe-tiny", "llama", 256, 256, 4, 128, 4, 2, 192, 4, 2, 10000, 0, "test/demo MoE: 4 experts, top-2"},
    {"gpt2-mini", "gpt2", 256, 512, 6, 384, 6, 0, 0, 0, 0, 0, 1, "demo model (~10.7M), byte vocabulary"},
    /* GPT-2 (Radford et al. 2019) */
    {"gpt2-small", "gpt2", 50257, 1024, 12, 768, 12, 0, 0, 0, 0, 0, 1, NULL},
    {"gpt2-medium", "gpt2", 50257, 1024, 24, 1024, 16, 0, 0, 0, 0, 0, 1, NULL},
    {"gpt2-large", "gpt2", 50257, 1024, 36, 1280, 20, 0, 0, 0, 0, 0, 1, NULL},
    {"gpt2-xl", "gpt2", 50257, 1024, 48, 1600, 25, 0, 0, 0, 0, 0, 1, NULL},
    /* GPT-3 175B (Brown et al. 2020, Table 2.1) */
    {"gpt3-175b", "gpt2", 50257, 2048, 96, 12288, 96, 0, 0, 0, 0, 0, 1, NULL},
    /* SmolLM2 (HF model card / config.json) */
    {"smollm2-135m", "llama", 49152, 8192, 30, 576, 9, 3, 1536, 0, 0, 100000, 1, NULL},
    /* Llama 2 (Touvron et al. 2023) and Llama 3 (Dubey et al. 2024) */
    {"llama2-7b", "llama", 32000, 4096, 32, 4096, 32, 32, 11008, 0, 0, 10000, 0, NULL},
    {"llama2-13b", "llama", 32000, 4096, 40, 5120, 40, 40, 13824, 0, 0, 10000, 0, NULL},
    {"llama2-70b", "llama", 32000, 4096, 80, 8192, 64, 8, 28672, 0, 0, 10000, 0, NULL},
    {"llama3-8b", "llama", 128256, 8192, 32, 4096, 32, 8, 14336, 0, 0, 500000, 0, NULL},
    {"llama3-70b", "llama", 128256, 8192, 80, 8192, 64, 8, 28672, 0, 0, 500000, 0, NULL},
    {"llama3-405b", "llama", 128256, 8192, 126, 16384, 128, 8, 53248, 0, 0, 500000, 0, NULL},
    /* Mixtral 8x7B (Jiang et al. 2024) */
    {"mixtral-8x7b", "llama", 32000, 32768, 32, 4096, 32, 8, 14336, 8, 2, 1000000, 0, NULL},
    /* Megatron-LM 1T (Narayanan et al. 2021, Table 1) */
    {"megatron-1t", "gpt2", 51200, 2048, 128, 25600, 160, 0, 0, 0, 0, 0, 1, NULL},
    /* The hyperscale models in the news: only a total size was reported, so
     * these shapes are labelled estimates (Llama-3-style decoder: GQA with 8
     * or 16 kv heads, head_dim 128, SwiGLU d_ff ~3.25 d) chosen to match that
     * size; the note says so wherever they are printed. */
    {"mai-1-500b", "llama", 100352, 8192, 124, 18432, 144, 8, 59904, 0, 0, 500000, 0,
     "ESTIMATE: Microsoft MAI-1, ~500B reported (The Information, 2024); shape assumed: dense Llama-3-style, "
     "124 layers, d 18432, GQA 8 kv heads, 100k vocab"},
    {"gemini-ultra-1.56t", "llama", 256000, 8192, 128, 32768, 256, 16, 98304, 0, 0, 500000, 0,
     "ESTIMATE: Google Gemini Ultra, ~1.56T as estimated in the press; architecture unpublished; assumed dense "
     "Llama-3-style, 128 layers, d 32768, 16 kv heads, 256k vocab"},
    {"gpt4-1.76t-moe", "llama", 100352, 8192, 120, 12288, 96, 8, 24320, 16, 2, 500000, 0,
     "ESTIMATE: OpenAI GPT-4, ~1.76T per press reports (SemiAnalysis 2023): 16 experts top-2, 120 layers, "
     "d 12288; SwiGLU experts and GQA assumed; never confirmed by OpenAI"},
    {"olympus-2t", "llama", 128256, 8192, 168, 32768, 256, 8, 98304, 0, 0, 500000, 0,
     "ESTIMATE: Amazon Olympus, ~2T reported (Reuters/The Information, 2023); shape assumed: dense "
     "Llama-3-style, 168 layers, d 32768, GQA 8 kv heads"},
};

static const char *preset_names[sizeof presets / sizeof presets[0] + 1];

const char *const *config_preset_names(void) {
    size_t n = sizeof presets / sizeof presets[0];
    for (size_t i = 0; i < n; i++) preset_names[i] = presets[i].name;
    preset_names[n] = NULL;
    return preset_names;
}

int config_preset(Config *c, const char *name, Err *err) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        const Preset *p = &presets[i];
        if (strcmp(p->name, name) != 0) continue;
        int rc = config_defaults(c, p->arch, err);
        if (rc) return rc;
        c->vocab_size = p->vocab;
        c->context_length = p->ctx;
        c->n_layer = p->layers;
        c->d_model = p->d;
        c->n_head = p->heads;
        c->n_kv_head = p->kv_heads ? p->kv_heads : p->heads;
        c->head_dim = p->d / p->heads;
        c->d_ff = p->d_ff ? p->d_ff : (c->act == ACT_GELU ? 4 * p->d : 0);
        c->n_expert = p->experts;
        c->n_expert_active = p->active;
        if (p->theta > 0) c->rope_theta = p->theta;
        c->tie_embeddings = p->tie;
        if (p->note) snprintf(c->note, sizeof c->note, "%s", p->note);
        return config_validate(c, err);
    }
    return err_set(err, ERR_INVALID, "unknown preset '%s' (see `jarip info --help` for the list)", name);
}
