/* A batch of queries (a prompt) over the F16 KV cache with llama.cpp's
 * arithmetic (lcpp_attention_f16 for T >= 2): the half cache's tinyBLAS
 * order, bit for bit, as kernels/quant_llamacpp.c documents it:
 *   score(q, j) = scale * tree8(c), lane d % 8 of c accumulating
 *                 half(q)[d] * k[j][d] over d = 0..D-1 in order;
 *   out(q)[d]   = tree8(c), lane j % 8 of c accumulating p(q)[j] * v[j][d]
 *                 over positions j = 0.. in order, p = softmax rounded to half;
 * tree8 = ((c0+c4)+(c2+c6)) + ((c1+c5)+(c3+c7)).
 *
 * Both products are the same "dot form": rows of A against rows of B, each
 * output an 8-lane chain along the shared dimension, then tree8. So the
 * values are widened TRANSPOSED (vt: D rows of positions) and one register
 * tile serves both: MR rows of A x NR rows of B, MR*NR 8-lane accumulators,
 * MR + NR loads per 8 steps of k for MR*NR multiply-adds. With AVX-512VL's
 * 32 ymm registers the tile is 3 x 8 (24 accumulators, 0.46 loads per
 * multiply-add); with AVX2's 16 it is 2 x 4 (0.75). The sums were before
 * a value-major loop with 1.5 loads per multiply-add, at ~58% of the FMA
 * peak for the whole attention (11.5% of an F16 pp512 pass on Zen 4).
 *
 * Zero padding changes no bit: accumulators start at +0 and never become
 * -0, and fma(x, 0, a) == a for finite x; probabilities past a query's own
 * positions are 0, padded value columns are +0. */
#include "kernels/lcpp_private.h"
#include "kernels/kernels.h"

#include <omp.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include "kernels/quant_avx2_inl.h" /* TGT, hsum8_ps */


enum { ATT_TB = 16 }; /* positions per work item */

static int round_up(int n, int m) { return (n + m - 1) / m * m; }

/* out[i][o0 + j] (row i at orow[i]) for i < mr, j < nr: A rows i (stride
 * as) against B rows j (stride bs) over k < K (K % 8 == 0), times scale
 * (1 for the value sums: exact). Rows past mr / nr repeat the last one and
 * are not stored. MR * NR % 8 == 0 (reduced eight accumulators at a time
 * by hsum8_ps, tree8's additions). */
TGT static inline __attribute__((always_inline)) void dots8_tile(const int MR, const int NR, float *const *orow,
                                                                 int o0, const float *A, size_t as, int mr,
                                                                 const float *B, size_t bs, int nr, int K,
                                                                 float scale) {
    const float *ar[8], *br[8];
    __m256 c[32];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) ar[i] = A + (size_t)(i < mr ? i : mr - 1) * as;
#pragma GCC unroll 8
    for (int j = 0; j < NR; j++) br[j] = B + (size_t)(j < nr ? j : nr - 1) * bs;
#pragma GCC unroll 32
    for (int t = 0; t < MR * NR; t++) c[t] = _mm256_setzero_ps();
    for (int k = 0; k < K; k += 8) {
        __m256 a[8];
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            a[i] = _mm256_loadu_ps(ar[i] + k);
            __asm__("" : "+x"(a[i])); /* loaded once, kept in a register */
        }
#pragma GCC unroll 8
        for (int j = 0; j < NR; j++) {
            __m256 b = _mm256_loadu_ps(br[j] + k);
            __asm__("" : "+x"(b)); /* one load, not one memory operand per multiply-add */
#pragma GCC unroll 8
            for (int i = 0; i < MR; i++) c[i * NR + j] = _mm256_fmadd_ps(a[i], b, c[i * NR + j]);
        }
    }
    _Alignas(32) float r[32];
    const __m256 s = _mm256_set1_ps(scale);
#pragma GCC unroll 4
    for (int t = 0; t < MR * NR; t += 8)
        _mm256_store_ps(r + t, _mm256_mul_ps(hsum8_ps(c[t], c[t + 1], c[t + 2], c[t + 3], c[t + 4], c[t + 5], c[t + 6],
                                                      c[t + 7]),
                                             s));
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) orow[i][o0 + j] = r[i * NR + j];
}

/* AVX-512: out[i][o0 + c] (row i at orow[i]) for i < mr <= 3, c < 16:
 * scale * tree8 over l of acc[l][c], lane class l accumulating A[i][r] *
 * Bt[r][c] over r = l, l+8, .. < K (K % 8 == 0) in order: the 8-lane chain
 * of the dot form, with the 16 outputs in the vector lanes instead of the
 * 8 lane classes, so the reduction is seven vector additions. 24
 * accumulators (3 rows x 8 classes) in zmm registers; per step of r one
 * load of Bt for three multiply-adds of 16 lanes. Rows past mr repeat the
 * last one and are not stored. */
