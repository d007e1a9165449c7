/* Q4_0, Q5_0 (and Q4_K panels) in the block-total order, every path.
 *
 * None of these types has to match llama.cpp bit for bit
 * (quant_matches_llamacpp), so jarip fixes its own summation order, the one
 * that needs the fewest float operations: per 32-block the exact integer
 *   isum_i = sum_j w_j a_j = sum_j u_j a_j - off * sum_j a_j
 * (u the stored level, off 8 for Q4_0 and 16 for Q5_0), then one float
 * multiply-add per block and output, blocks in order from +0:
 *   acc = fmaf(d_w[i] * d_a[i], (float)isum_i, acc)
 * (|isum| < 2^24, so the conversion is exact). Q4_K per 256-block: isum =
 * sum_j sc_j <q, a>_j and msum = sum_j m_j sum(a)_j, then
 * acc = fmaf(d * d_a, (float)isum, acc); acc = fmaf(-(dmin * d_a), (float)msum, acc).
 * Every path below (and the scalar references, quant_ref.c and
 * quant_kquant.c, and the AVX2 K-quant dots) computes exactly that chain,
 * so an output has the same bits whichever kernel, batch size or thread
 * computed it (serving's batch invariance); the integer totals may be formed
 * any way.
 *
 * Kernels:
 *  - dot: one weight row (the QDotFn; tails). rows4: one row x 4 activations.
 *  - dot8: eight consecutive weight rows against one activation row
 *    (generation). Each row's block gives 8 int32 lane sums; the eight rows'
 *    lanes are reduced together by an unpack-and-add tree (~20 operations
 *    per 8 rows), then one conversion, scale and FMA serve all eight outputs.
 *  - panels (prompts and batched serving): 16 weight rows are unpacked once
 *    into an interleaved panel, quad q of row r at 4r of the q-th 64-byte
 *    vector, so one vpdpbusd of that vector with the activation quad
 *    broadcast gives 16 rows' partial sums: 8 vpdpbusd, a conversion, a
 *    scale and an FMA per block, activation row and 16 outputs, against ~5
 *    operations per output of a natural-layout tile (AVX2: maddubs on two
 *    8-row halves). The panel (quant_panel_bytes) is built per 16 rows and
 *    reused by every activation row of the call; the weights in memory keep
 *    GGML's layout. */
#include "kernels/quant_avx2_inl.h"

#include <stddef.h>
#include <stdlib.h>

#define BT_PANEL_BLOCK (QPANEL_ROWS * QK) /* bytes of levels per block in a panel */

/* Per 32 elements: Q4_0 / Q5_0 512 bytes of levels + 16 scales (576);
 * Q4_K 512 bytes of levels and, per 256, 16 x (8 int32 scales, 4 int16
 * min pairs, d, dmin) = 624 per 32. One size serves all three. */
#define BT_K_SB (8 * BT_PANEL_BLOCK + QPANEL_ROWS * (8 * 4 + 4 * 4 + 2 * 4)) /* Q4_K panel bytes per super-block */
size_t quant_panel_bytes(int64_t K) { return (size_t)(K / QK_K) * BT_K_SB + (size_t)(K % QK_K / QK) * 624; }

/* -off * sum(a) of a block. The sum is exact (|sum| <= 32 * 127) for finite
 * activations; a block holding Inf or NaN quantizes to saturated levels whose
 * sum is meaningless (its scale d makes the output NaN anyway), so it is
 * clamped to keep the integer arithmetic defined (a fuzzed GGUF found the
 * overflow). */
static inline int32_t offset_corr(int off, float qsum) {
    const float lim = 32.f * 128.f; /* comparisons, not fminf/fmaxf: those were library calls, 3% of a token */
    return -off * (int32_t)(qsum >= -lim ? (qsum <= lim ? qsum : lim) : -lim);
}

static int bt_kind(int t) { return t == DT_Q4_0 ? 0 : t == DT_Q5_0 ? 1 : t == DT_Q4_K ? 2 : -1; }
static int bt_off(int kind) { return kind == 0 ? 8 : 16; }

