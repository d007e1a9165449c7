/* jarip tokenizer train|encode|decode|info */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "tokenizer/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: jarip tokenizer train  --vocab-size N --input FILES... --out tok.json [--pattern gpt2|llama3]\n"
            "                              [--special TOKEN ...] [--threads N]\n"
            "       jarip tokenizer encode --tokenizer FILE [--input FILE] [--no-special] [--threads N] [--stats]\n"
            "       jarip tokenizer decode --tokenizer FILE [--input FILE]\n"
            "       jarip tokenizer info   --tokenizer FILE\n\n"
            "  --vocab-size N     total vocabulary: 256 bytes + merges + special tokens\n"
            "  --input FILES...   train: UTF-8 text files; encode/decode: input file (default stdin)\n"
            "  --out FILE         where train writes tokenizer.json (Hugging Face loads it)\n"
            "  --pattern NAME     split pattern: gpt2 (default) or llama3\n"
            "  --special TOKEN... special tokens, given ids after the merges (default <|endoftext|>)\n"
            "  --threads N        threads for word counting / encoding (default: all cores)\n"
            "  --tokenizer FILE   tokenizer.json, a .gguf model, or a tiktoken rank file\n"
            "  --no-special       encode special-token text as ordinary bytes\n"
            "  --stats            encode: print bytes, tokens and encoding speed (MB/s) to stderr\n\n"
            "encode writes decimal ids separated by single spaces (and a final newline);\n"
            "decode reads ids separated by white space and writes the exact bytes.\n");
}

/* Read a whole file, or stdin when path is NULL. */
static int read_input(const char *path, char **data, size_t *len) {
    Err err = {0};
    if (path) {
        if (file_read_all(path, data, len, &err)) return cli_error(1, "%s", err.msg);
        return 0;
    }
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) return cli_error(1, "out of memory reading stdin");
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) break;
        if (n == cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) free(buf);
            buf = b;
        }
    }
    if (ferror(stdin)) {
        free(buf);
        return cli_error(1, "read error on stdin");
    }
    *data = buf;
    *len = n;
    return 0;
}

static int load(const char *path, Tokenizer **t) {
    Err err = {0};
    if (!path) return cli_error(2, "--tokenizer FILE is required");
    if (tokenizer_load(t, path, &err)) return cli_error(1, "%s", err.msg);
    return 0;
}

/* The tokenizer and the whole input, or an error already printed. */
static int load_with_input(const char *tokp, const char *inp, Tokenizer **t, char **data, size_t *len) {
    int rc = load(tokp, t);
    if (!rc && (rc = read_input(inp, data, len))) {
        tokenizer_free(*t);
        *t = NULL;
    }
    return rc;
}

static void progress(void *ctx, const char *stage, double done) {
    (void)ctx;
    if (isatty(2)) fprintf(stderr, "\r%-16s %5.1f%%", stage, 100 * done);
    if (done >= 1.0 && isatty(2)) fputc('\n', stderr);
}

static int do_train(int argc, char **argv) {
    TokTrainOptions o = {0};
    const char *outp = NULL;
    const char **inputs = calloc((size_t)argc, sizeof *inputs), **specials = calloc((size_t)argc, sizeof *specials);
    if (!inputs || !specials) return cli_error(1, "out of memory");
    int rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            free(inputs), free(specials);
            return 0;
        } else if (!strcmp(argv[i], "--vocab-size")) {
            rc = cli_int(argc, argv, &i, 257, 1 << 24, &o.vocab_size);
        } else if (!strcmp(argv[i], "--input") || !strcmp(argv[i], "--special")) {
            int is_in = argv[i][2] == 'i', k = i;
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
                if (is_in) inputs[o.n_inputs++] = argv[++i];
                else specials[o.n_specials++] = argv[++i];
            }
            if (i == k) rc = cli_error(2, "%s needs at least one value", argv[k]);
        } else if (!strcmp(argv[i], "--out")) {
            rc = cli_str(argc, argv, &i, &outp);
        } else if (!strcmp(argv[i], "--pattern")) {
            rc = cli_str(argc, argv, &i, &o.pattern);
            if (!rc && strcmp(o.pattern, "gpt2") && strcmp(o.pattern, "llama3"))
                rc = cli_error(2, "--pattern: '%s' is not gpt2 or llama3", o.pattern);
        } else if (!strcmp(argv[i], "--threads")) {
            rc = cli_int(argc, argv, &i, 1, 1024, &o.threads);
        } else {
            rc = cli_error(2, "tokenizer train: unknown flag '%s' (see --help)", argv[i]);
        }
    }
    if (!rc && !o.vocab_size) rc = cli_error(2, "--vocab-size N is required");
    if (!rc && !o.n_inputs) rc = cli_error(2, "--input FILES... is required");
    if (!rc && !outp) rc = cli_error(2, "--out FILE is required");
    if (rc) {
        free(inputs), free(specials);
        return rc;
    }
    o.inputs = inputs;
    o.specials = specials;
    o.progress = progress;
    Err err = {0};
    Tokenizer *t = NULL;
    double t0 = time_now();
    if (tokenizer_train(&t, &o, &err) || tokenizer_save_json(t, outp, &err)) rc = cli_error(1, "%s", err.msg);
    else
        fprintf(stderr, "trained %d tokens (%s pattern) in %.2f s -> %s\n", tokenizer_vocab_size(t),
                tokenizer_pattern_name(t), time_now() - t0, outp);
    tokenizer_free(t);
    free(inputs), free(specials);
    return rc;
}

