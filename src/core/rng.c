#include "core.h"

#include <math.h>

/* splitmix64 finaliser: a bijective mix with good avalanche, enough for
 * initialisation, sampling and data order (not for cryptography). */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t rng_key(uint64_t seed, uint64_t a, uint64_t b) {
    return mix64(mix64(mix64(seed + 0x9e3779b97f4a7c15ULL) ^ a) + b);
}

uint64_t rng_u64(uint64_t key, uint64_t counter) {
    return mix64(key ^ mix64(counter + 0x9e3779b97f4a7c15ULL));
}

float rng_uniform(uint64_t key, uint64_t counter) {
    return (float)(rng_u64(key, counter) >> 40) * (1.0f / 16777216.0f);
}

float rng_normal(uint64_t key, uint64_t counter) {
    /* Box-Muller on two independent draws of the same counter. */
    uint64_t r = rng_u64(key, counter);
    double u1 = ((double)(r >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = (double)(rng_u64(key ^ 0x5bd1e995ULL, counter) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
