/* GGUF v2/v3 reader: mmap the file, then parse with a bounds-checked cursor.
 * Every length, count and offset is checked against the bytes that remain
 * before it is used, so a hostile file cannot make us read past the end,
 * allocate without bound, or recurse without bound. */
#include "io/gguf_internal.h"
#include "kernels/kernels.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NESTING 8 /* arrays of arrays: deeper is rejected (stack bound) */
#define GGUF_DEFAULT_ALIGNMENT 32

static const struct {
    const char *name;
    size_t size;
} TYPES[GGUF_T_COUNT] = {
    [GGUF_T_U8] = {"u8", 1},     [GGUF_T_I8] = {"i8", 1},       [GGUF_T_U16] = {"u16", 2},
    [GGUF_T_I16] = {"i16", 2},   [GGUF_T_U32] = {"u32", 4},     [GGUF_T_I32] = {"i32", 4},
    [GGUF_T_F32] = {"f32", 4},   [GGUF_T_BOOL] = {"bool", 1},   [GGUF_T_STRING] = {"str", 0},
    [GGUF_T_ARRAY] = {"arr", 0}, [GGUF_T_U64] = {"u64", 8},     [GGUF_T_I64] = {"i64", 8},
    [GGUF_T_F64] = {"f64", 8},
};

size_t gguf_type_size(int type) { return type >= 0 && type < GGUF_T_COUNT ? TYPES[type].size : 0; }
const char *gguf_type_name(int type) { return type >= 0 && type < GGUF_T_COUNT ? TYPES[type].name : "?"; }

/* ---- cursor ------------------------------------------------------------------ */
typedef struct {
    const uint8_t *p, *end, *base;
    Err *err;
} Cur;

static size_t cur_left(const Cur *c) { return (size_t)(c->end - c->p); }

static int need(Cur *c, uint64_t n, const char *what) {
    if (n > cur_left(c))
        return err_set(c->err, ERR_FORMAT, "truncated at byte %zu reading %s (need %llu bytes, %zu left)",
                       (size_t)(c->p - c->base), what, (unsigned long long)n, cur_left(c));
    return 0;
}

static int rd_u32(Cur *c, uint32_t *v, const char *what) {
    if (need(c, 4, what)) return ERR_FORMAT;
    memcpy(v, c->p, 4);
    c->p += 4;
    return 0;
}

static int rd_u64(Cur *c, uint64_t *v, const char *what) {
    if (need(c, 8, what)) return ERR_FORMAT;
    memcpy(v, c->p, 8);
    c->p += 8;
    return 0;
}

static int rd_str(Cur *c, GGUFStr *s, const char *what) {
    uint64_t n;
    if (rd_u64(c, &n, what)) return ERR_FORMAT;
    if (n > cur_left(c))
        return err_set(c->err, ERR_FORMAT, "%s: string length %llu exceeds the %zu bytes left in the file", what,
                       (unsigned long long)n, cur_left(c));
    s->ptr = (const char *)c->p;
    s->len = n;
    c->p += n;
    return 0;
}

