/* libFuzzer target: the checkpoint reader. One input is a whole checkpoint:
 * config.json, state.json, model.bin and the run's `latest` file, separated
 * by FUZZ_SEP lines; they are written to a scratch run directory and read
 * back the way `jarip train --resume` and `jarip sample --ckpt` do
 * (checkpoint_resolve, checkpoint_load_config, checkpoint_read). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"
#include "train/train.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The caller allocates the weights a config names; a hostile config may
 * name terabytes, which is the caller's memory check, not the reader's. */
#define MAX_PARAMS ((size_t)1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FuzzPart part[4];
    fuzz_split(data, size, part, 4);
    char run[512], ck[512], path[600], p[512];
    snprintf(run, sizeof run, "%s/run", fuzz_dir());
    snprintf(ck, sizeof ck, "%s/ckpt_00000001", run);
    mkdir(run, 0755);
    mkdir(ck, 0755);
    fuzz_put_file("run/ckpt_00000001/config.json", part[0].p, part[0].n, p);
    fuzz_put_file("run/ckpt_00000001/state.json", part[1].p, part[1].n, p);
    fuzz_put_file("run/ckpt_00000001/model.bin", part[2].p, part[2].n, p);
    fuzz_put_file("run/latest", part[3].p, part[3].n, p);
    Err e = {0};
    /* resolve through `latest` when it has text, else name the checkpoint itself */
    if (checkpoint_resolve(part[3].n ? run : ck, path, sizeof path, &e) != 0) return 0;
    Config c;
    if (checkpoint_load_config(path, &c, &e) != 0) return 0;
    size_t n = config_param_count(&c);
    if (n == 0 || n > MAX_PARAMS) return 0;
    float *w = malloc(n * sizeof *w), *m = malloc(n * sizeof *m), *v = malloc(n * sizeof *v);
    if (!w || !m || !v) abort();
    int step = 0;
    TrainOptions o;
    train_options_default(&o);
    (void)checkpoint_read(path, &c, w, m, v, &step, &o, &e);
    (void)checkpoint_read(path, &c, w, NULL, NULL, &step, NULL, &e); /* weights only (export, sample) */
    free(w);
    free(m);
    free(v);
    return 0;
}
