/* jarip train: from scratch (--preset/--config) or --resume DIR. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dist/launch.h"
#include "model_arg.h"
#include "plan/plan.h"
#include "eval/eval.h"
#include "tokenizer/tokenizer.h"
#include "train/parallel.h"
#include "train/train.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: jarip train (--preset NAME | --config FILE) --data PATH --out DIR [flags]\n"
            "       jarip train --resume DIR [--steps N] [--threads N]\n\n"
            "  --preset NAME       a built-in model (see below)\n"
            "  --config FILE       a model config JSON (keys: see README, \"Model config\")\n"
            "  --data PATH         UTF-8 text file (byte-level, last 10%% validation) or a shard\n"
            "                      directory from `jarip data prepare`\n"
            "  --out DIR           run directory: log.jsonl, loss.svg, checkpoints\n"
            "  --resume DIR        continue the run in DIR from its latest checkpoint, exactly\n"
            "  --steps N           total optimizer steps of the run (default 1000)\n"
            "  --stop-after N      end this invocation after N steps with a checkpoint; the\n"
            "                      schedule still spans --steps (for time-sliced jobs)\n"
            "  --batch B           sequences per micro-batch (default 8)\n"
            "  --seq T             tokens per sequence (default 256; <= context_length)\n"
            "  --accum N           micro-batches accumulated per step (default 1)\n"
            "  --lr X              peak learning rate (default 6e-4)\n"
            "  --lr-min X          final learning rate of the cosine decay (default lr/10)\n"
            "  --warmup N          linear warmup steps (default min(100, steps/10))\n"
            "  --weight-decay X    AdamW decoupled weight decay on matrices (default 0.1)\n"
            "  --grad-clip X       clip the global gradient norm to X; 0 = off (default 1.0)\n"
            "  --seed S            initialisation and data order (default 1337)\n"
            "  --eval-every N      validation loss every N steps; 0 = only at the end (default 100)\n"
            "  --eval-batches N    validation batches per evaluation (default 8)\n"
            "  --save-every N      checkpoint every N steps; 0 = only at the end (default 500)\n"
            "  --keep N            checkpoints kept in DIR (default 2)\n"
            "  --max-bad-steps K   a step with a NaN/Inf loss or gradient is skipped (weights unchanged);\n"
            "                      K such steps in a row stop the run (default 5)\n"
            "  --precision P       fp32 (default) or bf16: the linear layers multiply bfloat16 inputs\n"
            "                      with float32 accumulation (CPUs with AVX512-BF16 or AMX); weights,\n"
            "                      optimizer and checkpoints stay float32; a resumed run keeps its own\n"
            "  --threads N         OpenMP threads (default: all cores; under mpirun, the host's cores\n"
            "                      split between its ranks)\n"
            "  --quiet             no progress line\n"
            "  --tokenizer FILE    the tokenizer of shard data: saved as DIR/tokenizer.json for\n"
            "                      `jarip sample` and `jarip export`\n"
            "  --eval-text FILE    also report the perplexity of FILE at each evaluation (eval_ppl in\n"
            "                      log.jsonl): chunks of --seq tokens, second half scored, as\n"
            "                      `jarip eval perplexity --ctx SEQ` and llama-perplexity\n\n"
            "parallel runs (start with mpirun -np N; rank 0 alone prints, logs and saves):\n"
            "  --tp T              tensor parallel: heads, FFN columns and vocabulary over T ranks\n"
            "  --pp P              pipeline parallel: layers over P stages, 1F1B micro-batch schedule\n"
            "                      (data parallel over the remaining N/(T*P) ranks; --batch is global)\n"
            "  --ep E              expert parallel: a MoE model's experts over E of the data-parallel\n"
            "                      ranks, tokens sent to their experts by all-to-all\n"
            "  --zero S            ZeRO stage over data-parallel ranks: 1 optimizer state, 2 + gradients\n"
            "                      (reduce-scatter), 3 + parameters (gathered per layer), 0 none\n"
            "                      (default: 1 with several data-parallel ranks, as llm.c)\n"
            "  --micro-batch b     rows per forward pass on a rank (default: all its rows)\n"
            "  --dry-run           print every rank's tensors, shapes and bytes; allocate nothing\n\n");
    model_arg_list_presets(f);
}

/* Several ranks on one host, each with OpenMP threads on every core, leave
 * threads spinning at barriers for cores their neighbours hold: several times
 * slower than one thread per core. Without --threads or OMP_NUM_THREADS the
 * ranks split the host's cores; with them, the lead rank says so once. The
 * launcher tells how many ranks share this host (OpenMPI, MPICH). */