void quant_block_corr(int t, const QAct *acts, int M, int64_t nb, int32_t *corr) {
    if (t == DT_Q4_K) { /* per super-block: 4 int16 pairs of the sub-blocks' activation sums, 4 unused */
        for (int m = 0; m < M; m++)
            for (int64_t i = 0; i < nb / 8; i++)
                for (int k = 0; k < 8; k++) {
                    const int16_t *bs = acts[m].bsums + i * 16 + 4 * k;
                    corr[(size_t)m * nb + 8 * i + k] =
                        k < 4 ? (int32_t)((uint32_t)(uint16_t)(bs[0] + bs[1]) | (uint32_t)(uint16_t)(bs[2] + bs[3]) << 16) : 0;
                }
        return;
    }
    const int off = bt_off(bt_kind(t));
    for (int m = 0; m < M; m++)
        for (int64_t i = 0; i < nb; i++) corr[(size_t)m * nb + i] = offset_corr(off, acts[m].qsum[i]);
}

#if defined(__x86_64__) || defined(__i386__)

#define INL __attribute__((always_inline))

static size_t bt_bytes(int kind) { return kind == 0 ? sizeof(BlockQ4_0) : sizeof(BlockQ5_0); }

static inline int32_t bt_corr(int kind, const QAct *a, int64_t i) { return offset_corr(bt_off(kind), a->qsum[i]); }

/* The 32 levels of a block in element order (the nibbles: low then high). */
TGT static inline INL __m256i bt_levels(int kind, const uint8_t *blk) {
    return kind == 0 ? nibbles(blk + 2) : levels5(blk + 6, blk + 2);
}

TGT static inline int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

/* Totals of eight int32 x8 vectors, lane r = total of s[r]; the upper
 * 128-bit halves' part shifted right by sh first (the VNNI Q4_0 kernel
 * keeps the high nibbles times 16 there). The unpacks keep 128-bit halves
 * apart until the last step. */
TGT static inline INL __m256i bt_total8(const __m256i *s, int sh) {
    __m256i t[4]; /* unpack + add: 5% faster than vphaddd on Zen 4 (Q4_0 dot8, hot) */
    for (int k = 0; k < 4; k++)
        t[k] = _mm256_add_epi32(_mm256_unpacklo_epi32(s[2 * k], s[2 * k + 1]), _mm256_unpackhi_epi32(s[2 * k], s[2 * k + 1]));
    const __m256i x = _mm256_add_epi32(_mm256_unpacklo_epi64(t[0], t[1]), _mm256_unpackhi_epi64(t[0], t[1]));
    const __m256i y = _mm256_add_epi32(_mm256_unpacklo_epi64(t[2], t[3]), _mm256_unpackhi_epi64(t[2], t[3]));
    const __m256i lo = _mm256_permute2x128_si256(x, y, 0x20), hi = _mm256_permute2x128_si256(x, y, 0x31);
    return _mm256_add_epi32(lo, sh ? _mm256_srai_epi32(hi, sh) : hi);
}

/* The half scales d of blocks i0 .. i0+n of eight rows, row-interleaved:
 * dh[8*j + r] (plain 16-bit moves, done a chunk ahead of the dots: a
 * gather per block, or a vector load right after the eight stores, cost
 * more). */
#define BT_DCHUNK 32
static inline void bt_dh8(const uint8_t *w, size_t rb, size_t bs, int64_t i0, int64_t n, uint16_t *dh) {
    for (int r = 0; r < 8; r++)
        for (int64_t j = 0; j < n; j++) memcpy(&dh[8 * j + r], w + r * rb + (i0 + j) * bs, 2);
}

/* Prefetch of the next group of eight rows (8 rb bytes after row 0's
 * start), 3 lines per block of the group: 8 rows of a block are at most
 * 8 * 22 bytes, under 3 lines. */
TGT static inline INL void bt_prefetch_next(const uint8_t *row0, size_t rb, int64_t i) {
    const char *next = (const char *)row0 + 16 * rb + 192 * (size_t)i;
    _mm_prefetch(next, _MM_HINT_T0);
    _mm_prefetch(next + 64, _MM_HINT_T0);
    _mm_prefetch(next + 128, _MM_HINT_T0);
}

/* ---- AVX2 ---------------------------------------------------------------------------- */
TGT static inline INL float bt_dot(int kind, const void *w, const QAct *a, int64_t K) {
    const uint8_t *p = w;
    const size_t bs = bt_bytes(kind);
    float acc = 0;
    for (int64_t i = 0; i < K / QK; i++, p += bs) {
        _mm_prefetch((const char *)p + 1024, _MM_HINT_T0);
        uint16_t dh;
        memcpy(&dh, p, 2);
        const int isum = hsum_epi32(dot_us(bt_levels(kind, p), load_q8(a->qs + i * QK))) + bt_corr(kind, a, i);
        acc = fmaf(h2f(dh) * a->d[i], (float)isum, acc);
    }
    return acc;
}

