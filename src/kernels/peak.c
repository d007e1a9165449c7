/* Measured fp32 FMA peak: 12 independent vector accumulators per thread
 * hide the FMA latency, so the loop runs at the units' throughput. */
#include <omp.h>

#include "kernels.h"

#include <immintrin.h>

#if defined(__AVX512F__)
typedef __m512 vec;
#define VLEN 16
#define VSET(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSUM(a) _mm512_reduce_add_ps(a)
#else
typedef __m256 vec;
#define VLEN 8
#define VSET(x) _mm256_set1_ps(x)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VADD(a, b) _mm256_add_ps(a, b)
static float VSUM(__m256 a) {
    float t[8];
    _mm256_storeu_ps(t, a);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#endif

static double fma_loop(long iters) {
    vec a = VSET(0.999999f), b = VSET(1e-7f);
    vec c0 = VSET(1), c1 = VSET(2), c2 = VSET(3), c3 = VSET(4), c4 = VSET(5), c5 = VSET(6);
    vec c6 = VSET(7), c7 = VSET(8), c8 = VSET(9), c9 = VSET(10), c10 = VSET(11), c11 = VSET(12);
    for (long it = 0; it < iters; it++) {
        c0 = VFMA(c0, a, b); c1 = VFMA(c1, a, b); c2 = VFMA(c2, a, b); c3 = VFMA(c3, a, b);
        c4 = VFMA(c4, a, b); c5 = VFMA(c5, a, b); c6 = VFMA(c6, a, b); c7 = VFMA(c7, a, b);
        c8 = VFMA(c8, a, b); c9 = VFMA(c9, a, b); c10 = VFMA(c10, a, b); c11 = VFMA(c11, a, b);
    }
    vec s = VADD(VADD(VADD(c0, c1), VADD(c2, c3)), VADD(VADD(c4, c5), VADD(c6, c7)));
    s = VADD(s, VADD(VADD(c8, c9), VADD(c10, c11)));
    return VSUM(s);
}

double cpu_peak_flops(int threads) {
    if (threads <= 0) threads = omp_get_max_threads();
    const long iters = 2000000;
    double best = 0.0;
    for (int rep = 0; rep < 3; rep++) {
        volatile double sink = 0.0;
        double t0 = time_now();
#pragma omp parallel num_threads(threads)
        {
            double r = fma_loop(iters);
#pragma omp atomic
            sink += r;
        }
        double dt = time_now() - t0;
        double flops = (double)threads * iters * 12 * VLEN * 2 / dt;
        if (flops > best) best = flops;
    }
    return best;
}
