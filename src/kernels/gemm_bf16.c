/* bfloat16 GEMM with float32 accumulation: oneDNN's matmul primitive
 * (AVX512-BF16 or AMX-BF16 where the CPU has them). The primitive is made
 * once per shape by gemm_bf16_plan (JIT code generation costs milliseconds)
 * and run many times, as the training step's shapes are fixed when its
 * activations are planned. A mixture-of-experts' rows per expert change
 * every step: there one dimension is a run-time value (oneDNN's runtime
 * dimensions, served by its JIT GEMM at about the fixed-shape speed). */
#include <dnnl.h>
#include <omp.h>
#include <stdlib.h>

#include "kernels/kernels.h"
#include "kernels/quant.h"

#define DNNL_TRY(call, what)                                                                               \
    do {                                                                                                   \
        dnnl_status_t st_ = (call);                                                                        \
        if (st_ != dnnl_success) {                                                                         \
            rc = err_set(err, st_ == dnnl_unimplemented ? ERR_UNSUPPORTED : ERR_INVALID,                     \
                         "bf16 GEMM %dx%dx%d: oneDNN %s failed (status %d)", M, N, K, what, (int)st_);      \
            goto done;                                                                                     \
        }                                                                                                  \
    } while (0)

/* The memory descriptors of op(A) (M,K), op(B) (K,N) and C (M,N) in g's
 * layout; M or K may be DNNL_RUNTIME_DIM_VAL. A transposed operand is the
 * same memory read with swapped strides. */
static dnnl_status_t descriptors(const GemmBf16 *g, int64_t M, int64_t K, dnnl_memory_desc_t md[3]) {
    const dnnl_dims_t a_dims = {M, K}, b_dims = {K, g->N}, c_dims = {M, g->N};
    const dnnl_dims_t a_str = {g->transA ? 1 : g->lda, g->transA ? g->lda : 1},
                      b_str = {g->transB ? 1 : g->ldb, g->transB ? g->ldb : 1}, c_str = {g->ldc, 1};
    dnnl_status_t st = dnnl_memory_desc_init_by_strides(&md[0], 2, a_dims, dnnl_bf16, a_str);
    if (st == dnnl_success) st = dnnl_memory_desc_init_by_strides(&md[1], 2, b_dims, dnnl_bf16, b_str);
    if (st == dnnl_success) st = dnnl_memory_desc_init_by_strides(&md[2], 2, c_dims, dnnl_f32, c_str);
    return st;
}

static int64_t dim(int d) { return d == GEMM_BF16_ROWS ? DNNL_RUNTIME_DIM_VAL : d; }

int gemm_bf16_plan(GemmBf16 *g, int transA, int transB, int M, int N, int K, int lda, int ldb, int ldc,
                   int accumulate, Err *err) {
    *g = (GemmBf16){0};
    int rc = 0;
    dnnl_engine_t eng = NULL;
    dnnl_stream_t str = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    const int m_ok = M > 0 || (M == GEMM_BF16_ROWS && K > 0), k_ok = K > 0 || (K == GEMM_BF16_ROWS && M > 0);
    if (!m_ok || N <= 0 || !k_ok) return err_set(err, ERR_INVALID, "bf16 GEMM: empty shape %dx%dx%d", M, N, K);
    const GemmBf16 shape = {NULL, NULL, NULL, M, N, K, transA, transB, lda, ldb, ldc};
    dnnl_memory_desc_t md[3];
    dnnl_matmul_desc_t desc;
    DNNL_TRY(descriptors(&shape, dim(M), dim(K), md), "memory descriptor");
    DNNL_TRY(dnnl_matmul_desc_init(&desc, &md[0], &md[1], NULL, &md[2]), "matmul descriptor");
    DNNL_TRY(dnnl_engine_create(&eng, dnnl_cpu, 0), "engine");
    DNNL_TRY(dnnl_stream_create(&str, eng, dnnl_stream_default_flags), "stream");
    DNNL_TRY(dnnl_primitive_attr_create(&attr), "attributes");
    if (accumulate) { /* C += A B: the sum post-op reads C before it is written */
        DNNL_TRY(dnnl_post_ops_create(&ops), "post-ops");
        DNNL_TRY(dnnl_post_ops_append_sum(ops, 1.0f), "sum post-op");
        DNNL_TRY(dnnl_primitive_attr_set_post_ops(attr, ops), "post-ops");
    }
    DNNL_TRY(dnnl_primitive_desc_create(&pd, &desc, attr, eng, NULL), "primitive descriptor");
    DNNL_TRY(dnnl_primitive_create(&prim, pd), "primitive");
    *g = shape;
    g->engine = eng, g->stream = str, g->prim = prim;
    eng = NULL, str = NULL, prim = NULL;
done:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (prim) dnnl_primitive_destroy(prim);
    if (str) dnnl_stream_destroy(str);
    if (eng) dnnl_engine_destroy(eng);
    return rc;
}

static int run(const GemmBf16 *g, const dnnl_memory_desc_t *md[3], const uint16_t *A, const uint16_t *B, float *C) {
    const int which[3] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST};
    void *ptr[3] = {(void *)A, (void *)B, C};
    dnnl_memory_t mem[3] = {NULL, NULL, NULL};
    dnnl_exec_arg_t args[3];
    int rc = 0;
    for (int i = 0; i < 3 && !rc; i++) {
        if (!md[i] || dnnl_memory_create(&mem[i], md[i], g->engine, ptr[i]) != dnnl_success) rc = ERR_NOMEM;
        args[i] = (dnnl_exec_arg_t){which[i], mem[i]};
    }
    if (!rc && (dnnl_primitive_execute(g->prim, g->stream, 3, args) != dnnl_success ||
                dnnl_stream_wait(g->stream) != dnnl_success))
        rc = ERR_INVALID;
    for (int i = 0; i < 3; i++)
        if (mem[i]) dnnl_memory_destroy(mem[i]);
    return rc;
}

