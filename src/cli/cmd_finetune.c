/* jarip finetune: LoRA or full fine-tuning of a GGUF model (or a training
 * checkpoint) on chat or text data, through the trainer of `jarip train`
 * (same flags, log.jsonl, loss.svg, checkpoints, exact resume). */
#include <limits.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dist/launch.h"
#include "train/parallel.h"
#include "train/train.h"
#include "tune/tune.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: jarip finetune (--model BASE.gguf | --ckpt DIR) --data FILE --out DIR [flags]\n"
            "       jarip finetune --resume DIR [--steps N] [--threads N]\n\n"
            "  --model FILE        the base: a GGUF model (any type jarip reads; its tokenizer and chat\n"
            "                      template come along)\n"
            "  --ckpt DIR          the base: a `jarip train` run or checkpoint (its tokenizer.json)\n"
            "  --data FILE         JSONL: {\"messages\": [{\"role\", \"content\"}, ...]} per line (--format chat),\n"
            "                      or {\"text\"} per line / plain text (--format text)\n"
            "  --format chat|text  chat: rendered by the model's template, only the assistant's tokens\n"
            "                      count in the loss (default); text: every token (continued pre-training)\n"
            "  --val-fraction X    share of the examples held out for validation (default 0.1)\n"
            "  --lora-rank R       LoRA rank (default 16): the base stays frozen in its own type, A (R x in)\n"
            "                      and B (out x R) train, scaled by alpha / R\n"
            "  --lora-alpha A      LoRA alpha (default 2 R)\n"
            "  --lora-targets L    which linear layers get adapters, of q,k,v,o,gate,up,down (default all)\n"
            "  --lora-dropout P    dropout on the adapters' input in training, as PEFT's lora_dropout (default 0)\n"
            "  --full              train every weight instead (dequantized to float32)\n"
            "  --resume DIR        continue the run in DIR from its latest checkpoint, exactly\n\n"
            "Every example is one row of --seq + 1 tokens, padded (not packed): under causal attention the\n"
            "padding after an example changes nothing before it, and no example attends to another's\n"
            "tokens; longer examples are cut (text is cut into overlapping rows).\n"
            "Training flags as `jarip train` (defaults here: --steps 100 --batch 4 --seq 256 --lr 2e-4\n"
            "(LoRA) / 2e-5 (--full) --weight-decay 0 --eval-every 50 --eval-batches 4 --save-every 50):\n"
            "  --steps --stop-after --batch --seq --accum --lr --lr-min --warmup --weight-decay --grad-clip\n"
            "  --seed --eval-every --eval-batches --save-every --keep --max-bad-steps --precision --threads\n"
            "  --quiet (--precision bf16 runs the linear layers of --full in bf16: see jarip train --help)\n\n"
            "Then: jarip export --ckpt DIR --out merged.gguf [--type q8_0]  (base + adapters)\n"
            "      jarip export --ckpt DIR --lora-out adapter.gguf         (llama.cpp's LoRA format)\n"
            "      jarip generate --model BASE.gguf --lora adapter.gguf --chat --prompt ...\n");
}

