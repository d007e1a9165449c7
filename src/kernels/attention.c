/* Causal multi-head attention with grouped-query heads. Each (batch, head)
 * pair is an independent pair of small GEMMs (scores = Q K^T, out = P V);
 * OpenMP runs pairs in parallel and each GEMM single-threaded inside. */
#include "kernels.h"

#include <math.h>

#include "vmath.h"
#include <omp.h>
#include <stdlib.h>

/* Query rows per causal block: big enough for efficient GEMMs, small enough
 * that the skipped triangle is most of the masked half. */
#define ATT_ROWS 64

static void attention_one_query(float *out, const float *q, const float *k, const float *v, int B, int S, int pos0,
                                int Hq, int Hkv, int D);

void attention_forward(float *out, float *att, const float *q, const float *k, const float *v, int B, int T,
                       int S, int pos0, int Hq, int Hkv, int D) {
    if (T == 1 && !att && pos0 < 16384) { /* inference decoding step (training always keeps att) */
        attention_one_query(out, q, k, v, B, S, pos0, Hq, Hkv, D);
        return;
    }
    const int group = Hq / Hkv, qs = Hq * D, ks = Hkv * D;
    const int Sv = pos0 + T; /* keys visible to the last query */
    const float scale = 1.0f / sqrtf((float)D);
    float *scratch = NULL;
    if (!att) scratch = malloc((size_t)omp_get_max_threads() * T * Sv * sizeof(float));
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hq; h++) {
            const float *qh = q + (size_t)b * T * qs + h * D;
            const float *kh = k + (size_t)b * S * ks + (h / group) * D;
            const float *vh = v + (size_t)b * S * ks + (h / group) * D;
            float *P = att ? att + ((size_t)b * Hq + h) * T * S : scratch + (size_t)omp_get_thread_num() * T * Sv;
            int ldp = att ? S : Sv;
            /* Blocks of query rows see only the keys up to their last row
             * (causal), so the masked upper triangle is never multiplied:
             * at T = 256, 5/8 of the full product. */
            for (int r0 = 0; r0 < T; r0 += ATT_ROWS) {
                const int r1 = r0 + ATT_ROWS < T ? r0 + ATT_ROWS : T, Svr = pos0 + r1;
                float *Pr = P + (size_t)r0 * ldp;
                /* scores (rows, Svr) = Q (rows,D) K^T */
                gemm_f32(0, 1, r1 - r0, Svr, D, scale, qh + (size_t)r0 * qs, qs, kh, ks, 0.0f, Pr, ldp);
                for (int t = r0; t < r1; t++) {
                    float *p = P + (size_t)t * ldp;
                    int last = pos0 + t; /* causal: keys 0..last */
                    float sum = vec_exp_sum(p, p, vec_max(p, last + 1), 1.0f, last + 1);
                    float inv = 1.0f / sum;
#pragma omp simd
                    for (int s = 0; s <= last; s++) p[s] *= inv;
                    for (int s = last + 1; s < ldp; s++) p[s] = 0.0f;
                }
                /* out (rows, D) = P (rows,Svr) V (Svr,D) */
                gemm_f32(0, 0, r1 - r0, D, Svr, 1.0f, Pr, ldp, vh, ks, 0.0f, out + ((size_t)b * T + r0) * qs + h * D,
                         qs);
            }
        }
    free(scratch);
}

int attention_forward_kv16(float *out, const float *q, const uint16_t *k, const uint16_t *v, int T, int S, int pos0,
                           int Hq, int Hkv, int D) {
    (void)S;
    /* Widen the positions in use once per call (Sv rows of every kv head, in
     * the cache's layout), then the f32 code: each widened key is read by
     * all T queries and Hq/Hkv heads, and the result is exactly the f32
     * cache's on the rounded values. */
    const int Sv = pos0 + T;
    const size_t n = (size_t)Sv * Hkv * D;
    float *kf = malloc(2 * n * sizeof(float));
    if (!kf) return ERR_NOMEM;
    float *vf = kf + n;
    kv_load_f16(kf, k, n);
    kv_load_f16(vf, v, n);
    attention_forward(out, NULL, q, kf, vf, 1, T, Sv, pos0, Hq, Hkv, D);
    free(kf);
    return 0;
}