int gemm_bf16_run(const GemmBf16 *g, const uint16_t *A, const uint16_t *B, float *C) {
    const_dnnl_primitive_desc_t pd;
    if (!g->prim || g->M == GEMM_BF16_ROWS || g->K == GEMM_BF16_ROWS ||
        dnnl_primitive_get_primitive_desc(g->prim, &pd) != dnnl_success)
        return ERR_INVALID;
    const dnnl_memory_desc_t *md[3] = {dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0),
                                       dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0),
                                       dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0)};
    return run(g, md, A, B, C);
}

int gemm_bf16_run_rows(const GemmBf16 *g, int rows, const uint16_t *A, const uint16_t *B, float *C) {
    if (!g->prim || rows <= 0 || (g->M != GEMM_BF16_ROWS && g->K != GEMM_BF16_ROWS)) return ERR_INVALID;
    dnnl_memory_desc_t d[3];
    if (descriptors(g, g->M == GEMM_BF16_ROWS ? rows : g->M, g->K == GEMM_BF16_ROWS ? rows : g->K, d) != dnnl_success)
        return ERR_INVALID;
    const dnnl_memory_desc_t *md[3] = {&d[0], &d[1], &d[2]};
    return run(g, md, A, B, C);
}

void gemm_bf16_free(GemmBf16 *g) {
    if (g->prim) dnnl_primitive_destroy(g->prim);
    if (g->stream) dnnl_stream_destroy(g->stream);
    if (g->engine) dnnl_engine_destroy(g->engine);
    *g = (GemmBf16){0};
}

int gemm_bf16_weights(float *out, const float *x, const uint16_t *W, int M, int N, int K) {
    if (M <= 0 || N <= 0) return 0;
    if (K <= 0 || !gemm_bf16_available()) return ERR_UNSUPPORTED;
    uint16_t *xb = malloc((size_t)M * K * sizeof *xb); /* (M, K) */
    if (!xb) return ERR_NOMEM;
    convert_f32_to_bf16(xb, x, (size_t)M * K);
    GemmBf16 g = {0};
    int rc = gemm_bf16_plan(&g, 0, 1, M, N, K, K, K, N, 0, NULL);
    if (!rc) rc = gemm_bf16_run(&g, xb, W, out);
    gemm_bf16_free(&g);
    free(xb);
    return rc;
}

double gemm_bf16_peak_flops(int threads) {
    enum { S = 2048 };
    if (!gemm_bf16_available()) return 0.0;
    const int saved = omp_get_max_threads();
    if (threads > 0) omp_set_num_threads(threads);
    GemmBf16 g = {0};
    uint16_t *A = malloc((size_t)S * S * 2), *B = malloc((size_t)S * S * 2);
    float *C = malloc((size_t)S * S * 4);
    double best = 0.0;
    if (A && B && C && !gemm_bf16_plan(&g, 0, 1, S, S, S, S, S, S, 0, NULL)) {
        for (size_t i = 0; i < (size_t)S * S; i++) A[i] = B[i] = 0x3F80 ^ (uint16_t)(i & 0x3F); /* ~1.0-1.5 */
        for (int rep = 0; rep < 6; rep++) {
            const double t0 = time_now();
            if (gemm_bf16_run(&g, A, B, C)) break;
            const double f = 2.0 * S * S * S / (time_now() - t0);
            if (rep && f > best) best = f; /* rep 0 warms oneDNN up */
        }
    }
    gemm_bf16_free(&g);
    free(A), free(B), free(C);
    omp_set_num_threads(saved);
    return best;
}

int gemm_bf16_available(void) {
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return isa == dnnl_cpu_isa_avx512_core_bf16 || isa == dnnl_cpu_isa_avx512_core_amx;
}

#if defined(__x86_64__)
#include <immintrin.h>
/* f32_to_bf16 sixteen at a time, the same integer rounding (to nearest,
 * ties to even; a NaN stays a quiet NaN; subnormals rounded, not flushed as
 * vcvtneps2bf16 would), so every bit equals the scalar helper's. */
__attribute__((target("avx512f"))) static void bf16_round16(uint16_t *dst, const float *src, size_t n) {
    const __m512i one = _mm512_set1_epi32(1), half = _mm512_set1_epi32(0x7FFF), quiet = _mm512_set1_epi32(64);
    const __m512i abs = _mm512_set1_epi32(0x7FFFFFFF), inf = _mm512_set1_epi32(0x7F800000);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i u = _mm512_loadu_si512(src + i), hi = _mm512_srli_epi32(u, 16);
        __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(half, _mm512_and_si512(hi, one))), 16);
        const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs), inf);
        r = _mm512_mask_or_epi32(r, nan, hi, quiet);
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtepi32_epi16(r));
    }
    for (; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}
#endif

void convert_f32_to_bf16(uint16_t *dst, const float *src, size_t n) {
    /* blocks of 16 Ki values per thread: a few tens of microseconds each */
    const size_t blk = 16384, nblk = (n + blk - 1) / blk;
#pragma omp parallel for schedule(static) if (nblk >= 4)
    for (size_t b = 0; b < nblk; b++) {
        const size_t i0 = b * blk, m = n - i0 < blk ? n - i0 : blk;
#if defined(__x86_64__)
        if (kernel_isa() >= ISA_AVX512) {
            bf16_round16(dst + i0, src + i0, m);
            continue;
        }
#endif
        for (size_t i = i0; i < i0 + m; i++) dst[i] = f32_to_bf16(src[i]);
    }
}
