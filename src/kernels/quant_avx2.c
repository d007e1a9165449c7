/* AVX2 + FMA + F16C dot products, chosen at run time (target attributes,
 * so the file builds for any x86-64 and the dispatcher falls back to the
 * scalar code on CPUs without them).
 *
 * Integer core: maddubs(unsigned weights, signed activations) gives int16
 * pair sums without overflow for every format here (at most 63*127*2), then
 * madd with 1 (or the sub-block scale) widens to int32. Signed weights use
 * |w| and sign(a, w), which leaves the products unchanged. */
#include "kernels/quant_avx2_inl.h"

#if defined(__x86_64__) || defined(__i386__)

/* Software prefetch distance of the matvecs (generation), bytes ahead of
 * the block being read: the rows of a matrix are contiguous, so this runs
 * into the next rows. Whether it pays depends on the core's own prefetcher:
 * on Zen 3 (AVX2 only) the hardware prefetcher alone left a single core ~25%
 * under its read bandwidth and Q8_0 tg128 at one thread went from ~56 to ~68
 * tokens/s with it; on Zen 4 (AVX-512) it costs: Q8_0 tg128 at one thread
 * 118-120 tokens/s with it, 126-131 without (docs/benchmarks.md). So each
 * matvec comes in two variants (the `pf` argument, constant in each), and
 * matvec_prefetch() picks by the CPU: with AVX-512, none. Intel's AVX-512
 * cores are not measured yet. Same arithmetic either way. */
#define MATVEC_PREFETCH 1024

static int matvec_prefetch(void) { return !__builtin_cpu_supports("avx512f"); }

/* Every 64-byte line of one block (K-quant super-blocks span 2-4), MATVEC_PREFETCH ahead. */
TGT static inline void prefetch_block(const void *p, size_t bytes, int pf) {
    if (pf)
        for (size_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + o + MATVEC_PREFETCH, _MM_HINT_T0);
}

/* dot_NAME (with prefetch) and dot_NAME_nopf from dot_NAME_body(..., pf). */
#define MATVEC_VARIANTS(name)                                                                                    \
    TGT static float name(const void *w, const QAct *a, const float *x, int64_t K) {                             \
        return name##_body(w, a, x, K, 1);                                                                       \
    }                                                                                                            \
    TGT static float name##_nopf(const void *w, const QAct *a, const float *x, int64_t K) {                      \
        return name##_body(w, a, x, K, 0);                                                                       \
    }

/* One accumulator, blocks in order, the min term summed apart: the order
 * of ggml's vec_dot_q4_1_q8_1, so results match llama.cpp bit for bit. */
TGT static inline __attribute__((always_inline)) float dot_q4_1_body(const void *w, const QAct *a, const float *x, int64_t K,
                                                              const int pf) {
    (void)x;
    const BlockQ4_1 *b = w;
    __m256 acc = _mm256_setzero_ps();
    float summ = 0;
    for (int64_t i = 0; i < K / QK; i++) {
        if (pf) _mm_prefetch((const char *)(b + i) + MATVEC_PREFETCH, _MM_HINT_T0);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b[i].d) * a->d[i]),
                              _mm256_cvtepi32_ps(dot_us(nibbles(b[i].qs), load_q8(a->qs + i * QK))), acc);
        summ = fmaf(h2f(b[i].m), a->s[i], summ);
    }
    return hsum_ps(acc) + summ;
}
MATVEC_VARIANTS(dot_q4_1)


TGT static inline __attribute__((always_inline)) float dot_q5_1_body(const void *w, const QAct *a, const float *x, int64_t K,
                                                              const int pf) {
    (void)x;
    const BlockQ5_1 *b = w;
    __m256 acc = _mm256_setzero_ps();
    float summ = 0;
    for (int64_t i = 0; i < K / QK; i++) {
        if (pf) _mm_prefetch((const char *)(b + i) + MATVEC_PREFETCH, _MM_HINT_T0);
        const __m256i hi = _mm256_and_si256(bits_to_bytes(b[i].qh), _mm256_set1_epi8(0x10));
        const __m256i wv = _mm256_or_si256(nibbles(b[i].qs), hi);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b[i].d) * a->d[i]),
                              _mm256_cvtepi32_ps(dot_us(wv, load_q8(a->qs + i * QK))), acc);
        summ += h2f(b[i].m) * a->s[i];
    }
    return hsum_ps(acc) + summ;
}
MATVEC_VARIANTS(dot_q5_1)