static void fit_threads_to_host(int threads_given, int lead, int quiet) {
    const char *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (!ls) ls = getenv("MPI_LOCALNRANKS");
    const int local = ls ? atoi(ls) : 1, threads = omp_get_max_threads();
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (local < 2 || cores < 1 || threads < 2 || (long)threads * local <= cores) return;
    const int fit = cores / local > 0 ? (int)(cores / local) : 1;
    if (threads_given || getenv("OMP_NUM_THREADS")) {
        if (lead)
            fprintf(stderr, "jarip: warning: %d ranks x %d threads on this host's %ld cores; OpenMP threads will wait "
                            "for cores (--threads %d fits)\n", local, threads, cores, fit);
        return;
    }
    omp_set_num_threads(fit);
    if (lead && !quiet)
        fprintf(stderr, "jarip: %d ranks share this host's %ld cores: %d thread%s each (--threads to choose)\n", local,
                cores, fit, fit == 1 ? "" : "s");
}

int train_flag(int argc, char **argv, int *i, TrainOptions *o, int *threads, int *steps_set, int *handled) {
    const char *a = argv[*i];
    int rc = 0;
    *handled = 1;
    if (!strcmp(a, "--data")) rc = cli_str(argc, argv, i, &o->data);
    else if (!strcmp(a, "--out")) rc = cli_str(argc, argv, i, &o->out);
    else if (!strcmp(a, "--steps")) rc = cli_int(argc, argv, i, 1, 100000000, &o->steps), *steps_set = 1;
    else if (!strcmp(a, "--stop-after")) rc = cli_int(argc, argv, i, 1, 100000000, &o->stop_after);
    else if (!strcmp(a, "--batch")) rc = cli_int(argc, argv, i, 1, 65536, &o->batch);
    else if (!strcmp(a, "--seq")) rc = cli_int(argc, argv, i, 1, 1 << 20, &o->seq);
    else if (!strcmp(a, "--accum")) rc = cli_int(argc, argv, i, 1, 65536, &o->accum);
    else if (!strcmp(a, "--lr")) rc = cli_float(argc, argv, i, 0, 10, &o->lr);
    else if (!strcmp(a, "--lr-min")) rc = cli_float(argc, argv, i, 0, 10, &o->lr_min);
    else if (!strcmp(a, "--warmup")) rc = cli_int(argc, argv, i, 0, 100000000, &o->warmup);
    else if (!strcmp(a, "--weight-decay")) rc = cli_float(argc, argv, i, 0, 10, &o->weight_decay);
    else if (!strcmp(a, "--grad-clip")) rc = cli_float(argc, argv, i, 0, 1e9, &o->grad_clip);
    else if (!strcmp(a, "--seed")) {
        long long s;
        rc = cli_long(argc, argv, i, 0, 0x7fffffffffffffffLL, &s);
        o->seed = (uint64_t)s;
    } else if (!strcmp(a, "--eval-every")) rc = cli_int(argc, argv, i, 0, 100000000, &o->eval_every);
    else if (!strcmp(a, "--eval-batches")) rc = cli_int(argc, argv, i, 0, 100000, &o->eval_batches);
    else if (!strcmp(a, "--save-every")) rc = cli_int(argc, argv, i, 0, 100000000, &o->save_every);
    else if (!strcmp(a, "--keep")) rc = cli_int(argc, argv, i, 1, 1000, &o->keep);
    else if (!strcmp(a, "--max-bad-steps")) rc = cli_int(argc, argv, i, 1, 1000000, &o->max_bad_steps);
    else if (!strcmp(a, "--precision")) {
        const char *p = NULL;
        if (!(rc = cli_str(argc, argv, i, &p)) && (o->precision = precision_from_name(p)) < 0)
            rc = cli_error(2, "--precision: '%s' is not fp32 or bf16", p);
    }
    else if (!strcmp(a, "--threads")) rc = cli_int(argc, argv, i, 1, 1024, threads);
    else if (!strcmp(a, "--quiet")) o->quiet = 1;
    else *handled = 0;
    return rc;
}

/* --eval-text: the file's tokens (the run's tokenizer, or bytes for a
 * byte-level model), BOS first where the tokenizer adds one, as
 * `jarip eval perplexity` reads a text; at least two chunks of --seq. */
