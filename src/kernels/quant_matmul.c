/* matmul_quant_forward: out (M,N) = inp (M,K) · W(N,K)^T with W in a block
 * format, working on the blocks directly.
 *
 * M small (generation): quantize the activation rows once (Q8 or Q8_K, as
 * llama.cpp does), then stream the weights once, each thread a contiguous
 * range of output rows, each weight row dotted with every activation row
 * while it is in L1. The loop is memory-bound, so the point is to touch
 * each weight byte once.
 * M large (prompt processing): dequantize a panel of weight rows to f32 and
 * hand it to the f32 GEMM (oneDNN): on CPUs without VNNI that beats integer
 * dot products several times over, and the dequantization is amortized over
 * the M rows. QMM_Q8_ACTIVATIONS forces the integer path for every M. */
#include "kernels/quant_blocks.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Below this many activation rows the integer dot path is used. */
#define QMM_GEMM_MIN_M 16
/* Weight rows per dequantized panel in the GEMM path (bounded by bytes). */
#define QMM_PANEL_BYTES (1u << 20)
/* Activation scratch kept on the stack up to this size / row count. */
#define QMM_STACK_ACT_BYTES (24u << 10)
#define QMM_STACK_ACT_ROWS 8
/* Output rows per work item in the dot path: a few KiB of weights. */
#define QMM_DOT_TILE_BYTES (16u << 10)
/* From this many activation rows Q4_0 / Q5_0 / Q4_K go through panels of
 * unpacked weight rows (quant_blocksum.c), where the CPU has the panel
 * kernel. Measured on Zen 4 (1536x576, hot cache, one thread): against the
 * eight-row matvecs, panels take 0.85x (Q4_0) / 1.0x (Q5_0) the time at
 * M = 2 and 0.67x / 0.75x at M = 3. */
#define QMM_PANEL_MIN_M 2
/* The same on AVX2 (maddubs panels), measured the same way: */
#define QMM_PANEL_MIN_M_AVX2 4

int quant_can_matmul(int t) {
    return t == DT_Q4_0_R16 || t == DT_Q8_0_R16 || t == DT_Q5_0_R16 ? quant_r16_available() : quant_dot_fn(t) != NULL;
}

/* Where the panels run: measured on Zen 4 (pp512, one thread, CPU time of
 * `jarip bench infer`), the VNNI ones 2.0x (Q4_0) and 2.3x (SmolLM2's Q5_0 +
 * Q4_K file) faster than dequantize + sgemm; the AVX2 ones (Q4_0, Q5_0;
 * JARIP_ISA=avx2 ONEDNN_MAX_CPU_ISA=AVX2, 1536x576, M = 256) 1.65x. */
int quant_batch_dots_fast(int t) {
    return t == DT_Q4_0_R16 || t == DT_Q8_0_R16 || t == DT_Q5_0_R16 || quant_panel_fn_avx512(t) != NULL ||
           quant_panel_fn_avx2(t) != NULL;
}

QDotFn quant_dot_fn(int t) {
    QDotFn f = quant_dot_fn_avx2(t);
    return f ? f : quant_dot_fn_scalar(t);
}

int quant_vec_dot(int wtype, const void *w, const float *x, int64_t K, float *out) {
    QDotFn dot = quant_dot_fn(wtype);
    int act = quant_act_type(wtype);
    if (!dot || act < 0) return ERR_UNSUPPORTED;
    if (K % dtype_block_size(wtype) || K % (act == DT_Q8_K ? QK_K : act == DT_Q8_0 ? QK : 1)) return ERR_INVALID;
    void *scratch = xalloc(quant_act_bytes(act, K), NULL);
    if (!scratch) return ERR_NOMEM;
    QAct a;
    quant_act_row(act, x, K, scratch, &a);
    *out = dot(w, &a, x, K);
    xfree(scratch);
    return 0;
}

/* GEMM path: panels of weight rows dequantized to f32, then sgemm; F16 on
 * AVX-512 through gemm_f16, which widens the halves as it packs them. */