/* ggml's vec_dot_q8_0_q8_0 order (one accumulator, blocks in order). */
TGT static inline __attribute__((always_inline)) float dot_q8_0_body(const void *w, const QAct *a, const float *x, int64_t K,
                                                              const int pf) {
    (void)x;
    const BlockQ8_0 *b = w;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < K / QK; i++) {
        if (pf) _mm_prefetch((const char *)(b + i) + MATVEC_PREFETCH, _MM_HINT_T0);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b[i].d) * a->d[i]),
                              _mm256_cvtepi32_ps(dot_ss(load_q8(b[i].qs), load_q8(a->qs + i * QK))), acc);
    }
    return hsum_ps(acc);
}
MATVEC_VARIANTS(dot_q8_0)

/* Q4_K / Q5_K: 8 scales and mins per super-block, in the K-quant
 * block-total order (quant_blocks.h): the exact integer totals isum (the
 * scale multiplies int16 pair sums via madd) and msum (mins times the
 * activation 16-sums), then two FMAs per super-block, as the scalar
 * reference and the VNNI panels (quant_blocksum.c). */
TGT static inline void dot_kq(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, const int8_t *q8,
                              const int16_t *bs, int *isum, int *msum) {
    uint8_t sc[8], mn[8];
    int summ = 0;
    for (int j = 0; j < 8; j++) {
        kq_scale_min(j, scales, &sc[j], &mn[j]);
        summ += mn[j] * (bs[2 * j] + bs[2 * j + 1]);
    }
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i hv = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    __m256i sumi = _mm256_setzero_si256();
    for (int j = 0; j < 4; j++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if (qh) {
            const __m256i one = _mm256_set1_epi8(1);
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hv, 2 * j), one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hv, 2 * j + 1), one), 4));
        }
        const __m256i plo = _mm256_maddubs_epi16(lo, load_q8(q8 + 64 * j));
        const __m256i phi = _mm256_maddubs_epi16(hi, load_q8(q8 + 64 * j + 32));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(plo, _mm256_set1_epi16(sc[2 * j])));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(phi, _mm256_set1_epi16(sc[2 * j + 1])));
    }
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(sumi), _mm256_extracti128_si256(sumi, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    *isum = _mm_cvtsi128_si32(s), *msum = summ;
}

TGT static inline float kq_step(float acc, uint16_t dh, uint16_t dmh, float da, int isum, int msum) {
    acc = fmaf(h2f(dh) * da, (float)isum, acc);
    return fmaf(-(h2f(dmh) * da), (float)msum, acc);
}

TGT static inline __attribute__((always_inline)) float dot_q4_K_body(const void *w, const QAct *a, const float *x, int64_t K,
                                                              const int pf) {
    (void)x;
    const BlockQ4_K *b = w;
    float acc = 0;
    for (int64_t i = 0; i < K / QK_K; i++) {
        prefetch_block(b + i, sizeof *b, pf);
        int isum, msum;
        dot_kq(b[i].scales, b[i].qs, NULL, a->qs + i * QK_K, a->bsums + i * 16, &isum, &msum);
        acc = kq_step(acc, b[i].d, b[i].dmin, a->d[i], isum, msum);
    }
    return acc;
}
MATVEC_VARIANTS(dot_q4_K)

TGT static inline __attribute__((always_inline)) float dot_q5_K_body(const void *w, const QAct *a, const float *x, int64_t K,
                                                              const int pf) {
    (void)x;
    const BlockQ5_K *b = w;
    float acc = 0;
    for (int64_t i = 0; i < K / QK_K; i++) {
        prefetch_block(b + i, sizeof *b, pf);
        int isum, msum;
        dot_kq(b[i].scales, b[i].qs, b[i].qh, a->qs + i * QK_K, a->bsums + i * 16, &isum, &msum);
        acc = kq_step(acc, b[i].d, b[i].dmin, a->d[i], isum, msum);
    }
    return acc;
}
MATVEC_VARIANTS(dot_q5_K)

