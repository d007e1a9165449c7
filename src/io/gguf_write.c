/* GGUF v3 writer. Keys are kept as pre-serialized value bytes (so copying a
 * key from a reader, nested arrays included, is a byte copy); tensors are
 * referenced until write. Output goes to a temp file that is fsynced and
 * renamed over the destination, so a crash never leaves a half model. */
#include "io/gguf_internal.h"
#include "kernels/kernels.h"

#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char *key;
    int type;
    uint8_t *val; /* serialized value (what follows the type field) */
    size_t len;
} WKV;

typedef struct {
    char *name;
    int ndim;
    int64_t ne[4];
    int type;
    const void *data;
    void *owned;
    size_t nbytes;
} WTensor;

struct GGUFWriter {
    WKV *kv;
    size_t n_kv, cap_kv;
    WTensor *t;
    size_t n_t, cap_t;
    uint32_t alignment;
};

GGUFWriter *gguf_writer_create(void) {
    GGUFWriter *w = calloc(1, sizeof *w);
    if (w) w->alignment = 32;
    return w;
}

void gguf_writer_free(GGUFWriter *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) free(w->kv[i].key), free(w->kv[i].val);
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name), free(w->t[i].owned);
    free(w->kv);
    free(w->t);
    free(w);
}

int gguf_writer_set_alignment(GGUFWriter *w, uint32_t a) {
    if (a < 8 || (a & (a - 1))) return ERR_INVALID; /* what the reader accepts (the GGUF spec) */
    w->alignment = a;
    return a == 32 ? 0 : gguf_writer_set_u32(w, "general.alignment", a);
}

/* Store key -> (type, bytes); replaces an existing key in place. Takes val. */
static int put(GGUFWriter *w, const char *key, int type, uint8_t *val, size_t len) {
    if (!val) return ERR_NOMEM;
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) {
            free(w->kv[i].val);
            w->kv[i].type = type, w->kv[i].val = val, w->kv[i].len = len;
            return 0;
        }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        WKV *kv = realloc(w->kv, cap * sizeof *kv);
        if (!kv) return free(val), ERR_NOMEM;
        w->kv = kv, w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) return free(val), ERR_NOMEM;
    w->kv[w->n_kv++] = (WKV){k, type, val, len};
    return 0;
}

static int put_scalar(GGUFWriter *w, const char *key, int type, const void *v) {
    size_t n = gguf_type_size(type);
    uint8_t *b = malloc(n);
    if (b) memcpy(b, v, n);
    return put(w, key, type, b, n);
}

int gguf_writer_set_u8(GGUFWriter *w, const char *k, uint8_t v) { return put_scalar(w, k, GGUF_T_U8, &v); }
int gguf_writer_set_i8(GGUFWriter *w, const char *k, int8_t v) { return put_scalar(w, k, GGUF_T_I8, &v); }
int gguf_writer_set_u16(GGUFWriter *w, const char *k, uint16_t v) { return put_scalar(w, k, GGUF_T_U16, &v); }
int gguf_writer_set_i16(GGUFWriter *w, const char *k, int16_t v) { return put_scalar(w, k, GGUF_T_I16, &v); }
int gguf_writer_set_u32(GGUFWriter *w, const char *k, uint32_t v) { return put_scalar(w, k, GGUF_T_U32, &v); }
int gguf_writer_set_i32(GGUFWriter *w, const char *k, int32_t v) { return put_scalar(w, k, GGUF_T_I32, &v); }
int gguf_writer_set_u64(GGUFWriter *w, const char *k, uint64_t v) { return put_scalar(w, k, GGUF_T_U64, &v); }
int gguf_writer_set_i64(GGUFWriter *w, const char *k, int64_t v) { return put_scalar(w, k, GGUF_T_I64, &v); }
int gguf_writer_set_f32(GGUFWriter *w, const char *k, float v) { return put_scalar(w, k, GGUF_T_F32, &v); }
int gguf_writer_set_f64(GGUFWriter *w, const char *k, double v) { return put_scalar(w, k, GGUF_T_F64, &v); }
int gguf_writer_set_bool(GGUFWriter *w, const char *k, int v) {
    uint8_t b = v != 0;
    return put_scalar(w, k, GGUF_T_BOOL, &b);
}

int gguf_writer_set_strn(GGUFWriter *w, const char *key, const char *v, uint64_t len) {
    uint8_t *b = malloc(8 + len);
    if (!b) return ERR_NOMEM;
    memcpy(b, &len, 8);
    if (len) memcpy(b + 8, v, len);
    return put(w, key, GGUF_T_STRING, b, 8 + len);
}

