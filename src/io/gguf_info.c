/* Human-readable dump of a GGUF file for `jarip info --model FILE`. */
#include "io/gguf_internal.h"
#include "kernels/kernels.h"

#include <inttypes.h>
#include <string.h>

#define MAX_STR_SHOWN 60
#define MAX_ARR_SHOWN 6

/* Print a string quoted, escaping control bytes, cut at MAX_STR_SHOWN. */
static void put_str(FILE *f, const char *p, uint64_t len) {
    fputc('"', f);
    uint64_t n = len < MAX_STR_SHOWN ? len : MAX_STR_SHOWN;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c < 32 || c == 127) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
    fputc('"', f);
    if (len > n) fprintf(f, "...(%" PRIu64 " bytes)", len);
}

static void put_scalar(FILE *f, const uint8_t *p, int t) {
    switch (t) {
    case GGUF_T_U8: fprintf(f, "%u", p[0]); break;
    case GGUF_T_I8: fprintf(f, "%d", (int8_t)p[0]); break;
    case GGUF_T_BOOL: fputs(p[0] ? "true" : "false", f); break;
    case GGUF_T_U16: { uint16_t v; memcpy(&v, p, 2); fprintf(f, "%u", v); break; }
    case GGUF_T_I16: { int16_t v; memcpy(&v, p, 2); fprintf(f, "%d", v); break; }
    case GGUF_T_U32: { uint32_t v; memcpy(&v, p, 4); fprintf(f, "%" PRIu32, v); break; }
    case GGUF_T_I32: { int32_t v; memcpy(&v, p, 4); fprintf(f, "%" PRId32, v); break; }
    case GGUF_T_U64: { uint64_t v; memcpy(&v, p, 8); fprintf(f, "%" PRIu64, v); break; }
    case GGUF_T_I64: { int64_t v; memcpy(&v, p, 8); fprintf(f, "%" PRId64, v); break; }
    case GGUF_T_F32: { float v; memcpy(&v, p, 4); fprintf(f, "%g", v); break; }
    case GGUF_T_F64: { double v; memcpy(&v, p, 8); fprintf(f, "%g", v); break; }
    default: fputs("?", f);
    }
}

static void put_value(FILE *f, const GGUFKV *kv) {
    if (kv->type == GGUF_T_STRING) {
        uint64_t len;
        memcpy(&len, kv->val, 8);
        put_str(f, (const char *)kv->val + 8, len);
        return;
    }
    if (kv->type != GGUF_T_ARRAY) {
        put_scalar(f, kv->val, kv->type);
        return;
    }
    fprintf(f, "[%s x %" PRIu64 "]", gguf_type_name(kv->elem_type), kv->n);
    size_t es = gguf_type_size(kv->elem_type);
    if (kv->elem_type == GGUF_T_ARRAY || kv->n == 0) return;
    uint64_t shown = kv->n < MAX_ARR_SHOWN ? kv->n : MAX_ARR_SHOWN;
    fputs(" ", f);
    for (uint64_t i = 0; i < shown; i++) {
        if (i) fputs(", ", f);
        if (es) {
            put_scalar(f, kv->arr + i * es, kv->elem_type);
        } else {
            const uint8_t *p = kv->arr + kv->str_off[i];
            uint64_t len;
            memcpy(&len, p, 8);
            put_str(f, (const char *)p + 8, len < 24 ? len : 24);
        }
    }
    if (kv->n > shown) fputs(", ...", f);
}

int gguf_print_info(const GGUFFile *g, FILE *f, Err *err) {
    (void)err;
    char name[256];
    fprintf(f, "GGUF version %u, %" PRId64 " metadata keys, %" PRId64 " tensors, alignment %" PRIu64 "\n", g->version,
            g->n_kv, g->n_tensors, g->alignment);
    fputs("metadata:\n", f);
    for (int64_t i = 0; i < g->n_kv; i++) {
        const GGUFKV *kv = &g->kv[i];
        gguf_str_copy(kv->key, name, sizeof name);
        for (char *q = name; *q; q++)
            if ((unsigned char)*q < 32) *q = '?';
        fprintf(f, "  %-40s %-4s = ", name, gguf_type_name(kv->type));
        put_value(f, kv);
        fputc('\n', f);
    }
    fputs("tensors:\n", f);
    fprintf(f, "  %-40s %-28s %-6s %12s\n", "name", "shape", "type", "bytes");
    uint64_t params = 0, bytes = 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const GGUFTensorInfo *t = &g->tensors[i];
        char shape[96];
        int n = 0;
        uint64_t count = 1;
        for (int d = 0; d < t->ndim; d++) {
            n += snprintf(shape + n, sizeof shape - (size_t)n, "%s%" PRId64, d ? " x " : "", t->ne[d]);
            if (n >= (int)sizeof shape) n = (int)sizeof shape - 1;
            count *= (uint64_t)t->ne[d];
        }
        params += count;
        bytes += t->nbytes;
        gguf_str_copy(t->name, name, sizeof name);
        for (char *q = name; *q; q++)
            if ((unsigned char)*q < 32) *q = '?';
        const char *tn = dtype_name(t->type);
        fprintf(f, "  %-40s %-28s %-6s %12zu\n", name, shape, tn ? tn : "?", t->nbytes);
    }
    fprintf(f, "tensor bytes: %" PRIu64 " (%.1f MiB)\n", bytes, (double)bytes / (1024.0 * 1024.0));
    fprintf(f, "parameters: %" PRIu64 "\n", params);
    return ferror(f) ? ERR_IO : 0;
}
