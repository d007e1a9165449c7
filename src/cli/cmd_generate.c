/* jarip generate: continue a prompt (or answer it as a chat turn) with a
 * GGUF model; prints only the generated text on stdout. The flag parser for
 * the model and sampling flags is shared with `jarip chat`. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "infer/infer.h"

/* Flag parsing shared by generate and chat (defined in cmd_generate.c). */
int infer_flags_parse(InferOptions *f, int argc, char **argv, const char *cmd, void (*usage)(FILE *), int prompt_flags);
void infer_flags_usage(FILE *out);
int infer_flags_open(const InferOptions *f, InferModel *im, InferSession *s);

static void infer_flags_default(InferOptions *f) {
    memset(f, 0, sizeof *f);
    f->n = 256;
    f->kv_type = INFER_KV_DEFAULT;
    f->lora_scale = 1.0f;
    /* llama.cpp's sampling defaults, so the same flags give comparable text */
    sampler_options_default(&f->so);
    f->so.temperature = 0.8f;
    f->so.top_k = 40;
    f->so.top_p = 0.95f;
    f->so.min_p = 0.05f;
}

/* One flag at argv[*i]; *handled = 0 when it is not a model/sampling flag. */
static int parse_one(InferOptions *f, int argc, char **argv, int *i, int *handled) {
    const char *a = argv[*i];
    *handled = 1;
    if (!strcmp(a, "--model") || !strcmp(a, "-m")) return cli_str(argc, argv, i, &f->model);
    if (!strcmp(a, "--system")) return cli_str(argc, argv, i, &f->system);
    if (!strcmp(a, "--lora")) return cli_str(argc, argv, i, &f->lora);
    if (!strcmp(a, "--lora-scale")) return cli_float(argc, argv, i, -100, 100, &f->lora_scale);
    if (!strcmp(a, "-n") || !strcmp(a, "--max-tokens")) return cli_int(argc, argv, i, 1, 1 << 24, &f->n);
    if (!strcmp(a, "--threads") || !strcmp(a, "-t")) return cli_int(argc, argv, i, 1, 1024, &f->threads);
    if (!strcmp(a, "--ctx")) return cli_int(argc, argv, i, 1, 1 << 24, &f->ctx);
    if (!strcmp(a, "--batch")) return cli_int(argc, argv, i, 1, 1 << 16, &f->batch);
    if (!strcmp(a, "--kv-type")) {
        const char *t = NULL;
        int rc = cli_str(argc, argv, i, &t);
        if (rc) return rc;
        if ((f->kv_type = infer_kv_type_from_name(t)) < 0) return cli_error(2, "--kv-type: '%s' is not f16 or f32", t);
        return 0;
    }
    if (!strcmp(a, "--temperature") || !strcmp(a, "--temp")) return cli_float(argc, argv, i, 0, 100, &f->so.temperature);
    if (!strcmp(a, "--top-k")) return cli_int(argc, argv, i, 0, 1 << 24, &f->so.top_k);
    if (!strcmp(a, "--top-p")) return cli_float(argc, argv, i, 1e-6, 1, &f->so.top_p);
    if (!strcmp(a, "--min-p")) return cli_float(argc, argv, i, 0, 0.999999, &f->so.min_p);
    if (!strcmp(a, "--repeat-penalty")) return cli_float(argc, argv, i, 1e-3, 100, &f->so.repeat_penalty);
    if (!strcmp(a, "--repeat-last-n")) return cli_int(argc, argv, i, 0, 1 << 24, &f->so.penalty_last_n);
    if (!strcmp(a, "--frequency-penalty")) return cli_float(argc, argv, i, -100, 100, &f->so.frequency_penalty);
    if (!strcmp(a, "--presence-penalty")) return cli_float(argc, argv, i, -100, 100, &f->so.presence_penalty);
    if (!strcmp(a, "--ignore-eos")) return f->ignore_eos = 1, 0;
    if (!strcmp(a, "--stats")) return f->stats = 1, 0;
    if (!strcmp(a, "--seed")) {
        long long s = 0;
        int rc = cli_long(argc, argv, i, 0, 0x7fffffffffffffffLL, &s);
        f->so.seed = (uint64_t)s;
        return rc;
    }
    if (!strcmp(a, "--stop")) {
        if (f->n_stops == INFER_MAX_STOPS) return cli_error(2, "at most %d --stop strings", INFER_MAX_STOPS);
        int rc = cli_str(argc, argv, i, &f->stops[f->n_stops]);
        if (!rc && !f->stops[f->n_stops][0]) return cli_error(2, "--stop needs a non-empty string");
        if (!rc) f->n_stops++;
        return rc;
    }
    *handled = 0;
    return 0;
}

/* Defaults, then every flag; --prompt/--chat only when prompt_flags. Returns
 * 0, 2 (usage error, printed) or -1 when --help was shown. */
int infer_flags_parse(InferOptions *f, int argc, char **argv, const char *cmd, void (*usage)(FILE *), int prompt_flags) {
    infer_flags_default(f);
    for (int i = 1; i < argc; i++) {
        int handled = 0, rc;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return -1;
        }
        if ((rc = parse_one(f, argc, argv, &i, &handled))) return rc;
        if (handled) continue;
        if (prompt_flags && (!strcmp(argv[i], "--prompt") || !strcmp(argv[i], "-p"))) {
            if ((rc = cli_str(argc, argv, &i, &f->prompt))) return rc;
        } else if (prompt_flags && !strcmp(argv[i], "--chat")) {
            f->chat = 1;
        } else {
            return cli_error(2, "%s: unknown flag '%s' (see jarip %s --help)", cmd, argv[i], cmd);
        }
    }
    return 0;
}