TGT static float bt_dot_q4_0(const void *w, const QAct *a, const float *x, int64_t K) {
    (void)x;
    return bt_dot(0, w, a, K);
}
TGT static float bt_dot_q5_0(const void *w, const QAct *a, const float *x, int64_t K) {
    (void)x;
    return bt_dot(1, w, a, K);
}

TGT static inline INL void bt_dot8(int kind, const uint8_t *w, size_t rb, const QAct *a, int64_t K, float *out) {
    const size_t bs = bt_bytes(kind);
    const int64_t nb = K / QK;
    __m256 acc = _mm256_setzero_ps();
    _Alignas(16) uint16_t dh[BT_DCHUNK * 8];
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *p = w + i * bs;
        if (i % BT_DCHUNK == 0) bt_dh8(w, rb, bs, i, nb - i < BT_DCHUNK ? nb - i : BT_DCHUNK, dh);
        bt_prefetch_next(w, rb, i);
        const __m256i av = load_q8(a->qs + i * QK);
        __m256i s[8];
        for (int r = 0; r < 8; r++) s[r] = dot_us(bt_levels(kind, p + r * rb), av);
        const __m256i isum = _mm256_add_epi32(bt_total8(s, 0), _mm256_set1_epi32(bt_corr(kind, a, i)));
        acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtph_ps(_mm_load_si128((const __m128i *)(dh + 8 * (i % BT_DCHUNK)))), _mm256_set1_ps(a->d[i])), _mm256_cvtepi32_ps(isum), acc);
    }
    _mm256_storeu_ps(out, acc);
}

TGT static void bt_dot8_q4_0(const uint8_t *w, size_t rb, const QAct *a, int64_t K, float *out) { bt_dot8(0, w, rb, a, K, out); }
TGT static void bt_dot8_q5_0(const uint8_t *w, size_t rb, const QAct *a, int64_t K, float *out) { bt_dot8(1, w, rb, a, K, out); }

/* One weight row against four activation rows (QRows4Fn). */
TGT static inline INL void bt_rows4(int kind, const uint8_t *w, const QAct *a, int64_t K, float *out) {
    const size_t bs = bt_bytes(kind);
    __m128 acc = _mm_setzero_ps();
    for (int64_t i = 0; i < K / QK; i++) {
        const uint8_t *p = w + i * bs;
        const __m256i lv = bt_levels(kind, p);
        const __m256i s0 = dot_us(lv, load_q8(a[0].qs + i * QK)), s1 = dot_us(lv, load_q8(a[1].qs + i * QK));
        const __m256i s2 = dot_us(lv, load_q8(a[2].qs + i * QK)), s3 = dot_us(lv, load_q8(a[3].qs + i * QK));
        const __m256i x = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3));
        __m128i isum = _mm_add_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
        isum = _mm_add_epi32(isum, _mm_setr_epi32(bt_corr(kind, &a[0], i), bt_corr(kind, &a[1], i),
                                                  bt_corr(kind, &a[2], i), bt_corr(kind, &a[3], i)));
        uint16_t dh;
        memcpy(&dh, p, 2);
        const __m128 da = _mm_setr_ps(a[0].d[i], a[1].d[i], a[2].d[i], a[3].d[i]);
        acc = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(h2f(dh)), da), _mm_cvtepi32_ps(isum), acc);
    }
    _mm_storeu_ps(out, acc);
}

TGT static void bt_rows4_q4_0(const void *w, const QAct *a, int64_t K, float *out) { bt_rows4(0, w, a, K, out); }
TGT static void bt_rows4_q5_0(const void *w, const QAct *a, int64_t K, float *out) { bt_rows4(1, w, a, K, out); }

/* Eight rows' 32 levels (v[k]: row k) stored transposed by 4-byte quads:
 * dst + 64 q gets the 8 rows' quad q (the half of a panel vector). */
