/* Helpers shared by the libFuzzer targets (tests/fuzz/fuzz_*.c, built by
 * bench/fuzz.sh): cutting one input into the several files a reader takes,
 * and a private scratch directory for readers that only take paths. */
#ifndef JARIP_FUZZ_UTIL_H
#define JARIP_FUZZ_UTIL_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"

/* Parts of a multi-file input are separated by this line (it is in every
 * such target's dictionary, so mutations keep and move it). */
#define FUZZ_SEP "\n--8<--\n"
#define FUZZ_SEP_LEN 8

typedef struct {
    const uint8_t *p;
    size_t n;
} FuzzPart;

/* Cut data into at most max parts at FUZZ_SEP; missing parts are empty.
 * Returns the number of parts found. */
static inline int fuzz_split(const uint8_t *data, size_t size, FuzzPart *parts, int max) {
    int k = 0;
    size_t start = 0;
    for (int i = 0; i < max; i++) parts[i] = (FuzzPart){data + size, 0};
    /* memmem, not a memcmp per byte: libFuzzer traces every memcmp, and that
     * was a third of fuzz_checkpoint's time on a 30 KB model.bin */
    while (k < max - 1) {
        const uint8_t *hit = memmem(data + start, size - start, FUZZ_SEP, FUZZ_SEP_LEN);
        if (!hit) break;
        parts[k++] = (FuzzPart){data + start, (size_t)(hit - (data + start))};
        start = (size_t)(hit - data) + FUZZ_SEP_LEN;
    }
    parts[k++] = (FuzzPart){data + start, size - start};
    return k;
}

/* A NUL-terminated malloc'd copy (text parsers take C strings). */
static inline char *fuzz_strndup(const uint8_t *p, size_t n) {
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, p, n);
    s[n] = 0;
    return s;
}

static char fuzz_dir_path[256];
static inline void fuzz_dir_remove(void) { rm_rf(fuzz_dir_path); }

/* This process's scratch directory (created once, under /dev/shm where it
 * exists, else $TMPDIR or /tmp; removed at exit). */
static inline const char *fuzz_dir(void) {
    char *dir = fuzz_dir_path;
    if (!dir[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(dir, sizeof fuzz_dir_path, "%s/jarip-fuzz.XXXXXX", base);
        if (!mkdtemp(dir)) abort();
        atexit(fuzz_dir_remove);
    }
    return dir;
}

/* Write (p, n) to DIR/name, replacing it; returns the path (static buffer
 * per call site is the caller's: pass out, 512 bytes). */
static inline void fuzz_put_file(const char *name, const uint8_t *p, size_t n, char *out) {
    snprintf(out, 512, "%s/%s", fuzz_dir(), name);
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) abort();
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) abort();
        p += w;
        n -= (size_t)w;
    }
    close(fd);
}

#endif
