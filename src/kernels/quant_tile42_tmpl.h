/* Private to kernels/quant_avx2_batch.c and quant_avx512.c: the 4x2
 * prompt-batch kernels (four activation rows x two weight rows, QTile42Fn)
 * written once over the integer dot of 32 bytes, which the including file
 * defines for its instruction set before including this:
 *   T42_TGT             the functions' target attribute
 *   T42_NAME(x)         the functions' names (x##_avx2, ...)
 *   T42_SW(raw, off, u, w)  a signed-weight block (Q8_0: its bytes, off 128)
 *                       as the dot's operands u (unsigned) and w (signed,
 *                       where the ISA needs it)
 *   T42_SA(av, off)     per activation block, shared by both weight rows
 *   T42_SDOT(u, w, av, prep)  int32 x8 quad sums of weight * av
 *   T42_U8_DOT(u, av)   int32 x8 quad sums of unsigned u * av (Q4_1 levels)
 * Every instruction set must give the same int32 sums (they are exact), so
 * the float arithmetic after them, here once, keeps every output's bits. */
#define T42_CHUNK 64 /* blocks per scale pass: 2 KiB of scales on the stack */

/* The signed-weight type Q8_0 (kind 0; Q4_0 and Q5_0 have their own
 * order and kernels, quant_blocksum.c), one scale per block. One
 * accumulator per output, blocks in order, d_w*d_a times the block's int32
 * sums, as ggml's vec_dot_q8_0_q8_0. */
static inline size_t t42_block_bytes(int kind) { return (void)kind, sizeof(BlockQ8_0); }
static inline int t42_offset(int kind) { return (void)kind, 128; }

/* A block's raw bytes (half d first). */
T42_TGT static inline __attribute__((always_inline)) __m256i T42_NAME(t42_raw)(const int kind, const uint8_t *blk) {
    return (void)kind, load_q8((const int8_t *)(blk + 2));
}

T42_TGT static inline __attribute__((always_inline)) void T42_NAME(tile42_signed)(
    const int kind, const uint8_t *w, size_t rb, const float *wsc, const QAct *a, const float *d4, int64_t K, float *out) {
    const size_t bs = t42_block_bytes(kind);
    const int off = t42_offset(kind);
    const uint8_t *w0 = w, *w1 = w + rb;
    _Alignas(32) float sc[T42_CHUNK * 8];
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    const int64_t nb = K / QK;
    for (int64_t i0 = 0; i0 < nb; i0 += T42_CHUNK) {
        const int64_t n = nb - i0 < T42_CHUNK ? nb - i0 : T42_CHUNK;
        for (int64_t j = 0; j < n; j++)
            _mm256_store_ps(sc + 8 * j, _mm256_mul_ps(_mm256_load_ps(wsc + 8 * (i0 + j)),
                                                      _mm256_broadcast_ps((const __m128 *)(d4 + 4 * (i0 + j)))));
        for (int64_t j = 0; j < n; j++) {
            const int64_t i = i0 + j;
            const __m256i raw0 = T42_NAME(t42_raw)(kind, w0 + i * bs), raw1 = T42_NAME(t42_raw)(kind, w1 + i * bs);
            __m256i u0, u1, s0, s1;
            T42_SW(raw0, off, u0, s0);
            T42_SW(raw1, off, u1, s1);
            (void)s0, (void)s1; /* the signed weights: read by AVX2's dot only */
            const float *s = sc + 8 * j;
#define ROW(r)                                                                                                     \
    do {                                                                                                           \
        const __m256i av = load_q8(a[r].qs + i * QK), prep = T42_SA(av, off);                                           \
        (void)prep;                                                                                                \
        c0##r = _mm256_fmadd_ps(_mm256_broadcast_ss(s + r), _mm256_cvtepi32_ps(T42_SDOT(u0, s0, av, prep)), c0##r);   \
        c1##r = _mm256_fmadd_ps(_mm256_broadcast_ss(s + 4 + r), _mm256_cvtepi32_ps(T42_SDOT(u1, s1, av, prep)), c1##r); \
    } while (0)
            ROW(0); ROW(1); ROW(2); ROW(3);
#undef ROW
        }
    }
    _mm256_storeu_ps(out, hsum8_ps(c00, c01, c02, c03, c10, c11, c12, c13));
}

T42_TGT static void T42_NAME(tile42_q8_0)(const uint8_t *w, size_t rb, const float *wsc, const QAct *a, const float *d4,
                                          const float *s4, int64_t K, float *out) {
    (void)s4;
    T42_NAME(tile42_signed)(0, w, rb, wsc, a, d4, K, out);
}

T42_TGT static void T42_NAME(tile42_q4_1)(const uint8_t *w, size_t rb, const float *wsc, const QAct *a, const float *d4,
                            const float *s4, int64_t K, float *out) {
    const BlockQ4_1 *b0 = (const void *)w, *b1 = (const void *)(w + rb);
    _Alignas(32) float sc[T42_CHUNK * 8];
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m256 mins = c00; /* lane p: fmaf chain of m * s over the blocks, as the single-row kernel's summ */
    const int64_t nb = K / QK;
    for (int64_t i0 = 0; i0 < nb; i0 += T42_CHUNK) {
        const int64_t n = nb - i0 < T42_CHUNK ? nb - i0 : T42_CHUNK;
        for (int64_t j = 0; j < n; j++) {
            const float *ws = wsc + 16 * (i0 + j);
            _mm256_store_ps(sc + 8 * j, _mm256_mul_ps(_mm256_load_ps(ws), _mm256_broadcast_ps((const __m128 *)(d4 + 4 * (i0 + j)))));
            mins = _mm256_fmadd_ps(_mm256_load_ps(ws + 8), _mm256_broadcast_ps((const __m128 *)(s4 + 4 * (i0 + j))), mins);
        }
        for (int64_t j = 0; j < n; j++) {
            const int64_t i = i0 + j;
            const __m256i u0 = nibbles(b0[i].qs), u1 = nibbles(b1[i].qs);
            const float *s = sc + 8 * j;
#define ROW(r)                                                                                                     \
    do {                                                                                                           \
        const __m256i av = load_q8(a[r].qs + i * QK);                                                              \
        c0##r = _mm256_fmadd_ps(_mm256_broadcast_ss(s + r), _mm256_cvtepi32_ps(T42_U8_DOT(u0, av)), c0##r);             \
        c1##r = _mm256_fmadd_ps(_mm256_broadcast_ss(s + 4 + r), _mm256_cvtepi32_ps(T42_U8_DOT(u1, av)), c1##r);         \
    } while (0)
            ROW(0); ROW(1); ROW(2); ROW(3);
#undef ROW
        }
    }
    _mm256_storeu_ps(out, _mm256_add_ps(hsum8_ps(c00, c01, c02, c03, c10, c11, c12, c13), mins));
}

#undef T42_TGT
#undef T42_NAME
#undef T42_SW
#undef T42_SA
#undef T42_SDOT
#undef T42_U8_DOT
#undef T42_CHUNK
