/* F16 weights: the GEMM for prompt batches, out (M,N) = x (M,K) · W(N,K)^T
 * with W in IEEE halves, float32 arithmetic throughout (no bf16 rounding),
 * and the row dot of decoding (dot_f16_row, at the end).
 *
 * Why not dequantize + oneDNN sgemm (the path before): that wrote a panel of
 * float rows, then oneDNN packed the panel and the activations again for
 * every panel; at K = 1536 (FFN down) the 1 MiB panel held 170 rows and the
 * repeated packing of x left the GEMM at ~80 GFLOP/s of one Zen 4 core
 * against ~103 at K = 576. Here the weights are widened (vcvtph2ps) straight
 * into the micro-kernel's layout, and x is packed once per call.
 *
 * Layout (GotoBLAS): x packed into panels of GF_MR rows, k-major (xp[k*MR+i],
 * shape (ceil(M/MR), K, MR) floats, zero-padded); each thread takes an
 * equal share of the weight rows in panels of GF_NR, widens a block of
 * panels at a time into k-major panels (bp[k*NR+j], ~512 KiB in all, half of
 * Zen 4's L2), then runs the MR x NR micro-kernel over every row panel of x,
 * the whole K in registers.
 *
 * Summation order: every output is one multiply-add chain over k = 0..K-1
 * in order from 0, whatever M, N, the tile or the thread count; so a row's
 * result does not depend on the other rows of the batch. (The decode
 * matvec keeps its own lane order; serving's batch-invariant mode uses the
 * matvec for every row.) */
#include "kernels/kernels.h"
#include "kernels/quant.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define GF_TGT __attribute__((target("avx512f,avx512vl,avx2,fma,f16c")))
/* Micro-tile: GF_MR rows of x by GF_NR = 2 zmm columns of W: 24 accumulator
 * registers, 2 for the widened weights, 1 broadcast (27 of the 32 zmm). */
#define GF_MR 12
#define GF_NR 32
/* Bytes of widened weights per thread block (about half of Zen 4's L2). */
#define GF_BLOCK_BYTES (512u << 10)

/* In-register transpose of a 16 x 16 block: r[j] = row j on entry; on
 * exit r[c] = column c (rows 0..15 in order). */
GF_TGT static inline __attribute__((always_inline)) void transpose16(__m512 *r) {
    __m512 t[16];
    for (int j = 0; j < 16; j += 2) {
        t[j] = _mm512_unpacklo_ps(r[j], r[j + 1]);
        t[j + 1] = _mm512_unpackhi_ps(r[j], r[j + 1]);
    }
    for (int j = 0; j < 16; j += 4) {
        r[j] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[j]), _mm512_castps_pd(t[j + 2])));
        r[j + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[j]), _mm512_castps_pd(t[j + 2])));
        r[j + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[j + 1]), _mm512_castps_pd(t[j + 3])));
        r[j + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[j + 1]), _mm512_castps_pd(t[j + 3])));
    }
    /* r[4q + c], 128-bit lane L: column 4L + c of rows 4q..4q+3 */
    for (int c = 0; c < 4; c++) {
        t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88); /* lanes 0, 2 of rows 0-3, then of rows 4-7 */
        t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd); /* lanes 1, 3 */
        t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
        t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
    }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xdd);
        r[4 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xdd);
    }
}

/* Widen rows [n0, n0+nr) of W (nr <= GF_NR) into one k-major panel dst
 * (K x GF_NR floats); the missing columns of a last partial panel are 0.
 * 16 x 16 blocks: 16 rows widened into registers, transposed there. */
GF_TGT static void pack_panel(float *dst, const uint16_t *W, int K, int n0, int nr) {
    for (int h = 0; h < GF_NR; h += 16) {
        int k = 0;
        for (; k + 16 <= K; k += 16) {
            __m512 r[16];
            for (int j = 0; j < 16; j++)
                r[j] = h + j < nr ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(W + (size_t)(n0 + h + j) * K + k)))
                                  : _mm512_setzero_ps();
            transpose16(r);
            for (int c = 0; c < 16; c++) _mm512_storeu_ps(dst + (size_t)(k + c) * GF_NR + h, r[c]);
        }
        for (; k < K; k++)
            for (int j = 0; j < 16; j++) dst[(size_t)k * GF_NR + h + j] = h + j < nr ? fp16_to_f32(W[(size_t)(n0 + h + j) * K + k]) : 0.0f;
    }
}

