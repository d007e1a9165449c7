/* Shared by the GGUF tests and fuzzers: a tiny byte builder for crafting
 * (hostile) files, a valid sample file made with the writer, and a walk over
 * every accessor of an opened file (so a fuzzer touches everything the
 * reader exposes; ASan flags any out-of-bounds read). */
#ifndef TEST_GGUF_EXERCISE_H
#define TEST_GGUF_EXERCISE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"

typedef struct {
    unsigned char *p;
    size_t len, cap;
} Buf;

static inline void buf_put(Buf *b, const void *d, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}
static inline void buf_u32(Buf *b, uint32_t v) { buf_put(b, &v, 4); }
static inline void buf_u64(Buf *b, uint64_t v) { buf_put(b, &v, 8); }
static inline void buf_str(Buf *b, const char *s) {
    buf_u64(b, strlen(s));
    buf_put(b, s, strlen(s));
}
static inline void buf_pad(Buf *b, size_t a) {
    static const unsigned char z[64];
    while (b->len % a) buf_put(b, z, 1);
    (void)z;
}

/* A small valid file with every value type, arrays, and three tensors. */
static inline int make_sample(void **data, size_t *len) {
    GGUFWriter *w = gguf_writer_create();
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u8(w, "t.u8", 200);
    gguf_writer_set_i8(w, "t.i8", -100);
    gguf_writer_set_u16(w, "t.u16", 60000);
    gguf_writer_set_i16(w, "t.i16", -30000);
    gguf_writer_set_u32(w, "t.u32", 4000000000u);
    gguf_writer_set_i32(w, "t.i32", -2000000000);
    gguf_writer_set_u64(w, "t.u64", 1ull << 40);
    gguf_writer_set_i64(w, "t.i64", -(1ll << 40));
    gguf_writer_set_f32(w, "t.f32", 1.5f);
    gguf_writer_set_f64(w, "t.f64", -2.25);
    gguf_writer_set_bool(w, "t.bool", 1);
    const char *toks[] = {"a", "bc", "", "d\xc3\xa9"};
    gguf_writer_set_arr_str(w, "t.arr_str", toks, NULL, 4);
    int32_t iv[] = {1, -2, 3};
    gguf_writer_set_arr_i32(w, "t.arr_i32", iv, 3);
    float fv[] = {0.5f, -1.0f};
    gguf_writer_set_arr_f32(w, "t.arr_f32", fv, 2);
    uint8_t u8v[] = {1, 2, 3, 4, 5};
    gguf_writer_set_arr(w, "t.arr_u8", GGUF_T_U8, u8v, 5);
    float x[64 * 3];
    for (int i = 0; i < 64 * 3; i++) x[i] = (float)(i % 17) - 8.0f;
    static unsigned char q[4096];
    int64_t ne[2] = {64, 3};
    quantize_row(DT_Q4_0, x, q, 64 * 3);
    gguf_writer_add_tensor_copy(w, "w.q4_0", 2, ne, DT_Q4_0, q, dtype_row_bytes(DT_Q4_0, 64) * 3);
    int64_t ne1[1] = {5};
    gguf_writer_add_tensor_copy(w, "norm", 1, ne1, DT_F32, x, 20);
    quantize_row(DT_Q8_0, x, q + 1024, 64);
    int64_t ne2[3] = {32, 1, 2};
    gguf_writer_add_tensor_copy(w, "w.q8_0", 3, ne2, DT_Q8_0, q + 1024, 68);
    int rc = gguf_writer_to_memory(w, data, len, NULL);
    gguf_writer_free(w);
    return rc;
}

/* Read all n bytes at p (ASan checks the whole range in its memcpy
 * interceptor) and fold a few into a checksum. A byte loop did the same at
 * a coverage callback per byte: two thirds of fuzz_gguf's time. */
