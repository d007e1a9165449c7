/* AVX-512 + VNNI prompt-batch kernels (four activation rows x two weight
 * rows, the QTile42Fn of quant.h), chosen at run time when kernel_isa() is
 * ISA_AVX512.
 *
 * Same bits as the AVX2 kernels (and so as llama.cpp): every output keeps
 * its 8 lanes of int32 block sums, converts them to float and accumulates
 * them with the same multiply-adds in the same block order; only the work
 * is done by other instructions: one vpdpbusd gives a block's 8 int32 quad
 * sums that took AVX2 a maddubs + madd (+ two sign fix-ups for Q8_0);
 * integer sums are exact, so the change cannot alter a bit.
 *
 * Q8_0 weights are signed; vpdpbusd multiplies unsigned by signed bytes. The
 * kernel adds 128 to each weight (xor 0x80) and starts each sum at
 * -128 x (the activation quad's sum), one vpdpbusd of 128s with -a per
 * activation block, shared by both weight rows (cheaper than loading it
 * precomputed: measured): sum((w+128)a) - 128 sum(a) = sum(wa), exactly.
 * (Q4_0 and Q5_0 use their own order and panel kernels: quant_blocksum.c.)
 * (-a cannot overflow: 8-bit activations lie in [-127, 127].) */
#include "kernels/quant_avx2_inl.h"

#if defined(__x86_64__) || defined(__i386__)


/* Zen 4 splits a 512-bit operation into two 256-bit halves, so packing two
 * outputs in one zmm saved nothing there and cost a permute per output
 * (measured); what pays is one vpdpbusd (AVX512-VL, 256 bits) in place of
 * maddubs + madd and the sign fix-ups: 3 vector operations per output and
 * block instead of 4-5. */
#define T42_TGT TGT512
#define T42_NAME(x) x##_vnni
/* Q8_0: u = w + 128 (xor) */
#define T42_SW(raw, off, u, w) ((u) = (off) == 128 ? _mm256_xor_si256(raw, _mm256_set1_epi8((char)0x80)) : (raw), (w) = (u))
#define T42_SA(av, off) \
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char)(off)), _mm256_sub_epi8(_mm256_setzero_si256(), av))
#define T42_SDOT(u, w, av, prep) _mm256_dpbusd_epi32(prep, u, av)
#define T42_U8_DOT(u, av) _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, av)
#include "kernels/quant_tile42_tmpl.h"

QTile42Fn quant_tile42_fn_avx512(int t) {
    if (kernel_isa() < ISA_AVX512) return NULL;
    return t == DT_Q8_0 ? tile42_q8_0_vnni : t == DT_Q4_1 ? tile42_q4_1_vnni : NULL;
}

/* ---- Q8_0, four activation rows x four weight rows ---------------------
 * AVX512-VL's 32 ymm registers hold 16 accumulators, so each weight block's
 * xor and each activation block's load serve four outputs. The int32 quad
 * sums become floats without a conversion: each sum starts at the bits of
 * 1.5 * 2^23 (T44_MAGIC), so after the vpdpbusd the lane holds the float
 * 12582912 + sum((w + 128) a) exactly (|that sum| <= 4 * 255 * 128 < 2^22,
 * and one unit in the last place is 1 there); subtracting the float
 * 12582912 + 128 sum(a) (the row's corr, exact too) leaves sum(w a)
 * exactly: the float cvtdq2ps gave, so the same bits. The subtraction runs
 * on Zen 4's add pipes, and the -128 sum(a) term needs no vpdpbusd per
 * block and row any more: the two FMA pipes do one vpdpbusd and one FMA per
 * output and block. */
#define T44_MAGIC 0x4B400000
#define T44_CHUNK 32 /* blocks per scale pass: 2 KiB of scales on the stack */