static int gemm_path(float *out, const float *inp, const uint8_t *W, int wtype, size_t rb, int M, int N, int K) {
    if (wtype == DT_F16 && gemm_f16_available()) /* halves widened into its own packing (gemm_f16.c) */
        return gemm_f16(out, inp, (const uint16_t *)W, M, N, K);
    if (wtype == DT_BF16) { /* native bf16 products where the CPU has them (gemm_bf16.c) */
        const int rc = gemm_bf16_weights(out, inp, (const uint16_t *)W, M, N, K);
        if (rc != ERR_UNSUPPORTED) return rc;
    }
    int panel = (int)(QMM_PANEL_BYTES / ((size_t)K * 4));
    if (panel < 16) panel = 16;
    if (panel > N) panel = N;
    float *buf = xalloc((size_t)panel * K * 4, NULL);
    if (!buf) return ERR_NOMEM;
    for (int n0 = 0; n0 < N; n0 += panel) {
        const int nr = N - n0 < panel ? N - n0 : panel;
#pragma omp parallel for schedule(static)
        for (int r = 0; r < nr; r++) dequantize_row(wtype, W + (size_t)(n0 + r) * rb, buf + (size_t)r * K, K);
        gemm_f32(0, 1, M, nr, K, 1.0f, inp, K, buf, K, 0.0f, out + n0, N);
    }
    xfree(buf);
    return 0;
}

typedef struct {
    const uint8_t *W;
    size_t rb;
    const float *inp;
    float *out;
    const QAct *acts;
    QDotFn dot;
    QDot4Fn dot4;
    QRows4Fn rows4;
    QTile42Fn tile42;
    QTile42ScalesFn tile42_scales;
    QTile44Fn tile44;     /* Q8_0 on VNNI: four activation rows x four weight rows, before tile42 */
    QDot8Fn dot8;         /* Q4_0 / Q5_0: eight weight rows x one activation row */
    QPanelPackFn pack;    /* with panel: Q4_0 / Q5_0 for M >= QMM_PANEL_MIN_M */
    QPanelFn panel;
    const int32_t *corr;  /* panel: (M, K/32) offset terms */
    uint8_t *panels;      /* panel: per thread quant_panel_bytes(K) bytes */
    const float *ds; /* tile42: per group of 4 activation rows, d4 then s4 (nb * 4 floats each) */
    const float *corr44; /* tile44: per group of 4 activation rows, nb * 32 floats (quant_tile44_corr) */
    const uint8_t *q8t_ag; /* Q8_0 on VNNI, rows [0, M16): per group of 16, nb * 512 bytes (quant_q8t_acts) */
    const float *q8t_dg;   /* and nb * 16 floats */
    int32_t *q8t_wp;       /* per thread q8t_wp_rows packed weight rows (quant_q8t_wbytes(K) bytes each) */
    int M16, q8t_wp_rows;
    float *wsc;      /* tile42: per thread wsc_floats floats for the weight-pair scales of a tile */
    size_t wsc_floats;
    int M, N, K, tile;
} DotJob;

/* Activation rows [0, j->M16) against weight rows [n0, n1) with the
 * sixteen-row kernel: the tile's rows packed once (thread tid's scratch),
 * then each group of 16 rows against each pair of them; an odd last
 * weight row goes through rows4. */
static void run_q8t(const DotJob *j, int n0, int n1, int tid) {
    const int64_t nb = j->K / QK;
    const size_t wb = quant_q8t_wbytes(j->K) / sizeof(int32_t);
    int32_t *wp = j->q8t_wp + (size_t)tid * j->q8t_wp_rows * wb;
    const int paired = n0 + (n1 - n0) / 2 * 2;
    for (int n = n0; n < paired; n++) quant_q8t_weight(j->W + (size_t)n * j->rb, j->K, wp + (size_t)(n - n0) * wb);
    for (int m = 0; m < j->M16; m += 16) {
        const uint8_t *ag = j->q8t_ag + (size_t)(m / 16) * nb * 512;
        const float *dg = j->q8t_dg + (size_t)(m / 16) * nb * 16;
        int n = n0;
        for (; n < paired; n += 2) {
            float r[32];
            const int32_t *p = wp + (size_t)(n - n0) * wb;
            quant_q8t_tile(j->W + (size_t)n * j->rb, j->rb, p, p + wb, ag, dg, j->K, r);
            for (int i = 0; i < 16; i++) {
                j->out[(size_t)(m + i) * j->N + n] = r[i];
                j->out[(size_t)(m + i) * j->N + n + 1] = r[16 + i];
            }
        }
        for (; n < n1; n++)
            for (int q = 0; q < 16; q += 4) {
                float r[4];
                j->rows4(j->W + (size_t)n * j->rb, &j->acts[m + q], j->K, r);
                for (int i = 0; i < 4; i++) j->out[(size_t)(m + q + i) * j->N + n] = r[i];
            }
    }
}

