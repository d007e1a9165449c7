/* log softmax(x)[i] over a vocabulary row (evaluation's -log p of the next
 * token): the max with vector compares, the exponentials eight lanes at a
 * time with vmath's exp (relative error < 2e-7), each term widened and
 * summed in double as llama.cpp's log_softmax sums glibc's scalar expf.
 * Over 49152 logits the scalar expf calls were ~3% of an evaluation chunk. */
#include "kernels.h"

#include "vmath.h"

static double exp_sum_f64(const float *x, float sub, int n) {
    double sum = 0.0;
    int i = 0;
#ifdef VMATH_AVX2
    __m256d a0 = _mm256_setzero_pd(), a1 = a0;
    const __m256 vs = _mm256_set1_ps(sub);
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs));
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(a0, a1));
    sum = (t[0] + t[1]) + (t[2] + t[3]);
#endif
    for (; i < n; i++) sum += (double)fast_expf(x[i] - sub);
    return sum;
}

double log_softmax_at(const float *x, int n, int i) {
    const float mx = vec_max(x, n);
    return (double)(x[i] - mx) - log(exp_sum_f64(x, mx, n));
}