static int eval_text_tokens(const char *path, const Config *c, TrainOptions *o, const char *tok_path,
                            const char *resume, int32_t **ids, Err *err) {
    char guess[4200];
    size_t n = 0;
    Tokenizer *tok = NULL;
    snprintf(guess, sizeof guess, "%s/tokenizer.json", resume ? resume : o->out);
    if (!tok_path && access(guess, R_OK) == 0) tok_path = guess;
    if (!tok_path && c->vocab_size != 256)
        return err_set(err, ERR_INVALID, "--eval-text: a %d-token model needs its tokenizer (--tokenizer FILE)",
                       c->vocab_size);
    int rc = tok_path ? tokenizer_load(&tok, tok_path, err) : 0;
    if (!rc) rc = eval_read_text(tok, path, ids, &n, err);
    const int32_t bos = eval_bos(tok);
    tokenizer_free(tok);
    EvalOptions eo;
    eval_options_default(&eo);
    eo.ctx = o->seq;
    int n_chunk;
    if (!rc && (rc = eval_n_chunks(n, &eo, &n_chunk, err))) err_wrap(err, "--eval-text %s", path);
    if (rc) {
        free(*ids);
        *ids = NULL;
        return rc;
    }
    o->eval_tokens = *ids;
    o->n_eval_tokens = n;
    o->eval_bos = bos;
    return 0;
}

