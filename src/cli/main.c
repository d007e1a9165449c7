/* jarip: the command line. Dispatches to one file per command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kernels/kernels.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} Command;

static const Command commands[] = {
    {"train", cmd_train, "train a model from scratch or resume a run"},
    {"sample", cmd_sample, "generate text from a training checkpoint"},
    {"info", cmd_info, "show a config, checkpoint or GGUF model: shapes and parameter count"},
    {"bench", cmd_bench, "measure training (bench train) or inference (bench infer) speed"},
    {"tokenizer", cmd_tokenizer, "train, encode and decode byte-level BPE tokenizers"},
    {"data", cmd_data, "prepare token shards from text corpora"},
    {"plan", cmd_plan, "plan memory, compute and time of training runs at any scale"},
    {"generate", cmd_generate, "generate text with a GGUF model"},
    {"chat", cmd_chat, "chat interactively with a GGUF model"},
    {"finetune", cmd_finetune, "fine-tune a GGUF model (LoRA or full) on chat or text data"},
    {"export", cmd_export, "export a checkpoint to GGUF"},
    {"quantize", cmd_quantize, "convert a GGUF model to another tensor type"},
    {"eval", cmd_eval, "perplexity, KL divergence and multiple-choice accuracy of a model"},
    {"serve", cmd_serve, "serve a GGUF model over the OpenAI HTTP API (and a chat page)"},
};

static void usage(FILE *f) {
    fprintf(f, "jarip - train and run transformer language models, in C\n\n"
               "usage: jarip COMMAND [flags]    (jarip COMMAND --help for its flags)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (cli_is_help(argv[1])) {
        usage(stdout);
        return 0;
    }
    if (kernel_isa_cap() < 0)
        return cli_error(2, "JARIP_ISA='%s' is not scalar, avx2 or avx512", getenv("JARIP_ISA"));
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    return cli_error(2, "unknown command '%s' (see jarip --help)", argv[1]);
}
