/* jarip export: a training checkpoint as a GGUF model. */
#include <string.h>

#include "cli.h"
#include "kernels/kernels.h"
#include "train/export.h"

static void usage(FILE *f) {
    fprintf(f, "usage: jarip export --ckpt DIR --out model.gguf [--type f32|f16|q8_0|q4_0|q4_1] [--tokenizer FILE]\n\n"
               "  --ckpt DIR         run directory (latest checkpoint) or checkpoint directory\n"
               "  --out FILE         GGUF file to write (atomically)\n"
               "  --type T           tensor type of the matrices (default f32; norms stay f32;\n"
               "                     q4_k, q5_k, q6_k, q5_0, q5_1, bf16 work too)\n"
               "  --tokenizer FILE   the tokenizer the model was trained with (tokenizer.json, .gguf or\n"
               "                     tiktoken); default: DIR/tokenizer.json, or a byte vocabulary for\n"
               "                     byte-level (256-token) models\n\n"
               "Llama-style configs become llama.cpp's \"llama\" architecture (MoE: Mixtral tensors),\n"
               "GPT-2-style configs its \"gpt2\" architecture.\n");
}

int cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL, *type = "f32", *tok = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc = 0;
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--ckpt")) rc = cli_str(argc, argv, &i, &ckpt);
        else if (!strcmp(a, "--out")) rc = cli_str(argc, argv, &i, &out);
        else if (!strcmp(a, "--type")) rc = cli_str(argc, argv, &i, &type);
        else if (!strcmp(a, "--tokenizer")) rc = cli_str(argc, argv, &i, &tok);
        else return cli_error(2, "export: unknown flag '%s' (see jarip export --help)", a);
        if (rc) return rc;
    }
    if (!ckpt || !out) return cli_error(2, "export: --ckpt DIR and --out FILE are required");
    int dtype = dtype_from_name(type);
    if (dtype < 0) return cli_error(2, "export: unknown --type '%s'", type);
    Err err = {0};
    if (export_gguf(ckpt, tok, out, dtype, &err)) return cli_error(1, "%s", err.msg);
    fprintf(stderr, "wrote %s (%s)\n", out, type);
    return 0;
}