void infer_flags_usage(FILE *out) {
    fprintf(out, "  --model FILE           GGUF model (llama or gpt2 architecture; any tensor type jarip reads)\n"
                 "  --lora FILE            apply a LoRA adapter (llama.cpp's GGUF format, `jarip export\n"
                 "                         --lora-out`) at run time, without merging\n"
                 "  --lora-scale S         scale of the adapter (default 1)\n"
                 "  --system TEXT          system prompt (chat)\n"
                 "  -n N                   most tokens to generate per answer (default 256)\n"
                 "  --temperature X        0 = greedy (default 0.8)\n"
                 "  --top-k K              keep the K most likely tokens; 0 = off (default 40)\n"
                 "  --top-p P              nucleus sampling; 1 = off (default 0.95)\n"
                 "  --min-p P              drop tokens below P x p(most likely); 0 = off (default 0.05)\n"
                 "  --repeat-penalty X     divide the logits of recent tokens (CTRL); 1 = off (default 1)\n"
                 "  --repeat-last-n N      window of recent tokens the penalties see (default 64)\n"
                 "  --frequency-penalty X  minus X per occurrence in the window (default 0)\n"
                 "  --presence-penalty X   minus X once for any occurrence (default 0)\n"
                 "  --seed S               sampling seed (default 42); same seed, same text\n"
                 "  --stop STR             stop when STR appears (not printed); repeatable\n"
                 "  --ignore-eos           keep generating past end-of-turn tokens\n"
                 "  --ctx N                context positions (default: the model's, at most 4096)\n"
                 "  --batch N              prompt tokens per forward pass (default 512)\n"
                 "  --kv-type f16|f32      KV cache type (default f16, llama.cpp's default: half the memory)\n"
                 "  --threads N            OpenMP threads (default: all cores)\n"
                 "  --stats                timings on stderr at the end\n");
}

int infer_flags_open(const InferOptions *f, InferModel *im, InferSession *s) {
    if (!f->model) return cli_error(2, "--model FILE is required");
    if (f->threads) omp_set_num_threads(f->threads);
    Err err = {0};
    if (infer_model_open(im, f->model, &err)) return cli_error(1, "%s", err.msg);
    if ((f->lora && infer_model_add_lora(im, f->lora, f->lora_scale, &err)) || infer_model_repack(im, NULL, &err)) {
        infer_model_close(im);
        return cli_error(1, "%s", err.msg);
    }
    if (infer_session_create(s, im, f->ctx, f->batch, f->kv_type, &f->so, &err)) {
        infer_model_close(im);
        return cli_error(1, "%s", err.msg);
    }
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: jarip generate --model FILE --prompt TEXT [flags]\n\n"
               "Continues TEXT (or, with --chat, answers it as the user's turn in the model's chat template)\n"
               "and prints only the generated text on stdout.\n\n"
               "  --prompt TEXT          the prompt (special tokens such as <|im_start|> are recognised)\n"
               "  --chat                 wrap the prompt in the chat template (ChatML, Llama 3 or Llama 2,\n"
               "                         read from the file's tokenizer.chat_template)\n");
    infer_flags_usage(f);
}

static int print_text(void *ctx, const char *text, size_t len) {
    (void)ctx;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

int cmd_generate(int argc, char **argv) {
    InferOptions f;
    int rc = infer_flags_parse(&f, argc, argv, "generate", usage, 1);
    if (rc) return rc < 0 ? 0 : rc;
    const char *prompt = f.prompt;
    const int chat = f.chat;
    if (!prompt) return cli_error(2, "generate: --prompt TEXT is required");
    InferModel im;
    InferSession s;
    rc = infer_flags_open(&f, &im, &s);
    if (rc) return rc;
    Err err = {0};
    char *text = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    if (chat) {
        ChatMessage msgs[2];
        int nm = 0;
        if (f.system) msgs[nm++] = (ChatMessage){"system", f.system};
        msgs[nm++] = (ChatMessage){"user", prompt};
        if (chat_render(&im.chat, msgs, nm, 1, &text, &err)) goto fail;
    }
    const char *p = text ? text : prompt;
    if (infer_tokenize(&im, p, strlen(p), !chat, &ids, &n, &err)) goto fail;
    if (n == 0) {
        rc = cli_error(2, "generate: the prompt is empty");
        goto done;
    }
    double t0 = time_now();
    if (infer_session_prompt(&s, ids, (int)n, &err)) goto fail;
    double tp = time_now() - t0;
    GenOptions go = {f.n, f.stops, f.n_stops, f.ignore_eos};
    GenResult res;
    if (infer_generate(&s, &go, print_text, NULL, NULL, 0, &res, &err)) goto fail;
    free(res.text);
    if (isatty(STDOUT_FILENO)) putchar('\n'); /* a pipe gets exactly the generated text */
    if (f.stats)
        fprintf(stderr, "prompt: %zu tokens, %.1f tokens/s; generated: %d tokens, %.1f tokens/s\n", n,
                tp > 0 ? (double)n / tp : 0.0, res.n_tokens, res.gen_s > 0 ? res.n_tokens / res.gen_s : 0.0);
    goto done;
fail:
    rc = cli_error(1, "%s", err.msg);
done:
    free(text);
    free(ids);
    infer_session_free(&s);
    infer_model_close(&im);
    return rc;
}
