/* Shared flag parsing for the commands: strict numbers, ranges, messages. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_error(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("jarip: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

int cli_str(int argc, char **argv, int *i, const char **out) {
    if (*i + 1 >= argc) return cli_error(2, "%s needs a value", argv[*i]);
    *out = argv[++*i];
    return 0;
}

int cli_long(int argc, char **argv, int *i, long long lo, long long hi, long long *out) {
    const char *s = NULL;
    if (cli_str(argc, argv, i, &s)) return 2;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return cli_error(2, "%s: '%s' is not an integer", argv[*i - 1], s);
    if (v < lo || v > hi) return cli_error(2, "%s: %lld is out of range [%lld, %lld]", argv[*i - 1], v, lo, hi);
    *out = v;
    return 0;
}

int cli_int(int argc, char **argv, int *i, long lo, long hi, int *out) {
    long long v = 0;
    if (cli_long(argc, argv, i, lo, hi, &v)) return 2;
    *out = (int)v;
    return 0;
}

int cli_double(int argc, char **argv, int *i, double lo, double hi, double *out) {
    const char *s = NULL;
    if (cli_str(argc, argv, i, &s)) return 2;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v != v) return cli_error(2, "%s: '%s' is not a number", argv[*i - 1], s);
    if (v < lo || v > hi) return cli_error(2, "%s: %g is out of range [%g, %g]", argv[*i - 1], v, lo, hi);
    *out = v;
    return 0;
}

int cli_float(int argc, char **argv, int *i, double lo, double hi, float *out) {
    double v = 0;
    if (cli_double(argc, argv, i, lo, hi, &v)) return 2;
    *out = (float)v;
    return 0;
}

int cli_is_help(const char *arg) { return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0; }
