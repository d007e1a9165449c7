/* --preset / --config / --ckpt resolution shared by train, info and bench. */
#include <string.h>

#include "model_arg.h"
#include "train/train.h"

int model_arg_config(const char *preset, const char *config, Config *c) {
    Err err = {0};
    if (preset && config) return cli_error(2, "give either --preset or --config, not both");
    if (!preset && !config) return cli_error(2, "a model is needed: --preset NAME or --config FILE");
    int rc = preset ? config_preset(c, preset, &err) : config_load(c, config, &err);
    if (rc) return cli_error(2, "%s", err.msg);
    if (c->lora_rank > 0) /* adapters alone, without the frozen model they adapt */
        return cli_error(2, "%s: lora_rank is for jarip finetune (LoRA adapts a base model: --model BASE.gguf)", config);
    return 0;
}

void model_arg_list_presets(FILE *f) {
    fprintf(f, "presets:");
    int col = 8;
    for (const char *const *p = config_preset_names(); *p; p++) {
        int n = (int)strlen(*p) + 1;
        if (col + n > 78) {
            fprintf(f, "\n        ");
            col = 8;
        }
        fprintf(f, " %s", *p);
        col += n;
    }
    fprintf(f, "\n");
}
