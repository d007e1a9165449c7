/* The unit tests' one assertion: count and report a failure, keep going,
 * so one run shows every broken case. main() returns failures != 0. */
#ifndef JARIP_TEST_CHECK_H
#define JARIP_TEST_CHECK_H

#include <stdio.h>

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

#endif
