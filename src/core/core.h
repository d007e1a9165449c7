/* core: errors, reproducible random numbers, atomic file output, checksums,
 * timing. Everything above depends on this folder; it depends on nothing. */
#ifndef JARIP_CORE_H
#define JARIP_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- errors ----------------------------------------------------------
 * Library functions return 0 on success or a non-zero code and fill an Err
 * with a one-line message. Only cli/ prints and exits. */
enum { ERR_OK = 0, ERR_INVALID = 1, ERR_IO = 2, ERR_NOMEM = 3, ERR_FORMAT = 4, ERR_UNSUPPORTED = 5 };

typedef struct {
    int code;
    char msg[512];
} Err;

/* Fill err (may be NULL) with a formatted message; returns code. */
int err_set(Err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prefix an existing message with context ("loading x: <old message>"). */
int err_wrap(Err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- memory ---------------------------------------------------------- */
/* 64-byte aligned, zeroed allocation; NULL (and err set) on failure. */
void *xalloc(size_t bytes, Err *err);
void xfree(void *p);
/* memset(p, 0, bytes), by all threads for large buffers (first-touch page
 * faults in parallel). */
void mem_zero(void *p, size_t bytes);
/* Ask the kernel to back [p, p+bytes) with 2 MiB pages where whole aligned
 * 2 MiB ranges fit (transparent huge pages in `madvise` mode). Call before
 * the first touch. For the multi-hundred-MB weight, gradient and activation
 * buffers whose GEMM operands span many 4 KiB pages, fewer TLB misses; a
 * hint only: no effect, and no error, where the kernel declines. */
void mem_hint_hugepages(void *p, size_t bytes);
/* Bytes of the mapping that contains p which the kernel maps with 2 MiB
 * pages of a file's page cache (FilePmdMapped of /proc/self/smaps); 0 when
 * none, or when /proc cannot tell. */
size_t mem_file_pmd_bytes(const void *p);

/* ---- random numbers --------------------------------------------------
 * Counter-based: the value depends only on (key, counter), so any thread,
 * rank or resumed run that asks for the same pair gets the same number. */
uint64_t rng_key(uint64_t seed, uint64_t a, uint64_t b); /* derive a stream key */
uint64_t rng_u64(uint64_t key, uint64_t counter);
float rng_uniform(uint64_t key, uint64_t counter);        /* [0, 1) */
float rng_normal(uint64_t key, uint64_t counter);         /* N(0, 1) */

/* ---- files ------------------------------------------------------------ */
/* Write bytes to path atomically: temp file in the same directory, fsync,
 * rename. On failure the previous file (if any) is untouched. */
int file_write_atomic(const char *path, const void *data, size_t len, Err *err);
/* Read a whole file into a malloc'd buffer (NUL-terminated for text use). */
int file_read_all(const char *path, char **data, size_t *len, Err *err);
int fsync_dir(const char *dir);
int mkdir_p(const char *dir, Err *err);
/* Remove a directory tree (used to drop a stale temporary checkpoint). */
int rm_rf(const char *path);

/* CRC-32 (zlib polynomial); pass crc=0 to start. */
uint32_t crc32_update(uint32_t crc, const void *data, size_t len);

/* ---- time -------------------------------------------------------------- */
double time_now(void); /* seconds, monotonic */

#endif
