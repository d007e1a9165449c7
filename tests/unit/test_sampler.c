/* sampler_next's top-k / top-p cut (a partial selection, sampler.c) picks
 * exactly the token that sorting every candidate and cutting would: for
 * random and tied logits, vocabularies from 1 token to 49152, and top-k /
 * top-p / min-p settings whose nucleus ends inside the first sorted head
 * (64 tokens), in a later one, or never (top-p 1 - tiny). The reference
 * here reads the sampler's own probabilities (s.probs after the call) and
 * sorts them all with a plain comparison, then draws as sampler.c does. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "infer/sampler.h"

static const float *g_p; /* qsort's comparison reads the probabilities here */

static int by_prob_then_id(const void *a, const void *b) {
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (g_p[x] != g_p[y]) return g_p[x] > g_p[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* The token a full sort gives for probabilities p (V) under o and draw. */
static int32_t reference(const float *p, int V, const SamplerOptions *o, uint64_t draw) {
    int32_t *idx = malloc((size_t)V * sizeof *idx);
    float pmax = 0;
    for (int i = 0; i < V; i++) pmax = p[i] > pmax ? p[i] : pmax;
    int n = 0;
    for (int i = 0; i < V; i++) /* sampler.c's min-p floor: min_p x p(most likely) */
        if (p[i] >= o->min_p * pmax) idx[n++] = i;
    g_p = p;
    qsort(idx, (size_t)n, sizeof *idx, by_prob_then_id);
    if (o->top_k > 0 && o->top_k < n) n = o->top_k;
    double cum = 0.0;
    for (int i = 0; i < n && o->top_p < 1.0f; i++)
        if ((cum += p[idx[i]]) >= o->top_p) n = i + 1;
    double total = 0.0;
    for (int i = 0; i < n; i++) total += p[idx[i]];
    const double r = rng_uniform(rng_key(o->seed, 0x73616d70ULL, 0), draw) * total;
    int32_t pick = idx[n - 1];
    cum = 0.0;
    for (int i = 0; i < n; i++)
        if (r < (cum += p[idx[i]])) {
            pick = idx[i];
            break;
        }
    free(idx);
    return pick;
}

int main(void) {
    static const int vocab[] = {1, 7, 64, 65, 300, 49152};
    static const struct {
        float temperature, top_p, min_p;
        int top_k;
    } opts[] = {{1.0f, 0.9f, 0, 0},    {0.7f, 0.5f, 0, 0},     {1.5f, 0.99f, 0, 0},  {1.0f, 0.9999999f, 0, 0},
                {0.8f, 1.0f, 0, 40},    {0.8f, 0.95f, 0.05f, 40}, {1.0f, 1.0f, 0, 1},  {2.0f, 0.97f, 0, 500},
                {1.0f, 0.3f, 0.001f, 0}};
    uint32_t r = 12345;
    int cases = 0;
    for (size_t v = 0; v < sizeof vocab / sizeof *vocab; v++) {
        const int V = vocab[v];
        Sampler s;
        Err err = {0};
        CHECK(sampler_create(&s, V, &err) == 0, "sampler_create: %s", err.msg);
        float *base = malloc((size_t)V * sizeof *base), *logits = malloc((size_t)V * sizeof *logits);
        for (int shape = 0; shape < 3; shape++) {
            /* 0: a spread (Gaussian-like) distribution; 1: a peaked one;
             * 2: logits on a coarse grid, so many probabilities tie */
            for (int i = 0; i < V; i++) {
                double u = 0;
                for (int k = 0; k < 4; k++) u += ((r = r * 1103515245u + 12345u) >> 8 & 0xffff) / 65536.0;
                base[i] = shape == 2 ? (float)floor(u * 3) : (float)((u - 2) * (shape ? 6 : 2));
            }
            for (size_t o = 0; o < sizeof opts / sizeof *opts; o++)
                for (uint64_t draw = 0; draw < (V > 10000 ? 3u : 8u); draw++) {
                    SamplerOptions so;
                    sampler_options_default(&so);
                    so.temperature = opts[o].temperature, so.top_p = opts[o].top_p, so.min_p = opts[o].min_p;
                    so.top_k = opts[o].top_k, so.seed = 1000 + o;
                    memcpy(logits, base, (size_t)V * sizeof *logits);
                    const int32_t got = sampler_next(&s, &so, logits, NULL, 0, draw);
                    const int32_t want = reference(s.probs, V, &so, draw);
                    CHECK(got == want, "V %d shape %d options %zu draw %llu: token %d, a full sort gives %d", V, shape, o,
                          (unsigned long long)draw, got, want);
                    cases++;
                }
        }
        free(base);
        free(logits);
        sampler_free(&s);
    }
    printf("%d draws compared\n", cases);
    return failures != 0;
}