TGT static inline INL void bt_store_t8(const __m256i *v, uint8_t *dst) {
    __m256i t[8], u[8];
    for (int k = 0; k < 8; k += 2) t[k] = _mm256_unpacklo_epi32(v[k], v[k + 1]), t[k + 1] = _mm256_unpackhi_epi32(v[k], v[k + 1]);
    for (int h = 0; h < 8; h += 4) {
        u[h] = _mm256_unpacklo_epi64(t[h], t[h + 2]), u[h + 1] = _mm256_unpackhi_epi64(t[h], t[h + 2]);
        u[h + 2] = _mm256_unpacklo_epi64(t[h + 1], t[h + 3]), u[h + 3] = _mm256_unpackhi_epi64(t[h + 1], t[h + 3]);
    }
    for (int q = 0; q < 4; q++) {
        _mm256_storeu_si256((__m256i *)(dst + 64 * q), _mm256_permute2x128_si256(u[q], u[q + 4], 0x20));
        _mm256_storeu_si256((__m256i *)(dst + 64 * (q + 4)), _mm256_permute2x128_si256(u[q], u[q + 4], 0x31));
    }
}

/* Panel of rows (<= 16) weight rows: levels interleaved, then the scales;
 * missing rows are zero (their outputs are not stored). */
TGT static inline INL void bt_pack(int kind, const uint8_t *w, size_t rb, int rows, int64_t K, uint8_t *panel) {
    const size_t bs = bt_bytes(kind);
    const int64_t nb = K / QK;
    float *pdw = (float *)(panel + nb * BT_PANEL_BLOCK); /* (nb, 16) */
    for (int64_t i = 0; i < nb; i++) {
        for (int h = 0; h < QPANEL_ROWS; h += 8) {
            __m256i v[8];
            for (int k = 0; k < 8; k++)
                v[k] = h + k < rows ? bt_levels(kind, w + (h + k) * rb + i * bs) : _mm256_setzero_si256();
            bt_store_t8(v, panel + i * BT_PANEL_BLOCK + 4 * h);
        }
        for (int r = 0; r < QPANEL_ROWS; r++) {
            uint16_t dh = 0;
            if (r < rows) memcpy(&dh, w + r * rb + i * bs, 2);
            pdw[i * QPANEL_ROWS + r] = h2f(dh);
        }
    }
}

TGT static void bt_pack_q4_0(const uint8_t *w, size_t rb, int rows, int64_t K, uint8_t *panel) { bt_pack(0, w, rb, rows, K, panel); }
TGT static void bt_pack_q5_0(const uint8_t *w, size_t rb, int rows, int64_t K, uint8_t *panel) { bt_pack(1, w, rb, rows, K, panel); }

/* AVX2 panels (Q4_0 / Q5_0; CPUs without VNNI): the same panel, each
 * 64-byte quad vector as two halves of 8 rows. maddubs of the levels with
 * the broadcast activation quad gives int16 pair sums (<= 2 * 31 * 127),
 * four quads add in int16 (<= 31496: no saturation), madd by ones widens
 * to int32: the exact isum again, so the same bits as every other path. */
TGT static inline INL void bt_panel_mr_avx2(const int mr, const uint8_t *panel, const QAct *a, const int32_t *corr,
                                            int64_t nb, float *out, size_t ldo, int rows) {
    const float *pdw = (const float *)(panel + nb * BT_PANEL_BLOCK);
    const __m256i ones = _mm256_set1_epi16(1);
    for (int h = 0; h < QPANEL_ROWS && h < rows; h += 8) {
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        for (int64_t i = 0; i < nb; i++) {
            const uint8_t *pb = panel + i * BT_PANEL_BLOCK + 4 * h;
            const __m256 dw = _mm256_loadu_ps(pdw + i * QPANEL_ROWS + h);
            for (int r = 0; r < mr; r++) {
                const int8_t *aq = a[r].qs + i * QK;
                __m256i p[2];
                for (int g = 0; g < 2; g++) {
                    p[g] = _mm256_setzero_si256();
                    for (int q = 4 * g; q < 4 * g + 4; q++) {
                        int32_t av;
                        memcpy(&av, aq + 4 * q, 4);
                        p[g] = _mm256_add_epi16(p[g], _mm256_maddubs_epi16(_mm256_loadu_si256((const __m256i *)(pb + 64 * q)),
                                                                           _mm256_set1_epi32(av)));
                    }
                }
                __m256i isum = _mm256_add_epi32(_mm256_madd_epi16(p[0], ones), _mm256_madd_epi16(p[1], ones));
                isum = _mm256_add_epi32(isum, _mm256_set1_epi32(corr[r * nb + i]));
                acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(a[r].d[i])), _mm256_cvtepi32_ps(isum), acc[r]);
            }
        }
        const int n = rows - h < 8 ? rows - h : 8;
        const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        for (int r = 0; r < mr; r++) _mm256_maskstore_ps(out + r * ldo + h, keep, acc[r]);
    }
}

