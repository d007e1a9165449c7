/* jarip export: a training checkpoint as a GGUF model. */
#include <string.h>

#include "cli.h"
#include "kernels/kernels.h"
#include "train/export.h"
#include "tune/tune.h"

static void usage(FILE *f) {
    fprintf(f, "usage: jarip export --ckpt DIR --out model.gguf [--type f32|f16|q8_0|q4_0|q4_1] [--tokenizer FILE]\n"
               "       jarip export --ckpt DIR [--out merged.gguf] [--lora-out adapter.gguf]   (a finetune run)\n\n"
               "  --ckpt DIR         run directory (latest checkpoint) or checkpoint directory\n"
               "  --out FILE         GGUF file to write (atomically)\n"
               "  --type T           tensor type of the matrices (default f32; norms stay f32;\n"
               "                     q4_k, q5_k, q6_k, q5_0, q5_1, bf16 work too)\n"
               "  --tokenizer FILE   the tokenizer the model was trained with (tokenizer.json, .gguf or\n"
               "                     tiktoken); default: DIR/tokenizer.json, or a byte vocabulary for\n"
               "                     byte-level (256-token) models\n"
               "  --lora-out FILE    a LoRA fine-tuning run's adapter alone, in llama.cpp's LoRA GGUF format\n"
               "                     (llama-cli --lora, llama-cpp-python lora_path, jarip generate --lora)\n\n"
               "A `jarip finetune` run exports with its base's tokenizer and chat template; --out then\n"
               "writes the base with the adapters merged (W + alpha/r B A), or the fully tuned weights.\n"
               "Llama-style configs become llama.cpp's \"llama\" architecture (MoE: Mixtral tensors),\n"
               "GPT-2-style configs its \"gpt2\" architecture.\n");
}

int cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL, *type = "f32", *tok = NULL, *lora_out = NULL;
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
        else if (!strcmp(a, "--lora-out")) rc = cli_str(argc, argv, &i, &lora_out);
        else return cli_error(2, "export: unknown flag '%s' (see jarip export --help)", a);
        if (rc) return rc;
    }
    if (!ckpt || (!out && !lora_out)) return cli_error(2, "export: --ckpt DIR and --out FILE (or --lora-out FILE) are required");
    int dtype = dtype_from_name(type);
    if (dtype < 0) return cli_error(2, "export: unknown --type '%s'", type);
    Err err = {0};
    TuneRun run;
    if (lora_out || tune_run_read(ckpt, &run, NULL, NULL) == 0) { /* a fine-tuning run */
        if (tok) return cli_error(2, "export: a fine-tuning run takes its base's tokenizer; drop --tokenizer");
        if (tune_export(ckpt, out, lora_out, dtype, &err)) return cli_error(1, "%s", err.msg);
        if (out) fprintf(stderr, "wrote %s (%s)\n", out, type);
        if (lora_out) fprintf(stderr, "wrote %s (LoRA adapter)\n", lora_out);
        return 0;
    }
    if (export_gguf(ckpt, tok, out, dtype, &err)) return cli_error(1, "%s", err.msg);
    fprintf(stderr, "wrote %s (%s)\n", out, type);
    return 0;
}