TGT static inline __attribute__((always_inline)) float dot_q6_K_body(const void *w, const QAct *a, const float *x, int64_t K,
                                                              const int pf) {
    (void)x;
    const BlockQ6_K *b = w;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < K / QK_K; i++) {
        prefetch_block(b + i, sizeof *b, pf);
        const int8_t *q8 = a->qs + i * QK_K, *sc = b[i].scales;
        const int16_t *bs = a->bsums + i * 16;
        int off = 0; /* the -32 of every level, via the activation sums */
        for (int j = 0; j < 16; j++) off += sc[j] * bs[j];
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(b[i].ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(b[i].ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(b[i].qh + 32 * h));
            for (int k = 0; k < 4; k++) {
                const __m256i l = k & 1 ? l1 : l0;
                const __m256i lo = k >= 2 ? _mm256_and_si256(_mm256_srli_epi16(l, 4), m4) : _mm256_and_si256(l, m4);
                const __m256i hb = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), m3), 4);
                const __m256i q = _mm256_or_si256(lo, hb);
                const __m256i p = _mm256_maddubs_epi16(q, load_q8(q8 + 128 * h + 32 * k));
                const int s = 8 * h + 2 * k;
                const __m256i scv = _mm256_set_m128i(_mm_set1_epi16(sc[s + 1]), _mm_set1_epi16(sc[s]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scv));
            }
        }
        sumi = _mm256_sub_epi32(sumi, _mm256_setr_epi32(32 * off, 0, 0, 0, 0, 0, 0, 0));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b[i].d) * a->d[i]), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc);
}
MATVEC_VARIANTS(dot_q6_K)

TGT static inline __m256 load_bf16(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

TGT static inline __attribute__((always_inline)) float dot_bf16_body(const void *w, const QAct *a, const float *x, int64_t K,
                                                              const int pf) {
    (void)a;
    const uint16_t *h = w;
    /* four chains over 32 values (a cache line of weights per pass): two
     * chains of 4-cycle FMAs held a core to ~22 GB/s of weights even from L2 */
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= K; i += 32) {
        if (pf) _mm_prefetch((const char *)(h + i) + MATVEC_PREFETCH, _MM_HINT_T0);
        s0 = _mm256_fmadd_ps(load_bf16(h + i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(load_bf16(h + i + 8), _mm256_loadu_ps(x + i + 8), s1);
        s2 = _mm256_fmadd_ps(load_bf16(h + i + 16), _mm256_loadu_ps(x + i + 16), s2);
        s3 = _mm256_fmadd_ps(load_bf16(h + i + 24), _mm256_loadu_ps(x + i + 24), s3);
    }
    for (; i + 16 <= K; i += 16) {
        s0 = _mm256_fmadd_ps(load_bf16(h + i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(load_bf16(h + i + 8), _mm256_loadu_ps(x + i + 8), s1);
    }
    float r = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < K; i++) r += bf16_to_f32(h[i]) * x[i];
    return r;
}
MATVEC_VARIANTS(dot_bf16)

/* ---- activation quantization (Q8, 32-blocks) ------------------------------------------
 * Same arithmetic as the scalar act_q8: id = 127/amax, round half to even,
 * d and d*sum rounded to half precision. */
#define RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

TGT static void act_q8_avx2(const float *x, int64_t K, int8_t *qs, float *dd, float *ss, float *qsum) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (int64_t b = 0; b < K / QK; b++) {
        const float *xb = x + b * QK;
        __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8), v2 = _mm256_loadu_ps(xb + 16),
               v3 = _mm256_loadu_ps(xb + 24);
        __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, absmask), _mm256_and_ps(v1, absmask)),
                                  _mm256_max_ps(_mm256_and_ps(v2, absmask), _mm256_and_ps(v3, absmask)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float d = amax / 127.f, id = amax != 0.0f ? 127.f / amax : 0.0f;
        const __m256 idv = _mm256_set1_ps(id);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, idv), RNE));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, idv), RNE));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, idv), RNE));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, idv), RNE));
        const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
        /* pack 32 int32 -> 32 int8 in order (packs work per 128-bit lane: fix with a permute) */
        const __m256i p01 = _mm256_packs_epi32(i0, i1), p23 = _mm256_packs_epi32(i2, i3);
        __m256i p = _mm256_packs_epi16(p01, p23);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(qs + b * QK), p);
        dd[b] = _cvtsh_ss(_cvtss_sh(d, 0));
        ss[b] = _cvtsh_ss(_cvtss_sh(d * (float)_mm_cvtsi128_si32(s4), 0));
        qsum[b] = (float)_mm_cvtsi128_si32(s4);
    }
}

