/* jarip quantize IN.gguf OUT.gguf --type TYPE: convert every tensor of a
 * GGUF file to another type (1-D tensors stay f32), printing what it did. */
#include <omp.h>
#include <string.h>

#include "cli.h"
#include "io/gguf.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"

static void usage(FILE *f) {
    fprintf(f, "usage: jarip quantize IN.gguf OUT.gguf --type TYPE [flags]\n\n"
               "  --type TYPE    f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k\n"
               "  --pure         every 2-D tensor gets TYPE (no higher-precision output layer)\n"
               "  --threads N    OpenMP threads (default: all cores)\n"
               "  --quiet        print only the summary\n\n"
               "1-D tensors (norms) stay f32. Rows that do not fit the type's block fall back as\n"
               "llama.cpp does (q4_k->q5_0, q5_k->q5_1, q6_k->q8_0, others->f16). Unless --pure,\n"
               "the output projection becomes q6_k (q8_0 when rows do not fit 256-blocks).\n");
}

typedef struct {
    int quiet;
    size_t src, dst;
    int64_t n, changed;
} Summary;

static void on_tensor(void *ctx, const GGUFQuantTensor *t) {
    Summary *s = ctx;
    s->src += t->src_bytes, s->dst += t->dst_bytes, s->n++;
    if (t->why) s->changed++;
    if (s->quiet) return;
    char shape[96];
    int n = 0;
    for (int d = 0; d < t->ndim && n < (int)sizeof shape; d++)
        n += snprintf(shape + n, sizeof shape - (size_t)n, "%s%lld", d ? "x" : "", (long long)t->ne[d]);
    printf("%-36s %-16s %5s -> %-5s %10zu -> %10zu bytes%s%s%s\n", t->name, shape, dtype_name(t->src_type),
           dtype_name(t->dst_type), t->src_bytes, t->dst_bytes, t->why ? "  (" : "", t->why ? t->why : "",
           t->why ? ")" : "");
}

int cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *tname = NULL;
    int threads = 0, flags = 0;
    Summary s = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc = 0;
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--type")) rc = cli_str(argc, argv, &i, &tname);
        else if (!strcmp(a, "--threads")) rc = cli_int(argc, argv, &i, 1, 1024, &threads);
        else if (!strcmp(a, "--pure")) flags |= GGUF_QUANT_PURE;
        else if (!strcmp(a, "--quiet")) s.quiet = 1;
        else if (a[0] == '-' && a[1]) return cli_error(2, "quantize: unknown flag '%s' (see jarip quantize --help)", a);
        else if (!in) in = a;
        else if (!out) out = a;
        else return cli_error(2, "quantize: unexpected argument '%s'", a);
        if (rc) return rc;
    }
    if (!in || !out) return cli_error(2, "quantize: usage: jarip quantize IN.gguf OUT.gguf --type TYPE");
    if (!tname) return cli_error(2, "quantize: --type TYPE is required (f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k)");
    const int type = dtype_from_name(tname);
    if (type < 0 || !quant_can_quantize(type) || type == DT_Q8_K)
        return cli_error(2, "quantize: unknown or unsupported --type '%s' (f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k)", tname);
    if (!strcmp(in, out)) return cli_error(2, "quantize: IN and OUT must differ");
    if (threads) omp_set_num_threads(threads);
    Err err = {0};
    double t0 = time_now();
    if (gguf_quantize_file(in, out, type, flags, on_tensor, &s, &err)) return cli_error(1, "quantize: %s", err.msg);
    printf("quantized %lld tensors to %s (%lld with another type, see above): %.1f MiB -> %.1f MiB in %.1f s; wrote %s\n",
           (long long)s.n, dtype_name(type), (long long)s.changed, s.src / 1048576.0, s.dst / 1048576.0, time_now() - t0,
           out);
    return 0;
}
