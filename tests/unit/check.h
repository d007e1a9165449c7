/* The unit tests' one assertion: count and report a failure, keep going,
 * so one run shows every broken case. main() returns failures != 0. */
#ifndef JARIP_TEST_CHECK_H
#define JARIP_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define CHECK(c, ...)                                                        \
    do {                                                                     \
        if (!(c)) {                                                          \
            failures++;                                                      \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);             \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
        }                                                                    \
    } while (0)

/* rel (e.g. "models/x.gguf") under the repository root, found from this
 * header's own path (tests/unit/check.h); malloc'd. */
static inline char *test_root_path(const char *rel) {
    const char *me = __FILE__, *cut = strstr(me, "tests/unit/");
    size_t n = cut ? (size_t)(cut - me) : 0;
    char *p = malloc(n + strlen(rel) + 3);
    if (!p) return NULL;
    if (n) memcpy(p, me, n);
    else p[n++] = '.', p[n++] = '/';
    strcpy(p + n, rel);
    return p;
}

#endif
