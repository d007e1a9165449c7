/* Causal attention against a plain float64 reference, at lengths that span
 * several causal row blocks (and a partial last one), with grouped-query
 * heads: the forward output and probabilities, and dq/dk/dv of the backward.
 * Also the KV-cache path: a prompt continued from pos0 > 0, and single-token
 * decoding, give the rows of the full-sequence forward; the same over an F16
 * (IEEE half) cache gives exactly the f32 cache's result on the rounded keys
 * and values, and the unrounded reference within KV16_TOL. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"

/* F16 cache against the float64 reference on unrounded keys/values in
 * [-2, 2] / [-1, 1]: the keys' and values' rounding to half (relative
 * 2^-11) moves the outputs by at most 3.0e-4 here (measured). The
 * llama.cpp-numerics kernel also rounds queries and probabilities: 7.0e-4,
 * tolerance LCPP16_TOL; an error in
 * the cache path (wrong row, head, position) moves them by ~0.1 or more. */
#define KV16_TOL 1e-3
#define LCPP16_TOL 2e-3

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
}

/* out (B,T,Hq,D); dq/dk/dv from dout, all float64, O(T^2) straightforwardly. */
static void reference(double *out, double *dq, double *dk, double *dv, const float *q, const float *k, const float *v,
                      const float *dout, int B, int T, int Hq, int Hkv, int D) {
    const int g = Hq / Hkv, qs = Hq * D, ks = Hkv * D;
    double *p = malloc((size_t)T * sizeof *p), *dp = malloc((size_t)T * sizeof *dp);
    memset(dq, 0, (size_t)B * T * qs * sizeof *dq);
    memset(dk, 0, (size_t)B * T * ks * sizeof *dk);
    memset(dv, 0, (size_t)B * T * ks * sizeof *dv);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hq; h++)
            for (int t = 0; t < T; t++) {
                const float *qt = q + ((size_t)b * T + t) * qs + h * D;
                double mx = -INFINITY, sum = 0;
                for (int s = 0; s <= t; s++) {
                    const float *ks_ = k + ((size_t)b * T + s) * ks + (h / g) * D;
                    double dot = 0;
                    for (int d = 0; d < D; d++) dot += (double)qt[d] * ks_[d];
                    p[s] = dot / sqrt(D);
                    mx = fmax(mx, p[s]);
                }
                for (int s = 0; s <= t; s++) sum += (p[s] = exp(p[s] - mx));
                for (int s = 0; s <= t; s++) p[s] /= sum;
                double *o = out + ((size_t)b * T + t) * qs + h * D;
                const float *dot_ = dout + ((size_t)b * T + t) * qs + h * D;
                for (int d = 0; d < D; d++) {
                    o[d] = 0;
                    for (int s = 0; s <= t; s++) o[d] += p[s] * v[((size_t)b * T + s) * ks + (h / g) * D + d];
                }
                double rs = 0;
                for (int s = 0; s <= t; s++) {
                    const float *vs = v + ((size_t)b * T + s) * ks + (h / g) * D;
                    double acc = 0;
                    for (int d = 0; d < D; d++) {
                        acc += (double)dot_[d] * vs[d];
                        dv[((size_t)b * T + s) * ks + (h / g) * D + d] += p[s] * dot_[d];
                    }
                    dp[s] = acc;
                    rs += p[s] * acc;
                }
                for (int s = 0; s <= t; s++) {
                    double ds = p[s] * (dp[s] - rs) / sqrt(D);
                    const float *ks_ = k + ((size_t)b * T + s) * ks + (h / g) * D;
                    for (int d = 0; d < D; d++) {
                        dq[((size_t)b * T + t) * qs + h * D + d] += ds * ks_[d];
                        dk[((size_t)b * T + s) * ks + (h / g) * D + d] += ds * qt[d];
                    }
                }
            }
    free(p);
    free(dp);
}

static double worst(const float *a, const double *b, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) w = fmax(w, fabs(a[i] - b[i]));
    return w;
}

/* The cached path over an F16 cache of k, v (T positions): prompt of h1,
 * continuation, one decoding step, as the f32 check below. */
