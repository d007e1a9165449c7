/* io/gguf: GGUF v2/v3 reader (mmap, validated) and writer (atomic).
 *
 * The reader maps the file read-only and checks every count, string length,
 * dimension, offset and size against the file before exposing anything, so a
 * hostile or truncated file yields an error and never an out-of-bounds read.
 * All strings and tensor data returned point into the mapping and stay valid
 * until gguf_close(). Strings are NOT NUL-terminated (GGUFStr has a length).
 *
 * Tensor types are the DType ids of kernels/kernels.h (GGML's type ids). */
#ifndef JARIP_IO_GGUF_H
#define JARIP_IO_GGUF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/core.h"

typedef struct {
    const char *ptr; /* into the mapping (or writer memory); not NUL-terminated */
    uint64_t len;
} GGUFStr;

enum GGUFValueType {
    GGUF_T_U8 = 0, GGUF_T_I8 = 1, GGUF_T_U16 = 2, GGUF_T_I16 = 3, GGUF_T_U32 = 4, GGUF_T_I32 = 5,
    GGUF_T_F32 = 6, GGUF_T_BOOL = 7, GGUF_T_STRING = 8, GGUF_T_ARRAY = 9, GGUF_T_U64 = 10,
    GGUF_T_I64 = 11, GGUF_T_F64 = 12, GGUF_T_COUNT = 13
};

typedef struct {
    GGUFStr name;
    int ndim;          /* 1..4 */
    int64_t ne[4];     /* ne[0] is the fastest-varying dimension, as in the file; unused = 1 */
    int type;          /* DType of kernels.h */
    uint64_t offset;   /* relative to the start of the data section */
    const void *data;  /* into the mapping */
    size_t nbytes;     /* exact bytes of the tensor */
} GGUFTensorInfo;

typedef struct GGUFFile GGUFFile;

/* ---- reader ---------------------------------------------------------------- */
/* Map path and validate header, metadata, tensor infos and data layout.
 * On success *out owns the mapping; free with gguf_close(). */
int gguf_open(GGUFFile **out, const char *path, Err *err);
/* Same checks on a caller-owned buffer (not copied; must outlive the GGUFFile).
 * Used by tests and the fuzzer. */
int gguf_open_memory(GGUFFile **out, const void *data, size_t len, Err *err);
void gguf_close(GGUFFile *g); /* NULL is fine */
/* Copy the tensor data section out of the file mapping into anonymous
 * memory backed by 2 MiB pages, and point every tensor info there.
 * Generation streams all weights once per token: from 4 KiB file pages the
 * TLB misses cost 10-20% of the F16 matrix-vector speed (bench/tg_hugepages.c).
 * The copy goes in 8 MiB pieces, each piece of the mapping dropped after it
 * is copied, so resident memory does not double while loading. */
int gguf_load_tensor_data(GGUFFile *g, Err *err);
/* The alternative to the copy: keep the tensor data in the file mapping
 * and ask the kernel to map the file's page cache with 2 MiB pages
 * (MADV_HUGEPAGE, then MADV_POPULATE_READ; Linux maps large page-cache
 * folios of files on ext4 and xfs that way; seen on 6.18). Where the pages already
 * cached are small (the file was written or read without the advice), the
 * first aligned 2 MiB are dropped from the cache and read again as a test:
 * if they come back as one 2 MiB page, so is the rest. Returns 1 when at
 * least 90% of the data section ends up in 2 MiB pages (decode then reads
 * as fast as from the copy, with no copy, no fresh memory and the page cache
 * shared with other processes), 0 otherwise (nothing is lost: the caller
 * copies with gguf_load_tensor_data). path is the file g was opened from. */
int gguf_map_tensor_data(GGUFFile *g, const char *path);
/* Whether g's tensor data is that private copy (writable: the file and
 * its mapping are never written through it). */
int gguf_data_is_copy(const GGUFFile *g);

