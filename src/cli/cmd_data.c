/* jarip data prepare|info */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "data/data.h"
#include "tokenizer/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: jarip data prepare --tokenizer FILE --input FILES... --out DIR [--val-fraction F]\n"
            "                          [--format text|lines|jsonl] [--jsonl-field NAME] [--threads N] [--shard-tokens N]\n"
            "       jarip data info --data DIR\n\n"
            "  --tokenizer FILE    tokenizer.json, a .gguf model, or a tiktoken rank file\n"
            "  --input FILES...    corpus files (UTF-8; invalid bytes are kept and counted)\n"
            "  --out DIR           output directory (must not exist, or be empty); see docs/shards.md\n"
            "  --val-fraction F    share of documents held out for validation (default 0.01; text format:\n"
            "                      share of 64 KiB pieces)\n"
            "  --format F          text: each file is one document (default); lines: each non-blank line;\n"
            "                      jsonl: one JSON object a line, the document in --jsonl-field\n"
            "  --jsonl-field NAME  string field holding the text (default text)\n"
            "  --threads N         encoding threads (default: all cores); the output does not depend on it\n"
            "  --shard-tokens N    tokens per shard file (default 100000000)\n"
            "  --data DIR          info: a directory written by prepare; every shard is verified\n");
}

static void progress(void *ctx, uint64_t done, uint64_t total) {
    (void)ctx;
    if (isatty(2)) fprintf(stderr, "\rtokenizing %5.1f%%", total ? 100.0 * (double)done / (double)total : 100.0);
}

static int do_prepare(int argc, char **argv) {
    PrepareOptions o = {0};
    o.val_fraction = 0.01;
    const char *tokp = NULL, *fmt = "text";
    const char **inputs = calloc((size_t)argc, sizeof *inputs);
    if (!inputs) return cli_error(1, "out of memory");
    long long shard_tokens = 0;
    int rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            free(inputs);
            return 0;
        } else if (!strcmp(argv[i], "--tokenizer")) {
            rc = cli_str(argc, argv, &i, &tokp);
        } else if (!strcmp(argv[i], "--input")) {
            int k = i;
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) inputs[o.n_inputs++] = argv[++i];
            if (i == k) rc = cli_error(2, "--input needs at least one file");
        } else if (!strcmp(argv[i], "--out")) {
            rc = cli_str(argc, argv, &i, &o.out_dir);
        } else if (!strcmp(argv[i], "--val-fraction")) {
            rc = cli_double(argc, argv, &i, 0.0, 0.99, &o.val_fraction);
        } else if (!strcmp(argv[i], "--format")) {
            rc = cli_str(argc, argv, &i, &fmt);
        } else if (!strcmp(argv[i], "--jsonl-field")) {
            rc = cli_str(argc, argv, &i, &o.jsonl_field);
        } else if (!strcmp(argv[i], "--threads")) {
            rc = cli_int(argc, argv, &i, 1, 1024, &o.threads);
        } else if (!strcmp(argv[i], "--shard-tokens")) {
            rc = cli_long(argc, argv, &i, 1, 1LL << 40, &shard_tokens);
        } else {
            rc = cli_error(2, "data prepare: unknown flag '%s' (see --help)", argv[i]);
        }
    }
    if (!rc) {
        if (!strcmp(fmt, "text")) o.format = DATA_FORMAT_TEXT;
        else if (!strcmp(fmt, "lines")) o.format = DATA_FORMAT_LINES;
        else if (!strcmp(fmt, "jsonl")) o.format = DATA_FORMAT_JSONL;
        else rc = cli_error(2, "--format: '%s' is not text, lines or jsonl", fmt);
    }
    if (!rc && !tokp) rc = cli_error(2, "--tokenizer FILE is required");
    if (!rc && !o.n_inputs) rc = cli_error(2, "--input FILES... is required");
    if (!rc && !o.out_dir) rc = cli_error(2, "--out DIR is required");
    if (rc) {
        free(inputs);
        return rc;
    }
    o.inputs = inputs;
    o.shard_tokens = (uint64_t)shard_tokens;
    o.progress = progress;
    Err err = {0};
    Tokenizer *t = NULL;
    if (tokenizer_load(&t, tokp, &err)) {
        free(inputs);
        return cli_error(1, "%s", err.msg);
    }
    o.tok = t;
    PrepareStats st;
    double t0 = time_now();
    rc = data_prepare(&o, &st, &err);
    if (isatty(2)) fputc('\n', stderr);
    if (rc) {
        rc = cli_error(1, "%s", err.msg);
    } else {
        double dt = time_now() - t0;
        uint64_t tok = st.tokens[0] + st.tokens[1];
        printf("documents   %llu train, %llu val\n", (unsigned long long)st.docs[0], (unsigned long long)st.docs[1]);
        printf("tokens      %llu train, %llu val (%s)\n", (unsigned long long)st.tokens[0],
               (unsigned long long)st.tokens[1], tokenizer_vocab_size(t) < 65536 ? "uint16" : "uint32");
        printf("bytes/token %.3f (%llu input bytes; %llu invalid UTF-8 bytes kept)\n",
               tok ? (double)st.bytes / (double)tok : 0.0, (unsigned long long)st.bytes,
               (unsigned long long)st.invalid_utf8);
        printf("shards      %d train, %d val -> %s\n", st.shards[0], st.shards[1], o.out_dir);
        printf("time        %.2f s (%.1f MB/s)\n", dt, dt > 0 ? (double)st.bytes / dt / 1e6 : 0.0);
        if (o.val_fraction > 0 && st.tokens[1] == 0)
            fprintf(stderr, "note: the validation split is empty (too few %s for --val-fraction %g)\n",
                    o.format == DATA_FORMAT_TEXT ? "64 KiB pieces" : "documents", o.val_fraction);
    }
    tokenizer_free(t);
    free(inputs);
    return rc;
}

static int do_info(int argc, char **argv) {
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--data")) {
            if (cli_str(argc, argv, &i, &dir)) return 2;
        } else {
            return cli_error(2, "data info: unknown flag '%s' (see --help)", argv[i]);
        }
    }
    if (!dir) return cli_error(2, "--data DIR is required");
    Err err = {0};
    DataLoader *dl = NULL;
    if (loader_open(&dl, dir, 1 << 30, 0, 0, &err)) return cli_error(1, "%s", err.msg);
    printf("vocab size  %d\ntokens      %llu train, %llu val\nchecksums   ok\n", loader_vocab(dl),
           (unsigned long long)loader_tokens(dl, SPLIT_TRAIN), (unsigned long long)loader_tokens(dl, SPLIT_VAL));
    loader_close(dl);
    return 0;
}

int cmd_data(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "prepare")) return do_prepare(argc - 1, argv + 1);
    if (!strcmp(argv[1], "info")) return do_info(argc - 1, argv + 1);
    return cli_error(2, "data: unknown subcommand '%s' (see jarip data --help)", argv[1]);
}