TGT static void bt_panel_avx2(const uint8_t *panel, const QAct *a, const int32_t *corr, int M, int64_t K, float *out,
                              size_t ldo, int rows) {
    const int64_t nb = K / QK;
    int m = 0;
#define PANEL(mr) bt_panel_mr_avx2(mr, panel, a + m, corr + (size_t)m * nb, nb, out + m * ldo, ldo, rows)
    for (; m + 4 <= M; m += 4) PANEL(4);
    switch (M - m) {
    case 3: PANEL(3); break;
    case 2: PANEL(2); break;
    case 1: PANEL(1); break;
    default: break;
    }
#undef PANEL
}

/* ---- AVX-512 VNNI ---------------------------------------------------------------------- */
/* dot8 with vpdpbusd. Q4_0: the 16 bytes broadcast to both halves and
 * masked to low nibbles (elements 0-15) below and high nibbles times 16
 * (16-31) above, one AND instead of shift + AND; the total shifts the
 * upper part back (exact: a multiple of 16). Q5_0: levels with the fifth
 * bits added under a byte mask. No software prefetch (the AVX2 dot8 has
 * one): on Zen 4 the hardware prefetcher alone was 7% faster (one thread,
 * bench/qmm_hot.c tg q4_0: 5.06-5.30 -> 4.69-4.95 ms per token), as for
 * the other matvecs on AVX-512 CPUs (matvec_prefetch). */
TGT512 static inline INL void bt_dot8_v(int kind, const uint8_t *w, size_t rb, const QAct *a, int64_t K, float *out) {
    const size_t bs = bt_bytes(kind);
    const int64_t nb = K / QK;
    const __m256i m4 = _mm256_setr_epi64x(0x0F0F0F0F0F0F0F0F, 0x0F0F0F0F0F0F0F0F, (int64_t)0xF0F0F0F0F0F0F0F0,
                                          (int64_t)0xF0F0F0F0F0F0F0F0);
    __m256 acc = _mm256_setzero_ps();
    _Alignas(16) uint16_t dh[BT_DCHUNK * 8];
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *p = w + i * bs;
        if (i % BT_DCHUNK == 0) bt_dh8(w, rb, bs, i, nb - i < BT_DCHUNK ? nb - i : BT_DCHUNK, dh);
        const __m256i av = load_q8(a->qs + i * QK);
        __m256i s[8];
        for (int r = 0; r < 8; r++) {
            const uint8_t *b = p + r * rb;
            __m256i u;
            if (kind == 0) {
                u = _mm256_and_si256(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(b + 2))), m4);
            } else {
                uint32_t bits;
                memcpy(&bits, b + 2, 4);
                const __m256i nib = nibbles(b + 6);
                u = _mm256_mask_add_epi8(nib, (__mmask32)bits, nib, _mm256_set1_epi8(16));
            }
            s[r] = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, av);
        }
        const __m256i isum = _mm256_add_epi32(bt_total8(s, kind == 0 ? 4 : 0), _mm256_set1_epi32(bt_corr(kind, a, i)));
        acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtph_ps(_mm_load_si128((const __m128i *)(dh + 8 * (i % BT_DCHUNK)))), _mm256_set1_ps(a->d[i])), _mm256_cvtepi32_ps(isum), acc);
    }
    _mm256_storeu_ps(out, acc);
}

TGT512 static void bt_dot8_q4_0_v(const uint8_t *w, size_t rb, const QAct *a, int64_t K, float *out) { bt_dot8_v(0, w, rb, a, K, out); }
TGT512 static void bt_dot8_q5_0_v(const uint8_t *w, size_t rb, const QAct *a, int64_t K, float *out) { bt_dot8_v(1, w, rb, a, K, out); }