uint32_t gguf_version(const GGUFFile *g);
uint64_t gguf_alignment(const GGUFFile *g);   /* general.alignment or 32 */
size_t gguf_data_offset(const GGUFFile *g);   /* file offset of the tensor data section */

int64_t gguf_n_kv(const GGUFFile *g);
GGUFStr gguf_kv_key(const GGUFFile *g, int64_t i);  /* {NULL,0} when i is out of range */
int gguf_kv_type(const GGUFFile *g, int64_t i);     /* enum GGUFValueType, -1 when out of range */
int64_t gguf_find_key(const GGUFFile *g, const char *key); /* index or -1 */

/* Scalar getters by key. ERR_INVALID when missing, ERR_FORMAT when the type
 * does not fit (e.g. a string asked as int, or a u64 beyond int64 range). */
int gguf_get_int(const GGUFFile *g, const char *key, int64_t *out, Err *err);   /* any integer or bool */
int gguf_get_float(const GGUFFile *g, const char *key, double *out, Err *err);  /* f32/f64 or integer */
int gguf_get_str(const GGUFFile *g, const char *key, GGUFStr *out, Err *err);

/* Arrays: element type (enum GGUFValueType) and count, then element access by
 * index (bounds-checked; nested arrays are validated but not readable here). */
int gguf_get_arr_info(const GGUFFile *g, const char *key, int *elem_type, uint64_t *n, Err *err);
int gguf_get_arr_str(const GGUFFile *g, const char *key, uint64_t i, GGUFStr *out, Err *err);
int gguf_get_arr_int(const GGUFFile *g, const char *key, uint64_t i, int64_t *out, Err *err);
int gguf_get_arr_float(const GGUFFile *g, const char *key, uint64_t i, double *out, Err *err);
/* Raw pointer to a fixed-size-element array's data (e.g. i32 token types,
 * f32 scores) for fast bulk reads; elements are little-endian and possibly
 * unaligned (use memcpy). NULL for string/array elements or a missing key. */
const void *gguf_get_arr_data(const GGUFFile *g, const char *key, int *elem_type, uint64_t *n);

int64_t gguf_n_tensors(const GGUFFile *g);
const GGUFTensorInfo *gguf_tensor(const GGUFFile *g, int64_t i);      /* NULL when out of range */
const GGUFTensorInfo *gguf_find_tensor(const GGUFFile *g, const char *name); /* NULL when absent */

/* Helpers: compare a GGUFStr with a C string; copy into a NUL-terminated buffer
 * (truncating; returns buf). */
int gguf_str_eq(GGUFStr s, const char *c);
char *gguf_str_copy(GGUFStr s, char *buf, size_t cap);

/* Print metadata (long arrays abbreviated), a tensor table (name, shape, type,
 * bytes) and a final line "parameters: N" to f. */
int gguf_print_info(const GGUFFile *g, FILE *f, Err *err);

/* ---- writer ------------------------------------------------------------------ */
/* Collects keys and tensors in order, then writes a GGUF v3 file atomically
 * (temp + fsync + rename). Setting an existing key replaces its value.
 * Keys and string values are copied. Setter return 0 or ERR_NOMEM/ERR_INVALID. */
typedef struct GGUFWriter GGUFWriter;

GGUFWriter *gguf_writer_create(void); /* NULL on out of memory */
void gguf_writer_free(GGUFWriter *w);
/* Tensor data alignment (power of two, default 32); also writes general.alignment
 * when it differs from 32. */
int gguf_writer_set_alignment(GGUFWriter *w, uint32_t alignment); /* a power of two >= 8 */