TGT static inline int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* Q8_K activations, bit-identical to the scalar act_q8_K: the scale comes
 * from the FIRST element of largest magnitude (its sign matters). */
TGT static void act_q8_K_avx2(const float *x, int64_t K, int8_t *qs, float *dd, int16_t *bsums) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (int64_t b = 0; b < K / QK_K; b++, x += QK_K, qs += QK_K, bsums += 16) {
        __m256 mx = _mm256_setzero_ps();
        for (int j = 0; j < QK_K; j += 8) mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(x + j), absmask));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        if (amax == 0.0f) {
            dd[b] = 0;
            memset(qs, 0, QK_K);
            memset(bsums, 0, 32);
            continue;
        }
        const __m256 av = _mm256_set1_ps(amax);
        float max = 0;
        for (int j = 0; j < QK_K; j += 8) {
            const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(x + j), absmask), av, _CMP_EQ_OQ));
            if (mask) {
                max = x[j + __builtin_ctz((unsigned)mask)];
                break;
            }
        }
        const float iscale = -127.f / max;
        const __m256 is = _mm256_set1_ps(iscale);
        for (int j = 0; j < QK_K; j += 32) {
            __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(is, _mm256_loadu_ps(x + j)), RNE));
            __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(is, _mm256_loadu_ps(x + j + 8)), RNE));
            __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(is, _mm256_loadu_ps(x + j + 16)), RNE));
            __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(is, _mm256_loadu_ps(x + j + 24)), RNE));
            const __m256i c127 = _mm256_set1_epi32(127);
            i0 = _mm256_min_epi32(i0, c127), i1 = _mm256_min_epi32(i1, c127);
            i2 = _mm256_min_epi32(i2, c127), i3 = _mm256_min_epi32(i3, c127);
            bsums[j / 16] = (int16_t)hsum_epi32(_mm256_add_epi32(i0, i1));
            bsums[j / 16 + 1] = (int16_t)hsum_epi32(_mm256_add_epi32(i2, i3));
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
            p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(qs + j), p);
        }
        dd[b] = 1 / iscale;
    }
}

QActQ8KFn quant_act_q8_K_fn_avx2(void) {
    if (kernel_isa() < ISA_AVX2) return NULL;
    return act_q8_K_avx2;
}

QActQ8Fn quant_act_q8_fn_avx2(void) {
    if (kernel_isa() < ISA_AVX2) return NULL;
    return act_q8_avx2;
}

/* ---- four weight rows at once (M = 1 hot path) --------------------------------------
 * One activation load and one half->float conversion of the four rows'
 * scales per block, four independent accumulation chains. */
TGT static inline __m256 lane(__m256 v, int k) { return _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(k)); }

/* The first 4 bytes of block i of each of the four rows, as 8 halves: for
 * Q4_1 (d, m) pairs; for Q4_0/Q8_0 d and two bytes of quants (ignored).
 * Plain 32-bit loads and 3 shuffles: building the vector from 16-bit
 * inserts costs four times as many instructions. */
TGT static inline __m256 heads4(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3) {
    const __m128i a = _mm_unpacklo_epi32(ld32(p0), ld32(p1)), b = _mm_unpacklo_epi32(ld32(p2), ld32(p3));
    return _mm256_cvtph_ps(_mm_unpacklo_epi64(a, b));
}

#define ROWS4(T)                                                                                             \
    const T *b0 = (const void *)w, *b1 = (const void *)(w + rb), *b2 = (const void *)(w + 2 * rb),           \
            *b3 = (const void *)(w + 3 * rb)

