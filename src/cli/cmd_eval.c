/* jarip eval perplexity|kld|choice: the numbers llama-perplexity and
 * lm-evaluation-harness report, for a GGUF model or a training checkpoint
 * (src/eval). Text on stdout, or one JSON object with --json. */
#include <jansson.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "eval/eval.h"
#include "infer/infer.h"
#include "train/train.h"

typedef struct {
    const char *model, *ckpt, *tokenizer, *text, *base, *base_logits, *save_logits, *tasks, *lora;
    float lora_scale;
    int json, threads, limit, ctx_set;
    EvalOptions eo;
} EvalFlags;

/* A model to evaluate: a GGUF file (im) or a checkpoint (m + tok). */
typedef struct {
    InferModel im;
    Model m;
    Tokenizer *tok;
    int is_gguf, open;
} Evaluated;

static Model *ev_model(Evaluated *e) { return e->is_gguf ? &e->im.model : &e->m; }
static const Tokenizer *ev_tok(const Evaluated *e) { return e->is_gguf ? e->im.tok : e->tok; }

static void ev_close(Evaluated *e) {
    if (!e->open) return;
    if (e->is_gguf) infer_model_close(&e->im);
    else {
        model_free(&e->m);
        tokenizer_free(e->tok);
    }
    memset(e, 0, sizeof *e);
}

/* Open a GGUF (path) or a checkpoint (ckpt, with tok_path or its run's
 * tokenizer.json; none for a byte-level model). */
static int ev_open(Evaluated *e, const char *path, const char *ckpt_arg, const char *tok_path, Err *err) {
    memset(e, 0, sizeof *e);
    if (path) {
        /* the weights stay in the file's mapping (page cache): a batch of
         * hundreds of rows reuses each weight it reads, so the 2 MiB-page
         * copy that generation makes for its one-row steps (and the seconds
         * it can take the kernel to find those pages) would not pay here */
        GGUFFile *g;
        int rc = gguf_open(&g, path, err);
        if (!rc) rc = infer_model_from_gguf(&e->im, g, path, err);
        if (rc) return rc;
        e->is_gguf = e->open = 1;
        return 0;
    }
    char ckpt[4096], guess[4200];
    Config c;
    int step, rc;
    if ((rc = checkpoint_resolve(ckpt_arg, ckpt, sizeof ckpt, err)) || (rc = checkpoint_load_config(ckpt, &c, err)))
        return rc;
    snprintf(guess, sizeof guess, "%s/tokenizer.json", ckpt_arg);
    if (!tok_path && access(guess, R_OK) == 0) tok_path = guess;
    if (!tok_path && c.vocab_size != 256)
        return err_set(err, ERR_INVALID, "%s: a %d-token model needs its tokenizer: pass --tokenizer FILE", ckpt,
                       c.vocab_size);
    if (tok_path && (rc = tokenizer_load(&e->tok, tok_path, err))) return rc;
    if ((rc = model_create(&e->m, &c, 0, err))) {
        tokenizer_free(e->tok);
        return rc;
    }
    e->open = 1;
    if ((rc = checkpoint_load(ckpt, &e->m, &step, NULL, err))) ev_close(e);
    return rc;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: jarip eval perplexity --model F.gguf | --ckpt DIR --text FILE [flags]\n"
            "       jarip eval kld --base BASE.gguf | --base-logits FILE --model F.gguf [--text FILE] [flags]\n"
            "       jarip eval choice --model F.gguf | --ckpt DIR --tasks FILE.jsonl [--limit N] [flags]\n\n"
            "perplexity  llama-perplexity's figure: the text tokenized once, chunks of --ctx tokens (BOS first\n"
            "            where the model uses one), the second half of each chunk scored; the running estimate\n"
            "            per chunk with its error, then the final PPL.\n"
            "kld         llama-perplexity --kl-divergence: mean KL divergence of the model from the base with\n"
            "            its error, percentiles, same-top-token %%, both perplexities.\n"
            "choice      lm-evaluation-harness multiple choice: log-likelihood of \" \" + each choice after\n"
            "            the context; acc and acc_norm (per byte of the choice) with standard errors. One JSON\n"
            "            object per line: {\"context\": str, \"choices\": [str, ...], \"label\": index}\n"
            "            (scripts/convert_choice_tasks.py converts HellaSwag and ARC).\n\n"
            "  --model FILE          GGUF model\n"
            "  --ckpt DIR            training run or checkpoint (instead of --model)\n"
            "  --tokenizer FILE      the checkpoint's tokenizer (default DIR/tokenizer.json; none: bytes)\n"
            "  --lora FILE           a LoRA adapter GGUF applied to --model at run time (llama.cpp's --lora)\n"
            "  --lora-scale S        its scale (default 1; llama.cpp's --lora-scaled)\n"
            "  --text FILE           text to score (perplexity, kld with --base)\n"
            "  --ctx N               tokens per chunk (default 512); choice: KV cache positions\n"
            "  --batch N             tokens per forward pass (default 2048, as llama-perplexity): N / ctx\n"
            "                        chunks per pass, each its own sequence; below ctx a chunk takes\n"
            "                        several passes\n"
            "  --chunks N            score at most N chunks\n"
            "  --kv-type f16|f32     KV cache type (default f16, as llama.cpp)\n"
            "  --base FILE           kld: the base model (e.g. the F16 GGUF)\n"
            "  --base-logits FILE    kld: the base's saved log-probabilities (its chunks and tokens)\n"
            "  --save-logits FILE    perplexity: the model's log-probabilities; kld: the base's\n"
            "                        (llama.cpp's --kl-divergence-base format, with a CRC trailer)\n"
            "  --tasks FILE          choice: tasks, JSONL\n"
            "  --limit N             choice: the first N tasks\n"
            "  --threads N           OpenMP threads (default: all cores)\n"
            "  --json                one JSON object on stdout\n");
}