TGT512 static void outer8_tile(float *const *orow, int o0, const float *A, size_t as, int mr, const float *Bt, size_t bs,
                               int K, float scale) {
    const float *a0 = A, *a1 = A + (size_t)(mr > 1) * as, *a2 = A + (size_t)(mr > 2 ? 2 : mr - 1) * as;
    __m512 c0[8], c1[8], c2[8];
#pragma GCC unroll 8
    for (int l = 0; l < 8; l++) c0[l] = _mm512_setzero_ps(), c1[l] = c0[l], c2[l] = c0[l];
    for (int r = 0; r < K; r += 8)
#pragma GCC unroll 8
        for (int l = 0; l < 8; l++) {
            __m512 b = _mm512_loadu_ps(Bt + (size_t)(r + l) * bs);
            __asm__("" : "+v"(b)); /* one load into a register, not one memory operand per multiply-add */
            c0[l] = _mm512_fmadd_ps(_mm512_set1_ps(a0[r + l]), b, c0[l]);
            c1[l] = _mm512_fmadd_ps(_mm512_set1_ps(a1[r + l]), b, c1[l]);
            c2[l] = _mm512_fmadd_ps(_mm512_set1_ps(a2[r + l]), b, c2[l]);
        }
    const __m512 s = _mm512_set1_ps(scale);
#define TREE8(c) _mm512_mul_ps(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c[0], c[4]), _mm512_add_ps(c[2], c[6])), \
                                             _mm512_add_ps(_mm512_add_ps(c[1], c[5]), _mm512_add_ps(c[3], c[7]))), s)
    _mm512_storeu_ps(orow[0] + o0, TREE8(c0));
    if (mr > 1) _mm512_storeu_ps(orow[1] + o0, TREE8(c1));
    if (mr > 2) _mm512_storeu_ps(orow[2] + o0, TREE8(c2));
#undef TREE8
}

/* Eight rows of eight floats transposed in registers: r[i] = row i on
 * entry, column i on exit. */
TGT static inline __attribute__((always_inline)) void transpose8(__m256 *r) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]), t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44), u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44), u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/* Positions [j0, j0 + 8) of one head's halves (row stride s, D wide),
 * widened: as rows into dst (row stride D), or transposed into dst (D rows
 * of stride ld); positions at or past n are zeros. */
TGT static void widen8(float *dst, size_t ld, int transposed, const uint16_t *h, size_t s, int j0, int n, int D) {
    for (int d0 = 0; d0 < D; d0 += 8) {
        __m256 r[8];
        for (int i = 0; i < 8; i++)
            r[i] = j0 + i < n ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + (size_t)(j0 + i) * s + d0)))
                              : _mm256_setzero_ps();
        if (transposed) {
            transpose8(r);
            for (int i = 0; i < 8; i++) _mm256_storeu_ps(dst + (size_t)(d0 + i) * ld + j0, r[i]);
        } else {
            for (int i = 0; i < 8; i++) _mm256_storeu_ps(dst + (size_t)(j0 + i) * D + d0, r[i]);
        }
    }
}

/* The widened cache of one layer (every kv head, shared by the work items)
 * in the layout each path reads: AVX-512 keys transposed (D rows of kp
 * positions) and values as rows (kp rows of D); AVX2 the other way round.
 * kp = positions rounded up to 16, zeros past the cache's end. */
typedef struct {
    float *k, *v; /* (Hkv, kp, D) or (Hkv, D, ld) each */
    int kp, ld, wide; /* ld = kp + 16: rows 2^n floats apart would share two L1 sets */
} Widened;

/* One work item: kv head kvh with every query head of its group at
 * positions [t0, t1) (query i: position t0 + i / group, head kvh * group +
 * i % group). scr: Q * (np + D) floats (scores, rounded queries). */
