/* Token (+ learned position) embeddings. */
#include "kernels.h"

#include <string.h>

void embedding_forward(float *out, const int32_t *tokens, const float *tok_emb, const float *pos_emb, int B, int T,
                       int C, int pos0) {
#pragma omp parallel for
    for (int i = 0; i < B * T; i++) {
        float *o = out + (size_t)i * C;
        const float *te = tok_emb + (size_t)tokens[i] * C;
        if (pos_emb) {
            const float *pe = pos_emb + (size_t)(pos0 + i % T) * C;
            for (int j = 0; j < C; j++) o[j] = te[j] + pe[j];
        } else {
            memcpy(o, te, (size_t)C * sizeof(float));
        }
    }
}

/* Rows of dtok_emb are hit by any token, so threads own column blocks and
 * walk all tokens in order (deterministic, no atomics). */
void embedding_backward(float *dtok_emb, float *dpos_emb, const float *dout, const int32_t *tokens, int B, int T,
                        int C) {
#pragma omp parallel for
    for (int j0 = 0; j0 < C; j0 += 32) {
        int j1 = j0 + 32 < C ? j0 + 32 : C;
        for (int i = 0; i < B * T; i++) {
            const float *d = dout + (size_t)i * C;
            if (dtok_emb) {
                float *te = dtok_emb + (size_t)tokens[i] * C;
                for (int j = j0; j < j1; j++) te[j] += d[j];
            }
            if (dpos_emb) {
                float *pe = dpos_emb + (size_t)(i % T) * C;
                for (int j = j0; j < j1; j++) pe[j] += d[j];
            }
        }
    }
}