static int parse(EvalFlags *f, int argc, char **argv) {
    memset(f, 0, sizeof *f);
    eval_options_default(&f->eo);
    f->lora_scale = 1.0f;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int rc = 0;
        if (cli_is_help(a)) {
            usage(stdout);
            return -1;
        } else if (!strcmp(a, "--model") || !strcmp(a, "-m")) rc = cli_str(argc, argv, &i, &f->model);
        else if (!strcmp(a, "--ckpt")) rc = cli_str(argc, argv, &i, &f->ckpt);
        else if (!strcmp(a, "--tokenizer")) rc = cli_str(argc, argv, &i, &f->tokenizer);
        else if (!strcmp(a, "--lora")) rc = cli_str(argc, argv, &i, &f->lora);
        else if (!strcmp(a, "--lora-scale")) rc = cli_float(argc, argv, &i, -100, 100, &f->lora_scale);
        else if (!strcmp(a, "--text")) rc = cli_str(argc, argv, &i, &f->text);
        else if (!strcmp(a, "--base")) rc = cli_str(argc, argv, &i, &f->base);
        else if (!strcmp(a, "--base-logits")) rc = cli_str(argc, argv, &i, &f->base_logits);
        else if (!strcmp(a, "--save-logits")) rc = cli_str(argc, argv, &i, &f->save_logits);
        else if (!strcmp(a, "--tasks")) rc = cli_str(argc, argv, &i, &f->tasks);
        else if (!strcmp(a, "--ctx")) rc = cli_int(argc, argv, &i, 4, 1 << 20, &f->eo.ctx), f->ctx_set = 1;
        else if (!strcmp(a, "--batch")) rc = cli_int(argc, argv, &i, 1, 1 << 20, &f->eo.batch);
        else if (!strcmp(a, "--chunks")) rc = cli_int(argc, argv, &i, 1, 1 << 30, &f->eo.max_chunks);
        else if (!strcmp(a, "--limit")) rc = cli_int(argc, argv, &i, 1, 1 << 30, &f->limit);
        else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) rc = cli_int(argc, argv, &i, 1, 1024, &f->threads);
        else if (!strcmp(a, "--json")) f->json = 1;
        else if (!strcmp(a, "--kv-type")) {
            const char *t = NULL;
            if (!(rc = cli_str(argc, argv, &i, &t)) && (f->eo.kv_type = infer_kv_type_from_name(t)) < 0)
                return cli_error(2, "--kv-type: '%s' is not f16 or f32", t);
        } else return cli_error(2, "eval %s: unknown flag '%s' (see jarip eval --help)", argv[1], a);
        if (rc) return rc;
    }
    if (f->threads) omp_set_num_threads(f->threads);
    return 0;
}