#define BT_MR 8 /* activation rows per pass over a panel */
TGT512 static inline __m512i bcast4(const int8_t *q) {
    int32_t v;
    memcpy(&v, q, 4);
    return _mm512_set1_epi32(v);
}

/* mr (1..4) activation rows against a panel: out row r at out + r*ldo,
 * the first `rows` of 16 stored. Two integer chains per row (quads 0,2,4,6
 * and 1,3,5,7, the first started at the offset correction) for latency. */
TGT512 static inline INL void bt_panel_mr(const int mr, const uint8_t *panel, const QAct *a, const int32_t *corr,
                                          int64_t nb, float *out, size_t ldo, __mmask16 keep) {
    const float *pdw = (const float *)(panel + nb * BT_PANEL_BLOCK);
    __m512 acc[BT_MR];
    for (int r = 0; r < mr; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *pb = panel + i * BT_PANEL_BLOCK;
        __m512i wq[8];
        for (int q = 0; q < 8; q++) wq[q] = _mm512_loadu_si512(pb + 64 * q);
        const __m512 dw = _mm512_loadu_ps(pdw + i * QPANEL_ROWS);
        for (int r = 0; r < mr; r++) {
            const int8_t *aq = a[r].qs + i * QK;
            __m512i x0 = _mm512_set1_epi32(corr[r * nb + i]), x1 = _mm512_setzero_si512();
            x0 = _mm512_dpbusd_epi32(x0, wq[0], bcast4(aq));
            x1 = _mm512_dpbusd_epi32(x1, wq[1], bcast4(aq + 4));
            x0 = _mm512_dpbusd_epi32(x0, wq[2], bcast4(aq + 8));
            x1 = _mm512_dpbusd_epi32(x1, wq[3], bcast4(aq + 12));
            x0 = _mm512_dpbusd_epi32(x0, wq[4], bcast4(aq + 16));
            x1 = _mm512_dpbusd_epi32(x1, wq[5], bcast4(aq + 20));
            x0 = _mm512_dpbusd_epi32(x0, wq[6], bcast4(aq + 24));
            x1 = _mm512_dpbusd_epi32(x1, wq[7], bcast4(aq + 28));
            acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(a[r].d[i])),
                                     _mm512_cvtepi32_ps(_mm512_add_epi32(x0, x1)), acc[r]);
        }
    }
    for (int r = 0; r < mr; r++) _mm512_mask_storeu_ps(out + r * ldo, keep, acc[r]);
}

/* ---- Q4_K panels ------------------------------------------------------------------------
 * Per super-block: the 8 sub-blocks' levels interleaved as above (8 x 512
 * bytes), then per sub-block the 16 rows' int32 scales, the 16 rows' mins
 * as int16 pairs (m_2k, m_2k+1), d and dmin. Per sub-block and activation
 * row: 8 vpdpbusd, one vpmulld by the scales into isum; per super-block
 * 4 vpdpwssd of the min pairs with the activation 32-sums (msum) and the
 * two FMAs of the K-quant order (quant_blocks.h). */
#define BT_K_SC (8 * BT_PANEL_BLOCK)
#define BT_K_MN (BT_K_SC + 8 * QPANEL_ROWS * 4)
#define BT_K_D (BT_K_MN + 4 * QPANEL_ROWS * 4)

TGT static void bt_pack_q4_K(const uint8_t *w, size_t rb, int rows, int64_t K, uint8_t *panel) {
    const int64_t ns = K / QK_K;
    if (rows < QPANEL_ROWS) memset(panel, 0, quant_panel_bytes(K));
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t i = 0; i < ns; i++) {
        uint8_t *sb = panel + i * BT_K_SB;
        for (int r = 0; r < rows; r++) {
            const BlockQ4_K *b = (const void *)(w + r * rb + i * sizeof(BlockQ4_K));
            uint8_t sc[8], mn[8];
            for (int j = 0; j < 8; j++) {
                kq_scale_min(j, b->scales, &sc[j], &mn[j]);
                ((int32_t *)(sb + BT_K_SC))[QPANEL_ROWS * j + r] = sc[j];
            }
            for (int k = 0; k < 4; k++) ((uint32_t *)(sb + BT_K_MN))[QPANEL_ROWS * k + r] = mn[2 * k] | (uint32_t)mn[2 * k + 1] << 16;
            ((float *)(sb + BT_K_D))[r] = h2f(b->d);
            ((float *)(sb + BT_K_D))[QPANEL_ROWS + r] = h2f(b->dmin);
        }
        for (int k = 0; k < 4; k++) /* sub-blocks 2k (low nibbles) and 2k+1 (high) */
            for (int h = 0; h < QPANEL_ROWS; h += 8) {
                __m256i lo[8], hi[8];
                for (int j = 0; j < 8; j++) {
                    const __m256i q = h + j < rows ? _mm256_loadu_si256((const __m256i *)(w + (h + j) * rb + i * sizeof(BlockQ4_K) +
                                                                                          offsetof(BlockQ4_K, qs) + 32 * k))
                                                   : _mm256_setzero_si256();
                    lo[j] = _mm256_and_si256(q, m4), hi[j] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                }
                bt_store_t8(lo, sb + 2 * k * BT_PANEL_BLOCK + 4 * h);
                bt_store_t8(hi, sb + (2 * k + 1) * BT_PANEL_BLOCK + 4 * h);
            }
    }
}

