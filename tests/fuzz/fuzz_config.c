/* libFuzzer target: the model config JSON (config.json of a checkpoint,
 * --config FILE). A config that validates must give a tensor registry and a
 * JSON text that reads back to the same config. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_strndup(data, size);
    Config c, back;
    Err e = {0};
    if (config_from_json(&c, text, &e) == 0) {
        (void)config_param_count(&c);
        (void)config_active_param_count(&c);
        (void)model_flops_per_token(&c, 16);
        Tensor *tensors = NULL;
        int n = 0;
        size_t np = 0;
        if (registry_build(&c, &tensors, &n, &np, &e) == 0) {
            if (np != config_param_count(&c)) abort(); /* the two counts must agree */
            free(tensors);
        }
        char *json = config_to_json(&c);
        if (!json) abort();
        if (config_from_json(&back, json, &e) != 0) abort(); /* a valid config must survive its own JSON */
        if (back.n_layer != c.n_layer || back.d_model != c.d_model || back.vocab_size != c.vocab_size ||
            back.d_ff != c.d_ff || back.n_head != c.n_head || back.n_kv_head != c.n_kv_head)
            abort();
        free(json);
    }
    free(text);
    return 0;
}
