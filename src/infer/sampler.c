/* Sampling: penalties -> temperature -> top-k -> softmax -> top-p / min-p
 * -> one counter-based uniform draw. Greedy when temperature is 0. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void sampler_options_default(SamplerOptions *o) {
    memset(o, 0, sizeof *o);
    o->temperature = 0.8f;
    o->top_p = 1.0f;
    o->repeat_penalty = 1.0f;
    o->penalty_last_n = 64;
    o->seed = 42;
}

int sampler_validate(const SamplerOptions *o, Err *err) {
    if (!(o->temperature >= 0) || o->temperature > 100) return err_set(err, ERR_INVALID, "temperature must be in [0, 100]");
    if (o->top_k < 0) return err_set(err, ERR_INVALID, "top-k must be >= 0");
    if (!(o->top_p > 0 && o->top_p <= 1)) return err_set(err, ERR_INVALID, "top-p must be in (0, 1]");
    if (!(o->min_p >= 0 && o->min_p < 1)) return err_set(err, ERR_INVALID, "min-p must be in [0, 1)");
    if (!(o->repeat_penalty > 0)) return err_set(err, ERR_INVALID, "repeat penalty must be > 0");
    if (o->penalty_last_n < 0) return err_set(err, ERR_INVALID, "penalty window must be >= 0");
    return 0;
}

int sampler_create(Sampler *s, int V, Err *err) {
    memset(s, 0, sizeof *s);
    s->V = V;
    s->probs = malloc((size_t)V * sizeof *s->probs);
    s->idx = malloc((size_t)V * sizeof *s->idx);
    s->count = calloc((size_t)V, sizeof *s->count);
    if (!s->probs || !s->idx || !s->count) {
        sampler_free(s);
        return err_set(err, ERR_NOMEM, "out of memory");
    }
    return 0;
}

void sampler_free(Sampler *s) {
    free(s->probs);
    free(s->idx);
    free(s->count);
    memset(s, 0, sizeof *s);
}

static int cmp_desc(const void *a, const void *b, void *probs) {
    const float *p = probs;
    float x = p[*(const int32_t *)a], y = p[*(const int32_t *)b];
    if (x != y) return x < y ? 1 : -1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

/* Sort idx[0..n) by descending probability, ties by token id. */
static void sort_desc(const float *p, int32_t *idx, int n) { qsort_r(idx, (size_t)n, sizeof *idx, cmp_desc, (void *)p); }

/* Token a comes before token b in sort_desc's order (a strict total order). */
static inline int before(const float *p, int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); }

/* Move the k first tokens of idx[0..n) in sort_desc's order to idx[0..k),
 * in no particular order (quickselect, median-of-three pivots). 0 < k <= n. */
static void select_first(const float *p, int32_t *idx, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        const int32_t a = idx[lo], b = idx[lo + (hi - lo) / 2], c = idx[hi];
        const int32_t piv = before(p, a, b) ? (before(p, b, c) ? b : before(p, a, c) ? c : a)
                                            : (before(p, a, c) ? a : before(p, b, c) ? c : b);
        int i = lo, j = hi;
        while (i <= j) {
            while (before(p, idx[i], piv)) i++;
            while (before(p, piv, idx[j])) j--;
            if (i <= j) {
                const int32_t t = idx[i];
                idx[i++] = idx[j];
                idx[j--] = t;
            }
        }
        if (k - 1 <= j) hi = j; /* [lo, j] come before [i, hi]; between them only the pivot */
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

/* The candidates idx[0..n) cut to top-k, then to the smallest prefix whose
 * mass reaches top-p, that prefix in sort_desc's order; returns its length.
 * What sorting all n candidates and cutting would give, but the prefix is
 * found by growing a sorted head (64, 256, ... tokens, each step selecting
 * the next ones from the rest) until it holds the nucleus: a full sort of
 * a 49152-token vocabulary took ~6 ms a token, which a batched serving
 * step paid for every sequence. */
static int nucleus(const float *p, int32_t *idx, int n, int top_k, float top_p) {
    const int k = top_k > 0 && top_k < n ? top_k : n;
    double cum = 0.0;
    for (int have = 0, want = k < 64 ? k : 64;; want = k - want < 3 * want ? k : 4 * want) {
        if (want < n) select_first(p, idx + have, n - have, want - have);
        sort_desc(p, idx + have, want - have);
        if (top_p < 1.0f)
            for (int i = have; i < want; i++) {
                cum += p[idx[i]];
                if (cum >= top_p) return i + 1;
            }
        if (want == k || top_p >= 1.0f) return k;
        have = want;
    }
}

int32_t sampler_next(Sampler *s, const SamplerOptions *o, float *logits, const int32_t *hist, int nh, uint64_t draw) {
    const int V = s->V;
    int has_pen = o->repeat_penalty != 1.0f || o->frequency_penalty != 0.0f || o->presence_penalty != 0.0f;
    if (has_pen && nh > 0 && o->penalty_last_n > 0) {
        int from = nh > o->penalty_last_n ? nh - o->penalty_last_n : 0;
        for (int i = from; i < nh; i++)
            if (hist[i] >= 0 && hist[i] < V) s->count[hist[i]]++;
        for (int i = from; i < nh; i++) {
            int t = hist[i];
            if (t < 0 || t >= V || s->count[t] == 0) continue;
            float l = logits[t];
            if (o->repeat_penalty != 1.0f) l = l > 0 ? l / o->repeat_penalty : l * o->repeat_penalty;
            l -= s->count[t] * o->frequency_penalty + o->presence_penalty;
            logits[t] = l;
            s->count[t] = 0; /* penalise each token once */
        }
    }
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (o->temperature == 0.0f) return best;
    float mx = logits[best];
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        s->probs[i] = expf((logits[i] - mx) / o->temperature);
        sum += s->probs[i];
    }
    int n = 0;
    float floor_p = o->min_p * (float)(1.0 / sum); /* p(best) = 1/sum after scaling */
    for (int i = 0; i < V; i++) {
        s->probs[i] = (float)(s->probs[i] / sum);
        if (s->probs[i] >= floor_p) s->idx[n++] = i;
    }
    if (o->top_k > 0 || o->top_p < 1.0f) n = nucleus(s->probs, s->idx, n, o->top_k, o->top_p);
    double total = 0.0;
    for (int i = 0; i < n; i++) total += s->probs[s->idx[i]];
    double r = rng_uniform(rng_key(o->seed, 0x73616d70ULL, 0), draw) * total, cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += s->probs[s->idx[i]];
        if (r < cum) return s->idx[i];
    }
    return n > 0 ? s->idx[n - 1] : best;
}