#define BT_MR_K 4 /* activation rows per pass over a Q4_K panel (registers: 3 per row + 9) */
TGT512 static inline INL void bt_panel_k_mr(const int mr, const uint8_t *panel, const QAct *a, const int32_t *corr,
                                            int64_t nb, float *out, size_t ldo, __mmask16 keep) {
    __m512 acc[8]; /* mr <= 7 in the tails */
    for (int r = 0; r < mr; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb / 8; i++) {
        const uint8_t *sb = panel + i * BT_K_SB;
        __m512i isum[8];
        for (int r = 0; r < mr; r++) isum[r] = _mm512_setzero_si512();
        for (int j = 0; j < 8; j++) {
            const uint8_t *pb = sb + j * BT_PANEL_BLOCK;
            __m512i wq[8];
            for (int q = 0; q < 8; q++) wq[q] = _mm512_loadu_si512(pb + 64 * q);
            const __m512i sc = _mm512_loadu_si512(sb + BT_K_SC + 64 * j);
            for (int r = 0; r < mr; r++) {
                const int8_t *aq = a[r].qs + i * QK_K + j * QK;
                __m512i x0 = _mm512_setzero_si512(), x1 = _mm512_setzero_si512();
                for (int q = 0; q < 8; q += 2) {
                    x0 = _mm512_dpbusd_epi32(x0, wq[q], bcast4(aq + 4 * q));
                    x1 = _mm512_dpbusd_epi32(x1, wq[q + 1], bcast4(aq + 4 * q + 4));
                }
                isum[r] = _mm512_add_epi32(isum[r], _mm512_mullo_epi32(_mm512_add_epi32(x0, x1), sc));
            }
        }
        const __m512 d = _mm512_loadu_ps((const float *)(sb + BT_K_D)), dm = _mm512_loadu_ps((const float *)(sb + BT_K_D) + QPANEL_ROWS);
        for (int r = 0; r < mr; r++) {
            __m512i ms = _mm512_setzero_si512();
            for (int k = 0; k < 4; k++)
                ms = _mm512_dpwssd_epi32(ms, _mm512_loadu_si512(sb + BT_K_MN + 64 * k), _mm512_set1_epi32(corr[r * nb + 8 * i + k]));
            const __m512 da = _mm512_set1_ps(a[r].d[i]);
            acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(d, da), _mm512_cvtepi32_ps(isum[r]), acc[r]);
            acc[r] = _mm512_fnmadd_ps(_mm512_mul_ps(dm, da), _mm512_cvtepi32_ps(ms), acc[r]);
        }
    }
    for (int r = 0; r < mr; r++) _mm512_mask_storeu_ps(out + r * ldo, keep, acc[r]);
}

/* M activation rows against a panel, BT_MR (Q4_K: BT_MR_K) at a time. */
TGT512 static inline INL void bt_panel_mr_any(const int kind, const int mr, const uint8_t *panel, const QAct *a,
                                              const int32_t *corr, int64_t nb, float *out, size_t ldo, __mmask16 keep) {
    if (kind == 2) bt_panel_k_mr(mr, panel, a, corr, nb, out, ldo, keep);
    else bt_panel_mr(mr, panel, a, corr, nb, out, ldo, keep);
}