/* Rows [m0, m0+mr) of x into one k-major panel (K x GF_MR, zero rows past
 * mr), 16 columns at a time through the same transpose. */
GF_TGT static void pack_x(float *dst, const float *x, int K, int m0, int mr) {
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; i++) r[i] = i < mr ? _mm512_loadu_ps(x + (size_t)(m0 + i) * K + k) : _mm512_setzero_ps();
        transpose16(r);
        for (int c = 0; c < 16; c++) _mm512_mask_storeu_ps(dst + (size_t)(k + c) * GF_MR, (1u << GF_MR) - 1, r[c]);
    }
    for (; k < K; k++)
        for (int i = 0; i < GF_MR; i++) dst[(size_t)k * GF_MR + i] = i < mr ? x[(size_t)(m0 + i) * K + k] : 0.0f;
}

/* out rows [0, mr) x columns [0, nr) (row stride ldc) = xp-panel · bp-panel
 * over K: MR x 32 accumulators in registers, one multiply-add per k each. */
GF_TGT static inline __attribute__((always_inline)) void micro(const int mr, const float *xp, const float *bp, int K,
                                                               float *out, int ldc, int nr) {
    __m512 c0[GF_MR], c1[GF_MR];
#pragma GCC unroll 12
    for (int i = 0; i < mr; i++) c0[i] = _mm512_setzero_ps(), c1[i] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        const __m512 b0 = _mm512_loadu_ps(bp + (size_t)k * GF_NR), b1 = _mm512_loadu_ps(bp + (size_t)k * GF_NR + 16);
#pragma GCC unroll 12
        for (int i = 0; i < mr; i++) {
            const __m512 a = _mm512_set1_ps(xp[(size_t)k * GF_MR + i]);
            c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
        }
    }
    const __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? 0xffff : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
#pragma GCC unroll 12
    for (int i = 0; i < mr; i++) {
        _mm512_mask_storeu_ps(out + (size_t)i * ldc, m0, c0[i]);
        _mm512_mask_storeu_ps(out + (size_t)i * ldc + 16, m1, c1[i]);
    }
}

/* One micro-kernel call with the row count as a constant (registers). */
GF_TGT static void micro_any(int mr, const float *xp, const float *bp, int K, float *out, int ldc, int nr) {
    switch (mr) {
#define GF_CASE(r) case r: micro(r, xp, bp, K, out, ldc, nr); break;
    GF_CASE(1) GF_CASE(2) GF_CASE(3) GF_CASE(4) GF_CASE(5) GF_CASE(6)
    GF_CASE(7) GF_CASE(8) GF_CASE(9) GF_CASE(10) GF_CASE(11) GF_CASE(12)
#undef GF_CASE
    default: break;
    }
}

int gemm_f16_available(void) { return kernel_isa() >= ISA_AVX512; }

/* ---- decode: one weight row · x ----------------------------------------- */
#define GF_TGT2 __attribute__((target("avx2,fma,f16c")))

/* 4 accumulators of 8 lanes over k (lane k % 32), ((s0+s1)+(s2+s3)), then
 * the horizontal sum (lo+hi halves, then pairs), then the scalar tail: the
 * order the F16 dot always had, for every row of every batch size.
 * No software prefetch: on Zen 4 the hardware prefetcher alone streams the
 * contiguous rows faster (SmolLM2-135M's 270 MB per token, one thread, CPU
 * time under load: 18.6 GB/s with a prefetch 1 KiB ahead per 64 bytes,
 * 23.4 GB/s without, the same as a plain read loop). */
GF_TGT2 static float dot_f16_row(const void *w, const QAct *a, const float *x, int64_t K) {
    (void)a;
    const uint16_t *h = w;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= K; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i + 8))), _mm256_loadu_ps(x + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i + 16))), _mm256_loadu_ps(x + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i + 24))), _mm256_loadu_ps(x + i + 24), s3);
    }
    for (; i + 8 <= K; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))), _mm256_loadu_ps(x + i), s0);
    const __m256 v = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    t = _mm_add_ps(t, _mm_movehl_ps(t, t));
    t = _mm_add_ss(t, _mm_movehdup_ps(t));
    float r = _mm_cvtss_f32(t);
    for (; i < K; i++) r += _cvtsh_ss(h[i]) * x[i];
    return r;
}