TGT static inline __attribute__((always_inline)) void attend_block(const int wide, float *out, const float *q,
                                                                   const Widened *c, int t0, int t1, int pos0, int Hq,
                                                                   int Hkv, int kvh, int D, float scale, float *scr) {
    const int group = Hq / Hkv, Q = (t1 - t0) * group, nmax = pos0 + t1, np = round_up(nmax, 32);
    const size_t per_head = (size_t)c->ld * D;
    const float *kh = c->k + (size_t)kvh * per_head, *vh = c->v + (size_t)kvh * per_head;
    float *w = scr;                 /* (Q, np) scores, then probabilities */
    float *qr = w + (size_t)Q * np; /* (Q, D) queries rounded to half */
    for (int i = 0; i < Q; i++) {
        const float *src = q + ((size_t)(t0 + i / group) * Hq + kvh * group + i % group) * D;
        for (int d = 0; d < D; d += 8)
            _mm256_storeu_ps(qr + (size_t)i * D + d,
                             _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(src + d), _MM_FROUND_TO_NEAREST_INT)));
    }
    const int MR = wide ? 3 : 2, NR = wide ? 16 : 4;
    float *orow[3];
    /* scores: each row tile over the keys its last (latest) query sees */
    for (int i0 = 0; i0 < Q; i0 += MR) {
        const int mr = Q - i0 < MR ? Q - i0 : MR, n = pos0 + t0 + (i0 + mr - 1) / group + 1;
        for (int i = 0; i < mr; i++) orow[i] = w + (size_t)(i0 + i) * np;
        for (int j = 0; j < n; j += NR)
            if (wide) /* keys transposed: 16 keys' scores per tile, past n zeros (overwritten below) */
                outer8_tile(orow, j, qr + (size_t)i0 * D, (size_t)D, mr, kh + j, (size_t)c->ld, D, scale);
            else
                dots8_tile(2, 4, orow, j, qr + (size_t)i0 * D, (size_t)D, mr, kh + (size_t)j * D, (size_t)D,
                           n - j < NR ? n - j : NR, D, scale);
    }
    /* probabilities, rounded to half, zero past each query's positions */
    for (int i = 0; i < Q; i++) {
        const int n = pos0 + t0 + i / group + 1;
        float *wi = w + (size_t)i * np;
        lcpp_probs_half(wi, n, wide);
        for (int j = round_up(n, 32); j < np; j++) wi[j] = 0.0f;
    }
    /* value sums: each row tile over the positions its last query sees */
    for (int i0 = 0; i0 < Q; i0 += MR) {
        const int mr = Q - i0 < MR ? Q - i0 : MR, K = round_up(pos0 + t0 + (i0 + mr - 1) / group + 1, 8);
        for (int i = 0; i < mr; i++) {
            const int qi = i0 + i;
            orow[i] = out + ((size_t)(t0 + qi / group) * Hq + kvh * group + qi % group) * D;
        }
        for (int d0 = 0; d0 < D; d0 += NR)
            if (wide) /* values as rows: 16 outputs per tile */
                outer8_tile(orow, d0, w + (size_t)i0 * np, (size_t)np, mr, vh + d0, (size_t)D, K, 1.0f);
            else
                dots8_tile(2, 4, orow, d0, w + (size_t)i0 * np, (size_t)np, mr, vh + (size_t)d0 * c->ld, (size_t)c->ld,
                           D - d0 < NR ? D - d0 : NR, K, 1.0f);
    }
}

TGT512 static void attend_block_avx512(float *out, const float *q, const Widened *c, int t0, int t1, int pos0, int Hq,
                                       int Hkv, int kvh, int D, float scale, float *scr) {
    attend_block(1, out, q, c, t0, t1, pos0, Hq, Hkv, kvh, D, scale, scr);
}

TGT static void attend_block_avx2(float *out, const float *q, const Widened *c, int t0, int t1, int pos0, int Hq,
                                  int Hkv, int kvh, int D, float scale, float *scr) {
    attend_block(0, out, q, c, t0, t1, pos0, Hq, Hkv, kvh, D, scale, scr);
}

int lcpp_attention_half_batched(float *out, const float *q, const uint16_t *kc, const uint16_t *vc, int T, int pos0,
                                int Hq, int Hkv, int D) {
    /* work items of ATT_TB positions x one kv head, the longest (latest
     * positions) first so dynamic scheduling ends evenly */
    const int nblk = (T + ATT_TB - 1) / ATT_TB, items = nblk * Hkv, group = Hq / Hkv, n = pos0 + T;
    const float scale = 1.0f / sqrtf((float)D);
    const int nth = omp_in_parallel() ? 1 : omp_get_max_threads();
    const Widened c = {NULL, NULL, round_up(n, 16), round_up(n, 16) + 16, kernel_isa() >= ISA_AVX512};
    const size_t half = (size_t)Hkv * c.ld * D; /* floats of the keys, and of the values */
    const size_t per = ((size_t)ATT_TB * group * (round_up(n, 32) + D) + 15) & ~(size_t)15;
    float *buf = aligned_alloc(64, (2 * half + (size_t)nth * per) * sizeof(float));
    if (!buf) return ERR_NOMEM;
    Widened wc = c;
    wc.k = buf, wc.v = buf + half;
    float *scr = buf + 2 * half;
    const size_t kvs = (size_t)Hkv * D;
    const int chunks = c.kp / 8;
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
#pragma omp for schedule(static)
        for (int it = 0; it < Hkv * chunks; it++) {
            const int kvh = it / chunks, j0 = it % chunks * 8;
            const uint16_t *kh = kc + (size_t)kvh * D, *vh = vc + (size_t)kvh * D;
            float *kd = wc.k + (size_t)kvh * c.ld * D, *vd = wc.v + (size_t)kvh * c.ld * D;
            widen8(kd, (size_t)c.ld, c.wide, kh, kvs, j0, n, D);
            widen8(vd, (size_t)c.ld, !c.wide, vh, kvs, j0, n, D);
        }
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < items; it++) {
            const int b = nblk - 1 - it / Hkv, kvh = it % Hkv;
            const int t0 = b * ATT_TB, t1 = t0 + ATT_TB < T ? t0 + ATT_TB : T;
            float *mine = scr + (size_t)omp_get_thread_num() * per;
            if (c.wide)
                attend_block_avx512(out, q, &wc, t0, t1, pos0, Hq, Hkv, kvh, D, scale, mine);
            else
                attend_block_avx2(out, q, &wc, t0, t1, pos0, Hq, Hkv, kvh, D, scale, mine);
        }
    }
    free(buf);
    return 0;
}
#endif