int cmd_finetune(int argc, char **argv) {
    TrainOptions o;
    train_options_default(&o);
    o.steps = 100;
    o.batch = 4;
    o.seq = 256;
    o.lr = -1.0f;
    o.weight_decay = 0.0f;
    o.eval_every = 50;
    o.eval_batches = 4;
    o.save_every = 50;
    const char *model = NULL, *ckpt_base = NULL, *resume = NULL, *format = "chat", *targets = "q,k,v,o,gate,up,down";
    int rank = 0, rank_set = 0, full = 0, threads = 0, steps_set = 0, dropout_set = 0;
    float alpha = 0.0f, dropout = 0.0f;
    double val = 0.1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc = 0, handled = 0;
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model")) rc = cli_str(argc, argv, &i, &model);
        else if (!strcmp(a, "--ckpt")) rc = cli_str(argc, argv, &i, &ckpt_base);
        else if (!strcmp(a, "--resume")) rc = cli_str(argc, argv, &i, &resume);
        else if (!strcmp(a, "--format")) rc = cli_str(argc, argv, &i, &format);
        else if (!strcmp(a, "--val-fraction")) rc = cli_double(argc, argv, &i, 0, 0.9, &val);
        else if (!strcmp(a, "--lora-rank")) rc = cli_int(argc, argv, &i, -1000000, 1000000, &rank), rank_set = 1;
        else if (!strcmp(a, "--lora-alpha")) rc = cli_float(argc, argv, &i, 1e-6, 1e6, &alpha);
        else if (!strcmp(a, "--lora-targets")) rc = cli_str(argc, argv, &i, &targets);
        else if (!strcmp(a, "--lora-dropout")) rc = cli_float(argc, argv, &i, 0, 0.999, &dropout), dropout_set = 1;
        else if (!strcmp(a, "--full")) full = 1;
        else if ((rc = train_flag(argc, argv, &i, &o, &threads, &steps_set, &handled)) || handled) {
            if (rc) return rc;
        } else return cli_error(2, "finetune: unknown flag '%s' (see jarip finetune --help)", a);
        if (rc) return rc;
    }
    if (threads) omp_set_num_threads(threads);
    Err err = {0};
    TuneRun run;
    memset(&run, 0, sizeof run);
    Config c;
    char ckpt[4096], data_path[4200];
    int start = 0, rc = 0;
    if (resume) {
        if (model || ckpt_base || full || rank_set || dropout_set)
            return cli_error(2, "finetune: --resume takes the base and the mode from the run; drop "
                                "--model/--ckpt/--full/--lora-rank/--lora-dropout");
        if (tune_run_read(resume, &run, NULL, &err) || checkpoint_resolve(resume, ckpt, sizeof ckpt, &err) ||
            checkpoint_load_config(ckpt, &c, &err))
            return cli_error(1, "%s", err.msg);
    } else {
        if (!!model == !!ckpt_base) return cli_error(2, "finetune: give the base as --model FILE.gguf or --ckpt DIR");
        if (!o.data || !o.out) return cli_error(2, "finetune: --data FILE and --out DIR are required");
        if (full && rank_set) return cli_error(2, "finetune: --full trains every weight; drop --lora-rank");
        if (full && dropout > 0) return cli_error(2, "finetune: --lora-dropout is for LoRA runs; drop it with --full");
        if (rank_set && rank <= 0) return cli_error(2, "finetune: --lora-rank must be > 0 (got %d)", rank);
        if (strcmp(format, "chat") && strcmp(format, "text"))
            return cli_error(2, "finetune: --format must be chat or text (got '%s')", format);
        if (!full && rank == 0) rank = 16;
        const char *b = model ? model : ckpt_base;
        char *abs = realpath(b, NULL); /* the run finds its base from any directory */
        snprintf(run.base, sizeof run.base, "%s", abs ? abs : b);
        free(abs);
        run.base_is_gguf = model != NULL;
        run.lora = !full;
        run.format = strcmp(format, "chat") ? TUNE_TEXT : TUNE_CHAT;
    }
    InferModel base;
    if (tune_base_open(&base, run.base, run.base_is_gguf, &err)) return cli_error(1, "%s", err.msg);
    Model m;
    Parallel par;
    memset(&m, 0, sizeof m);
    memset(&par, 0, sizeof par);
    Comm *world = NULL;
    if (!resume) {
        c = base.model.cfg;
        if (run.lora) {
            c.lora_rank = rank;
            c.lora_alpha = alpha > 0 ? alpha : 2.0f * rank;
            c.lora_dropout = dropout;
            if (lora_targets_parse(targets, &c.lora_targets, &err) || config_validate(&c, &err)) goto fail;
        }
        if (o.seq > c.context_length) {
            rc = cli_error(2, "finetune: --seq %d exceeds the model's context_length %d", o.seq, c.context_length);
            goto out;
        }
        if (o.lr < 0) o.lr = run.lora ? 2e-4f : 2e-5f;
        if (mkdir_p(o.out, &err)) goto fail;
        snprintf(data_path, sizeof data_path, "%s/data.sft", o.out);
        SftStats st;
        if (sft_prepare(&base, o.data, run.format, o.seq, val, data_path, &st, &err)) goto fail;
        if (!o.quiet)
            fprintf(stderr, "data: %llu examples for training, %llu for validation (%llu tokens, %llu in the loss%s)\n",
                    (unsigned long long)st.examples[0], (unsigned long long)st.examples[1], (unsigned long long)st.tokens,
                    (unsigned long long)st.labels, st.truncated ? "; some cut at --seq" : "");
        if (st.dropped && !o.quiet)
            fprintf(stderr, "data: %llu chats had no assistant token within --seq %d and were left out\n",
                    (unsigned long long)st.dropped, o.seq);
        if (st.examples[1] == 0) o.eval_batches = 0;
        o.data = data_path;
        size_t tlen;
        const char *tmpl = tune_base_template(&base, &tlen);
        if (tune_run_write(o.out, &run, tmpl, tlen, &err)) goto fail;
    }
    if (!(world = comm_world_create(&argc, &argv, &err))) goto fail;
    if (world->size > 1) {
        rc = cli_error(2, "finetune: runs as one process (not under mpirun) for now");
        goto out;
    }
    if (parallel_init(&par, world, 1, 1, 1, -1, &err) || model_create(&m, &c, 1, &err)) goto fail;
    if (run.lora) {
        if (model_lora_attach(&m, &base.model, 1.0f, &err)) goto fail;
    } else if (!resume) {
        if (tune_copy_weights(&m, &base.model, &err)) goto fail;
        infer_model_close(&base); /* the float32 copy is all that trains */
    }
    if (parallel_attach(&par, &m, &err)) goto fail;
    if (resume) {
        TrainOptions saved;
        train_options_default(&saved);
        if (checkpoint_read(ckpt, &c, m.params, m.adam_m, m.adam_v, &start, &saved, &err)) goto fail;
        int steps = o.steps, quiet = o.quiet, stop_after = o.stop_after, bad = o.max_bad_steps;
        o = saved;
        o.max_bad_steps = bad;
        if (saved.data == saved.data_saved) o.data = o.data_saved;
        o.out = resume;
        o.quiet = quiet;
        o.stop_after = stop_after;
        if (steps_set) o.steps = steps;
    } else if (run.lora) {
        model_init_weights(&m, o.seed); /* A Kaiming-uniform, B zeros: the base's outputs at step 0 */
    }
    if (train_run(&m, &o, start, &par, &err)) goto fail;
    goto out;
fail:
    rc = cli_error(1, "%s", err.msg);
out:
    model_free(&m);
    parallel_free(&par);
    if (base.model.tensors || base.tok || base.gguf) infer_model_close(&base);
    if (world) comm_world_end(world, 0);
    return rc;
}