static int text_tokens(const Evaluated *e, const char *path, int32_t **ids, size_t *n, Err *err) {
    return eval_read_text(ev_tok(e), path, ids, n, err);
}

static void print_progress(void *ctx, const EvalProgress *p) {
    json_t *chunks = ctx;
    if (chunks) {
        json_t *o = json_pack("{s:i, s:f, s:f}", "chunk", p->chunk, "ppl", p->ppl, "ppl_err", p->ppl_err);
        if (p->kld != 0 || p->base_ppl != 0) {
            json_object_set_new(o, "base_ppl", json_real(p->base_ppl));
            json_object_set_new(o, "kld", json_real(p->kld));
            json_object_set_new(o, "same_top", json_real(p->same_top));
        }
        json_array_append_new(chunks, o);
    } else if (p->base_ppl != 0) {
        printf("[%d/%d] PPL %9.4f ± %8.4f   ln(PPL/PPL base) %9.5f ± %8.5f   KLD %9.5f ± %8.5f   same top %6.2f ± %5.2f %%\n",
               p->chunk, p->n_chunk, p->ppl, p->ppl_err, p->ln_ratio, p->ln_ratio_err, p->kld, p->kld_err,
               100 * p->same_top, 100 * p->same_top_err);
    } else {
        printf("[%d/%d] %.4f ± %.4f\n", p->chunk, p->n_chunk, p->ppl, p->ppl_err);
    }
    fflush(stdout);
}

static int emit_json(json_t *o) {
    char *s = json_dumps(o, JSON_REAL_PRECISION(17) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s) return cli_error(1, "out of memory");
    puts(s);
    free(s);
    return 0;
}