void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                        const float *k, const float *v, int B, int T, int Hq, int Hkv, int D, float *scratch) {
    const int group = Hq / Hkv, qs = Hq * D, ks = Hkv * D;
    const float scale = 1.0f / sqrtf((float)D);
    /* One task per (batch, kv head): the query heads of a group all add into
     * the same dk/dv rows, so they run in order inside one task. */
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int kh = 0; kh < Hkv; kh++) {
            float *dP = scratch + (size_t)omp_get_thread_num() * T * T;
            const float *kk = k + (size_t)b * T * ks + kh * D;
            const float *vv = v + (size_t)b * T * ks + kh * D;
            float *dkk = dk + (size_t)b * T * ks + kh * D;
            float *dvv = dv + (size_t)b * T * ks + kh * D;
            for (int h = kh * group; h < (kh + 1) * group; h++) {
                const float *P = att + ((size_t)b * Hq + h) * T * T;
                const float *dO = dout + (size_t)b * T * qs + h * D;
                const float *qh = q + (size_t)b * T * qs + h * D;
                float *dqh = dq + (size_t)b * T * qs + h * D;
                for (int r0 = 0; r0 < T; r0 += ATT_ROWS) { /* causal row blocks, as in the forward */
                    const int r1 = r0 + ATT_ROWS < T ? r0 + ATT_ROWS : T, n = r1 - r0;
                    const float *Pr = P + (size_t)r0 * T, *dOr = dO + (size_t)r0 * qs;
                    float *dPr = dP + (size_t)r0 * T;
                    /* dV[0:r1] += P[rows, 0:r1]^T dO[rows] ; dP[rows, 0:r1] = dO[rows] V[0:r1]^T */
                    gemm_f32(1, 0, r1, D, n, 1.0f, Pr, T, dOr, qs, 1.0f, dvv, ks);
                    gemm_f32(0, 1, n, r1, D, 1.0f, dOr, qs, vv, ks, 0.0f, dPr, T);
                    /* softmax backward: dS = P (dP - rowsum(P dP)), folded with the scale */
                    for (int t = r0; t < r1; t++) {
                        const float *p = P + (size_t)t * T;
                        float *d = dP + (size_t)t * T;
                        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                        for (int s = 0; s <= t; s++) dot += p[s] * d[s];
#pragma omp simd
                        for (int s = 0; s <= t; s++) d[s] = p[s] * (d[s] - dot) * scale;
                        for (int s = t + 1; s < r1; s++) d[s] = 0.0f;
                    }
                    /* dQ[rows] += dS[rows, 0:r1] K[0:r1] ; dK[0:r1] += dS[rows, 0:r1]^T Q[rows] */
                    gemm_f32(0, 0, n, D, r1, 1.0f, dPr, T, kk, ks, 1.0f, dqh + (size_t)r0 * qs, qs);
                    gemm_f32(1, 0, r1, D, n, 1.0f, dPr, T, qh + (size_t)r0 * qs, qs, 1.0f, dkk, ks);
                }
            }
        }
}

/* Decoding: one query per sequence against pos0 + 1 cached keys. At T = 1
 * the GEMM calls and the scratch allocation of the general path cost more
 * than the work, so each head is two plain loops over the cache (scores,
 * then the probability-weighted sum of values), in a stack buffer. Threads
 * split the heads only when the context is long enough to pay for them. */
static void attention_one_query(float *out, const float *q, const float *k, const float *v, int B, int S, int pos0,
                                int Hq, int Hkv, int D) {
    const int group = Hq / Hkv, qs = Hq * D, ks = Hkv * D, Sv = pos0 + 1;
    const float scale = 1.0f / sqrtf((float)D);
    const int par = (double)B * Hq * Sv * D > 131072.0 && !omp_in_parallel();
#pragma omp parallel for collapse(2) schedule(static) if (par)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hq; h++) {
            float p[Sv];
            const float *qh = q + (size_t)b * qs + h * D;
            const float *kh = k + (size_t)b * S * ks + (h / group) * D;
            const float *vh = v + (size_t)b * S * ks + (h / group) * D;
            float *o = out + (size_t)b * qs + h * D;
            float mx = -INFINITY;
            for (int s = 0; s < Sv; s++) {
                const float *ks_ = kh + (size_t)s * ks;
                float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                for (int d = 0; d < D; d++) dot += qh[d] * ks_[d];
                p[s] = dot * scale;
                mx = p[s] > mx ? p[s] : mx;
            }
            float sum = vec_exp_sum(p, p, mx, 1.0f, Sv);
            const float inv = 1.0f / sum;
            for (int d = 0; d < D; d++) o[d] = 0.0f;
            for (int s = 0; s < Sv; s++) {
                const float *vs = vh + (size_t)s * ks, w = p[s] * inv;
#pragma omp simd
                for (int d = 0; d < D; d++) o[d] += w * vs[d];
            }
        }
}
