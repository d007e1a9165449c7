/* Element types: names, block sizes and bytes per block (GGML's layouts). */
#include "kernels.h"

#include <string.h>

typedef struct {
    const char *name;
    int block;
    size_t bytes;
} DTypeInfo;

static const DTypeInfo dtypes[DT_COUNT] = {
    [DT_F32] = {"f32", 1, 4},      [DT_F16] = {"f16", 1, 2},       [DT_BF16] = {"bf16", 1, 2},
    [DT_Q4_0] = {"q4_0", 32, 18},  [DT_Q4_1] = {"q4_1", 32, 20},   [DT_Q5_0] = {"q5_0", 32, 22},
    [DT_Q5_1] = {"q5_1", 32, 24},  [DT_Q8_0] = {"q8_0", 32, 34},   [DT_Q8_1] = {"q8_1", 32, 36},
    [DT_Q2_K] = {"q2_k", 256, 84}, [DT_Q3_K] = {"q3_k", 256, 110}, [DT_Q4_K] = {"q4_k", 256, 144},
    [DT_Q5_K] = {"q5_k", 256, 176}, [DT_Q6_K] = {"q6_k", 256, 210}, [DT_Q8_K] = {"q8_k", 256, 292},
    /* GGML types jarip has no kernels for: known here so GGUF files holding
     * them open (sizes validated, `jarip info` lists them); their matmul and
     * dequantization report ERR_UNSUPPORTED. Ids and sizes are GGML's. */
    [16] = {"iq2_xxs", 256, 66}, [17] = {"iq2_xs", 256, 74}, [18] = {"iq3_xxs", 256, 98},
    [19] = {"iq1_s", 256, 50},   [20] = {"iq4_nl", 32, 18},  [21] = {"iq3_s", 256, 110},
    [22] = {"iq2_s", 256, 82},   [23] = {"iq4_xs", 256, 136}, [24] = {"i8", 1, 1},
    [25] = {"i16", 1, 2},        [26] = {"i32", 1, 4},       [27] = {"i64", 1, 8},
    [28] = {"f64", 1, 8},        [29] = {"iq1_m", 256, 56},  [34] = {"tq1_0", 256, 54},
    [35] = {"tq2_0", 256, 66},   [39] = {"mxfp4", 32, 17},
};

/* The in-memory repacked Q4_0 / Q8_0 / Q5_0 have their type's block size and bytes (the same
 * bytes in another order), a name of its own, and no name lookup (no file
 * or flag can ask for it). */
const char *dtype_name(int t) {
    if (t == DT_Q4_0_R16) return "q4_0_r16";
    if (t == DT_Q8_0_R16) return "q8_0_r16";
    if (t == DT_Q5_0_R16) return "q5_0_r16";
    return t >= 0 && t < DT_COUNT ? dtypes[t].name : NULL;
}

int dtype_from_name(const char *name) {
    for (int t = 0; t < DT_COUNT; t++)
        if (dtypes[t].name && strcasecmp(dtypes[t].name, name) == 0) return t;
    return -1;
}

int dtype_block_size(int t) {
    if (t == DT_Q4_0_R16) t = DT_Q4_0;
    if (t == DT_Q8_0_R16) t = DT_Q8_0;
    if (t == DT_Q5_0_R16) t = DT_Q5_0;
    return t >= 0 && t < DT_COUNT ? dtypes[t].block : 0;
}

size_t dtype_block_bytes(int t) {
    if (t == DT_Q4_0_R16) t = DT_Q4_0;
    if (t == DT_Q8_0_R16) t = DT_Q8_0;
    if (t == DT_Q5_0_R16) t = DT_Q5_0;
    return t >= 0 && t < DT_COUNT ? dtypes[t].bytes : 0;
}

size_t dtype_row_bytes(int t, int64_t n) {
    int bs = dtype_block_size(t);
    if (bs <= 0 || n < 0 || n % bs) return 0;
    return (size_t)(n / bs) * dtype_block_bytes(t);
}

/* matmul.c declares matmul_quant_forward weak so the library links without
 * the quantized kernels; but a weak reference does not pull an object out of
 * a static archive, so without a strong reference the kernels in
 * quant_matmul.c would silently be absent from every binary. dtype.o is
 * linked by anything that handles non-f32 tensors, so this reference brings
 * them in. */
int matmul_quant_forward(float *out, const float *inp, const void *W, int wtype, int M, int N, int K);
int (*const dtype_quant_matmul_link)(float *, const float *, const void *, int, int, int, int) = matmul_quant_forward;