static inline uint64_t touch(const void *p, size_t n) {
    static unsigned char chunk[4096];
    uint64_t h = 0;
    for (size_t at = 0; at < n; at += sizeof chunk) {
        size_t k = n - at < sizeof chunk ? n - at : sizeof chunk;
        memcpy(chunk, (const unsigned char *)p + at, k);
        h += chunk[0] + chunk[k - 1];
    }
    return h;
}

/* Touch every accessor; returns a checksum so nothing is optimized away. */
static inline uint64_t exercise(const GGUFFile *g) {
    uint64_t h = gguf_version(g) + gguf_alignment(g) + gguf_data_offset(g);
    char key[300];
    for (int64_t i = -1; i <= gguf_n_kv(g); i++) {
        GGUFStr k = gguf_kv_key(g, i);
        int t = gguf_kv_type(g, i);
        h += (uint64_t)t;
        if (i < 0 || i >= gguf_n_kv(g)) continue;
        h += touch(k.ptr, k.len);
        gguf_str_copy(k, key, sizeof key);
        if (strlen(key) != k.len) continue; /* key with a NUL: not addressable by name */
        int64_t iv;
        double fv;
        GGUFStr sv;
        if (!gguf_get_int(g, key, &iv, NULL)) h += (uint64_t)iv;
        if (!gguf_get_float(g, key, &fv, NULL)) h += (uint64_t)(fv == fv);
        if (!gguf_get_str(g, key, &sv, NULL)) h += touch(sv.ptr, sv.len);
        int et;
        uint64_t n;
        if (!gguf_get_arr_info(g, key, &et, &n, NULL)) {
            /* every string (each has its own offset); numbers at the ends
             * (touch reads them all below); each accessor on every array
             * at its first, last and one-past-the-end index. Three lookups
             * per element of a 50k-token array were half of fuzz_gguf's time. */
            for (uint64_t j = 0; j <= n && j < 100000; j++) {
                if (et != GGUF_T_STRING && j == 2 && n > 3) j = n - 1;
                const int edge = j < 2 || j + 1 >= n;
                if ((edge || et == GGUF_T_STRING) && !gguf_get_arr_str(g, key, j, &sv, NULL)) h += touch(sv.ptr, sv.len);
                if (edge && !gguf_get_arr_int(g, key, j, &iv, NULL)) h += (uint64_t)iv;
                if (edge && !gguf_get_arr_float(g, key, j, &fv, NULL)) h += (uint64_t)(fv == fv);
            }
            const unsigned char *raw = gguf_get_arr_data(g, key, &et, &n);
            if (raw) {
                size_t es = et == GGUF_T_U8 || et == GGUF_T_I8 || et == GGUF_T_BOOL ? 1
                            : et == GGUF_T_U16 || et == GGUF_T_I16                 ? 2
                            : et == GGUF_T_U64 || et == GGUF_T_I64 || et == GGUF_T_F64 ? 8
                                                                                    : 4;
                h += touch(raw, n * es);
            }
        }
    }
    for (int64_t i = -1; i <= gguf_n_tensors(g); i++) {
        const GGUFTensorInfo *t = gguf_tensor(g, i);
        if (!t) continue;
        h += touch(t->data, t->nbytes) + touch(t->name.ptr, t->name.len);
        gguf_str_copy(t->name, key, sizeof key);
        h += gguf_find_tensor(g, key) != NULL;
        /* dequantize the first row when the type is readable */
        int64_t ne0 = t->ne[0];
        if (quant_can_dequantize(t->type) && ne0 > 0 && ne0 <= 4096 && t->nbytes >= dtype_row_bytes(t->type, ne0)) {
            float row[4096];
            if (!dequantize_row(t->type, t->data, row, ne0)) h += (uint64_t)(row[0] == row[0]);
        }
    }
    FILE *f = fopen("/dev/null", "w");
    if (f) {
        gguf_print_info(g, f, NULL);
        fclose(f);
    }
    return h;
}

#endif
