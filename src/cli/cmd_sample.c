/* jarip sample: continue a prompt with a training checkpoint. */
#include <omp.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "infer/sampler.h"
#include "tokenizer/tokenizer.h"
#include "train/train.h"

static void usage(FILE *f) {
    fprintf(f, "usage: jarip sample --ckpt DIR --prompt TEXT [flags]\n\n"
               "  --ckpt DIR          run directory (its latest checkpoint) or a checkpoint directory\n"
               "  --prompt TEXT       text to continue (may be empty)\n"
               "  -n N                tokens to generate (default 200)\n"
               "  --temperature X     0 = greedy (default 0.8)\n"
               "  --top-k K           sample among the K most likely tokens; 0 = off (default 0)\n"
               "  --top-p P           nucleus sampling; 1 = off (default 0.95)\n"
               "  --seed S            sampling seed (default 42)\n"
               "  --tokenizer FILE    for models trained on token shards: the tokenizer (default:\n"
               "                      DIR/tokenizer.json, saved by `jarip train --tokenizer`)\n"
               "  --threads N         OpenMP threads (default: all cores)\n");
}

int cmd_sample(int argc, char **argv) {
    const char *ckpt_arg = NULL, *prompt = NULL, *tok_path = NULL;
    int n = 200, threads = 0;
    SamplerOptions so;
    sampler_options_default(&so);
    so.top_p = 0.95f;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc = 0;
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--ckpt")) rc = cli_str(argc, argv, &i, &ckpt_arg);
        else if (!strcmp(a, "--prompt")) rc = cli_str(argc, argv, &i, &prompt);
        else if (!strcmp(a, "--tokenizer")) rc = cli_str(argc, argv, &i, &tok_path);
        else if (!strcmp(a, "-n")) rc = cli_int(argc, argv, &i, 0, 1 << 24, &n);
        else if (!strcmp(a, "--temperature")) rc = cli_float(argc, argv, &i, 0, 100, &so.temperature);
        else if (!strcmp(a, "--top-k")) rc = cli_int(argc, argv, &i, 0, 1 << 24, &so.top_k);
        else if (!strcmp(a, "--top-p")) rc = cli_float(argc, argv, &i, 1e-6, 1, &so.top_p);
        else if (!strcmp(a, "--seed")) {
            long long s;
            rc = cli_long(argc, argv, &i, 0, 0x7fffffffffffffffLL, &s);
            so.seed = (uint64_t)s;
        } else if (!strcmp(a, "--threads")) rc = cli_int(argc, argv, &i, 1, 1024, &threads);
        else return cli_error(2, "sample: unknown flag '%s' (see jarip sample --help)", a);
        if (rc) return rc;
    }
    if (!ckpt_arg) return cli_error(2, "sample: --ckpt DIR is required");
    if (!prompt) prompt = "";
    if (threads) omp_set_num_threads(threads);
    Err err = {0};
    char ckpt[4096];
    Config c;
    Model m;
    int step;
    if (checkpoint_resolve(ckpt_arg, ckpt, sizeof ckpt, &err) || checkpoint_load_config(ckpt, &c, &err))
        return cli_error(1, "%s", err.msg);
    if (c.lora_rank > 0)
        return cli_error(2, "%s is a LoRA fine-tuning run: export it (jarip export --ckpt DIR --out merged.gguf) and "
                            "use jarip generate", ckpt_arg);
    Tokenizer *tok = NULL;
    if (c.vocab_size != 256 || tok_path) {
        char guess[4200];
        snprintf(guess, sizeof guess, "%s/tokenizer.json", ckpt_arg);
        if (!tok_path && access(guess, R_OK) != 0)
            return cli_error(1, "%s: a %d-token model needs its tokenizer: pass --tokenizer FILE", ckpt, c.vocab_size);
        if (tokenizer_load(&tok, tok_path ? tok_path : guess, &err)) return cli_error(1, "%s", err.msg);
        if (tokenizer_vocab_size(tok) > c.vocab_size) {
            tokenizer_free(tok);
            return cli_error(1, "the tokenizer has %d tokens, the model %d", tokenizer_vocab_size(tok), c.vocab_size);
        }
    }
    if (model_create(&m, &c, 0, &err)) {
        tokenizer_free(tok);
        return cli_error(1, "%s", err.msg);
    }
    if (checkpoint_load(ckpt, &m, &step, NULL, &err)) {
        model_free(&m);
        tokenizer_free(tok);
        return cli_error(1, "%s", err.msg);
    }
    int32_t *ptoks = NULL;
    size_t np = 0;
    if (tok && tokenizer_encode(tok, prompt, strlen(prompt), 1, &ptoks, &np, &err)) {
        tokenizer_free(tok);
        model_free(&m);
        return cli_error(1, "%s", err.msg);
    }
    int plen = tok ? (int)np : (int)strlen(prompt);
    int ctx = c.context_length;
    int total = plen + n;
    if (total > ctx) total = ctx;
    int chunk = plen > 0 ? (plen < ctx ? plen : ctx) : 1;
    KVCache kv = {0};
    Sampler s = {0};
    int32_t *toks = malloc((size_t)(total + 1) * sizeof *toks);
    float *logits = malloc((size_t)c.vocab_size * sizeof *logits);
    int rc = 0;
    if (!toks || !logits || model_plan_activations(&m, 1, chunk, 0, &err) || kvcache_create(&kv, &c, total > 0 ? total : 1, DT_F32, &err) ||
        sampler_create(&s, c.vocab_size, &err)) {
        rc = cli_error(1, "%s", err.msg[0] ? err.msg : "out of memory");
        goto done;
    }
    /* an empty prompt starts from a newline (byte-level, as the data does)
     * or from the end-of-text token that separates documents */
    int nt = 0;
    if (plen == 0) toks[nt++] = tok ? (tokenizer_eos_id(tok) >= 0 ? tokenizer_eos_id(tok) : 0) : '\n';
    for (int i = 0; i < plen && nt < total; i++) toks[nt++] = tok ? ptoks[i] : (unsigned char)prompt[i];
    fputs(prompt, stdout);
    if (model_forward_cached(&m, &kv, toks, nt, logits, &err)) {
        rc = cli_error(1, "%s", err.msg);
        goto done;
    }
    for (int g = 0; g < n && nt < total; g++) {
        int32_t t = sampler_next(&s, &so, logits, toks, nt, (uint64_t)g);
        toks[nt++] = t;
        if (tok) {
            if (t == tokenizer_eos_id(tok)) break;
            size_t len = 0;
            const uint8_t *bytes = tokenizer_token_bytes(tok, t, &len);
            if (bytes) fwrite(bytes, 1, len, stdout);
        } else {
            fputc(t, stdout);
        }
        fflush(stdout);
        if (nt >= total) break;
        if (model_forward_cached(&m, &kv, &t, 1, logits, &err)) {
            rc = cli_error(1, "%s", err.msg);
            goto done;
        }
    }
    fputc('\n', stdout);
done:
    free(ptoks);
    tokenizer_free(tok);
    free(toks);
    free(logits);
    sampler_free(&s);
    kvcache_free(&kv);
    model_free(&m);
    return rc;
}