TGT512 static inline INL void bt_panel_run(const int kind, const uint8_t *panel, const QAct *a, const int32_t *corr,
                                           int M, int64_t K, float *out, size_t ldo, int rows) {
    const int64_t nb = K / QK, MR = kind == 2 ? BT_MR_K : BT_MR;
    const __mmask16 keep = (__mmask16)((1u << rows) - 1);
    int m = 0;
#define PANEL(mr) bt_panel_mr_any(kind, mr, panel, a + m, corr + (size_t)m * nb, nb, out + m * ldo, ldo, keep)
    for (; m + MR <= M; m += MR) PANEL(MR);
    switch (M - m) {
    case 7: PANEL(7); break;
    case 6: PANEL(6); break;
    case 5: PANEL(5); break;
    case 4: PANEL(4); break;
    case 3: PANEL(3); break;
    case 2: PANEL(2); break;
    case 1: PANEL(1); break;
    default: break;
    }
#undef PANEL
}

TGT512 static void bt_panel_v(const uint8_t *panel, const QAct *a, const int32_t *corr, int M, int64_t K, float *out,
                              size_t ldo, int rows) {
    bt_panel_run(0, panel, a, corr, M, K, out, ldo, rows);
}

TGT512 static void bt_panel_k(const uint8_t *panel, const QAct *a, const int32_t *corr, int M, int64_t K, float *out,
                              size_t ldo, int rows) {
    bt_panel_run(2, panel, a, corr, M, K, out, ldo, rows);
}

/* ---- dispatch -------------------------------------------------------------------------- */
QDotFn quant_blocksum_dot_fn_avx2(int t) {
    if (kernel_isa() < ISA_AVX2) return NULL;
    return t == DT_Q4_0 ? bt_dot_q4_0 : t == DT_Q5_0 ? bt_dot_q5_0 : NULL;
}
QRows4Fn quant_blocksum_rows4_fn_avx2(int t) {
    if (kernel_isa() < ISA_AVX2) return NULL;
    return t == DT_Q4_0 ? bt_rows4_q4_0 : t == DT_Q5_0 ? bt_rows4_q5_0 : NULL;
}
QDot8Fn quant_dot8_fn_avx2(int t) {
    if (kernel_isa() < ISA_AVX2) return NULL;
    return t == DT_Q4_0 ? bt_dot8_q4_0 : t == DT_Q5_0 ? bt_dot8_q5_0 : NULL;
}
QDot8Fn quant_dot8_fn_avx512(int t) {
    if (kernel_isa() < ISA_AVX512) return NULL;
    return t == DT_Q4_0 ? bt_dot8_q4_0_v : t == DT_Q5_0 ? bt_dot8_q5_0_v : NULL;
}
QPanelPackFn quant_panel_pack_fn(int t) {
    if (kernel_isa() < ISA_AVX2) return NULL;
    return t == DT_Q4_0 ? bt_pack_q4_0 : t == DT_Q5_0 ? bt_pack_q5_0 : t == DT_Q4_K ? bt_pack_q4_K : NULL;
}
QPanelFn quant_panel_fn_avx2(int t) {
    if (kernel_isa() < ISA_AVX2) return NULL;
    return t == DT_Q4_0 || t == DT_Q5_0 ? bt_panel_avx2 : NULL;
}
QPanelFn quant_panel_fn_avx512(int t) {
    if (kernel_isa() < ISA_AVX512 || bt_kind(t) < 0) return NULL;
    return t == DT_Q4_K ? bt_panel_k : bt_panel_v;
}
#else
QDotFn quant_blocksum_dot_fn_avx2(int t) { return (void)t, NULL; }
QRows4Fn quant_blocksum_rows4_fn_avx2(int t) { return (void)t, NULL; }
QDot8Fn quant_dot8_fn_avx2(int t) { return (void)t, NULL; }
QDot8Fn quant_dot8_fn_avx512(int t) { return (void)t, NULL; }
QPanelPackFn quant_panel_pack_fn(int t) { return (void)t, NULL; }
QPanelFn quant_panel_fn_avx2(int t) {
    if (kernel_isa() < ISA_AVX2) return NULL;
    return t == DT_Q4_0 || t == DT_Q5_0 ? bt_panel_avx2 : NULL;
}
QPanelFn quant_panel_fn_avx2(int t) { return (void)t, NULL; }
QPanelFn quant_panel_fn_avx512(int t) { return (void)t, NULL; }
#endif
