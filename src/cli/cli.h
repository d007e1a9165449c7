/* cli: one file per command. Commands parse flags, call the library, print,
 * and return the process exit code (0 ok, 1 runtime error, 2 usage error). */
#ifndef JARIP_CLI_H
#define JARIP_CLI_H

#include "core/core.h"

int cmd_train(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* "jarip: <msg>" on stderr; returns code for `return die(...)`. */
int cli_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Flag parsing helpers: each returns 0 or prints a one-line error and
 * returns 2. *i is advanced past the value. */
int cli_int(int argc, char **argv, int *i, long lo, long hi, int *out);
int cli_long(int argc, char **argv, int *i, long long lo, long long hi, long long *out);
int cli_float(int argc, char **argv, int *i, double lo, double hi, float *out);
int cli_double(int argc, char **argv, int *i, double lo, double hi, double *out);
int cli_str(int argc, char **argv, int *i, const char **out);
/* One `jarip train` flag at argv[*i] into o (shared by train and
 * finetune): --data --out --steps --stop-after --batch --seq --accum --lr
 * --lr-min --warmup --weight-decay --grad-clip --seed --eval-every
 * --eval-batches --save-every --keep --max-bad-steps --threads --quiet. *handled = 0 when it
 * is none of them. Returns 0 or 2 (printed). */
struct TrainOptions_;
int train_flag(int argc, char **argv, int *i, struct TrainOptions_ *o, int *threads, int *steps_set, int *handled);
/* True when argv[i] is -h or --help. */
int cli_is_help(const char *arg);

#endif