static int run_perplexity(EvalFlags *f, Evaluated *e, Err *err) {
    int32_t *ids = NULL;
    size_t n = 0;
    int n_chunk = 0, rc;
    LogitsWriter w;
    LogitsWriter *save = NULL;
    if ((rc = text_tokens(e, f->text, &ids, &n, err)) || (rc = eval_n_chunks(n, &f->eo, &n_chunk, err))) goto fail;
    if (f->save_logits) {
        if ((rc = logits_writer_open(&w, f->save_logits, f->eo.ctx, ev_model(e)->cfg.vocab_size, n_chunk, ids, err)))
            goto fail;
        save = &w;
    }
    json_t *chunks = f->json ? json_array() : NULL;
    if (!f->json)
        printf("perplexity: %d chunks of %d tokens, %d scored per chunk (BOS %s)\n", n_chunk, f->eo.ctx,
               f->eo.ctx - 1 - f->eo.ctx / 2, f->eo.bos >= 0 ? "first" : "none");
    PplResult r;
    rc = eval_perplexity(ev_model(e), ids, n, &f->eo, save, print_progress, chunks, &r, err);
    if (save && (logits_writer_finish(save, !rc, rc ? NULL : err) && !rc)) rc = ERR_IO;
    if (rc) {
        json_decref(chunks);
        goto fail;
    }
    free(ids);
    const double tps = r.seconds > 0 ? (double)r.scored / r.seconds : 0.0;
    if (f->json)
        return emit_json(json_pack("{s:f, s:f, s:f, s:I, s:i, s:i, s:I, s:f, s:f, s:o}", "ppl", r.ppl, "ppl_err",
                                   r.ppl_err, "nll", r.nll, "tokens_scored", (json_int_t)r.scored, "chunks", r.n_chunk,
                                   "ctx", r.ctx, "tokens", (json_int_t)n, "seconds", r.seconds, "tokens_per_s", tps,
                                   "running", chunks));
    printf("Final estimate: PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_err);
    printf("scored %ld tokens in %.2f s (%.1f tokens/s)\n", r.scored, r.seconds, tps);
    return 0;
fail:
    free(ids);
    return cli_error(1, "%s", err->msg);
}

static int run_kld(EvalFlags *f, Evaluated *e, Err *err) {
    Evaluated b = {0};
    LogitsFile lf = {0};
    LogitsWriter w, *save = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    int n_chunk = 0, rc;
    if (f->base_logits) {
        rc = logits_file_open(&lf, f->base_logits, err);
    } else if (!(rc = ev_open(&b, f->base, NULL, NULL, err)) && !(rc = text_tokens(e, f->text, &ids, &n, err)) &&
               !(rc = eval_n_chunks(n, &f->eo, &n_chunk, err)) && f->save_logits) {
        if (ev_model(&b)->cfg.vocab_size != ev_model(e)->cfg.vocab_size)
            rc = err_set(err, ERR_INVALID, "the base model has a vocabulary of %d tokens, the model %d",
                         ev_model(&b)->cfg.vocab_size, ev_model(e)->cfg.vocab_size);
        else if (!(rc = logits_writer_open(&w, f->save_logits, f->eo.ctx, ev_model(e)->cfg.vocab_size, n_chunk, ids, err)))
            save = &w;
    }
    KldResult r;
    json_t *chunks = f->json ? json_array() : NULL;
    if (!rc) rc = eval_kld(ev_model(e), f->base ? ev_model(&b) : NULL, f->base_logits ? &lf : NULL, ids, n, &f->eo,
                           save, print_progress, chunks, &r, err);
    if (save && (logits_writer_finish(save, !rc, rc ? NULL : err) && !rc)) rc = ERR_IO;
    free(ids);
    logits_file_close(&lf);
    ev_close(&b);
    if (rc) {
        json_decref(chunks);
        return cli_error(1, "%s", err->msg);
    }
    if (f->json)
        return emit_json(json_pack(
            "{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:i, "
            "s:i, s:f, s:o}",
            "ppl", r.ppl, "ppl_err", r.ppl_err, "base_ppl", r.base_ppl, "base_ppl_err", r.base_ppl_err, "ln_ppl_ratio",
            r.ln_ratio, "ln_ppl_ratio_err", r.ln_ratio_err, "cor", r.cor, "kld", r.kld, "kld_err", r.kld_err,
            "kld_median", r.kld_median, "kld_p90", r.kld_p90, "kld_p95", r.kld_p95, "kld_p99", r.kld_p99, "kld_p999",
            r.kld_p999, "kld_max", r.kld_max, "same_top", r.same_top, "same_top_err", r.same_top_err, "rms_dp",
            r.rms_dp, "rms_dp_err", r.rms_dp_err, "count", (json_int_t)r.count, "chunks", r.n_chunk, "ctx", r.ctx,
            "seconds", r.seconds, "running", chunks));
    printf("\nMean PPL(Q)                   : %10.6f ± %10.6f\n", r.ppl, r.ppl_err);
    printf("Mean PPL(base)                : %10.6f ± %10.6f\n", r.base_ppl, r.base_ppl_err);
    printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100.0 * r.cor);
    printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f\n", r.ln_ratio, r.ln_ratio_err);
    printf("Mean    KLD: %10.6f ± %10.6f\n", r.kld, r.kld_err);
    printf("Maximum KLD: %10.6f\n99.9%%   KLD: %10.6f\n99.0%%   KLD: %10.6f\n95.0%%   KLD: %10.6f\n", r.kld_max,
           r.kld_p999, r.kld_p99, r.kld_p95);
    printf("90.0%%   KLD: %10.6f\nMedian  KLD: %10.6f\nMinimum KLD: %10.6f\n", r.kld_p90, r.kld_median, r.kld_min);
    printf("RMS Δp    : %6.3f ± %5.3f %%\n", 100.0 * r.rms_dp, 100.0 * r.rms_dp_err);
    printf("Same top p: %6.3f ± %5.3f %%\n", 100.0 * r.same_top, 100.0 * r.same_top_err);
    printf("positions: %ld in %d chunks of %d\n", r.count, r.n_chunk, r.ctx);
    return 0;
}