/* Output-row tiles [t0, t1) on thread tid (its part of the wsc scratch):
 * each weight row against every activation row
 * while it is in L1; four activation rows x two weight rows at a time where
 * the type has the kernel (tile42), then four x one (rows4), then single
 * rows. Which kernel computes an output does not change its bits. */
static void run_tiles(const DotJob *j, int t0, int t1, int tid) {
    const int64_t nb = j->K / QK;
    for (int t = t0; t < t1; t++) {
        const int n0 = t * j->tile, n1 = n0 + j->tile < j->N ? n0 + j->tile : j->N;
        if (j->panel) { /* 16 weight rows unpacked once for all M activation rows */
            uint8_t *pan = j->panels + (size_t)tid * quant_panel_bytes(j->K);
            for (int n = n0; n < n1; n += QPANEL_ROWS) {
                const int rows = n1 - n < QPANEL_ROWS ? n1 - n : QPANEL_ROWS;
                j->pack(j->W + (size_t)n * j->rb, j->rb, rows, j->K, pan);
                j->panel(pan, j->acts, j->corr, j->M, j->K, j->out + n, (size_t)j->N, rows);
            }
            continue;
        }
        int m = 0;
        if (j->M16) run_q8t(j, n0, n1, tid), m = j->M16;
        float *wsc = NULL;
        if (j->tile42 && j->M - m >= 4) { /* the tile's weight-pair scales, read by every group of 4 rows */
            wsc = j->wsc + (size_t)tid * j->wsc_floats;
            for (int n = n0; n + 2 <= n1; n += 2)
                j->tile42_scales(j->W + (size_t)n * j->rb, j->rb, j->K, wsc + (size_t)(n - n0) / 2 * nb * QTILE42_WSC);
        }
        if (j->rows4)
            for (; m + 4 <= j->M; m += 4) {
                int n = n0;
                const float *d4 = j->ds ? j->ds + (size_t)((m - j->M16) / 4) * nb * 8 : NULL;
                if (j->tile44) {
                    const float *corr = j->corr44 + (size_t)((m - j->M16) / 4) * nb * 32;
                    for (; n + 4 <= n1; n += 4) {
                        float r[16];
                        j->tile44(j->W + (size_t)n * j->rb, j->rb, wsc + (size_t)(n - n0) / 2 * nb * QTILE42_WSC, &j->acts[m],
                                  d4, corr, j->K, r);
                        for (int i = 0; i < 4; i++)
                            for (int c = 0; c < 4; c++) j->out[(size_t)(m + i) * j->N + n + c] = r[4 * c + i];
                    }
                }
                if (j->tile42) {
                    for (; n + 2 <= n1; n += 2) {
                        float r[8];
                        j->tile42(j->W + (size_t)n * j->rb, j->rb, wsc + (size_t)(n - n0) / 2 * nb * QTILE42_WSC,
                                  &j->acts[m], d4, d4 + nb * 4, j->K, r);
                        for (int i = 0; i < 4; i++) {
                            j->out[(size_t)(m + i) * j->N + n] = r[i];
                            j->out[(size_t)(m + i) * j->N + n + 1] = r[4 + i];
                        }
                    }
                }
                for (; n < n1; n++) {
                    float r[4];
                    j->rows4(j->W + (size_t)n * j->rb, &j->acts[m], j->K, r);
                    for (int i = 0; i < 4; i++) j->out[(size_t)(m + i) * j->N + n] = r[i];
                }
            }
        for (; m < j->M; m++) {
            const float *x = j->inp + (size_t)m * j->K;
            float *o = j->out + (size_t)m * j->N;
            int n = n0;
            if (j->dot8)
                for (; n + 8 <= n1; n += 8) j->dot8(j->W + (size_t)n * j->rb, j->rb, &j->acts[m], j->K, o + n);
            if (j->dot4)
                for (; n + 4 <= n1; n += 4) j->dot4(j->W + (size_t)n * j->rb, j->rb, &j->acts[m], j->K, o + n);
            for (; n < n1; n++) o[n] = j->dot(j->W + (size_t)n * j->rb, &j->acts[m], x, j->K);
        }
    }
}