int gguf_writer_set_u8(GGUFWriter *w, const char *key, uint8_t v);
int gguf_writer_set_i8(GGUFWriter *w, const char *key, int8_t v);
int gguf_writer_set_u16(GGUFWriter *w, const char *key, uint16_t v);
int gguf_writer_set_i16(GGUFWriter *w, const char *key, int16_t v);
int gguf_writer_set_u32(GGUFWriter *w, const char *key, uint32_t v);
int gguf_writer_set_i32(GGUFWriter *w, const char *key, int32_t v);
int gguf_writer_set_u64(GGUFWriter *w, const char *key, uint64_t v);
int gguf_writer_set_i64(GGUFWriter *w, const char *key, int64_t v);
int gguf_writer_set_f32(GGUFWriter *w, const char *key, float v);
int gguf_writer_set_f64(GGUFWriter *w, const char *key, double v);
int gguf_writer_set_bool(GGUFWriter *w, const char *key, int v);
int gguf_writer_set_str(GGUFWriter *w, const char *key, const char *v); /* NUL-terminated */
int gguf_writer_set_strn(GGUFWriter *w, const char *key, const char *v, uint64_t len);

/* lens may be NULL (then each v[i] is NUL-terminated). */
int gguf_writer_set_arr_str(GGUFWriter *w, const char *key, const char *const *v, const uint64_t *lens,
                            uint64_t n);
int gguf_writer_set_arr_i32(GGUFWriter *w, const char *key, const int32_t *v, uint64_t n);
int gguf_writer_set_arr_f32(GGUFWriter *w, const char *key, const float *v, uint64_t n);
/* Any fixed-size element type (u8..f64 except string/array), n elements of
 * the type's size, copied. */
int gguf_writer_set_arr(GGUFWriter *w, const char *key, int elem_type, const void *v, uint64_t n);

/* Copy every key of g (except general.alignment) into w, preserving order and
 * types, including nested arrays. Used by `jarip quantize`. */
int gguf_writer_copy_kv(GGUFWriter *w, const GGUFFile *g, Err *err);

/* Add a tensor. ne[0] is the fastest dimension. nbytes must equal
 * ne[1]*ne[2]*ne[3] * dtype_row_bytes(type, ne[0]). data is referenced (not
 * copied) and must stay valid until gguf_writer_write(); use
 * gguf_writer_add_tensor_copy to hand over a copy. */
int gguf_writer_add_tensor(GGUFWriter *w, const char *name, int ndim, const int64_t *ne, int type,
                           const void *data, size_t nbytes);
int gguf_writer_add_tensor_copy(GGUFWriter *w, const char *name, int ndim, const int64_t *ne, int type,
                                const void *data, size_t nbytes);

/* Serialize everything to path atomically. The writer can be written again. */
int gguf_writer_write(GGUFWriter *w, const char *path, Err *err);
/* Serialize into a malloc'd buffer (tests, fuzzing); caller frees *out. */
int gguf_writer_to_memory(GGUFWriter *w, void **out, size_t *len, Err *err);

/* ---- quantize a whole file (`jarip quantize`) -------------------------------------
 * Every 2+-D tensor becomes `type`; 1-D tensors (norms, biases) stay or become
 * F32. A row length that is not a multiple of the type's block falls back as
 * llama.cpp does (q4_k -> q5_0, q5_k -> q5_1, q6_k -> q8_0, others -> f16).
 * Unless GGUF_QUANT_PURE, the output projection (output.weight, or
 * token_embd.weight when embeddings are tied) gets q6_k, or q8_0 when its
 * rows do not fit 256-blocks, for quantized targets of lower precision.
 * Sources of any type dequant_row can read are converted through f32. */
enum { GGUF_QUANT_PURE = 1 };
typedef struct {
    const char *name;      /* NUL-terminated copy */
    int ndim;
    const int64_t *ne;
    int src_type, dst_type;
    size_t src_bytes, dst_bytes;
    const char *why;       /* NULL, or why dst_type differs from the requested type */
} GGUFQuantTensor;
typedef void (*GGUFQuantCallback)(void *ctx, const GGUFQuantTensor *t);
/* Writes out atomically; on_tensor (may be NULL) is called per tensor. */
int gguf_quantize_file(const char *in, const char *out, int type, int flags, GGUFQuantCallback on_tensor, void *ctx,
                       Err *err);
/* GGML's general.file_type (llama_ftype) for a whole-file type, -1 if none. */
int gguf_file_type_for(int dtype);

#endif
