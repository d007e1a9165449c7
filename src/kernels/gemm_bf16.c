/* bfloat16 GEMM with float32 accumulation: oneDNN's matmul primitive
 * (AVX512-BF16 or AMX-BF16 where the CPU has them). The primitive is made
 * once per shape by gemm_bf16_plan (JIT code generation costs milliseconds)
 * and run many times, as the training step's shapes are fixed when its
 * activations are planned. */
#include <dnnl.h>
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
    if (M <= 0 || N <= 0 || K <= 0) return err_set(err, ERR_INVALID, "bf16 GEMM: empty shape %dx%dx%d", M, N, K);
    /* op(A) (M,K), op(B) (K,N), C (M,N): a transposed operand is the same
     * memory read with swapped strides */
    const dnnl_dims_t a_dims = {M, K}, b_dims = {K, N}, c_dims = {M, N};
    const dnnl_dims_t a_str = {transA ? 1 : lda, transA ? lda : 1}, b_str = {transB ? 1 : ldb, transB ? ldb : 1},
                      c_str = {ldc, 1};
    dnnl_memory_desc_t a_md, b_md, c_md;
    dnnl_matmul_desc_t desc;
    DNNL_TRY(dnnl_memory_desc_init_by_strides(&a_md, 2, a_dims, dnnl_bf16, a_str), "memory descriptor");
    DNNL_TRY(dnnl_memory_desc_init_by_strides(&b_md, 2, b_dims, dnnl_bf16, b_str), "memory descriptor");
    DNNL_TRY(dnnl_memory_desc_init_by_strides(&c_md, 2, c_dims, dnnl_f32, c_str), "memory descriptor");
    DNNL_TRY(dnnl_matmul_desc_init(&desc, &a_md, &b_md, NULL, &c_md), "matmul descriptor");
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
    *g = (GemmBf16){eng, str, prim, M, N, K};
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

int gemm_bf16_run(const GemmBf16 *g, const uint16_t *A, const uint16_t *B, float *C) {
    const_dnnl_primitive_desc_t pd;
    if (!g->prim || dnnl_primitive_get_primitive_desc(g->prim, &pd) != dnnl_success) return ERR_INVALID;
    const int which[3] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST};
    const dnnl_query_t q[3] = {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md};
    void *ptr[3] = {(void *)A, (void *)B, C};
    dnnl_memory_t mem[3] = {NULL, NULL, NULL};
    dnnl_exec_arg_t args[3];
    int rc = 0;
    for (int i = 0; i < 3 && !rc; i++) {
        const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, q[i], 0);
        if (!md || dnnl_memory_create(&mem[i], md, g->engine, ptr[i]) != dnnl_success) rc = ERR_NOMEM;
        args[i] = (dnnl_exec_arg_t){which[i], mem[i]};
    }
    if (!rc && (dnnl_primitive_execute(g->prim, g->stream, 3, args) != dnnl_success ||
                dnnl_stream_wait(g->stream) != dnnl_success))
        rc = ERR_INVALID;
    for (int i = 0; i < 3; i++)
        if (mem[i]) dnnl_memory_destroy(mem[i]);
    return rc;
}

void gemm_bf16_free(GemmBf16 *g) {
    if (g->prim) dnnl_primitive_destroy(g->prim);
    if (g->stream) dnnl_stream_destroy(g->stream);
    if (g->engine) dnnl_engine_destroy(g->engine);
    *g = (GemmBf16){0};
}

int gemm_bf16_available(void) {
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return isa == dnnl_cpu_isa_avx512_core_bf16 || isa == dnnl_cpu_isa_avx512_core_amx;
}

void convert_f32_to_bf16(uint16_t *dst, const float *src, size_t n) {
#pragma omp parallel for if (n >= 65536)
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}
