/* Whole-file requantization: read a GGUF, convert each tensor's rows
 * through f32 to the target type (OpenMP over rows), copy all metadata,
 * update general.file_type, write atomically. */
#include "io/gguf_internal.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"

#include <stdlib.h>
#include <string.h>

int gguf_file_type_for(int t) {
    switch (t) {
    case DT_F32: return 0;
    case DT_F16: return 1;
    case DT_Q4_0: return 2;
    case DT_Q4_1: return 3;
    case DT_Q8_0: return 7;
    case DT_Q5_0: return 8;
    case DT_Q5_1: return 9;
    case DT_Q4_K: return 14; /* Q4_K_S: every tensor q4_k */
    case DT_Q5_K: return 16; /* Q5_K_S */
    case DT_Q6_K: return 18;
    case DT_BF16: return 32;
    default: return -1;
    }
}

/* llama.cpp's fallback when a row does not fit the type's block. */
static int fallback(int t, int64_t ne0) {
    int f;
    switch (t) {
    case DT_Q4_K: f = DT_Q5_0; break;
    case DT_Q5_K: f = DT_Q5_1; break;
    case DT_Q6_K: f = DT_Q8_0; break;
    default: f = DT_F16; break;
    }
    return ne0 % dtype_block_size(f) ? DT_F16 : f;
}

static int is_float(int t) { return t == DT_F32 || t == DT_F16 || t == DT_BF16; }

static int choose(const GGUFFile *g, const GGUFTensorInfo *ti, const char *name, int type, int flags,
                  const char **why) {
    *why = NULL;
    if (ti->ndim == 1 || ti->ne[1] * ti->ne[2] * ti->ne[3] == 1) {
        *why = "1-D tensors stay f32";
        return DT_F32;
    }
    int t = type;
    const int is_output = !strcmp(name, "output.weight") ||
                          (!strcmp(name, "token_embd.weight") && !gguf_find_tensor(g, "output.weight"));
    if (is_output && !(flags & GGUF_QUANT_PURE) && !is_float(type) && type != DT_Q8_0 && type != DT_Q6_K) {
        t = ti->ne[0] % 256 ? DT_Q8_0 : DT_Q6_K;
        *why = "output projection kept at higher precision (as llama.cpp)";
    }
    if (ti->ne[0] % dtype_block_size(t)) {
        t = fallback(t, ti->ne[0]);
        *why = "row length does not fit the type's block";
    }
    return t;
}

/* Convert n rows of ne0 elements from src type st to dst type dt. */
static int convert(const uint8_t *src, int st, uint8_t *dst, int dt, int64_t rows, int64_t ne0, Err *err) {
    const size_t sb = dtype_row_bytes(st, ne0), db = dtype_row_bytes(dt, ne0);
    if (st == dt) {
        memcpy(dst, src, sb * (size_t)rows);
        return 0;
    }
    int bad = 0;
#pragma omp parallel reduction(| : bad)
    {
        float *row = malloc((size_t)ne0 * sizeof *row);
        if (!row) bad = 1;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (!row) continue;
            if (dequantize_row(st, src + (size_t)r * sb, row, ne0) || quantize_row(dt, row, dst + (size_t)r * db, ne0))
                bad = 1;
        }
        free(row);
    }
    if (bad) return err_set(err, ERR_NOMEM, "conversion from %s to %s failed", dtype_name(st), dtype_name(dt));
    return 0;
}

int gguf_quantize_file(const char *in, const char *out, int type, int flags, GGUFQuantCallback cb, void *ctx,
                       Err *err) {
    if (!quant_can_quantize(type))
        return err_set(err, ERR_UNSUPPORTED, "cannot quantize to type %s", dtype_name(type) ? dtype_name(type) : "?");
    GGUFFile *g;
    int rc = gguf_open(&g, in, err);
    if (rc) return rc;
    GGUFWriter *w = gguf_writer_create();
    void **bufs = calloc((size_t)g->n_tensors + 1, sizeof *bufs);
    if (!w || !bufs) {
        rc = err_set(err, ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = gguf_writer_copy_kv(w, g, err))) goto done;
    if (gguf_alignment(g) != 32) gguf_writer_set_alignment(w, (uint32_t)gguf_alignment(g));
    if (gguf_file_type_for(type) >= 0) gguf_writer_set_u32(w, "general.file_type", (uint32_t)gguf_file_type_for(type));
    if (!is_float(type)) gguf_writer_set_u32(w, "general.quantization_version", 2);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const GGUFTensorInfo *ti = &g->tensors[i];
        char name[512];
        if (ti->name.len >= sizeof name || memchr(ti->name.ptr, 0, ti->name.len)) {
            rc = err_set(err, ERR_UNSUPPORTED, "tensor #%lld: name too long or holds a NUL byte", (long long)i);
            goto done;
        }
        gguf_str_copy(ti->name, name, sizeof name);
        if (!quant_can_dequantize(ti->type)) {
            rc = err_set(err, ERR_UNSUPPORTED, "tensor '%s': cannot read type %s", name, dtype_name(ti->type));
            goto done;
        }
        const char *why;
        const int dt = choose(g, ti, name, type, flags, &why);
        const int64_t rows = ti->ne[1] * ti->ne[2] * ti->ne[3];
        const size_t db = dtype_row_bytes(dt, ti->ne[0]) * (size_t)rows;
        bufs[i] = malloc(db ? db : 1);
        if (!bufs[i]) {
            rc = err_set(err, ERR_NOMEM, "out of memory for tensor '%s' (%zu bytes)", name, db);
            goto done;
        }
        if ((rc = convert(ti->data, ti->type, bufs[i], dt, rows, ti->ne[0], err))) goto done;
        if ((rc = gguf_writer_add_tensor(w, name, ti->ndim, ti->ne, dt, bufs[i], db))) {
            rc = err_set(err, ERR_INVALID, "tensor '%s': cannot add to the output", name);
            goto done;
        }
        if (cb) {
            GGUFQuantTensor r = {name, ti->ndim, ti->ne, ti->type, dt, ti->nbytes, db, dt == type ? NULL : why};
            cb(ctx, &r);
        }
    }
    rc = gguf_writer_write(w, out, err);
done:
    if (bufs)
        for (int64_t i = 0; i < g->n_tensors; i++) free(bufs[i]);
    free(bufs);
    gguf_writer_free(w);
    gguf_close(g);
    return rc;
}