static int parse_common(int argc, char **argv, const char **tok, const char **in, int *nospecial, int *threads,
                        int *stats) {
    for (int i = 1; i < argc; i++) {
        int rc = 0;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return -1;
        } else if (!strcmp(argv[i], "--tokenizer")) {
            rc = cli_str(argc, argv, &i, tok);
        } else if (!strcmp(argv[i], "--input") && in) {
            rc = cli_str(argc, argv, &i, in);
        } else if (!strcmp(argv[i], "--no-special") && nospecial) {
            *nospecial = 1;
        } else if (!strcmp(argv[i], "--stats") && stats) {
            *stats = 1;
        } else if (!strcmp(argv[i], "--threads") && threads) {
            rc = cli_int(argc, argv, &i, 1, 1024, threads);
        } else {
            rc = cli_error(2, "tokenizer %s: unknown flag '%s' (see --help)", argv[0], argv[i]);
        }
        if (rc) return rc;
    }
    return 0;
}

static int do_encode(int argc, char **argv) {
    const char *tokp = NULL, *inp = NULL;
    int nospecial = 0, threads = 0, stats = 0;
    int rc = parse_common(argc, argv, &tokp, &inp, &nospecial, &threads, &stats);
    if (rc) return rc < 0 ? 0 : rc;
    Tokenizer *t = NULL;
    char *data = NULL;
    size_t len = 0;
    if ((rc = load_with_input(tokp, inp, &t, &data, &len))) return rc;
    Err err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    double t0 = time_now();
    if (tokenizer_encode_parallel(t, data, len, !nospecial, threads, &ids, &n, &err)) {
        rc = cli_error(1, "%s", err.msg);
    } else {
        double dt = time_now() - t0;
        if (stats)
            fprintf(stderr, "encoded %zu bytes into %zu tokens (%.3f bytes/token) in %.4f s: %.2f MB/s\n", len, n,
                    n ? (double)len / n : 0.0, dt, dt > 0 ? len / dt / 1e6 : 0.0);
        char *buf = malloc(n * 12 + 2), *o = buf;
        if (!buf) {
            rc = cli_error(1, "out of memory");
        } else {
            for (size_t i = 0; i < n; i++) {
                char tmp[12];
                int k = 0;
                uint32_t v = (uint32_t)ids[i];
                do tmp[k++] = (char)('0' + v % 10); while (v /= 10);
                if (i) *o++ = ' ';
                while (k) *o++ = tmp[--k];
            }
            *o++ = '\n';
            if (fwrite(buf, 1, (size_t)(o - buf), stdout) != (size_t)(o - buf) || fflush(stdout))
                rc = cli_error(1, "write error: %s", strerror(errno));
            free(buf);
        }
    }
    free(ids);
    free(data);
    tokenizer_free(t);
    return rc;
}

static int do_decode(int argc, char **argv) {
    const char *tokp = NULL, *inp = NULL;
    int rc = parse_common(argc, argv, &tokp, &inp, NULL, NULL, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    Tokenizer *t = NULL;
    char *data = NULL;
    size_t len = 0;
    if ((rc = load_with_input(tokp, inp, &t, &data, &len))) return rc;
    int32_t *ids = malloc((len / 2 + 1) * sizeof *ids);
    size_t n = 0;
    for (size_t i = 0; ids && i < len && !rc;) {
        char c = data[i];
        if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
            i++;
            continue;
        }
        uint64_t v = 0;
        size_t s = i;
        while (i < len && data[i] >= '0' && data[i] <= '9' && v < (1u << 31)) v = v * 10 + (uint64_t)(data[i++] - '0');
        if (i == s || (i < len && !memchr(" \n\t\r", data[i], 4)) || v >= (1u << 31))
            rc = cli_error(1, "decode: input byte %zu: expected a token id", s);
        else
            ids[n++] = (int32_t)v;
    }
    if (!ids) rc = cli_error(1, "out of memory");
    char *out = NULL;
    size_t olen = 0;
    Err err = {0};
    if (!rc && tokenizer_decode(t, ids, n, &out, &olen, &err)) rc = cli_error(1, "%s", err.msg);
    if (!rc && (fwrite(out, 1, olen, stdout) != olen || fflush(stdout))) rc = cli_error(1, "write error: %s", strerror(errno));
    free(out);
    free(ids);
    free(data);
    tokenizer_free(t);
    return rc;
}

static int do_info(int argc, char **argv) {
    const char *tokp = NULL;
    int rc = parse_common(argc, argv, &tokp, NULL, NULL, NULL, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    Tokenizer *t = NULL;
    if ((rc = load(tokp, &t))) return rc;
    printf("vocab size  %d\npattern     %s\nbos         %d%s\neos         %d\nspecials   ", tokenizer_vocab_size(t),
           tokenizer_pattern_name(t), tokenizer_bos_id(t), tokenizer_add_bos(t) ? " (added before prompts)" : "",
           tokenizer_eos_id(t));
    int shown = 0;
    for (int32_t id = 0; id < tokenizer_vocab_size(t); id++) {
        if (!tokenizer_is_special(t, id)) continue;
        size_t n;
        const uint8_t *b = tokenizer_token_bytes(t, id, &n);
        if (shown++ < 20) printf(" %d=%.*s", id, (int)n, (const char *)b);
    }
    printf(shown > 20 ? " ... (%d in all)\n" : "\n", shown);
    tokenizer_free(t);
    return 0;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "train")) return do_train(argc - 1, argv + 1);
    if (!strcmp(sub, "encode")) return do_encode(argc - 1, argv + 1);
    if (!strcmp(sub, "decode")) return do_decode(argc - 1, argv + 1);
    if (!strcmp(sub, "info")) return do_info(argc - 1, argv + 1);
    return cli_error(2, "tokenizer: unknown subcommand '%s' (see jarip tokenizer --help)", sub);
}
