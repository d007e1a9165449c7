/* Causal multi-head attention with grouped-query heads. Each (batch, head)
 * pair is an independent pair of small GEMMs (scores = Q K^T, out = P V);
 * OpenMP runs pairs in parallel and each GEMM single-threaded inside. */
#include "kernels.h"

#include <math.h>

#include "vmath.h"
#include <omp.h>
#include <stdlib.h>

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
            /* scores (T, Sv) = Q (T,D) K^T */
            gemm_f32(0, 1, T, Sv, D, scale, qh, qs, kh, ks, 0.0f, P, ldp);
            for (int t = 0; t < T; t++) {
                float *p = P + (size_t)t * ldp;
                int last = pos0 + t; /* causal: keys 0..last */
                float sum = vec_exp_sum(p, p, vec_max(p, last + 1), 1.0f, last + 1);
                float inv = 1.0f / sum;
#pragma omp simd
                for (int s = 0; s <= last; s++) p[s] *= inv;
                for (int s = last + 1; s < ldp; s++) p[s] = 0.0f;
            }
            /* out (T, D) = P (T,Sv) V (Sv,D) */
            gemm_f32(0, 0, T, D, Sv, 1.0f, P, ldp, vh, ks, 0.0f, out + (size_t)b * T * qs + h * D, qs);
        }
    free(scratch);
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
                /* dV += P^T dO ; dP = dO V^T */
                gemm_f32(1, 0, T, D, T, 1.0f, P, T, dO, qs, 1.0f, dvv, ks);
                gemm_f32(0, 1, T, T, D, 1.0f, dO, qs, vv, ks, 0.0f, dP, T);
                /* softmax backward: dS = P (dP - rowsum(P dP)), folded with the scale */
                for (int t = 0; t < T; t++) {
                    const float *p = P + (size_t)t * T;
                    float *d = dP + (size_t)t * T;
                    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                    for (int s = 0; s <= t; s++) dot += p[s] * d[s];
                    for (int s = 0; s <= t; s++) d[s] = p[s] * (d[s] - dot) * scale;
                    for (int s = t + 1; s < T; s++) d[s] = 0.0f;
                }
                /* dQ += dS K ; dK += dS^T Q */
                gemm_f32(0, 0, T, D, T, 1.0f, dP, T, kk, ks, 1.0f, dqh, qs);
                gemm_f32(1, 0, T, D, T, 1.0f, dP, T, qh, qs, 1.0f, dkk, ks);
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
