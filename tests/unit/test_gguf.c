/* GGUF reader/writer: round trip of every value type and tensors, getters'
 * type checks, key copy, file output, and a hostile-file suite (truncation,
 * huge counts, bad strings, bad types, bad/overlapping/unaligned offsets). */
#include "test_gguf_exercise.h"

#include <math.h>
#include <unistd.h>

#include "check.h"

/* Open a copy in an exact-size heap buffer (so ASan sees any overread). */
static int open_copy(const void *d, size_t n, GGUFFile **g, void **hold, Err *e) {
    *hold = malloc(n ? n : 1);
    memcpy(*hold, d, n);
    return gguf_open_memory(g, *hold, n, e);
}

static void test_round_trip(void) {
    void *d;
    size_t n;
    CHECK(make_sample(&d, &n) == 0, "make_sample");
    GGUFFile *g;
    Err e = {0};
    CHECK(gguf_open_memory(&g, d, n, &e) == 0, "open: %s", e.msg);
    if (!g) return;
    int64_t iv;
    double fv;
    GGUFStr s;
    CHECK(gguf_version(g) == 3 && gguf_n_kv(g) == 16 && gguf_n_tensors(g) == 3, "counts");
    CHECK(!gguf_get_int(g, "t.u8", &iv, &e) && iv == 200, "u8");
    CHECK(!gguf_get_int(g, "t.i8", &iv, &e) && iv == -100, "i8");
    CHECK(!gguf_get_int(g, "t.u16", &iv, &e) && iv == 60000, "u16");
    CHECK(!gguf_get_int(g, "t.i16", &iv, &e) && iv == -30000, "i16");
    CHECK(!gguf_get_int(g, "t.u32", &iv, &e) && iv == 4000000000ll, "u32");
    CHECK(!gguf_get_int(g, "t.i32", &iv, &e) && iv == -2000000000, "i32");
    CHECK(!gguf_get_int(g, "t.u64", &iv, &e) && iv == 1ll << 40, "u64");
    CHECK(!gguf_get_int(g, "t.i64", &iv, &e) && iv == -(1ll << 40), "i64");
    CHECK(!gguf_get_int(g, "t.bool", &iv, &e) && iv == 1, "bool");
    CHECK(!gguf_get_float(g, "t.f32", &fv, &e) && fv == 1.5, "f32");
    CHECK(!gguf_get_float(g, "t.f64", &fv, &e) && fv == -2.25, "f64");
    CHECK(!gguf_get_float(g, "t.u32", &fv, &e) && fv == 4e9, "int as float");
    CHECK(!gguf_get_str(g, "general.architecture", &s, &e) && gguf_str_eq(s, "llama"), "str");
    CHECK(gguf_get_int(g, "t.f32", &iv, &e) == ERR_FORMAT, "float as int must fail");
    CHECK(gguf_get_int(g, "general.architecture", &iv, &e) == ERR_FORMAT, "str as int must fail");
    CHECK(gguf_get_str(g, "t.u8", &s, &e) == ERR_FORMAT, "int as str must fail");
    CHECK(gguf_get_int(g, "missing", &iv, &e) == ERR_INVALID, "missing key");
    CHECK(gguf_find_key(g, "t.i16") == 4 && gguf_kv_type(g, 4) == GGUF_T_I16, "find_key / kv_type");
    CHECK(gguf_kv_type(g, 99) == -1 && gguf_kv_key(g, -1).ptr == NULL, "out-of-range kv index");
    int et;
    uint64_t an;
    CHECK(!gguf_get_arr_info(g, "t.arr_str", &et, &an, &e) && et == GGUF_T_STRING && an == 4, "arr_str info");
    CHECK(!gguf_get_arr_str(g, "t.arr_str", 1, &s, &e) && gguf_str_eq(s, "bc"), "arr_str[1]");
    CHECK(!gguf_get_arr_str(g, "t.arr_str", 2, &s, &e) && s.len == 0, "arr_str[2] empty");
    CHECK(!gguf_get_arr_str(g, "t.arr_str", 3, &s, &e) && gguf_str_eq(s, "d\xc3\xa9"), "arr_str[3]");
    CHECK(gguf_get_arr_str(g, "t.arr_str", 4, &s, &e) == ERR_INVALID, "arr_str out of range");
    CHECK(!gguf_get_arr_int(g, "t.arr_i32", 1, &iv, &e) && iv == -2, "arr_i32[1]");
    CHECK(!gguf_get_arr_float(g, "t.arr_f32", 1, &fv, &e) && fv == -1.0, "arr_f32[1]");
    CHECK(!gguf_get_arr_int(g, "t.arr_u8", 4, &iv, &e) && iv == 5, "arr_u8[4]");
    CHECK(gguf_get_arr_int(g, "t.arr_str", 0, &iv, &e) == ERR_FORMAT, "str array as int");
    CHECK(gguf_get_arr_str(g, "t.arr_i32", 0, &s, &e) == ERR_FORMAT, "int array as str");
    const unsigned char *raw = gguf_get_arr_data(g, "t.arr_i32", &et, &an);
    int32_t r2 = 0;
    if (raw) memcpy(&r2, raw + 8, 4); /* elements may be unaligned */
    CHECK(raw && et == GGUF_T_I32 && an == 3 && r2 == 3, "arr data");
    CHECK(gguf_get_arr_data(g, "t.arr_str", &et, &an) == NULL, "no raw data for strings");

    const GGUFTensorInfo *t = gguf_find_tensor(g, "w.q4_0");
    CHECK(t && t->ndim == 2 && t->ne[0] == 64 && t->ne[1] == 3 && t->type == DT_Q4_0 && t->nbytes == 108, "tensor info");
    if (t) {
        float y[192], x[192];
        for (int i = 0; i < 192; i++) x[i] = (float)(i % 17) - 8.0f;
        dequantize_row(DT_Q4_0, t->data, y, 192);
        float maxd = 0;
        for (int i = 0; i < 192; i++) maxd = fmaxf(maxd, fabsf(x[i] - y[i]));
        CHECK(maxd <= 1.0f, "tensor data differs by %g", maxd);
        CHECK(((uintptr_t)t->data - (uintptr_t)d) % 32 == 0, "tensor data aligned");
    }
    t = gguf_find_tensor(g, "w.q8_0");
    CHECK(t && t->ndim == 3 && t->ne[2] == 2 && t->nbytes == 68, "3-d tensor");
    t = gguf_find_tensor(g, "norm");
    CHECK(t && ((const float *)t->data)[1] == -7.0f, "f32 tensor data");
    CHECK(gguf_find_tensor(g, "nope") == NULL && gguf_tensor(g, 3) == NULL, "missing tensor");

    /* copy_kv + custom alignment + file output, then compare */
    GGUFWriter *w = gguf_writer_create();
    CHECK(gguf_writer_copy_kv(w, g, &e) == 0, "copy_kv");
    gguf_writer_set_alignment(w, 64);
    gguf_writer_set_u8(w, "t.u8", 7); /* replace in place */
    int64_t ne[1] = {3};
    float three[3] = {1, 2, 3};
    gguf_writer_add_tensor(w, "a", 1, ne, DT_F32, three, 12);
    gguf_writer_add_tensor(w, "b", 1, ne, DT_F32, three, 12);
    CHECK(gguf_writer_add_tensor(w, "b", 1, ne, DT_F32, three, 12) == ERR_INVALID, "duplicate tensor name");
    CHECK(gguf_writer_add_tensor(w, "c", 1, ne, DT_F32, three, 8) == ERR_INVALID, "wrong byte size");
    int64_t ne33[1] = {33};
    CHECK(gguf_writer_add_tensor(w, "c", 1, ne33, DT_Q4_0, three, 18) == ERR_INVALID, "row not a block multiple");
    const char *dir = getenv("JARIP_TEST_DIR");
    char path[512];
    snprintf(path, sizeof path, "%s/test_gguf_%d.gguf", dir && *dir ? dir : "/tmp", (int)getpid());
    if (dir && *dir) mkdir_p(dir, NULL);
    CHECK(gguf_writer_write(w, path, &e) == 0, "write: %s", e.msg);
    gguf_writer_free(w);
    GGUFFile *g2;
    CHECK(gguf_open(&g2, path, &e) == 0, "reopen: %s", e.msg);
    if (g2) {
        CHECK(gguf_alignment(g2) == 64 && gguf_n_kv(g2) == gguf_n_kv(g) + 1, "alignment key added");
        CHECK(!gguf_get_int(g2, "t.u8", &iv, &e) && iv == 7, "replaced value");
        CHECK(!gguf_get_arr_str(g2, "t.arr_str", 3, &s, &e) && gguf_str_eq(s, "d\xc3\xa9"), "copied string array");
        CHECK(!gguf_get_float(g2, "t.f64", &fv, &e) && fv == -2.25, "copied f64");
        const GGUFTensorInfo *tb = gguf_find_tensor(g2, "b");
        CHECK(tb && tb->offset == 64 && ((const float *)tb->data)[2] == 3.0f, "second tensor at aligned offset");
        CHECK(((uintptr_t)tb->data) % 64 == 0, "data aligned to 64 in the mapping");
        FILE *f = tmpfile();
        CHECK(gguf_print_info(g2, f, &e) == 0, "print_info");
        rewind(f);
        char line[512], last[512] = "";
        while (fgets(line, sizeof line, f)) strcpy(last, line);
        CHECK(!strcmp(last, "parameters: 6\n"), "parameters line: %s", last);
        fclose(f);
        gguf_close(g2);
    }
    unlink(path);
    CHECK(gguf_open(&g2, "/nonexistent/x.gguf", &e) == ERR_IO, "missing file");
    gguf_close(g);
    free(d);
}

