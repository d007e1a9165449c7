/* jarip train: from scratch (--preset/--config) or --resume DIR. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model_arg.h"
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
            "  --threads N         OpenMP threads (default: all cores)\n"
            "  --quiet             no progress line\n\n");
    model_arg_list_presets(f);
}

int cmd_train(int argc, char **argv) {
    TrainOptions o;
    train_options_default(&o);
    const char *preset = NULL, *config = NULL, *resume = NULL;
    int threads = 0, steps_set = 0;
    /* flags given on a resume override the saved ones only where allowed */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc = 0;
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--preset")) rc = cli_str(argc, argv, &i, &preset);
        else if (!strcmp(a, "--config")) rc = cli_str(argc, argv, &i, &config);
        else if (!strcmp(a, "--data")) rc = cli_str(argc, argv, &i, &o.data);
        else if (!strcmp(a, "--out")) rc = cli_str(argc, argv, &i, &o.out);
        else if (!strcmp(a, "--resume")) rc = cli_str(argc, argv, &i, &resume);
        else if (!strcmp(a, "--steps")) rc = cli_int(argc, argv, &i, 1, 100000000, &o.steps), steps_set = 1;
        else if (!strcmp(a, "--stop-after")) rc = cli_int(argc, argv, &i, 1, 100000000, &o.stop_after);
        else if (!strcmp(a, "--batch")) rc = cli_int(argc, argv, &i, 1, 65536, &o.batch);
        else if (!strcmp(a, "--seq")) rc = cli_int(argc, argv, &i, 1, 1 << 20, &o.seq);
        else if (!strcmp(a, "--accum")) rc = cli_int(argc, argv, &i, 1, 65536, &o.accum);
        else if (!strcmp(a, "--lr")) rc = cli_float(argc, argv, &i, 0, 10, &o.lr);
        else if (!strcmp(a, "--lr-min")) rc = cli_float(argc, argv, &i, 0, 10, &o.lr_min);
        else if (!strcmp(a, "--warmup")) rc = cli_int(argc, argv, &i, 0, 100000000, &o.warmup);
        else if (!strcmp(a, "--weight-decay")) rc = cli_float(argc, argv, &i, 0, 10, &o.weight_decay);
        else if (!strcmp(a, "--grad-clip")) rc = cli_float(argc, argv, &i, 0, 1e9, &o.grad_clip);
        else if (!strcmp(a, "--seed")) {
            long long s;
            rc = cli_long(argc, argv, &i, 0, 0x7fffffffffffffffLL, &s);
            o.seed = (uint64_t)s;
        } else if (!strcmp(a, "--eval-every")) rc = cli_int(argc, argv, &i, 0, 100000000, &o.eval_every);
        else if (!strcmp(a, "--eval-batches")) rc = cli_int(argc, argv, &i, 0, 100000, &o.eval_batches);
        else if (!strcmp(a, "--save-every")) rc = cli_int(argc, argv, &i, 0, 100000000, &o.save_every);
        else if (!strcmp(a, "--keep")) rc = cli_int(argc, argv, &i, 1, 1000, &o.keep);
        else if (!strcmp(a, "--threads")) rc = cli_int(argc, argv, &i, 1, 1024, &threads);
        else if (!strcmp(a, "--quiet")) o.quiet = 1;
        else return cli_error(2, "train: unknown flag '%s' (see jarip train --help)", a);
        if (rc) return rc;
    }
    if (threads) omp_set_num_threads(threads);
    Err err = {0};
    Config c;
    Model m;
    int start = 0;
    if (resume) {
        if (preset || config) return cli_error(2, "--resume takes the model from the checkpoint; drop --preset/--config");
        char ckpt[4096];
        if (checkpoint_resolve(resume, ckpt, sizeof ckpt, &err) || checkpoint_load_config(ckpt, &c, &err))
            return cli_error(1, "%s", err.msg);
        if (model_create(&m, &c, 1, &err)) return cli_error(1, "%s", err.msg);
        TrainOptions saved;
        train_options_default(&saved);
        if (checkpoint_load(ckpt, &m, &start, &saved, &err)) {
            model_free(&m);
            return cli_error(1, "%s", err.msg);
        }
        int steps = o.steps;
        const char *data = o.data;
        int quiet = o.quiet, stop_after = o.stop_after;
        o = saved;
        o.out = resume;
        o.quiet = quiet;
        o.stop_after = stop_after;
        if (steps_set) o.steps = steps;
        if (data) o.data = data;
        if (!o.data) {
            model_free(&m);
            return cli_error(1, "the checkpoint does not name its data; pass --data");
        }
    } else {
        if (model_arg_config(preset, config, &c)) return 2;
        if (!o.data) return cli_error(2, "--data PATH is required");
        if (!o.out) return cli_error(2, "--out DIR is required");
        if (o.seq > c.context_length)
            return cli_error(2, "--seq %d exceeds the model's context_length %d", o.seq, c.context_length);
        if (mkdir_p(o.out, &err)) return cli_error(1, "%s", err.msg);
        if (model_create(&m, &c, 1, &err)) return cli_error(1, "%s", err.msg);
        model_init_weights(&m, o.seed);
    }
    Comm *comm = comm_single_create();
    int rc = train_run(&m, &o, start, comm, &err);
    comm_destroy(comm);
    model_free(&m);
    if (rc) return cli_error(1, "%s", err.msg);
    return 0;
}
