/* Bounded-time mutation fuzz of the GGUF reader: mutate a valid file made by
 * the writer (bit flips, extreme integers at random or length-field
 * offsets, truncation, splices, duplicated ranges), open it from an
 * exact-size heap copy and walk every accessor. It must never crash; run
 * under the sanitizer build (cmake -DJARIP_SANITIZE=ON) it also proves no
 * out-of-bounds read. JARIP_FUZZ_ITERS / JARIP_FUZZ_SECONDS bound the run,
 * JARIP_FUZZ_SEED picks another mutation sequence. */
#include "test_gguf_exercise.h"

#include <stdint.h>

static uint64_t next(uint64_t *s) { /* splitmix64: deterministic per seed */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static const uint64_t EXTREMES[] = {0, 1, 2, 3, 7, 8, 12, 13, 31, 32, 33, 63, 64, 255, 256, 0x7FFFFFFF, 0x80000000u,
                                    0xFFFFFFFFu, 1ull << 32, 1ull << 40, 1ull << 62, 0x7FFFFFFFFFFFFFFFull,
                                    0x8000000000000000ull, ~0ull, ~0ull - 31};

static size_t mutate(const unsigned char *src, size_t n, unsigned char *dst, size_t cap, uint64_t *rng) {
    size_t len = n;
    memcpy(dst, src, n);
    int k = 1 + (int)(next(rng) % 4);
    for (int m = 0; m < k; m++) {
        uint64_t r = next(rng);
        size_t pos = len ? (size_t)(next(rng) % len) : 0;
        switch (r % 8) {
        case 0: /* bit flip */
            if (len) dst[pos] ^= (unsigned char)(1u << (r >> 8) % 8);
            break;
        case 1: /* random byte */
            if (len) dst[pos] = (unsigned char)(r >> 16);
            break;
        case 2: case 3: { /* extreme 8- or 4-byte integer, often at an 8-aligned (length-like) offset */
            uint64_t v = EXTREMES[(r >> 8) % (sizeof EXTREMES / sizeof *EXTREMES)];
            size_t w = (r >> 20) & 1 ? 8 : 4;
            if (r % 8 == 3) pos &= ~(size_t)7;
            if (pos + w <= len) memcpy(dst + pos, &v, w);
            break;
        }
        case 4: /* truncate */
            len = pos;
            break;
        case 5: { /* delete a range */
            size_t l = (size_t)(next(rng) % 16);
            if (pos + l <= len) memmove(dst + pos, dst + pos + l, len - pos - l), len -= l;
            break;
        }
        case 6: { /* duplicate a range */
            size_t l = (size_t)(next(rng) % 32);
            if (pos + l <= len && len + l <= cap) memmove(dst + pos + l, dst + pos, len - pos), len += l;
            break;
        }
        case 7: /* small integer tweak */
            if (len) dst[pos] = (unsigned char)(dst[pos] + (int)((r >> 8) % 5) - 2);
            break;
        }
    }
    return len;
}

int main(void) {
    void *sample;
    size_t n;
    if (make_sample(&sample, &n)) return fprintf(stderr, "cannot make sample\n"), 1;
    const char *it_env = getenv("JARIP_FUZZ_ITERS"), *sec_env = getenv("JARIP_FUZZ_SECONDS");
    long iters = it_env ? atol(it_env) : 200000;
    double seconds = sec_env ? atof(sec_env) : 20.0;
    const size_t cap = n + 4096;
    unsigned char *buf = malloc(cap);
    const char *seed_env = getenv("JARIP_FUZZ_SEED");
    uint64_t rng = seed_env ? strtoull(seed_env, NULL, 10) : 12345, sum = 0;
    long opened = 0, i;
    double t0 = time_now();
    for (i = 0; i < iters && time_now() - t0 < seconds; i++) {
        size_t len = mutate(sample, n, buf, cap, &rng);
        unsigned char *exact = malloc(len ? len : 1); /* exact size: ASan catches overreads */
        memcpy(exact, buf, len);
        GGUFFile *g;
        Err e;
        if (gguf_open_memory(&g, exact, len, &e) == 0) {
            opened++;
            sum += exercise(g);
            gguf_close(g);
        } else if (!e.msg[0]) {
            fprintf(stderr, "FAIL: error without a message (iteration %ld)\n", i);
            return 1;
        }
        free(exact);
    }
    printf("test_gguf_fuzz: %ld mutated files, %ld opened, %ld rejected, no crash (checksum %llu)\n", i, opened,
           i - opened, (unsigned long long)sum);
    free(buf);
    free(sample);
    if (i < 1000) return fprintf(stderr, "FAIL: only %ld iterations ran\n", i), 1;
    return 0;
}