TGT512 static void tile44_corr_vnni(const QAct *a, int64_t nb, float *corr) {
    const __m256i magic = _mm256_set1_epi32(T44_MAGIC), k128 = _mm256_set1_epi8((char)0x80);
    for (int64_t i = 0; i < nb; i++)
        for (int r = 0; r < 4; r++) /* bits of 12582912 + 128 * (quad sum of a): exact, |128 sum| < 2^16 */
            _mm256_store_si256((__m256i *)(corr + (4 * i + r) * 8), _mm256_dpbusd_epi32(magic, k128, load_q8(a[r].qs + i * QK)));
}

TGT512 static void tile44_q8_0_vnni(const uint8_t *w, size_t rb, const float *wsc, const QAct *a, const float *d4,
                                    const float *corr, int64_t K, float *out) {
    const int64_t nb = K / QK;
    const BlockQ8_0 *b0 = (const void *)w, *b1 = (const void *)(w + rb), *b2 = (const void *)(w + 2 * rb),
                    *b3 = (const void *)(w + 3 * rb);
    const float *wsc1 = wsc + nb * QTILE42_WSC;
    const __m256i magic = _mm256_set1_epi32(T44_MAGIC), k80 = _mm256_set1_epi8((char)0x80);
    _Alignas(32) float sc[T44_CHUNK * 16]; /* per block: d_w[c] * d_a[r] at 4*c + r */
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m256 c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
    for (int64_t i0 = 0; i0 < nb; i0 += T44_CHUNK) {
        const int64_t n = nb - i0 < T44_CHUNK ? nb - i0 : T44_CHUNK;
        for (int64_t j = 0; j < n; j++) {
            const __m256 da = _mm256_broadcast_ps((const __m128 *)(d4 + 4 * (i0 + j)));
            _mm256_store_ps(sc + 16 * j, _mm256_mul_ps(_mm256_load_ps(wsc + 8 * (i0 + j)), da));
            _mm256_store_ps(sc + 16 * j + 8, _mm256_mul_ps(_mm256_load_ps(wsc1 + 8 * (i0 + j)), da));
        }
        for (int64_t j = 0; j < n; j++) {
            const int64_t i = i0 + j;
            const __m256i u0 = _mm256_xor_si256(load_q8(b0[i].qs), k80), u1 = _mm256_xor_si256(load_q8(b1[i].qs), k80);
            const __m256i u2 = _mm256_xor_si256(load_q8(b2[i].qs), k80), u3 = _mm256_xor_si256(load_q8(b3[i].qs), k80);
            const float *s = sc + 16 * j;
#define DOT(c, r) _mm256_sub_ps(_mm256_castsi256_ps(_mm256_dpbusd_epi32(magic, u##c, av)), cr)
#define ROW(r)                                                                                                     \
    do {                                                                                                           \
        __m256i av = load_q8(a[r].qs + i * QK);                                                                    \
        __m256 cr = _mm256_load_ps(corr + (4 * i + r) * 8);                                                       \
        __asm__("" : "+v"(av), "+v"(cr)); /* one load each for the four outputs (GCC re-reads memory operands) */ \
        c0##r = _mm256_fmadd_ps(_mm256_broadcast_ss(s + r), DOT(0, r), c0##r);                                     \
        c1##r = _mm256_fmadd_ps(_mm256_broadcast_ss(s + 4 + r), DOT(1, r), c1##r);                                 \
        c2##r = _mm256_fmadd_ps(_mm256_broadcast_ss(s + 8 + r), DOT(2, r), c2##r);                                 \
        c3##r = _mm256_fmadd_ps(_mm256_broadcast_ss(s + 12 + r), DOT(3, r), c3##r);                                \
    } while (0)
            ROW(0); ROW(1); ROW(2); ROW(3);
#undef ROW
#undef DOT
        }
    }
    _mm256_storeu_ps(out, hsum8_ps(c00, c01, c02, c03, c10, c11, c12, c13));
    _mm256_storeu_ps(out + 8, hsum8_ps(c20, c21, c22, c23, c30, c31, c32, c33));
}