TGT static void dot4_q4_1(const uint8_t *w, size_t rb, const QAct *a, int64_t K, float *out) {
    ROWS4(BlockQ4_1);
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, mm = c0;
    for (int64_t i = 0; i < K / QK; i++) {
        const __m256i av = load_q8(a->qs + i * QK);
        const __m256 dm = heads4((const uint8_t *)&b0[i], (const uint8_t *)&b1[i], (const uint8_t *)&b2[i],
                                 (const uint8_t *)&b3[i]); /* d0 m0 d1 m1 d2 m2 d3 m3 */
        const __m256 dv = _mm256_mul_ps(dm, _mm256_set1_ps(a->d[i]));
        c0 = _mm256_fmadd_ps(lane(dv, 0), _mm256_cvtepi32_ps(dot_us(nibbles(b0[i].qs), av)), c0);
        c1 = _mm256_fmadd_ps(lane(dv, 2), _mm256_cvtepi32_ps(dot_us(nibbles(b1[i].qs), av)), c1);
        c2 = _mm256_fmadd_ps(lane(dv, 4), _mm256_cvtepi32_ps(dot_us(nibbles(b2[i].qs), av)), c2);
        c3 = _mm256_fmadd_ps(lane(dv, 6), _mm256_cvtepi32_ps(dot_us(nibbles(b3[i].qs), av)), c3);
        mm = _mm256_fmadd_ps(dm, _mm256_set1_ps(a->s[i]), mm); /* the odd lanes: m * s */
    }
    float m[8];
    _mm256_storeu_ps(m, mm);
    out[0] = hsum_ps(c0) + m[1], out[1] = hsum_ps(c1) + m[3], out[2] = hsum_ps(c2) + m[5], out[3] = hsum_ps(c3) + m[7];
}

TGT static void dot4_q8_0(const uint8_t *w, size_t rb, const QAct *a, int64_t K, float *out) {
    ROWS4(BlockQ8_0);
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    for (int64_t i = 0; i < K / QK; i++) {
        const __m256i av = load_q8(a->qs + i * QK);
        const __m256 dv = _mm256_mul_ps(heads4((const uint8_t *)&b0[i], (const uint8_t *)&b1[i], (const uint8_t *)&b2[i],
                                               (const uint8_t *)&b3[i]),
                                        _mm256_set1_ps(a->d[i]));
        c0 = _mm256_fmadd_ps(lane(dv, 0), _mm256_cvtepi32_ps(dot_ss(load_q8(b0[i].qs), av)), c0);
        c1 = _mm256_fmadd_ps(lane(dv, 2), _mm256_cvtepi32_ps(dot_ss(load_q8(b1[i].qs), av)), c1);
        c2 = _mm256_fmadd_ps(lane(dv, 4), _mm256_cvtepi32_ps(dot_ss(load_q8(b2[i].qs), av)), c2);
        c3 = _mm256_fmadd_ps(lane(dv, 6), _mm256_cvtepi32_ps(dot_ss(load_q8(b3[i].qs), av)), c3);
    }
    out[0] = hsum_ps(c0), out[1] = hsum_ps(c1), out[2] = hsum_ps(c2), out[3] = hsum_ps(c3);
}

/* Q5_1: 5-bit unsigned levels (nibble | fifth bit << 4). (Q4_0 and Q5_0
 * have their eight-row kernels in quant_blocksum.c.) */

TGT static void dot4_q5_1(const uint8_t *w, size_t rb, const QAct *a, int64_t K, float *out) {
    ROWS4(BlockQ5_1);
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, mm = c0;
    for (int64_t i = 0; i < K / QK; i++) {
        const __m256i av = load_q8(a->qs + i * QK);
        const __m256 dm = heads4((const uint8_t *)&b0[i], (const uint8_t *)&b1[i], (const uint8_t *)&b2[i],
                                 (const uint8_t *)&b3[i]);
        const __m256 dv = _mm256_mul_ps(dm, _mm256_set1_ps(a->d[i]));
        c0 = _mm256_fmadd_ps(lane(dv, 0), _mm256_cvtepi32_ps(dot_us(levels5(b0[i].qs, b0[i].qh), av)), c0);
        c1 = _mm256_fmadd_ps(lane(dv, 2), _mm256_cvtepi32_ps(dot_us(levels5(b1[i].qs, b1[i].qh), av)), c1);
        c2 = _mm256_fmadd_ps(lane(dv, 4), _mm256_cvtepi32_ps(dot_us(levels5(b2[i].qs, b2[i].qh), av)), c2);
        c3 = _mm256_fmadd_ps(lane(dv, 6), _mm256_cvtepi32_ps(dot_us(levels5(b3[i].qs, b3[i].qh), av)), c3);
        mm = _mm256_fmadd_ps(dm, _mm256_set1_ps(a->s[i]), mm);
    }
    float m[8];
    _mm256_storeu_ps(m, mm);
    out[0] = hsum_ps(c0) + m[1], out[1] = hsum_ps(c1) + m[3], out[2] = hsum_ps(c2) + m[5], out[3] = hsum_ps(c3) + m[7];
}

