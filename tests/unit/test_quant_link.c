/* The quantized kernels must be linked into any binary that only calls
 * matmul_forward (matmul.c's reference to them is weak; see dtype.c). This
 * program touches nothing of quant_*.c by name: a hand-made Q8_0 weight
 * (d = 0.5, q = 1..32) times x = 1 must give 0.5 * (1 + ... + 32) = 264. */
#include "kernels/kernels.h"

#include <stdio.h>
#include <string.h>

int main(void) {
    unsigned char w[34];
    w[0] = 0x00, w[1] = 0x38; /* fp16 0.5 */
    for (int j = 0; j < 32; j++) w[2 + j] = (unsigned char)(j + 1);
    float x[32], out = 0;
    for (int j = 0; j < 32; j++) x[j] = 1.0f;
    if (dtype_row_bytes(DT_Q8_0, 32) != sizeof w) return fprintf(stderr, "FAIL: q8_0 row bytes\n"), 1;
    int rc = matmul_forward(&out, x, w, DT_Q8_0, NULL, 1, 1, 32);
    if (rc) return fprintf(stderr, "FAIL: matmul_forward on q8_0 returned %d (quantized kernels not linked?)\n", rc), 1;
    if (out < 263.0f || out > 265.0f) return fprintf(stderr, "FAIL: got %g, want 264\n", out), 1;
    printf("test_quant_link: ok (%g)\n", out);
    return 0;
}