/* Header + kv + tensor section builders for hostile files. */
static void header(Buf *b, uint32_t version, uint64_t nt, uint64_t nkv) {
    buf_put(b, "GGUF", 4);
    buf_u32(b, version);
    buf_u64(b, nt);
    buf_u64(b, nkv);
}

static void tensor_info(Buf *b, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type, uint64_t off) {
    buf_str(b, name);
    buf_u32(b, nd);
    for (uint32_t i = 0; i < nd; i++) buf_u64(b, ne[i]);
    buf_u32(b, type);
    buf_u64(b, off);
}

/* Expect gguf_open_memory to fail with a message containing `want`. */
static void expect_fail(Buf *b, const char *what, const char *want) {
    GGUFFile *g = NULL;
    void *hold;
    Err e = {0};
    int rc = open_copy(b->p, b->len, &g, &hold, &e);
    CHECK(rc != 0 && g == NULL, "%s: accepted a hostile file", what);
    CHECK(rc == 0 || strstr(e.msg, want), "%s: message '%s' lacks '%s'", what, e.msg, want);
    gguf_close(g);
    free(hold);
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void expect_ok(Buf *b, const char *what) {
    GGUFFile *g = NULL;
    void *hold;
    Err e = {0};
    CHECK(open_copy(b->p, b->len, &g, &hold, &e) == 0, "%s: rejected: %s", what, e.msg);
    gguf_close(g);
    free(hold);
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void test_hostile(void) {
    Buf b = {0};
    const uint64_t ne32[2] = {32, 2};
    /* a minimal valid file first: 1 tensor of 2 q8_0 rows */
    header(&b, 3, 1, 0);
    tensor_info(&b, "t", 2, ne32, DT_Q8_0, 0);
    buf_pad(&b, 32);
    for (int i = 0; i < 68; i++) buf_put(&b, "\0", 1);
    expect_ok(&b, "minimal file");
    header(&b, 2, 0, 0);
    expect_ok(&b, "v2 empty file");
    const uint64_t ne256[1] = {256};
    header(&b, 3, 1, 0);
    tensor_info(&b, "iq", 1, ne256, 23, 0); /* iq4_xs: no kernels, but the file opens */
    buf_pad(&b, 32);
    for (int i = 0; i < 136; i++) buf_put(&b, "\0", 1);
    expect_ok(&b, "tensor of a type without kernels");

    buf_put(&b, "GGUX", 4), buf_u32(&b, 3), buf_u64(&b, 0), buf_u64(&b, 0);
    expect_fail(&b, "bad magic", "magic");
    header(&b, 1, 0, 0);
    expect_fail(&b, "version 1", "version 1");
    header(&b, 0x03000000u, 0, 0);
    expect_fail(&b, "big endian", "big-endian");
    header(&b, 4, 0, 0);
    expect_fail(&b, "version 4", "version");
    header(&b, 3, 0, 1ull << 62);
    expect_fail(&b, "huge kv count", "metadata count");
    header(&b, 3, 1ull << 62, 0);
    expect_fail(&b, "huge tensor count", "tensor count");
    header(&b, 3, 0, 1);
    buf_u64(&b, 1ull << 60), buf_put(&b, "k", 1);
    for (int i = 0; i < 64; i++) buf_put(&b, "\0", 1);
    expect_fail(&b, "huge key length", "string length");
    header(&b, 3, 0, 1);
    buf_str(&b, "k"), buf_u32(&b, 13), buf_u32(&b, 0);
    expect_fail(&b, "unknown value type", "unknown value type");
    header(&b, 3, 0, 1);
    buf_str(&b, "k"), buf_u32(&b, GGUF_T_STRING), buf_u64(&b, 100), buf_put(&b, "abc", 3);
    expect_fail(&b, "string past the end", "string length");
    header(&b, 3, 0, 1);
    buf_str(&b, "k"), buf_u32(&b, GGUF_T_ARRAY), buf_u32(&b, GGUF_T_U32), buf_u64(&b, 1ull << 61);
    expect_fail(&b, "huge u32 array", "exceeds");
    header(&b, 3, 0, 1);
    buf_str(&b, "k"), buf_u32(&b, GGUF_T_ARRAY), buf_u32(&b, GGUF_T_STRING), buf_u64(&b, 3), buf_str(&b, "x");
    expect_fail(&b, "string array cut short", "");
    header(&b, 3, 0, 1);
    buf_str(&b, "k"), buf_u32(&b, GGUF_T_ARRAY), buf_u32(&b, 77), buf_u64(&b, 0);
    expect_fail(&b, "unknown array element type", "element type");
    header(&b, 3, 0, 1);
    buf_str(&b, "k");
    buf_u32(&b, GGUF_T_ARRAY);
    for (int i = 0; i < 20; i++) buf_u32(&b, GGUF_T_ARRAY), buf_u64(&b, 1);
    buf_u32(&b, GGUF_T_U8), buf_u64(&b, 0);
    expect_fail(&b, "deeply nested arrays", "nested");
    header(&b, 3, 0, 1);
    buf_str(&b, "k"), buf_u32(&b, GGUF_T_ARRAY), buf_u32(&b, GGUF_T_ARRAY), buf_u64(&b, 2);
    buf_u32(&b, GGUF_T_U8), buf_u64(&b, 2), buf_put(&b, "ab", 2);
    buf_u32(&b, GGUF_T_STRING), buf_u64(&b, 1), buf_str(&b, "xyz");
    expect_ok(&b, "nested arrays (valid)");
    header(&b, 3, 0, 2);
    buf_str(&b, "k"), buf_u32(&b, GGUF_T_U8), buf_put(&b, "a", 1);
    buf_str(&b, "k"), buf_u32(&b, GGUF_T_U8), buf_put(&b, "b", 1);
    expect_fail(&b, "duplicate key", "duplicate metadata key");
    header(&b, 3, 0, 1);
    buf_str(&b, "general.alignment"), buf_u32(&b, GGUF_T_U32), buf_u32(&b, 48);
    expect_fail(&b, "alignment not a power of two", "power of two");
    header(&b, 3, 0, 1);
    buf_str(&b, "general.alignment"), buf_u32(&b, GGUF_T_U32), buf_u32(&b, 0);
    expect_fail(&b, "alignment zero", "power of two");
    header(&b, 3, 0, 1); /* the spec asks for a multiple of 8; 1 misaligns every block */
    buf_str(&b, "general.alignment"), buf_u32(&b, GGUF_T_U32), buf_u32(&b, 1);
    expect_fail(&b, "alignment 1", "from 8");
    header(&b, 3, 0, 1);
    buf_str(&b, "general.alignment"), buf_u32(&b, GGUF_T_U8), buf_put(&b, "\x20", 1);
    expect_fail(&b, "alignment wrong type", "u32");

    /* tensor infos */
    const uint64_t huge[5] = {1ull << 62, 1ull << 62, 1, 1, 1}, neg[1] = {~0ull}, odd[1] = {33}, one[1] = {32};
    header(&b, 3, 1, 0), tensor_info(&b, "t", 0, ne32, DT_F32, 0);
    for (int i = 0; i < 64; i++) buf_put(&b, "\0", 1);
    expect_fail(&b, "zero dims", "dimensions");
    header(&b, 3, 1, 0), tensor_info(&b, "t", 5, huge, DT_F32, 0);
    expect_fail(&b, "five dims", "dimensions");
    header(&b, 3, 1, 0), tensor_info(&b, "t", 1, neg, DT_F32, 0);
    expect_fail(&b, "negative dim", "negative");
    header(&b, 3, 1, 0), tensor_info(&b, "t", 2, huge, DT_F32, 0);
    expect_fail(&b, "element count overflow", "overflow");
    header(&b, 3, 1, 0), tensor_info(&b, "t", 1, one, 4, 0);
    expect_fail(&b, "removed type 4", "unknown tensor type");
    header(&b, 3, 1, 0), tensor_info(&b, "t", 1, one, 31, 0);
    expect_fail(&b, "unassigned type 31", "unknown tensor type");
    header(&b, 3, 1, 0), tensor_info(&b, "t", 1, one, 1000, 0);
    expect_fail(&b, "unknown type", "unknown tensor type");
    header(&b, 3, 1, 0), tensor_info(&b, "t", 1, odd, DT_Q4_0, 0);
    expect_fail(&b, "row not a block multiple", "multiple");
    const uint64_t big1[1] = {1ull << 40};
    header(&b, 3, 1, 0), tensor_info(&b, "t", 1, big1, DT_F32, 0);
    buf_pad(&b, 32);
    expect_fail(&b, "tensor beyond the file", "outside");
    header(&b, 3, 1, 0), tensor_info(&b, "t", 1, one, DT_F32, 16);
    buf_pad(&b, 32);
    for (int i = 0; i < 256; i++) buf_put(&b, "\0", 1);
    expect_fail(&b, "unaligned offset", "alignment");
    header(&b, 3, 1, 0), tensor_info(&b, "t", 1, one, DT_F32, ~0ull - 31);
    buf_pad(&b, 32);
    for (int i = 0; i < 256; i++) buf_put(&b, "\0", 1);
    expect_fail(&b, "offset wraps around", "outside");
    header(&b, 3, 2, 0);
    tensor_info(&b, "a", 1, one, DT_F32, 0), tensor_info(&b, "b", 1, one, DT_F32, 128);
    buf_pad(&b, 32);
    for (int i = 0; i < 256; i++) buf_put(&b, "\0", 1);
    expect_ok(&b, "two tensors apart");
    header(&b, 3, 2, 0);
    tensor_info(&b, "a", 1, one, DT_F32, 0), tensor_info(&b, "b", 1, one, DT_F32, 96);
    buf_pad(&b, 32);
    for (int i = 0; i < 256; i++) buf_put(&b, "\0", 1);
    expect_fail(&b, "overlapping tensors", "overlap");
    header(&b, 3, 2, 0);
    tensor_info(&b, "a", 1, one, DT_F32, 0), tensor_info(&b, "a", 1, one, DT_F32, 128);
    buf_pad(&b, 32);
    for (int i = 0; i < 256; i++) buf_put(&b, "\0", 1);
    expect_fail(&b, "duplicate tensor names", "duplicate tensor");
    const uint64_t zero[2] = {32, 0};
    header(&b, 3, 3, 0);
    tensor_info(&b, "a", 1, one, DT_F32, 0), tensor_info(&b, "z", 2, zero, DT_F32, 64);
    tensor_info(&b, "b", 1, one, DT_F32, 96);
    buf_pad(&b, 32);
    for (int i = 0; i < 256; i++) buf_put(&b, "\0", 1);
    expect_fail(&b, "overlap hidden behind an empty tensor", "overlap");
    header(&b, 3, 1, 0), tensor_info(&b, "t", 1, one, DT_F32, 0);
    expect_fail(&b, "no data section", "");

    /* every truncation of a valid file before its last tensor byte fails */
    void *d;
    size_t n;
    make_sample(&d, &n);
    GGUFFile *g;
    gguf_open_memory(&g, d, n, NULL);
    size_t end = 0;
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const GGUFTensorInfo *t = gguf_tensor(g, i);
        size_t e = gguf_data_offset(g) + t->offset + t->nbytes;
        if (e > end) end = e;
    }
    gguf_close(g);
    int accepted = 0;
    for (size_t cut = 0; cut < end; cut++) {
        void *hold;
        Err e;
        if (open_copy(d, cut, &g, &hold, &e) == 0) accepted++, gguf_close(g);
        free(hold);
    }
    CHECK(accepted == 0, "%d truncated files accepted", accepted);
    free(d);
}

/* gguf_map_tensor_data on 12 MiB of float32 in a file of the working
 * folder: whether or not this file system gives 2 MiB page-cache pages,
 * every byte reads back, a refusal leaves the copy working, and a success
 * holds (the second call and a second open find the 2 MiB pages). */
static void test_map_in_place(void) {
    const char *path = "test_gguf_map.gguf";
    const size_t n = (size_t)3 << 20;
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = (float)(i % 1000003) * 0.5f;
    Err e = {0};
    GGUFWriter *w = gguf_writer_create();
    const int64_t ne[1] = {(int64_t)n};
    gguf_writer_set_u32(w, "t.n", 1);
    CHECK(gguf_writer_add_tensor(w, "big", 1, ne, DT_F32, v, n * sizeof *v) == 0, "add big");
    CHECK(gguf_writer_write(w, path, &e) == 0, "write: %s", e.msg);
    gguf_writer_free(w);
    for (int pass = 0; pass < 2; pass++) {
        GGUFFile *g = NULL;
        CHECK(gguf_open(&g, path, &e) == 0, "open: %s", e.msg);
        if (!g) break;
        const int in_place = gguf_map_tensor_data(g, path);
        const GGUFTensorInfo *t = gguf_find_tensor(g, "big");
        CHECK(t && !memcmp(t->data, v, n * sizeof *v), "pass %d: the data reads back after mapping", pass);
        CHECK(!gguf_data_is_copy(g), "mapping in place made a copy");
        if (in_place) {
            CHECK(mem_file_pmd_bytes(t->data) + mem_file_pmd_bytes((const char *)t->data + (4u << 20)) > 0,
                  "in place without 2 MiB pages");
            CHECK(gguf_map_tensor_data(g, path) == 1, "a second call lost the 2 MiB pages");
        } else {
            CHECK(gguf_load_tensor_data(g, &e) == 0, "copy after a refusal: %s", e.msg);
            t = gguf_find_tensor(g, "big");
            CHECK(gguf_data_is_copy(g) && !memcmp(t->data, v, n * sizeof *v), "the copy reads back");
        }
        printf("test_gguf: pass %d, weights %s\n", pass, in_place ? "mapped in place with 2 MiB pages" : "copied (no 2 MiB page-cache pages here)");
        gguf_close(g);
    }
    GGUFFile *g = NULL; /* an in-memory file has no mapping to advise */
    void *hold = NULL;
    const size_t fsz = 64;
    uint8_t tiny[64] = {'G', 'G', 'U', 'F', 3};
    if (open_copy(tiny, fsz, &g, &hold, &e) == 0) {
        CHECK(gguf_map_tensor_data(g, path) == 0, "an in-memory file mapped");
        gguf_close(g);
    }
    free(hold);
    CHECK(gguf_map_tensor_data(NULL, path) == 0, "NULL file");
    unlink(path);
    free(v);
}

int main(void) {
    test_round_trip();
    test_hostile();
    test_map_in_place();
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("test_gguf: ok\n");
    return 0;
}