static void check_kv16(const float *q, const float *k, const float *v, const double *rout, int T, int Hq, int Hkv,
                       int D) {
    const size_t nq = (size_t)T * Hq * D, nk = (size_t)T * Hkv * D;
    uint16_t *k16 = malloc(nk * 2), *v16 = malloc(nk * 2);
    float *kr = malloc(nk * 4), *vr = malloc(nk * 4), *o16 = malloc(nq * 4), *o32 = malloc(nq * 4);
    kv_store_f16(k16, k, nk);
    kv_store_f16(v16, v, nk);
    kv_load_f16(kr, k16, nk);
    kv_load_f16(vr, v16, nk);
    int rounded = 1;
    for (size_t i = 0; i < nk; i++) rounded &= fabsf(kr[i] - k[i]) <= fabsf(k[i]) * 0x1p-11f;
    CHECK(rounded, "T=%d: half conversion of keys is not to nearest", T);
    const int h1 = T / 2, n2 = T - h1 - 1;
    const int part[3][2] = {{0, h1}, {h1, n2}, {T - 1, 1}}; /* (pos0, n): prompt, continuation, decode */
    for (int i = 0; i < 3; i++) {
        const size_t o = (size_t)part[i][0] * Hq * D;
        if (part[i][1] == 0) continue;
        CHECK(attention_forward_kv16(o16 + o, q + o, k16, v16, part[i][1], T, part[i][0], Hq, Hkv, D) == 0,
              "T=%d: kv16 attention failed", T);
        attention_forward(o32 + o, NULL, q + o, kr, vr, 1, part[i][1], T, part[i][0], Hq, Hkv, D);
    }
    CHECK(memcmp(o16, o32, nq * 4) == 0, "T=%d: F16 cache differs from the f32 cache of the rounded values", T);
    double w = worst(o16, rout, nq);
    printf("T=%d Hq=%d Hkv=%d D=%d: F16 KV cache vs float64 reference: max |diff| %.3g (tolerance %g)\n", T, Hq, Hkv,
           D, w, KV16_TOL);
    CHECK(w < KV16_TOL, "T=%d: F16 cache off by %g", T, w);
    if (lcpp_attention_ok(D)) { /* the llama.cpp-numerics kernel over the same cache (GGUF inference) */
        for (int i = 0; i < 3; i++) {
            const size_t o = (size_t)part[i][0] * Hq * D;
            if (part[i][1] > 0)
                CHECK(lcpp_attention_f16(o16 + o, q + o, k16, v16, part[i][1], part[i][0], Hq, Hkv, D) == 0,
                      "T=%d: lcpp_attention_f16 failed", T);
        }
        w = worst(o16, rout, nq);
        printf("  lcpp_attention_f16 vs float64 reference: max |diff| %.3g (tolerance %g)\n", w, LCPP16_TOL);
        CHECK(w < LCPP16_TOL, "T=%d: lcpp_attention_f16 off by %g", T, w);
    }
    free(k16), free(v16), free(kr), free(vr), free(o16), free(o32);
}

static void check_case(int B, int T, int Hq, int Hkv, int D) {
    const size_t nq = (size_t)B * T * Hq * D, nk = (size_t)B * T * Hkv * D;
    unsigned seed = (unsigned)(T * 31 + Hq);
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4), *dout = malloc(nq * 4), *out = malloc(nq * 4);
    float *att = malloc((size_t)B * Hq * T * T * 4), *dq = calloc(nq, 4), *dk = calloc(nk, 4), *dv = calloc(nk, 4);
    float *scratch = malloc((size_t)64 * T * T * 4);
    double *rout = malloc(nq * 8), *rdq = malloc(nq * 8), *rdk = malloc(nk * 8), *rdv = malloc(nk * 8);
    for (size_t i = 0; i < nq; i++) q[i] = 2 * frand(&seed), dout[i] = frand(&seed);
    for (size_t i = 0; i < nk; i++) k[i] = 2 * frand(&seed), v[i] = frand(&seed);
    reference(rout, rdq, rdk, rdv, q, k, v, dout, B, T, Hq, Hkv, D);
    attention_forward(out, att, q, k, v, B, T, T, 0, Hq, Hkv, D);
    attention_backward(dq, dk, dv, dout, att, q, k, v, B, T, Hq, Hkv, D, scratch);
    double wo = worst(out, rout, nq), wq = worst(dq, rdq, nq), wk = worst(dk, rdk, nk), wv = worst(dv, rdv, nk);
    CHECK(wo < 1e-5, "B=%d T=%d Hq=%d Hkv=%d: forward off by %g", B, T, Hq, Hkv, wo);
    CHECK(wq < 1e-4 && wk < 1e-4 && wv < 1e-4, "B=%d T=%d Hq=%d Hkv=%d: backward off by dq %g dk %g dv %g", B, T, Hq,
          Hkv, wq, wk, wv);
    /* masked probabilities are exactly zero; rows sum to one */
    for (int t = 0; t < T; t++) {
        const float *p = att + (size_t)t * T;
        double sum = 0;
        int bad = 0;
        for (int s = 0; s < T; s++) {
            sum += p[s];
            bad |= s > t && p[s] != 0.0f;
        }
        CHECK(!bad && fabs(sum - 1) < 1e-5, "T=%d row %d: sum %g, masked nonzero %d", T, t, sum, bad);
    }
    /* the cached path: the first half as a prompt, the rest as a continuation */
    if (B == 1) {
        float *out2 = malloc(nq * 4);
        int h1 = T / 2;
        attention_forward(out2, NULL, q, k, v, 1, h1, T, 0, Hq, Hkv, D);
        attention_forward(out2 + (size_t)h1 * Hq * D, NULL, q + (size_t)h1 * Hq * D, k, v, 1, T - h1 - 1, T, h1, Hq,
                          Hkv, D);
        attention_forward(out2 + (size_t)(T - 1) * Hq * D, NULL, q + (size_t)(T - 1) * Hq * D, k, v, 1, 1, T, T - 1,
                          Hq, Hkv, D);
        double w2 = worst(out2, rout, nq);
        CHECK(w2 < 1e-5, "T=%d: cached prompt + continuation + decode off by %g", T, w2);
        free(out2);
        check_kv16(q, k, v, rout, T, Hq, Hkv, D);
    }
    free(q), free(k), free(v), free(dout), free(out), free(att), free(dq), free(dk), free(dv), free(scratch);
    free(rout), free(rdq), free(rdk), free(rdv);
}

int main(void) {
    check_case(2, 7, 4, 2, 8);     /* one partial block */
    check_case(1, 64, 2, 2, 16);   /* exactly one block */
    check_case(2, 150, 6, 2, 16);  /* two full blocks and a partial one, GQA 3:1 */
    check_case(1, 257, 3, 1, 32);  /* MQA, 4 blocks + 1 row */
    if (!failures) printf("test_attention: all passed\n");
    return failures != 0;
}