/* Skip one value of type t, validating it; depth bounds nested arrays. */
static int skip_value(Cur *c, int t, int depth, const char *what) {
    if (t < 0 || t >= GGUF_T_COUNT) return err_set(c->err, ERR_FORMAT, "%s: unknown value type %d", what, t);
    if (t == GGUF_T_STRING) {
        GGUFStr s;
        return rd_str(c, &s, what);
    }
    if (t != GGUF_T_ARRAY) return need(c, TYPES[t].size, what) ? ERR_FORMAT : (c->p += TYPES[t].size, 0);
    if (depth >= GGUF_MAX_NESTING) return err_set(c->err, ERR_FORMAT, "%s: arrays nested too deeply", what);
    uint32_t et;
    uint64_t n;
    if (rd_u32(c, &et, what) || rd_u64(c, &n, what)) return ERR_FORMAT;
    if (et >= GGUF_T_COUNT) return err_set(c->err, ERR_FORMAT, "%s: unknown array element type %u", what, et);
    size_t es = TYPES[et].size;
    if (es) {
        if (n > cur_left(c) / es)
            return err_set(c->err, ERR_FORMAT, "%s: array of %llu elements exceeds the file", what,
                           (unsigned long long)n);
        c->p += n * es;
        return 0;
    }
    /* strings take >= 8 bytes each, arrays >= 12: bound n before looping */
    size_t minsz = et == GGUF_T_STRING ? 8 : 12;
    if (n > cur_left(c) / minsz)
        return err_set(c->err, ERR_FORMAT, "%s: array of %llu elements exceeds the file", what, (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++)
        if (skip_value(c, (int)et, depth + 1, what)) return ERR_FORMAT;
    return 0;
}

static int str_cmp(GGUFStr a, GGUFStr b) {
    uint64_t n = a.len < b.len ? a.len : b.len;
    int r = n ? memcmp(a.ptr, b.ptr, n) : 0;
    if (r) return r;
    return a.len < b.len ? -1 : a.len > b.len;
}

int gguf_str_eq(GGUFStr s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

char *gguf_str_copy(GGUFStr s, char *buf, size_t cap) {
    if (!cap) return buf;
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    if (n) memcpy(buf, s.ptr, n);
    buf[n] = 0;
    return buf;
}

static int cmp_str(const void *a, const void *b) { return str_cmp(*(const GGUFStr *)a, *(const GGUFStr *)b); }

/* Name of a duplicated entry via sort + neighbour compare (n can be large in a
 * hostile file, so not O(n^2)). 0 none, 1 found (*dupe set), ERR_NOMEM. */
static int find_dupe(const void *items, size_t stride, int64_t n, GGUFStr *dupe) {
    if (n < 2) return 0;
    GGUFStr *names = malloc((size_t)n * sizeof *names);
    if (!names) return ERR_NOMEM;
    for (int64_t i = 0; i < n; i++) names[i] = *(const GGUFStr *)((const char *)items + (size_t)i * stride);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    int found = 0;
    for (int64_t i = 1; i < n && !found; i++)
        if (str_cmp(names[i - 1], names[i]) == 0) *dupe = names[i], found = 1;
    free(names);
    return found;
}

/* Print-safe prefix of a name for messages. */
static const char *show(GGUFStr s, char *buf, size_t cap) {
    gguf_str_copy(s, buf, cap);
    for (char *q = buf; *q; q++)
        if ((unsigned char)*q < 32 || (unsigned char)*q > 126) *q = '?';
    return buf;
}

static int parse_kv(Cur *c, GGUFKV *kv, int64_t idx) {
    char what[96];
    snprintf(what, sizeof what, "metadata key #%lld", (long long)idx);
    uint32_t t;
    if (rd_str(c, &kv->key, what) || rd_u32(c, &t, what)) return ERR_FORMAT;
    char nb[64];
    snprintf(what, sizeof what, "metadata '%s'", show(kv->key, nb, sizeof nb));
    if (t >= GGUF_T_COUNT) return err_set(c->err, ERR_FORMAT, "%s: unknown value type %u", what, t);
    kv->type = (int)t;
    kv->val = c->p;
    if (t == GGUF_T_ARRAY) {
        uint32_t et;
        if (rd_u32(c, &et, what) || rd_u64(c, &kv->n, what)) return ERR_FORMAT;
        c->p = kv->val;
        kv->elem_type = (int)et;
    }
    if (skip_value(c, (int)t, 0, what)) return ERR_FORMAT;
    kv->val_len = (uint64_t)(c->p - kv->val);
    if (t == GGUF_T_ARRAY) {
        kv->arr = kv->val + 12;
        if (kv->elem_type == GGUF_T_STRING) {
            /* index string elements once so element i is O(1) */
            kv->str_off = malloc((kv->n ? kv->n : 1) * sizeof *kv->str_off);
            if (!kv->str_off) return err_set(c->err, ERR_NOMEM, "out of memory indexing %s", what);
            const uint8_t *q = kv->arr;
            for (uint64_t i = 0; i < kv->n; i++) {
                uint64_t len;
                kv->str_off[i] = (uint64_t)(q - kv->arr);
                memcpy(&len, q, 8); /* already validated by skip_value */
                q += 8 + len;
            }
        }
    }
    return 0;
}

static int parse_tensor(Cur *c, GGUFTensorInfo *ti, int64_t idx) {
    char what[128], nb[64];
    snprintf(what, sizeof what, "tensor info #%lld", (long long)idx);
    uint32_t nd, type;
    if (rd_str(c, &ti->name, what)) return ERR_FORMAT;
    snprintf(what, sizeof what, "tensor '%s'", show(ti->name, nb, sizeof nb));
    if (rd_u32(c, &nd, what)) return ERR_FORMAT;
    if (nd < 1 || nd > GGUF_MAX_DIMS)
        return err_set(c->err, ERR_FORMAT, "%s: %u dimensions (must be 1..%d)", what, nd, GGUF_MAX_DIMS);
    ti->ndim = (int)nd;
    int64_t count = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) ti->ne[d] = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t v;
        if (rd_u64(c, &v, what)) return ERR_FORMAT;
        if (v > (uint64_t)INT64_MAX)
            return err_set(c->err, ERR_FORMAT, "%s: dimension %u is negative or huge", what, d);
        ti->ne[d] = (int64_t)v;
        if (v && count > INT64_MAX / (int64_t)v)
            return err_set(c->err, ERR_FORMAT, "%s: element count overflows", what);
        count *= (int64_t)v;
    }
    if (rd_u32(c, &type, what) || rd_u64(c, &ti->offset, what)) return ERR_FORMAT;
    if (type >= DT_COUNT || dtype_block_size((int)type) <= 0)
        return err_set(c->err, ERR_FORMAT, "%s: unknown tensor type %u", what, type);
    ti->type = (int)type;
    int bs = dtype_block_size(ti->type);
    if (ti->ne[0] % bs)
        return err_set(c->err, ERR_FORMAT, "%s: row of %lld elements is not a multiple of %s's block of %d", what,
                       (long long)ti->ne[0], dtype_name(ti->type), bs);
    uint64_t rows = count && ti->ne[0] ? (uint64_t)(count / ti->ne[0]) : 0;
    uint64_t rb = (uint64_t)(ti->ne[0] / bs) * dtype_block_bytes(ti->type);
    if (rows && rb > UINT64_MAX / rows) return err_set(c->err, ERR_FORMAT, "%s: byte size overflows", what);
    uint64_t nbytes = rb * rows;
    if (nbytes > SIZE_MAX) return err_set(c->err, ERR_FORMAT, "%s: byte size overflows", what);
    ti->nbytes = (size_t)nbytes;
    return 0;
}