/* ---- Q8_0, sixteen activation rows x two weight rows, rows in the lanes --
 * Here a zmm lane is an activation row: accumulator (c, k) holds, in lane
 * r, the quad-k lane of output (weight row c, activation row r), so that
 * each output still has its own eight lanes (spread over eight registers)
 * with the same multiply-adds in the same block order. In exchange the
 * block's sixteen scales d_w[c] * d_a[r] are one vmulps (no pass storing
 * them to be broadcast one by one), a weight quad reaches all sixteen lanes
 * by vpdpbusd's embedded broadcast straight from the Q8_0 block, and the
 * hsum8 tree becomes vertical adds of the eight registers (lane r is
 * output r: no shuffles). The activations carry the +128 (xor, packed once
 * per matmul, each quad k of the 16 rows in one 64-byte row); a weight
 * row's quad k needs 128 sum(w) taken off, and with the magic start the
 * sum's first term is magic - 128 sum(w) (packed once per tile), so the
 * vpdpbusd ends at the bits of 12582912 + sum(w a) and one subtraction of
 * 12582912.0f gives the exact float (T44_MAGIC). */
#define Q8T_ROWS 16

TGT512 static void q8t_acts(const QAct *a, int64_t nb, uint8_t *ag, float *dg) {
    const __m512i k80 = _mm512_set1_epi8((char)0x80);
    for (int64_t i = 0; i < nb; i++) {
        uint32_t t[8][Q8T_ROWS]; /* quad k of row r at t[k][r] */
        for (int r = 0; r < Q8T_ROWS; r++) {
            for (int k = 0; k < 8; k++) memcpy(&t[k][r], a[r].qs + i * QK + 4 * k, 4);
            dg[Q8T_ROWS * i + r] = a[r].d[i];
        }
        for (int k = 0; k < 8; k++)
            _mm512_store_si512(ag + (i * 8 + k) * 64, _mm512_xor_si512(_mm512_loadu_si512(t[k]), k80));
    }
}

TGT512 static void q8t_weight(const uint8_t *w, int64_t K, int32_t *wp) {
    const int64_t nb = K / QK;
    const BlockQ8_0 *b = (const void *)w;
    const __m256i magic = _mm256_set1_epi32(T44_MAGIC), k80 = _mm256_set1_epi8((char)0x80);
    float *dw = (float *)(wp + nb * 8);
    for (int64_t i = 0; i < nb; i++) { /* magic - 128 * (quad sum of w), exact in int32 */
        const __m256i s128 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), k80, load_q8(b[i].qs));
        _mm256_storeu_si256((__m256i *)(wp + 8 * i), _mm256_sub_epi32(magic, s128));
        dw[i] = h2f(b[i].d);
    }
}