QDotFn quant_dot_f16_fn(void) { return kernel_isa() >= ISA_AVX2 ? dot_f16_row : NULL; }

/* One part's share for thread t of nth: an equal share of W's column
 * panels (the rounding of N to whole blocks left one of two threads with
 * 448 of N = 576), widened bpan panels at a time into mine, each block run
 * against every row panel of xp. */
GF_TGT static void f16_part(const float *xp, float *mine, const uint16_t *W, float *out, int M, int N, int K, int bpan,
                            int t, int nth) {
    const int mp = (M + GF_MR - 1) / GF_MR, np = (N + GF_NR - 1) / GF_NR;
    const int q0 = (int)((long)np * t / nth), q1 = (int)((long)np * (t + 1) / nth);
    for (int b0 = q0; b0 < q1; b0 += bpan) {
        const int n0 = b0 * GF_NR, nend = (b0 + bpan < q1 ? b0 + bpan : q1) * GF_NR, nb = (nend < N ? nend : N) - n0;
        for (int j = 0; j < nb; j += GF_NR)
            pack_panel(mine + (size_t)j * K, W, K, n0 + j, nb - j < GF_NR ? nb - j : GF_NR);
        for (int p = 0; p < mp; p++) {
            const int mr = M - p * GF_MR < GF_MR ? M - p * GF_MR : GF_MR;
            for (int j = 0; j < nb; j += GF_NR)
                micro_any(mr, xp + (size_t)p * K * GF_MR, mine + (size_t)j * K, K, out + (size_t)p * GF_MR * N + n0 + j, N,
                          nb - j < GF_NR ? nb - j : GF_NR);
        }
    }
}

int gemm_f16_parts(const float *x, int M, int K, const QMMPart *parts, int n_parts) {
    if (M <= 0) return 0;
    if (K <= 0 || !gemm_f16_available()) return ERR_UNSUPPORTED;
    const int mp = (M + GF_MR - 1) / GF_MR;                     /* row panels of x */
    int bpan = (int)(GF_BLOCK_BYTES / ((size_t)K * 4 * GF_NR)); /* panels per widened block */
    if (bpan < 1) bpan = 1;
    const int nth = omp_in_parallel() ? 1 : omp_get_max_threads();
    /* not xalloc: its clearing cost ~1% of a prompt, and the packing writes
     * every float of both (padding included) before it is read */
    float *xp = aligned_alloc(64, ((size_t)mp * K * GF_MR * sizeof(float) + 63) & ~(size_t)63); /* (mp, K, MR) */
    float *bp = aligned_alloc(64, (size_t)nth * bpan * GF_NR * K * sizeof(float)); /* per thread (bpan, K, NR), 128-byte rows */
    if (!xp || !bp) return free(xp), free(bp), ERR_NOMEM;
    /* x packed once for every part (q, k and v share it; so do gate and
     * up), all parts in one parallel region */
#pragma omp parallel num_threads(nth)
    {
        const int t = omp_get_thread_num();
#pragma omp for schedule(static)
        for (int p = 0; p < mp; p++)
            pack_x(xp + (size_t)p * K * GF_MR, x, K, p * GF_MR, M - p * GF_MR < GF_MR ? M - p * GF_MR : GF_MR);
        for (int i = 0; i < n_parts; i++)
            if (parts[i].N > 0)
                f16_part(xp, bp + (size_t)t * bpan * GF_NR * K, (const uint16_t *)parts[i].W, parts[i].out, M, parts[i].N, K,
                         bpan, t, nth);
    }
    free(xp);
    free(bp);
    return 0;
}

int gemm_f16(float *out, const float *x, const uint16_t *W, int M, int N, int K) {
    const QMMPart part = {out, W, N};
    return N <= 0 ? 0 : gemm_f16_parts(x, M, K, &part, 1);
}

#else
QDotFn quant_dot_f16_fn(void) { return NULL; }
int gemm_f16_available(void) { return 0; }
int gemm_f16(float *out, const float *x, const uint16_t *W, int M, int N, int K) {
    (void)out, (void)x, (void)W, (void)M, (void)N, (void)K;
    return ERR_UNSUPPORTED;
}
#endif