int gguf_writer_set_str(GGUFWriter *w, const char *key, const char *v) {
    return gguf_writer_set_strn(w, key, v, strlen(v));
}

static uint8_t *arr_header(int et, uint64_t n, size_t payload) {
    uint8_t *b = malloc(12 + payload);
    if (!b) return NULL;
    uint32_t t = (uint32_t)et;
    memcpy(b, &t, 4);
    memcpy(b + 4, &n, 8);
    return b;
}

int gguf_writer_set_arr(GGUFWriter *w, const char *key, int et, const void *v, uint64_t n) {
    size_t es = gguf_type_size(et);
    if (!es || n > (SIZE_MAX - 12) / es) return ERR_INVALID;
    uint8_t *b = arr_header(et, n, n * es);
    if (b && n) memcpy(b + 12, v, n * es);
    return put(w, key, GGUF_T_ARRAY, b, 12 + n * es);
}

int gguf_writer_set_arr_i32(GGUFWriter *w, const char *key, const int32_t *v, uint64_t n) {
    return gguf_writer_set_arr(w, key, GGUF_T_I32, v, n);
}

int gguf_writer_set_arr_f32(GGUFWriter *w, const char *key, const float *v, uint64_t n) {
    return gguf_writer_set_arr(w, key, GGUF_T_F32, v, n);
}

int gguf_writer_set_arr_str(GGUFWriter *w, const char *key, const char *const *v, const uint64_t *lens, uint64_t n) {
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) total += 8 + (lens ? lens[i] : strlen(v[i]));
    uint8_t *b = arr_header(GGUF_T_STRING, n, total);
    if (!b) return ERR_NOMEM;
    uint8_t *p = b + 12;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t l = lens ? lens[i] : strlen(v[i]);
        memcpy(p, &l, 8);
        if (l) memcpy(p + 8, v[i], l);
        p += 8 + l;
    }
    return put(w, key, GGUF_T_ARRAY, b, 12 + total);
}

int gguf_writer_copy_kv(GGUFWriter *w, const GGUFFile *g, Err *err) {
    char key[1024];
    for (int64_t i = 0; i < g->n_kv; i++) {
        const GGUFKV *kv = &g->kv[i];
        if (gguf_str_eq(kv->key, "general.alignment")) continue;
        if (kv->key.len >= sizeof key || memchr(kv->key.ptr, 0, kv->key.len))
            return err_set(err, ERR_UNSUPPORTED, "metadata key #%lld is too long or holds a NUL byte", (long long)i);
        gguf_str_copy(kv->key, key, sizeof key);
        uint8_t *b = malloc(kv->val_len ? kv->val_len : 1);
        if (b) memcpy(b, kv->val, kv->val_len);
        if (put(w, key, kv->type, b, kv->val_len)) return err_set(err, ERR_NOMEM, "out of memory copying metadata");
    }
    return 0;
}

static int add_tensor(GGUFWriter *w, const char *name, int ndim, const int64_t *ne, int type, const void *data,
                      size_t nbytes, int copy) {
    /* types beyond GGML's (DT_Q4_0_R16: an in-memory layout) never reach a file */
    if (ndim < 1 || ndim > 4 || type < 0 || type >= DT_COUNT || dtype_block_size(type) <= 0) return ERR_INVALID;
    int64_t rows = 1;
    for (int d = 1; d < ndim; d++) {
        if (ne[d] < 0) return ERR_INVALID;
        rows *= ne[d];
    }
    if (ne[0] < 0 || ne[0] % dtype_block_size(type)) return ERR_INVALID;
    if ((size_t)rows * (size_t)(ne[0] / dtype_block_size(type)) * dtype_block_bytes(type) != nbytes) return ERR_INVALID;
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) return ERR_INVALID;
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        WTensor *t = realloc(w->t, cap * sizeof *t);
        if (!t) return ERR_NOMEM;
        w->t = t, w->cap_t = cap;
    }
    WTensor t = {strdup(name), ndim, {1, 1, 1, 1}, type, data, NULL, nbytes};
    if (!t.name) return ERR_NOMEM;
    for (int d = 0; d < ndim; d++) t.ne[d] = ne[d];
    if (copy) {
        t.owned = malloc(nbytes ? nbytes : 1);
        if (!t.owned) return free(t.name), ERR_NOMEM;
        if (nbytes) memcpy(t.owned, data, nbytes);
        t.data = t.owned;
    }
    w->t[w->n_t++] = t;
    return 0;
}

