/* Private to kernels/quant_avx2*.c: the small AVX2 helpers (nibble and bit
 * unpacking, maddubs sums, horizontal sums) shared by the matvec kernels
 * (quant_avx2.c) and the prompt-batch kernels (quant_avx2_batch.c), and the
 * target attributes of the AVX2 and AVX-512 kernels. */
#ifndef JARIP_KERNELS_QUANT_AVX2_INL_H
#define JARIP_KERNELS_QUANT_AVX2_INL_H

#include "kernels/quant_blocks.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define TGT __attribute__((target("avx2,fma,f16c")))
/* What kernel_isa() == ISA_AVX512 guarantees. */
#define TGT512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")))

TGT static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

TGT static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* 16 bytes of nibble pairs -> 32 bytes: low nibbles then high nibbles. */
TGT static inline __m256i nibbles(const uint8_t *p) {
    /* broadcast the 16 bytes to both lanes (a load, no shuffle), shift the upper lane by 4 */
    const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    return _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_set_epi64x(4, 4, 0, 0)), _mm256_set1_epi8(0x0F));
}

/* 32 bits -> 32 bytes, 0xFF where the bit is set. */
TGT static inline __m256i bits_to_bytes(const uint8_t *p) {
    uint32_t b;
    memcpy(&b, p, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)b), shuf);
    v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(v, _mm256_set1_epi64x(-1));
}

/* Q5_0's 32 levels 0..31 (nibble | fifth bit << 4); the weight is level - 16. */
TGT static inline __m256i levels5(const uint8_t *qs, const uint8_t *qh) {
    return _mm256_or_si256(nibbles(qs), _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(0x10)));
}

/* int32 x8 of sums of u (unsigned) * s (signed) over byte quads. */
TGT static inline __m256i dot_us(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

TGT static inline __m256i dot_ss(__m256i w, __m256i a) {
    return dot_us(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
}

TGT static inline __m256i load_q8(const int8_t *q) { return _mm256_loadu_si256((const __m256i *)q); }

TGT static inline __m128i ld32(const void *p) {
    int v;
    memcpy(&v, p, 4);
    return _mm_cvtsi32_si128(v);
}

/* hsum_ps of eight vectors at once, lane p = hsum_ps(c[p]) with the same
 * additions in the same order: lo+hi halves, then (0+2),(1+3), then their sum. */
TGT static inline __m256 hsum8_ps(__m256 c0, __m256 c1, __m256 c2, __m256 c3, __m256 c4, __m256 c5, __m256 c6,
                                  __m256 c7) {
#define HALVES(x, y) _mm256_add_ps(_mm256_permute2f128_ps(x, y, 0x20), _mm256_permute2f128_ps(x, y, 0x31))
    const __m256 r01 = HALVES(c0, c1), r23 = HALVES(c2, c3), r45 = HALVES(c4, c5), r67 = HALVES(c6, c7);
#undef HALVES
    const __m256 s0 = _mm256_add_ps(_mm256_shuffle_ps(r01, r23, 0x44), _mm256_shuffle_ps(r01, r23, 0xEE));
    const __m256 s1 = _mm256_add_ps(_mm256_shuffle_ps(r45, r67, 0x44), _mm256_shuffle_ps(r45, r67, 0xEE));
    const __m256 f = _mm256_add_ps(_mm256_shuffle_ps(s0, s1, 0x88), _mm256_shuffle_ps(s0, s1, 0xDD));
    return _mm256_permutevar8x32_ps(f, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

#endif /* x86 */
#endif /* JARIP_KERNELS_QUANT_AVX2_INL_H */