TGT512 static void q8t_tile(const uint8_t *w, size_t rb, const int32_t *wp0, const int32_t *wp1, const uint8_t *ag,
                            const float *dg, int64_t K, float *out) {
    const int64_t nb = K / QK;
    const BlockQ8_0 *b0 = (const void *)w, *b1 = (const void *)(w + rb);
    const float *dw0 = (const float *)(wp0 + nb * 8), *dw1 = (const float *)(wp1 + nb * 8);
    const __m512 magicf = _mm512_set1_ps(12582912.0f);
    __m512 z00 = _mm512_setzero_ps(), z01 = z00, z02 = z00, z03 = z00, z04 = z00, z05 = z00, z06 = z00, z07 = z00;
    __m512 z10 = z00, z11 = z00, z12 = z00, z13 = z00, z14 = z00, z15 = z00, z16 = z00, z17 = z00;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *ai = ag + i * 512;
        __m512i a0 = _mm512_load_si512(ai), a1 = _mm512_load_si512(ai + 64), a2 = _mm512_load_si512(ai + 128),
                a3 = _mm512_load_si512(ai + 192), a4 = _mm512_load_si512(ai + 256), a5 = _mm512_load_si512(ai + 320),
                a6 = _mm512_load_si512(ai + 384), a7 = _mm512_load_si512(ai + 448);
        __asm__("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7));
        const __m512 da = _mm512_load_ps(dg + Q8T_ROWS * i);
        const __m512 s0 = _mm512_mul_ps(_mm512_set1_ps(dw0[i]), da), s1 = _mm512_mul_ps(_mm512_set1_ps(dw1[i]), da);
        const int32_t *q0 = (const int32_t *)(const void *)b0[i].qs, *q1 = (const int32_t *)(const void *)b1[i].qs;
#define Q(c, k)                                                                                                    \
    do {                                                                                                           \
        int32_t wq;                                                                                                \
        memcpy(&wq, (const uint8_t *)q##c + 4 * k, 4);                                                            \
        const __m512i t = _mm512_dpbusd_epi32(_mm512_set1_epi32(wp##c[8 * i + k]), a##k, _mm512_set1_epi32(wq));  \
        z##c##k = _mm512_fmadd_ps(s##c, _mm512_sub_ps(_mm512_castsi512_ps(t), magicf), z##c##k);                  \
    } while (0)
        Q(0, 0); Q(0, 1); Q(0, 2); Q(0, 3); Q(0, 4); Q(0, 5); Q(0, 6); Q(0, 7);
        Q(1, 0); Q(1, 1); Q(1, 2); Q(1, 3); Q(1, 4); Q(1, 5); Q(1, 6); Q(1, 7);
#undef Q
    }
    /* hsum_ps's order per lane: (k, k+4) pairs, then (0+2), (1+3), then their sum */
#define HSUM(c)                                                                                                    \
    _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(z##c##0, z##c##4), _mm512_add_ps(z##c##2, z##c##6)),                \
                  _mm512_add_ps(_mm512_add_ps(z##c##1, z##c##5), _mm512_add_ps(z##c##3, z##c##7)))
    _mm512_storeu_ps(out, HSUM(0));
    _mm512_storeu_ps(out + Q8T_ROWS, HSUM(1));
#undef HSUM
}

int quant_q8t_available(int t) { return kernel_isa() >= ISA_AVX512 && t == DT_Q8_0; }
void quant_q8t_acts(const QAct *a, int64_t nb, uint8_t *ag, float *dg) { q8t_acts(a, nb, ag, dg); }
void quant_q8t_weight(const uint8_t *w, int64_t K, int32_t *wp) { q8t_weight(w, K, wp); }
void quant_q8t_tile(const uint8_t *w, size_t rb, const int32_t *wp0, const int32_t *wp1, const uint8_t *ag,
                    const float *dg, int64_t K, float *out) {
    q8t_tile(w, rb, wp0, wp1, ag, dg, K, out);
}

QTile44Fn quant_tile44_fn_avx512(int t) { return kernel_isa() >= ISA_AVX512 && t == DT_Q8_0 ? tile44_q8_0_vnni : NULL; }

void quant_tile44_corr(const QAct *a, int64_t nb, float *corr) {
    if (kernel_isa() >= ISA_AVX512) tile44_corr_vnni(a, nb, corr);
}
#else
QTile42Fn quant_tile42_fn_avx512(int t) {
    (void)t;
    return NULL;
}
QTile44Fn quant_tile44_fn_avx512(int t) { return (void)t, NULL; }
void quant_tile44_corr(const QAct *a, int64_t nb, float *corr) { (void)a, (void)nb, (void)corr; }
int quant_q8t_available(int t) { return (void)t, 0; }
void quant_q8t_acts(const QAct *a, int64_t nb, uint8_t *ag, float *dg) { (void)a, (void)nb, (void)ag, (void)dg; }
void quant_q8t_weight(const uint8_t *w, int64_t K, int32_t *wp) { (void)w, (void)K, (void)wp; }
void quant_q8t_tile(const uint8_t *w, size_t rb, const int32_t *wp0, const int32_t *wp1, const uint8_t *ag,
                    const float *dg, int64_t K, float *out) {
    (void)w, (void)rb, (void)wp0, (void)wp1, (void)ag, (void)dg, (void)K, (void)out;
}
#endif