int gguf_writer_add_tensor(GGUFWriter *w, const char *name, int ndim, const int64_t *ne, int type, const void *data,
                           size_t nbytes) {
    return add_tensor(w, name, ndim, ne, type, data, nbytes, 0);
}

int gguf_writer_add_tensor_copy(GGUFWriter *w, const char *name, int ndim, const int64_t *ne, int type,
                                const void *data, size_t nbytes) {
    return add_tensor(w, name, ndim, ne, type, data, nbytes, 1);
}

/* ---- serialization: one routine, two sinks (file or memory) --------------------- */
typedef struct {
    FILE *f;
    uint8_t *buf;
    size_t len, cap;
    int failed;
} Sink;

static void emit(Sink *s, const void *p, size_t n) {
    if (s->failed || !n) return;
    if (s->f) {
        if (fwrite(p, 1, n, s->f) != n) s->failed = 1;
        return;
    }
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n) cap *= 2;
        uint8_t *b = realloc(s->buf, cap);
        if (!b) {
            s->failed = 1;
            return;
        }
        s->buf = b, s->cap = cap;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
}

static void emit_u32(Sink *s, uint32_t v) { emit(s, &v, 4); }
static void emit_u64(Sink *s, uint64_t v) { emit(s, &v, 8); }
static void emit_str(Sink *s, const char *c) {
    emit_u64(s, strlen(c));
    emit(s, c, strlen(c));
}

static void pad(Sink *s, uint64_t *pos, uint64_t align) {
    static const uint8_t zeros[64];
    uint64_t n = (align - *pos % align) % align;
    *pos += n;
    while (n) {
        uint64_t k = n < sizeof zeros ? n : sizeof zeros;
        emit(s, zeros, k);
        n -= k;
    }
}

static void serialize(GGUFWriter *w, Sink *s) {
    uint64_t pos = 0, a = w->alignment;
    emit(s, "GGUF", 4);
    emit_u32(s, 3);
    emit_u64(s, w->n_t);
    emit_u64(s, w->n_kv);
    pos = 24;
    for (size_t i = 0; i < w->n_kv; i++) {
        emit_str(s, w->kv[i].key);
        emit_u32(s, (uint32_t)w->kv[i].type);
        emit(s, w->kv[i].val, w->kv[i].len);
        pos += 8 + strlen(w->kv[i].key) + 4 + w->kv[i].len;
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const WTensor *t = &w->t[i];
        emit_str(s, t->name);
        emit_u32(s, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) emit_u64(s, (uint64_t)t->ne[d]);
        emit_u32(s, (uint32_t)t->type);
        emit_u64(s, off);
        pos += 8 + strlen(t->name) + 4 + 8 * (uint64_t)t->ndim + 4 + 8;
        off += (t->nbytes + a - 1) / a * a;
    }
    pad(s, &pos, a);
    for (size_t i = 0; i < w->n_t; i++) {
        emit(s, w->t[i].data, w->t[i].nbytes);
        pos += w->t[i].nbytes;
        pad(s, &pos, a);
    }
}

int gguf_writer_to_memory(GGUFWriter *w, void **out, size_t *len, Err *err) {
    Sink s = {0};
    serialize(w, &s);
    if (s.failed) {
        free(s.buf);
        return err_set(err, ERR_NOMEM, "out of memory serializing GGUF");
    }
    *out = s.buf;
    *len = s.len;
    return 0;
}

int gguf_writer_write(GGUFWriter *w, const char *path, Err *err) {
    size_t n = strlen(path);
    char *tmp = malloc(n + 32);
    if (!tmp) return err_set(err, ERR_NOMEM, "out of memory");
    snprintf(tmp, n + 32, "%s.tmp.%d", path, (int)getpid());
    Sink s = {0};
    s.f = fopen(tmp, "wb");
    if (!s.f) {
        err_set(err, ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        return ERR_IO;
    }
    serialize(w, &s);
    int bad = s.failed || fflush(s.f) != 0 || fsync(fileno(s.f)) != 0;
    int e = errno;
    if (fclose(s.f) != 0) bad = 1;
    if (bad || rename(tmp, path) != 0) {
        if (!bad) e = errno;
        unlink(tmp);
        err_set(err, ERR_IO, "writing %s: %s", path, strerror(e));
        free(tmp);
        return ERR_IO;
    }
    char *d = strdup(path);
    if (d) fsync_dir(dirname(d)), free(d);
    free(tmp);
    return 0;
}
