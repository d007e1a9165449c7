/* The Q8_0 prompt kernels alone, hot in L1: the 4x2 tiles (AVX2, VNNI), the
 * VNNI 4x4 tile and the VNNI 16x2 kernel, each over the same weight and
 * activation rows, checked bit for bit against the single-row dot, timed by
 * thread CPU time (robust to other load). Build and run (after
 * `cmake --build build --target jarip_lib`):
 *   gcc -O2 -march=native -fopenmp -Isrc bench/q8_tiles.c build/libjarip_lib.a -ldnnl -ljansson -lpcre2-8 -lz -lm \
 *       -o /tmp/q8_tiles && /tmp/q8_tiles
 * Env: K (default 576), ITERS (calls per timing, default 20000), GHZ (the
 * core's clock, to print cycles per output and block as well).
 * The figure per kernel is ns per output and 32-block: one vpdpbusd and one
 * FMA on the two FMA pipes is the floor of the bit-exact order. */
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "kernels/quant_blocks.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

enum { ROWS = 16, WROWS = 4 };

int main(void) {
    const int K = getenv("K") ? atoi(getenv("K")) : 576, nb = K / 32;
    const int iters = getenv("ITERS") ? atoi(getenv("ITERS")) : 20000;
    const double ghz = getenv("GHZ") ? atof(getenv("GHZ")) : 0;
    if (K <= 0 || K % 32 || iters <= 0) return fprintf(stderr, "K must be a positive multiple of 32\n"), 2;
    const size_t rb = dtype_row_bytes(DT_Q8_0, K), ab = quant_act_bytes(DT_Q8_0, K);
    float *x = malloc((size_t)ROWS * K * 4), *w = malloc((size_t)WROWS * K * 4);
    for (int i = 0; i < ROWS * K; i++) x[i] = rng_normal(1, (uint64_t)i);
    for (int i = 0; i < WROWS * K; i++) w[i] = 0.05f * rng_normal(2, (uint64_t)i);
    uint8_t *Q = xalloc(WROWS * rb, NULL), *scr = xalloc(ROWS * ab, NULL);
    for (int n = 0; n < WROWS; n++) quantize_row(DT_Q8_0, w + (size_t)n * K, Q + n * rb, K);
    QAct a[ROWS];
    for (int m = 0; m < ROWS; m++) quant_act_row(DT_Q8_0, x + (size_t)m * K, K, scr + m * ab, &a[m]);
    QDotFn dot = quant_dot_fn(DT_Q8_0);
    float ref[ROWS][WROWS], o[32];
    for (int m = 0; m < ROWS; m++)
        for (int n = 0; n < WROWS; n++) ref[m][n] = dot(Q + n * rb, &a[m], x + (size_t)m * K, K);

    /* the 4-row kernels' inputs: rows 0..3 */
    float *d4 = xalloc((size_t)nb * 32, NULL), *corr = xalloc((size_t)nb * 128, NULL);
    float *wsc = xalloc((size_t)2 * nb * QTILE42_WSC * 4, NULL);
    for (int i = 0; i < nb; i++)
        for (int r = 0; r < 4; r++) d4[4 * i + r] = a[r].d[i], d4[4 * nb + 4 * i + r] = a[r].s[i];
    QTile42ScalesFn t42s = quant_tile42_scales_fn_avx2(DT_Q8_0);
    if (t42s) t42s(Q, rb, K, wsc), t42s(Q + 2 * rb, rb, K, wsc + (size_t)nb * QTILE42_WSC);
    quant_tile44_corr(a, nb, corr);
    /* the 16x2 kernel's */
    uint8_t *ag = xalloc((size_t)nb * 512, NULL);
    float *dg = xalloc((size_t)nb * 64, NULL);
    int32_t *wp = xalloc(2 * quant_q8t_wbytes(K), NULL), *wp1 = wp + quant_q8t_wbytes(K) / 4;
    if (quant_q8t_available(DT_Q8_0)) {
        quant_q8t_acts(a, nb, ag, dg);
        quant_q8t_weight(Q, K, wp), quant_q8t_weight(Q + rb, K, wp1);
    }
    printf("Q8_0 prompt kernels, K=%d, hot L1, thread CPU time (best of 3), isa %s\n", K, kernel_isa_name(kernel_isa()));
    for (int kind = 0; kind < 4; kind++) {
        QTile42Fn t42 = kind == 0 ? quant_tile42_fn_avx2(DT_Q8_0) : kind == 1 ? quant_tile42_fn_avx512(DT_Q8_0) : NULL;
        QTile44Fn t44 = kind == 2 ? quant_tile44_fn_avx512(DT_Q8_0) : NULL;
        const int q8t = kind == 3 && quant_q8t_available(DT_Q8_0);
        const char *name = kind == 0 ? "4x2 avx2" : kind == 1 ? "4x2 vnni" : kind == 2 ? "4x4 vnni" : "16x2 vnni";
        if (!t42 && !t44 && !q8t) {
            printf("  %-10s not on this CPU\n", name);
            continue;
        }
        const int outs = t44 ? 16 : q8t ? 32 : 16; /* per timed call (4x2: two calls) */
        int bad = 0;
        double best = 1e30;
        for (int rep = 0; rep < 4; rep++) {
            double t0 = now();
            for (int it = 0; it < (rep ? iters : 1); it++) {
                if (t42) {
                    t42(Q, rb, wsc, a, d4, d4 + 4 * nb, K, o);
                    t42(Q + 2 * rb, rb, wsc + (size_t)nb * QTILE42_WSC, a, d4, d4 + 4 * nb, K, o + 8);
                } else if (t44) {
                    t44(Q, rb, wsc, a, d4, corr, K, o);
                } else {
                    quant_q8t_tile(Q, rb, wp, wp1, ag, dg, K, o);
                }
            }
            const double dt = now() - t0;
            if (rep && dt < best) best = dt;
            if (rep == 0) /* out[4c + r] (4x2, 4x4) or out[16c + r] (16x2) */
                for (int i = 0; i < outs; i++) {
                    const int c = q8t ? i / 16 : i / 4, r = q8t ? i % 16 : i % 4;
                    bad += memcmp(&o[i], &ref[r][c], 4) != 0;
                }
        }
        const double ns = best / iters / outs / nb * 1e9;
        printf("  %-10s %.3f ns per output and block", name, ns);
        if (ghz > 0) printf(" (%.2f cycles at %.2f GHz)", ns * ghz, ghz);
        printf(", %.1f GMAC/s; %s\n", 32.0 / ns, bad ? "BITS DIFFER from the single-row dot" : "same bits as the single-row dot");
    }
    xfree(Q), xfree(scr), xfree(d4), xfree(corr), xfree(wsc), xfree(ag), xfree(dg), xfree(wp);
    free(x), free(w);
    return 0;
}
