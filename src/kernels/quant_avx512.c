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

#define TGT512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")))

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
#else
QTile42Fn quant_tile42_fn_avx512(int t) {
    (void)t;
    return NULL;
}
#endif