QDot4Fn quant_dot4_fn_avx2(int t) {
    if (kernel_isa() < ISA_AVX2) return NULL;
    switch (t) {
    case DT_Q4_1: return dot4_q4_1;
    case DT_Q8_0: return dot4_q8_0;
    case DT_Q5_1: return dot4_q5_1;
    default: return NULL;
    }
}

/* ---- dequantization (feeds the f32 GEMM path; must be cheap) ------------------------ */
/* y[0..32) = d * v + m for 32 int8 values v. */
TGT static inline void store32(float *y, __m256i v, __m256 d, __m256 m) {
    const __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
    _mm256_storeu_ps(y, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), d, m));
    _mm256_storeu_ps(y + 8, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), d, m));
    _mm256_storeu_ps(y + 16, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), d, m));
    _mm256_storeu_ps(y + 24, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), d, m));
}

TGT static void deq_q4_0(const void *src, float *y, int64_t n) {
    const BlockQ4_0 *b = src;
    const __m256i off = _mm256_set1_epi8(8);
    for (int64_t i = 0; i < n / QK; i++, y += QK)
        store32(y, _mm256_sub_epi8(nibbles(b[i].qs), off), _mm256_set1_ps(h2f(b[i].d)), _mm256_setzero_ps());
}

TGT static void deq_q4_1(const void *src, float *y, int64_t n) {
    const BlockQ4_1 *b = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK)
        store32(y, nibbles(b[i].qs), _mm256_set1_ps(h2f(b[i].d)), _mm256_set1_ps(h2f(b[i].m)));
}

TGT static void deq_q5_0(const void *src, float *y, int64_t n) {
    const BlockQ5_0 *b = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const __m256i hi = _mm256_andnot_si256(bits_to_bytes(b[i].qh), _mm256_set1_epi8((char)0xF0));
        store32(y, _mm256_or_si256(nibbles(b[i].qs), hi), _mm256_set1_ps(h2f(b[i].d)), _mm256_setzero_ps());
    }
}

TGT static void deq_q5_1(const void *src, float *y, int64_t n) {
    const BlockQ5_1 *b = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const __m256i hi = _mm256_and_si256(bits_to_bytes(b[i].qh), _mm256_set1_epi8(0x10));
        store32(y, _mm256_or_si256(nibbles(b[i].qs), hi), _mm256_set1_ps(h2f(b[i].d)), _mm256_set1_ps(h2f(b[i].m)));
    }
}

TGT static void deq_q8_0(const void *src, float *y, int64_t n) {
    const BlockQ8_0 *b = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK)
        store32(y, load_q8(b[i].qs), _mm256_set1_ps(h2f(b[i].d)), _mm256_setzero_ps());
}

TGT static void deq_kq(const void *src, float *y, int64_t n, int five) {
    const uint8_t *p = src;
    const size_t bb = five ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < n / QK_K; i++, p += bb) {
        const BlockQ4_K *b4 = (const BlockQ4_K *)p; /* d, dmin, scales share the layout */
        const uint8_t *qs = five ? ((const BlockQ5_K *)p)->qs : b4->qs;
        const __m256i hv = five ? _mm256_loadu_si256((const __m256i *)((const BlockQ5_K *)p)->qh) : _mm256_setzero_si256();
        const float d = h2f(b4->d), dmin = h2f(b4->dmin);
        for (int j = 0; j < 4; j++, y += 64) {
            uint8_t s1, m1, s2, m2;
            kq_scale_min(2 * j, b4->scales, &s1, &m1);
            kq_scale_min(2 * j + 1, b4->scales, &s2, &m2);
            const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
            __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (five) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hv, 2 * j), one), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hv, 2 * j + 1), one), 4));
            }
            store32(y, lo, _mm256_set1_ps(d * s1), _mm256_set1_ps(-dmin * m1));
            store32(y + 32, hi, _mm256_set1_ps(d * s2), _mm256_set1_ps(-dmin * m2));
        }
    }
}

