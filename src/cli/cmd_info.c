/* jarip info: config, per-tensor parameter table, exact parameter count. */
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "model_arg.h"
#include "train/train.h"

static void usage(FILE *f) {
    fprintf(f, "usage: jarip info (--preset NAME | --config FILE | --ckpt DIR | --model FILE.gguf)\n\n"
               "  --preset NAME   a built-in model\n"
               "  --config FILE   a model config JSON\n"
               "  --ckpt DIR      a training run or checkpoint directory\n"
               "  --model FILE    a GGUF file: metadata, tensors and their types\n"
               "  --batch B --seq T   also report the training activation memory for this shape\n\n"
               "Prints the config, one line per parameter tensor, and `parameters: N`.\n");
    model_arg_list_presets(f);
}

static void fmt_shape(char *buf, size_t n, const Tensor *t) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? " x %lld" : "%lld", (long long)t->shape[i]);
}

int cmd_info(int argc, char **argv) {
    const char *preset = NULL, *config = NULL, *ckpt_arg = NULL, *model = NULL;
    int B = 0, T = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc = 0;
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--preset")) rc = cli_str(argc, argv, &i, &preset);
        else if (!strcmp(a, "--config")) rc = cli_str(argc, argv, &i, &config);
        else if (!strcmp(a, "--ckpt")) rc = cli_str(argc, argv, &i, &ckpt_arg);
        else if (!strcmp(a, "--model")) rc = cli_str(argc, argv, &i, &model);
        else if (!strcmp(a, "--batch")) rc = cli_int(argc, argv, &i, 1, 65536, &B);
        else if (!strcmp(a, "--seq")) rc = cli_int(argc, argv, &i, 1, 1 << 20, &T);
        else return cli_error(2, "info: unknown flag '%s' (see jarip info --help)", a);
        if (rc) return rc;
    }
    Err err = {0};
    if (model) {
        if (preset || config || ckpt_arg) return cli_error(2, "info: --model cannot be combined with other sources");
        GGUFFile *g;
        if (gguf_open(&g, model, &err)) return cli_error(1, "%s", err.msg);
        int rc = gguf_print_info(g, stdout, &err);
        gguf_close(g);
        return rc ? cli_error(1, "%s", err.msg) : 0;
    }
    Config c;
    if (ckpt_arg) {
        if (preset || config) return cli_error(2, "info: give one of --preset, --config, --ckpt");
        char ckpt[4096];
        if (checkpoint_resolve(ckpt_arg, ckpt, sizeof ckpt, &err) || checkpoint_load_config(ckpt, &c, &err))
            return cli_error(1, "%s", err.msg);
        printf("checkpoint: %s\n", ckpt);
    } else if (model_arg_config(preset, config, &c)) {
        return 2;
    }
    char *json = config_to_json(&c);
    printf("config:\n%s\n\n", json ? json : "{}");
    free(json);
    Tensor *t;
    int n;
    size_t total;
    if (registry_build(&c, &t, &n, &total, &err)) return cli_error(1, "%s", err.msg);
    printf("%-32s %-22s %14s  %s\n", "tensor", "shape", "parameters", "dtype");
    for (int i = 0; i < n; i++) {
        char shape[64];
        fmt_shape(shape, sizeof shape, &t[i]);
        printf("%-32s %-22s %14zu  %s\n", t[i].name, shape, t[i].numel, dtype_name(t[i].dtype));
    }
    free(t);
    if (c.n_expert) printf("active parameters per token: %zu\n", config_active_param_count(&c));
    printf("training memory (fp32 weights, grads, Adam m and v): %.1f MiB\n", total * 16.0 / (1 << 20));
    if (B && T) {
        if (T > c.context_length) return cli_error(2, "--seq %d exceeds context_length %d", T, c.context_length);
        printf("activations for batch %d x seq %d: %.1f MiB\n", B, T, model_activation_bytes(&c, B, T, 1) / 1048576.0);
    }
    printf("parameters: %zu\n", total);
    return 0;
}