/* The block scales of each group of 4 activation rows interleaved for the
 * tile42 kernels: group g at ds + g*nb*8, d4[4*i + r] then s4[4*i + r]. */
static void interleave_scales(const QAct *acts, int M, int64_t nb, float *ds) {
    for (int g = 0; g < M / 4; g++) {
        float *d4 = ds + (size_t)g * nb * 8, *s4 = d4 + nb * 4;
        for (int64_t i = 0; i < nb; i++)
            for (int r = 0; r < 4; r++) d4[4 * i + r] = acts[4 * g + r].d[i], s4[4 * i + r] = acts[4 * g + r].s[i];
    }
}

int matmul_quant_forward_multi(const float *inp, int wtype, int M, int K, const QMMPart *parts, int n_parts, int flags) {
    if (M <= 0) return 0;
    if (n_parts < 1 || n_parts > QMM_MAX_PARTS) return ERR_INVALID;
    if (wtype == DT_Q4_0_R16 || wtype == DT_Q8_0_R16 || wtype == DT_Q5_0_R16) /* repacked (quant_r16.c) */
        return quant_r16_forward(wtype, inp, M, K, parts, n_parts);
    QDotFn dot = quant_dot_fn(wtype);
    const int act = quant_act_type(wtype);
    if (!dot || act < 0) return ERR_UNSUPPORTED;
    const size_t rb = dtype_row_bytes(wtype, K);
    const int ablock = act == DT_Q8_K ? QK_K : act == DT_Q8_0 ? QK : 1;
    if (K <= 0 || !rb || K % ablock) return ERR_INVALID;
    if (M >= QMM_GEMM_MIN_M && !(flags & QMM_Q8_ACTIVATIONS)) {
        if (wtype == DT_F16 && gemm_f16_available()) return gemm_f16_parts(inp, M, K, parts, n_parts); /* x packed once */
        for (int p = 0; p < n_parts; p++) {
            int rc = parts[p].N > 0 ? gemm_path(parts[p].out, inp, parts[p].W, wtype, rb, M, parts[p].N, K) : 0;
            if (rc) return rc;
        }
        return 0;
    }

    /* activations, quantized once for all parts: on the stack for the
     * generation path (an allocation per call costs as much as a small
     * matrix-vector product) */
    const size_t ab = quant_act_bytes(act, K);
    _Alignas(64) uint8_t stack_scr[QMM_STACK_ACT_BYTES];
    QAct stack_acts[QMM_STACK_ACT_ROWS];
    const int on_stack = M <= QMM_STACK_ACT_ROWS && ab * (size_t)M <= sizeof stack_scr;
    uint8_t *scratch = on_stack ? stack_scr : NULL;
    QAct *acts = on_stack ? stack_acts : calloc((size_t)M, sizeof *acts);
    if (!acts) return ERR_NOMEM;
    /* Q8_0 on VNNI: activation rows [0, M16) in groups of 16 for
     * quant_q8t_tile, each group packed by the thread that quantized it */
    const int64_t nb = K / QK;
    int M16 = act != DT_F32 && quant_rows4_fn_avx2(wtype) && quant_q8t_available(wtype) ? M / 16 * 16 : 0;
    uint8_t *q8t_ag = M16 ? xalloc((size_t)(M16 / 16) * nb * (512 + 16 * sizeof(float)), NULL) : NULL;
    if (!q8t_ag) M16 = 0; /* out of memory: the 4-row kernels */
    float *q8t_dg = M16 ? (float *)(q8t_ag + (size_t)(M16 / 16) * nb * 512) : NULL;
    if (act != DT_F32) {
        if (!on_stack) scratch = xalloc(ab * (size_t)M, NULL);
        if (!scratch) return free(acts), xfree(q8t_ag), ERR_NOMEM;
        if (M == 1) { /* no team of one: entering a parallel region costs ~1 us */
            quant_act_row(act, inp, K, scratch, &acts[0]);
        } else {
            const int gs = M16 ? 16 : 1; /* rows per iteration */
#pragma omp parallel for schedule(static)
            for (int g = 0; g < (M + gs - 1) / gs; g++) {
                const int m1 = gs * g + gs < M ? gs * g + gs : M;
                for (int m = gs * g; m < m1; m++) quant_act_row(act, inp + (size_t)m * K, K, scratch + (size_t)m * ab, &acts[m]);
                if (gs * g + 16 <= M16) quant_q8t_acts(&acts[gs * g], nb, q8t_ag + (size_t)g * nb * 512, q8t_dg + (size_t)g * nb * 16);
            }
        }
    } else {
        memset(acts, 0, (size_t)M * sizeof *acts);
    }
    /* work items of `tile` output rows (a few KiB of weights each), their
     * count per part a multiple of the thread count so static scheduling
     * is even; all parts' items in one parallel region (one fork/join for
     * q, k and v of a decoding step instead of three); small work stays on
     * one thread (a fork/join costs more than a few thousand multiply-adds) */
    double work = 0;
    for (int p = 0; p < n_parts; p++) work += (double)M * parts[p].N * K;
    const int parallel = work > 32768.0 && omp_get_max_threads() > 1 && !omp_in_parallel();
    const int nth = parallel ? omp_get_max_threads() : 1;
    QRows4Fn rows4 = quant_rows4_fn_avx2(wtype);
    QTile42Fn tile42 = NULL;
    if (rows4 && M >= 4) tile42 = quant_tile42_fn_avx512(wtype);
    if (rows4 && M >= 4 && !tile42) tile42 = quant_tile42_fn_avx2(wtype);
    QTile42ScalesFn tile42_scales = quant_tile42_scales_fn_avx2(wtype);
    QDot8Fn dot8 = quant_dot8_fn_avx512(wtype);
    if (!dot8) dot8 = quant_dot8_fn_avx2(wtype);
    QPanelFn panel = M >= QMM_PANEL_MIN_M ? quant_panel_fn_avx512(wtype) : NULL;
    if (!panel && M >= QMM_PANEL_MIN_M_AVX2) panel = quant_panel_fn_avx2(wtype);
    QPanelPackFn pack = panel ? quant_panel_pack_fn(wtype) : NULL;
    int32_t *corr = NULL;
    uint8_t *panels = NULL;
    if (panel && pack) {
        corr = xalloc((size_t)M * (K / QK) * sizeof(int32_t), NULL);
        panels = xalloc((size_t)nth * quant_panel_bytes(K), NULL);
        if (corr) quant_block_corr(wtype, acts, M, K / QK, corr);
    }
    if (!corr || !panels) panel = NULL; /* out of memory (or no panel kernel): the row kernels need no scratch */
    /* rows [0, M16) by quant_q8t_tile, the rest in groups of 4 (tile44 /
     * tile42), then rows4 and single rows */
    QTile44Fn tile44 = tile42 ? quant_tile44_fn_avx512(wtype) : NULL;
    DotJob jobs[QMM_MAX_PARTS];
    int first[QMM_MAX_PARTS + 1], max_tile = 0;
    size_t wsc_floats = 0;
    first[0] = 0;
    for (int p = 0; p < n_parts; p++) {
        const int N = parts[p].N > 0 ? parts[p].N : 0;
        int items = (int)(((size_t)N * rb + QMM_DOT_TILE_BYTES - 1) / QMM_DOT_TILE_BYTES);
        if (items < nth) items = nth;
        items = (items + nth - 1) / nth * nth;
        int tile = N ? (N + items - 1) / items : 1;
        /* whole panels, groups of eight or pairs of weight rows for the
         * kernels, still a tile count per thread */
        const int unit = panel ? QPANEL_ROWS : dot8 ? 8 : tile44 ? 4 : tile42 ? 2 : 1;
        if (unit > 1 && tile < N) {
            tile = (tile + unit - 1) / unit * unit;
            while (tile > unit && ((N + tile - 1) / tile) % nth) tile -= unit;
        }
        /* the four-row weight kernels (quant_dot4_fn_avx2) are not used: they
         * measured twice as slow per token (four interleaved weight streams
         * and the scale shuffles cost more than the shared activation loads save) */
        jobs[p] = (DotJob){.W = parts[p].W, .rb = rb, .inp = inp, .out = parts[p].out, .acts = acts, .dot = dot,
                           .rows4 = rows4, .tile42_scales = tile42_scales, .dot8 = dot8, .pack = pack, .panel = panel,
                           .corr = corr, .panels = panels, .M = M, .N = N, .K = K, .tile = tile};
        first[p + 1] = first[p] + (N + tile - 1) / tile;
        if (tile > max_tile) max_tile = tile;
        if ((size_t)tile / 2 * nb * QTILE42_WSC > wsc_floats) wsc_floats = (size_t)tile / 2 * nb * QTILE42_WSC;
    }
    /* scratch; out of memory, a kernel is dropped for the next one down
     * (rows4 and the single-row dots need none) */
    int32_t *q8t_wp = M16 ? xalloc((size_t)nth * max_tile * quant_q8t_wbytes(K), NULL) : NULL;
    if (!q8t_wp) M16 = 0;
    float *ds = NULL, *corr44 = NULL, *wsc = NULL;
    const int G4 = (M - M16) / 4; /* groups of 4 rows from M16 on */
    if (tile42 && G4) {
        ds = xalloc((size_t)G4 * nb * 8 * sizeof(float), NULL);
        if (ds) interleave_scales(acts + M16, M - M16, nb, ds);
        corr44 = tile44 && ds ? xalloc((size_t)G4 * nb * 32 * sizeof(float), NULL) : NULL;
        for (int g = 0; corr44 && g < G4; g++) quant_tile44_corr(&acts[M16 + 4 * g], nb, corr44 + (size_t)g * nb * 32);
        wsc_floats = (wsc_floats + 15) & ~(size_t)15; /* each thread's part 64-byte aligned */
        wsc = ds ? xalloc((size_t)nth * wsc_floats * sizeof(float), NULL) : NULL;
    }
    if (!wsc) tile42 = NULL;
    if (!tile42 || !corr44) tile44 = NULL;
    for (int p = 0; p < n_parts; p++) {
        DotJob *j = &jobs[p];
        j->tile42 = tile42, j->tile44 = tile44, j->ds = ds, j->corr44 = corr44, j->wsc = wsc, j->wsc_floats = wsc_floats;
        j->q8t_ag = q8t_ag, j->q8t_dg = q8t_dg, j->q8t_wp = q8t_wp, j->q8t_wp_rows = max_tile, j->M16 = M16;
    }
    const int ntiles = first[n_parts];
    if (!parallel) {
        for (int p = 0; p < n_parts; p++) run_tiles(&jobs[p], 0, first[p + 1] - first[p], 0);
    } else {
#pragma omp parallel for schedule(static) num_threads(nth)
        for (int t = 0; t < ntiles; t++) {
            int p = 0;
            while (t >= first[p + 1]) p++;
            run_tiles(&jobs[p], t - first[p], t - first[p] + 1, omp_get_thread_num());
        }
    }
    xfree(ds);
    xfree(corr44);
    xfree(q8t_ag);
    xfree(q8t_wp);
    xfree(wsc);
    xfree(corr);
    xfree(panels);
    if (!on_stack) {
        xfree(scratch);
        free(acts);
    }
    return 0;
}

int matmul_quant_forward_ex(float *out, const float *inp, const void *W, int wtype, int M, int N, int K, int flags) {
    if (M <= 0 || N <= 0) return 0;
    const QMMPart part = {out, W, N};
    return matmul_quant_forward_multi(inp, wtype, M, K, &part, 1, flags);
}

int matmul_quant_forward(float *out, const float *inp, const void *W, int wtype, int M, int N, int K) {
    return matmul_quant_forward_ex(out, inp, W, wtype, M, N, K, 0);
}