int cmd_train(int argc, char **argv) {
    TrainOptions o;
    train_options_default(&o);
    const char *preset = NULL, *config = NULL, *resume = NULL, *tok_path = NULL, *eval_text = NULL;
    int threads = 0, steps_set = 0, tp = 1, pp = 1, ep = 1, zero = -1, dry_run = 0;
    /* flags given on a resume override the saved ones only where allowed */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc = 0, handled = 0;
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--preset")) rc = cli_str(argc, argv, &i, &preset);
        else if (!strcmp(a, "--config")) rc = cli_str(argc, argv, &i, &config);
        else if (!strcmp(a, "--resume")) rc = cli_str(argc, argv, &i, &resume);
        else if ((rc = train_flag(argc, argv, &i, &o, &threads, &steps_set, &handled)) || handled) {
            if (rc) return rc;
        } else if (!strcmp(a, "--tokenizer")) rc = cli_str(argc, argv, &i, &tok_path);
        else if (!strcmp(a, "--eval-text")) rc = cli_str(argc, argv, &i, &eval_text);
        else if (!strcmp(a, "--tp")) rc = cli_int(argc, argv, &i, 1, 4096, &tp);
        else if (!strcmp(a, "--pp")) rc = cli_int(argc, argv, &i, 1, 4096, &pp);
        else if (!strcmp(a, "--ep")) rc = cli_int(argc, argv, &i, 1, 64, &ep);
        else if (!strcmp(a, "--zero")) rc = cli_int(argc, argv, &i, 0, 3, &zero);
        else if (!strcmp(a, "--micro-batch")) rc = cli_int(argc, argv, &i, 1, 65536, &o.micro_batch);
        else if (!strcmp(a, "--dry-run")) dry_run = 1;
        else return cli_error(2, "train: unknown flag '%s' (see jarip train --help)", a);
        if (rc) return rc;
    }
    if (threads) omp_set_num_threads(threads);
    Err err = {0};
    Config c;
    if (dry_run) {
        if (model_arg_config(preset, config, &c)) return 2;
        PlanLayout l;
        plan_layout_default(&l);
        int world = comm_launched_by_mpi() && getenv("OMPI_COMM_WORLD_SIZE") ? atoi(getenv("OMPI_COMM_WORLD_SIZE")) : tp * pp;
        l.tp = tp;
        l.pp = pp;
        l.dp = world / (tp * pp) > 0 ? world / (tp * pp) : 1;
        l.zero = zero >= 0 ? zero : (l.dp > 1 ? 1 : 0);
        l.ep = ep;
        if (plan_layout_check(&c, &l, 0, &err) || plan_dry_run_all(&c, &l, stdout, &err)) return cli_error(2, "%s", err.msg);
        return 0;
    }
    Comm *world = comm_world_create(&argc, &argv, &err);
    if (!world) return cli_error(1, "%s", err.msg);
    int lead = world->rank == 0, rc = 0, start = 0;
    if (world->size > 1) fit_threads_to_host(threads, lead, o.quiet);
    if (!lead) o.quiet = 1;
    Parallel par;
    Model m;
    memset(&m, 0, sizeof m);
    memset(&par, 0, sizeof par);
    char ckpt[4096];
    if (resume) {
        if (preset || config) {
            rc = cli_error(2, "--resume takes the model from the checkpoint; drop --preset/--config");
            goto out;
        }
        if (checkpoint_resolve(resume, ckpt, sizeof ckpt, &err) || checkpoint_load_config(ckpt, &c, &err)) goto fail;
        if (c.lora_rank > 0) {
            rc = cli_error(2, "%s is a LoRA fine-tuning run: continue it with jarip finetune --resume", resume);
            goto out;
        }
    } else {
        if ((rc = model_arg_config(preset, config, &c))) goto out;
        if (!o.data) {
            rc = cli_error(2, "--data PATH is required");
            goto out;
        }
        if (!o.out) {
            rc = cli_error(2, "--out DIR is required");
            goto out;
        }
        if (o.seq > c.context_length) {
            rc = cli_error(2, "--seq %d exceeds the model's context_length %d", o.seq, c.context_length);
            goto out;
        }
        if (lead && mkdir_p(o.out, &err)) goto fail;
        if (lead && tok_path) { /* the run keeps its tokenizer for sample and export */
            Tokenizer *tok = NULL;
            char dst[4200];
            snprintf(dst, sizeof dst, "%s/tokenizer.json", o.out);
            int bad = tokenizer_load(&tok, tok_path, &err) || tokenizer_save_json(tok, dst, &err);
            if (!bad && tokenizer_vocab_size(tok) > c.vocab_size)
                bad = err_set(&err, ERR_INVALID, "the tokenizer has %d tokens but the model's vocab_size is %d",
                              tokenizer_vocab_size(tok), c.vocab_size);
            tokenizer_free(tok);
            if (bad) goto fail;
        }
    }
    ModelShard shard;
    if (parallel_init(&par, world, tp, pp, ep, zero, &err)) goto fail;
    parallel_model_shard(&par, &c, &shard);
    if (model_create_shard(&m, &c, &shard, 1, &err) || parallel_attach(&par, &m, &err)) goto fail;
    if (resume) {
        TrainOptions saved;
        train_options_default(&saved);
        size_t n_whole = config_param_count(&c);
        float *full[3];
        for (int k = 0; k < 3; k++) full[k] = xalloc(n_whole * sizeof(float), &err);
        if (!full[0] || !full[1] || !full[2] || checkpoint_read(ckpt, &c, full[0], full[1], full[2], &start, &saved, &err)) {
            for (int k = 0; k < 3; k++) xfree(full[k]);
            goto fail;
        }
        parallel_scatter_full(&par, &m, full[0], full[1], full[2]);
        for (int k = 0; k < 3; k++) xfree(full[k]);
        int steps = o.steps, quiet = o.quiet, stop_after = o.stop_after, mbatch = o.micro_batch, bad = o.max_bad_steps;
        const int precision = o.precision;
        const char *data = o.data;
        o = saved;
        if (saved.data == saved.data_saved) o.data = o.data_saved; /* the copy owns its path */
        o.out = resume;
        o.quiet = quiet;
        o.stop_after = stop_after;
        o.micro_batch = mbatch;
        o.max_bad_steps = bad;
        if (precision >= 0) o.precision = precision; /* else the run's own */
        if (steps_set) o.steps = steps;
        if (data) o.data = data;
        if (!o.data) {
            rc = cli_error(1, "the checkpoint does not name its data; pass --data");
            goto out;
        }
    } else {
        model_init_weights(&m, o.seed);
        if (par.zero == 3)
            for (int b = 0; b < par.n_buckets; b++) parallel_release_layer(&par, &m, par.buckets[b].layer);
    }
    o.inject_nan = getenv("JARIP_INJECT_NAN"); /* test hooks: see TrainOptions */
    if (getenv("JARIP_TEST_CKPT_SLEEP_MS")) o.test_ckpt_sleep_ms = atoi(getenv("JARIP_TEST_CKPT_SLEEP_MS"));
    int32_t *eval_ids = NULL;
    if (eval_text && eval_text_tokens(eval_text, &c, &o, tok_path, resume, &eval_ids, &err)) goto fail;
    rc = train_run(&m, &o, start, &par, &err);
    free(eval_ids);
    if (rc) {
        rc = 0;
        goto fail;
    }
    goto out;
fail:
    rc = cli_error(1, "%s%s", world->size > 1 ? "" : "", err.msg);
    if (world->size > 1) {
        fprintf(stderr, "jarip: rank %d failed; ending the job\n", world->rank);
        comm_world_end(world, 1);
    }
out:
    model_free(&m);
    parallel_free(&par);
    comm_world_end(world, 0);
    return rc;
}