static void print_choice(void *ctx, int index, const ChoiceTask *t, const ChoiceScore *s) {
    json_t *tasks = ctx;
    if (!tasks) return;
    json_t *ll = json_array(), *nt = json_array();
    for (int j = 0; j < t->n_choices; j++) {
        json_array_append_new(ll, json_real(s->ll[j]));
        json_array_append_new(nt, json_integer(s->n_tokens[j]));
    }
    json_array_append_new(tasks, json_pack("{s:i, s:i, s:i, s:i, s:o, s:o}", "index", index, "label", t->label, "pred",
                                           s->pred, "pred_norm", s->pred_norm, "ll", ll, "tokens", nt));
}

static int run_choice(EvalFlags *f, Evaluated *e, Err *err) {
    ChoiceTask *tasks = NULL;
    int n = 0;
    if (choice_tasks_load(f->tasks, f->limit, &tasks, &n, err)) return cli_error(1, "%s", err->msg);
    json_t *per = f->json ? json_array() : NULL;
    ChoiceResult r;
    const int ctx = f->ctx_set ? f->eo.ctx : 0; /* default: the model's context */
    int rc = eval_choice(ev_model(e), ev_tok(e), tasks, n, ctx, f->eo.kv_type, print_choice, per, &r, err);
    choice_tasks_free(tasks, n);
    if (rc) {
        json_decref(per);
        return cli_error(1, "%s", err->msg);
    }
    if (f->json)
        return emit_json(json_pack("{s:i, s:f, s:f, s:f, s:f, s:f, s:o}", "n", r.n, "acc", r.acc, "acc_stderr",
                                   r.acc_stderr, "acc_norm", r.acc_norm, "acc_norm_stderr", r.acc_norm_stderr,
                                   "seconds", r.seconds, "tasks", per));
    printf("tasks: %d\nacc:      %.4f ± %.4f\nacc_norm: %.4f ± %.4f\n", r.n, r.acc, r.acc_stderr, r.acc_norm,
           r.acc_norm_stderr);
    return 0;
}

int cmd_eval(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "perplexity") && strcmp(sub, "kld") && strcmp(sub, "choice"))
        return cli_error(2, "eval: unknown mode '%s' (perplexity, kld or choice)", sub);
    EvalFlags f;
    int rc = parse(&f, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (!f.model == !f.ckpt) return cli_error(2, "eval %s: give --model FILE or --ckpt DIR", sub);
    if (!strcmp(sub, "perplexity") && !f.text) return cli_error(2, "eval perplexity: --text FILE is required");
    if (!strcmp(sub, "kld")) {
        if (!f.base == !f.base_logits) return cli_error(2, "eval kld: give --base FILE or --base-logits FILE");
        if (f.base_logits && f.save_logits) return cli_error(2, "eval kld: --save-logits needs --base (a model to run)");
        if (f.base && !f.text) return cli_error(2, "eval kld: --text FILE is required with --base");
    }
    if (!strcmp(sub, "choice") && !f.tasks) return cli_error(2, "eval choice: --tasks FILE is required");
    if (f.lora && !f.model) return cli_error(2, "eval %s: --lora applies to a --model FILE.gguf", sub);
    Err err = {0};
    Evaluated e;
    if (ev_open(&e, f.model, f.ckpt, f.tokenizer, &err)) return cli_error(1, "%s", err.msg);
    if (f.lora && infer_model_add_lora(&e.im, f.lora, f.lora_scale, &err)) {
        ev_close(&e);
        return cli_error(1, "%s", err.msg);
    }
    f.eo.bos = eval_bos(ev_tok(&e));
    if (!strcmp(sub, "perplexity")) rc = run_perplexity(&f, &e, &err);
    else if (!strcmp(sub, "kld")) rc = run_kld(&f, &e, &err);
    else rc = run_choice(&f, &e, &err);
    ev_close(&e);
    return rc;
}