static int cmp_off(const void *a, const void *b) {
    const GGUFTensorInfo *x = *(const GGUFTensorInfo *const *)a, *y = *(const GGUFTensorInfo *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int parse(GGUFFile *g, Err *err) {
    Cur c = {g->base, g->base + g->size, g->base, err};
    uint32_t magic;
    if (g->size < 4 || memcmp(g->base, "GGUF", 4) != 0) return err_set(err, ERR_FORMAT, "not a GGUF file (bad magic)");
    if (rd_u32(&c, &magic, "magic") || rd_u32(&c, &g->version, "version")) return ERR_FORMAT;
    if (g->version == 1) return err_set(err, ERR_UNSUPPORTED, "GGUF version 1 is not supported (only 2 and 3)");
    if (g->version != 2 && g->version != 3) {
        if (g->version == 0x02000000u || g->version == 0x03000000u)
            return err_set(err, ERR_UNSUPPORTED, "big-endian GGUF files are not supported");
        return err_set(err, ERR_FORMAT, "unknown GGUF version %u", g->version);
    }
    uint64_t nt, nkv;
    if (rd_u64(&c, &nt, "tensor count") || rd_u64(&c, &nkv, "metadata count")) return ERR_FORMAT;
    /* a key takes >= 13 bytes (length, type, 1-byte value); a tensor info >= 32 */
    if (nkv > cur_left(&c) / 13)
        return err_set(err, ERR_FORMAT, "metadata count %llu exceeds what the file can hold", (unsigned long long)nkv);
    if (nt > cur_left(&c) / 32)
        return err_set(err, ERR_FORMAT, "tensor count %llu exceeds what the file can hold", (unsigned long long)nt);
    g->kv = calloc(nkv ? nkv : 1, sizeof *g->kv);
    g->tensors = calloc(nt ? nt : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) return err_set(err, ERR_NOMEM, "out of memory reading GGUF header");
    for (uint64_t i = 0; i < nkv; i++) {
        g->n_kv = (int64_t)i + 1; /* so close frees str_off of partially parsed keys */
        if (parse_kv(&c, &g->kv[i], (int64_t)i)) return ERR_FORMAT;
    }
    GGUFStr d;
    char nb[64];
    int rc = find_dupe(g->kv, sizeof *g->kv, g->n_kv, &d);
    if (rc == ERR_NOMEM) return err_set(err, ERR_NOMEM, "out of memory");
    if (rc) return err_set(err, ERR_FORMAT, "duplicate metadata key '%s'", show(d, nb, sizeof nb));

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = gguf_find_key(g, "general.alignment");
    if (ai >= 0) {
        const GGUFKV *kv = &g->kv[ai];
        if (kv->type != GGUF_T_U32) return err_set(err, ERR_FORMAT, "general.alignment must be u32");
        uint32_t a;
        memcpy(&a, kv->val, 4);
        /* the GGUF spec: a multiple of 8. Smaller ones would put quantized
         * blocks (2-byte scales) and f32 tensors at misaligned addresses. */
        if (a < 8 || (a & (a - 1)) || a > (1u << 24))
            return err_set(err, ERR_FORMAT, "general.alignment %u is not a power of two from 8 to 16M", a);
        g->alignment = a;
    }

    for (uint64_t i = 0; i < nt; i++)
        if (parse_tensor(&c, &g->tensors[i], (int64_t)i)) return ERR_FORMAT;
    g->n_tensors = (int64_t)nt;
    rc = find_dupe(g->tensors, sizeof *g->tensors, g->n_tensors, &d);
    if (rc == ERR_NOMEM) return err_set(err, ERR_NOMEM, "out of memory");
    if (rc) return err_set(err, ERR_FORMAT, "duplicate tensor name '%s'", show(d, nb, sizeof nb));

    size_t hdr = (size_t)(c.p - g->base);
    size_t data_off = (hdr + g->alignment - 1) / g->alignment * g->alignment;
    g->data_off = data_off;
    if (nt == 0) return 0;
    if (data_off > g->size) return err_set(err, ERR_FORMAT, "file ends before the tensor data section");
    uint64_t data_len = g->size - data_off;

    /* each tensor aligned, inside the data section, and no two overlapping */
    const GGUFTensorInfo **by_off = malloc(nt * sizeof *by_off);
    if (!by_off) return err_set(err, ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; i < nt; i++) {
        GGUFTensorInfo *t = &g->tensors[i];
        by_off[i] = t;
        if (t->offset % g->alignment) {
            free(by_off);
            return err_set(err, ERR_FORMAT, "tensor '%s': offset %llu is not a multiple of the alignment %llu",
                           show(t->name, nb, sizeof nb), (unsigned long long)t->offset,
                           (unsigned long long)g->alignment);
        }
        if (t->offset > data_len || t->nbytes > data_len - t->offset) {
            free(by_off);
            return err_set(err, ERR_FORMAT, "tensor '%s': data [%llu, +%zu) lies outside the file's %llu data bytes",
                           show(t->name, nb, sizeof nb), (unsigned long long)t->offset, t->nbytes,
                           (unsigned long long)data_len);
        }
        t->data = g->base + data_off + t->offset;
    }
    qsort(by_off, nt, sizeof *by_off, cmp_off);
    /* running end of the non-empty tensors so far (an empty tensor between
     * two overlapping ones must not hide the overlap) */
    const GGUFTensorInfo *last = NULL;
    for (uint64_t i = 0; i < nt; i++) {
        const GGUFTensorInfo *b = by_off[i];
        if (!b->nbytes) continue;
        if (last && last->offset + last->nbytes > b->offset) {
            char nb2[64];
            err_set(err, ERR_FORMAT, "tensors '%s' and '%s' overlap", show(last->name, nb, sizeof nb),
                    show(b->name, nb2, sizeof nb2));
            free(by_off);
            return ERR_FORMAT;
        }
        if (!last || b->offset + b->nbytes > last->offset + last->nbytes) last = b;
    }
    free(by_off);
    return 0;
}

int gguf_open_memory(GGUFFile **out, const void *data, size_t len, Err *err) {
    *out = NULL;
    GGUFFile *g = calloc(1, sizeof *g);
    if (!g) return err_set(err, ERR_NOMEM, "out of memory");
    g->base = data;
    g->size = len;
    int rc = parse(g, err);
    if (rc) {
        gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

int gguf_open(GGUFFile **out, const char *path, Err *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return err_set(err, ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(err, ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size < 8) {
        close(fd);
        return err_set(err, ERR_FORMAT, "%s: not a GGUF file (only %lld bytes)", path, (long long)st.st_size);
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return err_set(err, ERR_IO, "cannot map %s: %s", path, strerror(errno));
    GGUFFile *g;
    int rc = gguf_open_memory(&g, m, (size_t)st.st_size, err);
    if (rc) {
        munmap(m, (size_t)st.st_size);
        err_wrap(err, "%s", path);
        return rc;
    }
    g->mapped = 1;
    *out = g;
    return 0;
}

int gguf_load_tensor_data(GGUFFile *g, Err *err) {
    if (!g || g->data_copy || g->data_off >= g->size) return 0;
    const size_t len = g->size - g->data_off;
    uint8_t *dst = xalloc(len, err);
    if (!dst) return err_wrap(err, "copying %zu bytes of tensor data", len);
    const uint8_t *src = g->base + g->data_off;
    const size_t piece = (size_t)8 << 20, page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t o = 0; o < len; o += piece) {
        const size_t n = len - o < piece ? len - o : piece;
        memcpy(dst + o, src + o, n);
        if (g->mapped) { /* whole pages inside this piece only */
            uintptr_t lo = ((uintptr_t)(src + o) + page - 1) & ~(uintptr_t)(page - 1);
            uintptr_t hi = (uintptr_t)(src + o + n) & ~(uintptr_t)(page - 1);
            if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
        }
    }
    for (int64_t i = 0; i < g->n_tensors; i++)
        g->tensors[i].data = dst + ((const uint8_t *)g->tensors[i].data - src);
    g->data_copy = dst;
    return 0;
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
/* Drop [off, off+len) of the file at path from the page cache after
 * unmapping it from [p, p+len) here, then read it back through the mapping
 * (2 MiB-page readahead under MADV_HUGEPAGE). */
static void reread_huge(const char *path, uint8_t *p, size_t off, size_t len) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return;
    (void)madvise(p, len, MADV_DONTNEED);
    (void)posix_fadvise(fd, (off_t)off, (off_t)len, POSIX_FADV_DONTNEED);
    close(fd);
    (void)madvise(p, len, MADV_POPULATE_READ);
}

int gguf_map_tensor_data(GGUFFile *g, const char *path) {
    const uintptr_t huge = (uintptr_t)2 << 20;
    if (!g || !g->mapped || g->data_copy || g->data_off >= g->size) return 0;
    const uintptr_t base = (uintptr_t)g->base, lo = (base + g->data_off + huge - 1) & ~(huge - 1);
    const uintptr_t hi = (base + g->size) & ~(huge - 1);
    if (hi <= lo || (lo - base) % huge) return 0; /* too small, or the file offset not 2 MiB-aligned in memory */
    uint8_t *p = (uint8_t *)lo;
    const size_t len = hi - lo;
    if (madvise(p, len, MADV_HUGEPAGE) || madvise(p, len, MADV_POPULATE_READ)) return 0;
    if (mem_file_pmd_bytes(p) >= len / 10 * 9) return 1;
    /* small pages cached: one 2 MiB test, then the rest if it took */
    reread_huge(path, p, lo - base, huge);
    if (mem_file_pmd_bytes(p) < huge) return 0;
    reread_huge(path, p, lo - base, len);
    return mem_file_pmd_bytes(p) >= len / 10 * 9;
}

int gguf_data_is_copy(const GGUFFile *g) { return g && g->data_copy != NULL; }

void gguf_close(GGUFFile *g) {
    if (!g) return;
    xfree(g->data_copy);
    if (g->kv)
        for (int64_t i = 0; i < g->n_kv; i++) free(g->kv[i].str_off);
    free(g->kv);
    free(g->tensors);
    if (g->mapped) munmap((void *)g->base, g->size);
    free(g);
}

/* ---- accessors ------------------------------------------------------------------ */
uint32_t gguf_version(const GGUFFile *g) { return g->version; }
uint64_t gguf_alignment(const GGUFFile *g) { return g->alignment; }
size_t gguf_data_offset(const GGUFFile *g) { return g->data_off; }
int64_t gguf_n_kv(const GGUFFile *g) { return g->n_kv; }

GGUFStr gguf_kv_key(const GGUFFile *g, int64_t i) {
    GGUFStr none = {NULL, 0};
    return i >= 0 && i < g->n_kv ? g->kv[i].key : none;
}

int gguf_kv_type(const GGUFFile *g, int64_t i) { return i >= 0 && i < g->n_kv ? g->kv[i].type : -1; }

int64_t gguf_find_key(const GGUFFile *g, const char *key) {
    const size_t n = strlen(key); /* once, not once per key: readers look a token array up per element */
    for (int64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key.len == n && (n == 0 || memcmp(g->kv[i].key.ptr, key, n) == 0)) return i;
    return -1;
}

/* Decode one fixed-size scalar at p of type t. Integers into *iv (is_int=1),
 * floats into *fv; u64 beyond int64 sets *big. */
static void scalar(const uint8_t *p, int t, int64_t *iv, double *fv, int *is_int, int *big) {
    *is_int = 1;
    *big = 0;
    switch (t) {
    case GGUF_T_U8: *iv = p[0]; break;
    case GGUF_T_I8: *iv = (int8_t)p[0]; break;
    case GGUF_T_BOOL: *iv = p[0] != 0; break;
    case GGUF_T_U16: { uint16_t v; memcpy(&v, p, 2); *iv = v; break; }
    case GGUF_T_I16: { int16_t v; memcpy(&v, p, 2); *iv = v; break; }
    case GGUF_T_U32: { uint32_t v; memcpy(&v, p, 4); *iv = v; break; }
    case GGUF_T_I32: { int32_t v; memcpy(&v, p, 4); *iv = v; break; }
    case GGUF_T_U64: { uint64_t v; memcpy(&v, p, 8); *iv = (int64_t)v; *big = v > (uint64_t)INT64_MAX; *fv = (double)v; return; }
    case GGUF_T_I64: { int64_t v; memcpy(&v, p, 8); *iv = v; break; }
    case GGUF_T_F32: { float v; memcpy(&v, p, 4); *fv = v; *is_int = 0; return; }
    case GGUF_T_F64: { double v; memcpy(&v, p, 8); *fv = v; *is_int = 0; return; }
    default: *is_int = 0; *fv = 0; return;
    }
    *fv = (double)*iv;
}

static const GGUFKV *lookup(const GGUFFile *g, const char *key, Err *err) {
    int64_t i = gguf_find_key(g, key);
    if (i < 0) {
        err_set(err, ERR_INVALID, "GGUF key '%s' not found", key);
        return NULL;
    }
    return &g->kv[i];
}

static int get_num(const uint8_t *p, int t, const char *key, int want_int, int64_t *iv, double *fv, Err *err) {
    if (!gguf_type_size(t))
        return err_set(err, ERR_FORMAT, "GGUF key '%s' is a %s, not a number", key, gguf_type_name(t));
    int is_int, big;
    scalar(p, t, iv, fv, &is_int, &big);
    if (want_int && !is_int) return err_set(err, ERR_FORMAT, "GGUF key '%s' is a %s, not an integer", key, gguf_type_name(t));
    if (want_int && big) return err_set(err, ERR_FORMAT, "GGUF key '%s' does not fit in int64", key);
    return 0;
}

int gguf_get_int(const GGUFFile *g, const char *key, int64_t *out, Err *err) {
    const GGUFKV *kv = lookup(g, key, err);
    double f;
    return kv ? get_num(kv->val, kv->type, key, 1, out, &f, err) : ERR_INVALID;
}

int gguf_get_float(const GGUFFile *g, const char *key, double *out, Err *err) {
    const GGUFKV *kv = lookup(g, key, err);
    int64_t i;
    return kv ? get_num(kv->val, kv->type, key, 0, &i, out, err) : ERR_INVALID;
}

int gguf_get_str(const GGUFFile *g, const char *key, GGUFStr *out, Err *err) {
    const GGUFKV *kv = lookup(g, key, err);
    if (!kv) return ERR_INVALID;
    if (kv->type != GGUF_T_STRING)
        return err_set(err, ERR_FORMAT, "GGUF key '%s' is a %s, not a string", key, gguf_type_name(kv->type));
    memcpy(&out->len, kv->val, 8);
    out->ptr = (const char *)kv->val + 8;
    return 0;
}

/* Array element i of key; NULL with *rc set (and err filled) on failure. */
static const GGUFKV *lookup_arr(const GGUFFile *g, const char *key, uint64_t i, int *rc, Err *err) {
    const GGUFKV *kv = lookup(g, key, err);
    *rc = ERR_INVALID;
    if (!kv) return NULL;
    if (kv->type != GGUF_T_ARRAY) {
        *rc = err_set(err, ERR_FORMAT, "GGUF key '%s' is a %s, not an array", key, gguf_type_name(kv->type));
        return NULL;
    }
    if (i >= kv->n) {
        *rc = err_set(err, ERR_INVALID, "GGUF array '%s': index %llu out of range (%llu elements)", key,
                      (unsigned long long)i, (unsigned long long)kv->n);
        return NULL;
    }
    *rc = 0;
    return kv;
}

int gguf_get_arr_info(const GGUFFile *g, const char *key, int *elem_type, uint64_t *n, Err *err) {
    const GGUFKV *kv = lookup(g, key, err);
    if (!kv) return ERR_INVALID;
    if (kv->type != GGUF_T_ARRAY)
        return err_set(err, ERR_FORMAT, "GGUF key '%s' is a %s, not an array", key, gguf_type_name(kv->type));
    *elem_type = kv->elem_type;
    *n = kv->n;
    return 0;
}

int gguf_get_arr_str(const GGUFFile *g, const char *key, uint64_t i, GGUFStr *out, Err *err) {
    int rc;
    const GGUFKV *kv = lookup_arr(g, key, i, &rc, err);
    if (!kv) return rc;
    if (kv->elem_type != GGUF_T_STRING)
        return err_set(err, ERR_FORMAT, "GGUF array '%s' holds %s, not strings", key, gguf_type_name(kv->elem_type));
    const uint8_t *p = kv->arr + kv->str_off[i];
    memcpy(&out->len, p, 8);
    out->ptr = (const char *)p + 8;
    return 0;
}

static int arr_num(const GGUFFile *g, const char *key, uint64_t i, int want_int, int64_t *iv, double *fv, Err *err) {
    int rc;
    const GGUFKV *kv = lookup_arr(g, key, i, &rc, err);
    if (!kv) return rc;
    size_t es = gguf_type_size(kv->elem_type);
    if (!es) return err_set(err, ERR_FORMAT, "GGUF array '%s' holds %s, not numbers", key, gguf_type_name(kv->elem_type));
    return get_num(kv->arr + i * es, kv->elem_type, key, want_int, iv, fv, err);
}

int gguf_get_arr_int(const GGUFFile *g, const char *key, uint64_t i, int64_t *out, Err *err) {
    double f;
    return arr_num(g, key, i, 1, out, &f, err);
}

int gguf_get_arr_float(const GGUFFile *g, const char *key, uint64_t i, double *out, Err *err) {
    int64_t v;
    return arr_num(g, key, i, 0, &v, out, err);
}

const void *gguf_get_arr_data(const GGUFFile *g, const char *key, int *elem_type, uint64_t *n) {
    int64_t i = gguf_find_key(g, key);
    if (i < 0 || g->kv[i].type != GGUF_T_ARRAY || !gguf_type_size(g->kv[i].elem_type)) return NULL;
    if (elem_type) *elem_type = g->kv[i].elem_type;
    if (n) *n = g->kv[i].n;
    return g->kv[i].arr;
}

int64_t gguf_n_tensors(const GGUFFile *g) { return g->n_tensors; }

const GGUFTensorInfo *gguf_tensor(const GGUFFile *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const GGUFTensorInfo *gguf_find_tensor(const GGUFFile *g, const char *name) {
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (gguf_str_eq(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}