TGT static void deq_q4_K(const void *src, float *y, int64_t n) { deq_kq(src, y, n, 0); }
TGT static void deq_q5_K(const void *src, float *y, int64_t n) { deq_kq(src, y, n, 1); }

TGT static void deq_q6_K(const void *src, float *y, int64_t n) {
    const BlockQ6_K *b = src;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3), off = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(b[i].d);
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(b[i].ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(b[i].ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(b[i].qh + 32 * h));
            for (int k = 0; k < 4; k++, y += 32) {
                const __m256i l = k & 1 ? l1 : l0;
                const __m256i lo = k >= 2 ? _mm256_and_si256(_mm256_srli_epi16(l, 4), m4) : _mm256_and_si256(l, m4);
                const __m256i hb = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), m3), 4);
                const __m256i q = _mm256_sub_epi8(_mm256_or_si256(lo, hb), off);
                const int s = 8 * h + 2 * k;
                /* two sub-blocks of 16 with their own scales */
                const __m128i qlo = _mm256_castsi256_si128(q), qhi = _mm256_extracti128_si256(q, 1);
                const __m256 d0 = _mm256_set1_ps(d * b[i].scales[s]), d1 = _mm256_set1_ps(d * b[i].scales[s + 1]);
                _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(qlo)), d0));
                _mm256_storeu_ps(y + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(qlo, 8))), d0));
                _mm256_storeu_ps(y + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(qhi)), d1));
                _mm256_storeu_ps(y + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(qhi, 8))), d1));
            }
        }
    }
}

TGT static void deq_f16(const void *src, float *y, int64_t n) {
    const uint16_t *h = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++) y[i] = h2f(h[i]);
}

TGT static void deq_bf16(const void *src, float *y, int64_t n) {
    const uint16_t *h = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, load_bf16(h + i));
    for (; i < n; i++) y[i] = bf16_to_f32(h[i]);
}

QDequantFn quant_dequant_fn_avx2(int t) {
    if (kernel_isa() < ISA_AVX2) return NULL;
    switch (t) {
    case DT_Q4_0: return deq_q4_0;
    case DT_Q4_1: return deq_q4_1;
    case DT_Q5_0: return deq_q5_0;
    case DT_Q5_1: return deq_q5_1;
    case DT_Q8_0: return deq_q8_0;
    case DT_Q4_K: return deq_q4_K;
    case DT_Q5_K: return deq_q5_K;
    case DT_Q6_K: return deq_q6_K;
    case DT_F16: return deq_f16;
    case DT_BF16: return deq_bf16;
    default: return NULL;
    }
}

QDotFn quant_dot_fn_avx2(int t) {
    if (kernel_isa() < ISA_AVX2) return NULL;
    const int pf = matvec_prefetch();
    switch (t) {
    case DT_Q4_0: case DT_Q5_0: return quant_blocksum_dot_fn_avx2(t);
    case DT_Q4_1: return pf ? dot_q4_1 : dot_q4_1_nopf;
    case DT_Q5_1: return pf ? dot_q5_1 : dot_q5_1_nopf;
    case DT_Q8_0: return pf ? dot_q8_0 : dot_q8_0_nopf;
    case DT_Q4_K: return pf ? dot_q4_K : dot_q4_K_nopf;
    case DT_Q5_K: return pf ? dot_q5_K : dot_q5_K_nopf;
    case DT_Q6_K: return pf ? dot_q6_K : dot_q6_K_nopf;
    case DT_F16: return quant_dot_f16_fn(); /* gemm_f16.c */
    case DT_BF16: return pf ? dot_bf16 : dot_bf16_nopf;
    default: return NULL;
    }
}

#else
QDotFn quant_dot_fn_avx2(int t) {
    (void)t;
    return NULL;
}
QDequantFn quant_dequant_fn_avx2(int t) {
    (void)t;
    return NULL;
}
QDot4Fn quant_dot4_fn_avx2(int t) {
    (void)t;
    return NULL;
}
QActQ8Fn quant_act_q8_fn_avx2(void) { return NULL; }
QActQ8KFn quant_act_q8_K_fn_avx2(void) { return NULL; }
#endif
