/* ZeRO buckets and buffer sizes (see zero.h). */
#include "zero.h"

#include <stdlib.h>
#include <string.h>

int zero_layout_build(const Tensor *t, int n, int n_layer, int dp, int ep, ZeroLayout *z, Err *err) {
    memset(z, 0, sizeof *z);
    if (dp < 1 || ep < 1 || dp % ep) return err_set(err, ERR_INVALID, "data-parallel size %d with ep %d", dp, ep);
    z->buckets = calloc((size_t)(n > 0 ? n : 1), sizeof *z->buckets);
    if (!z->buckets) return err_set(err, ERR_NOMEM, "out of memory");
    int seen_block = 0;
    for (int i = 0; i < n; i++) {
        int layer = t[i].layer >= 0 ? t[i].layer : (seen_block ? n_layer : -1);
        if (t[i].layer >= 0) seen_block = 1;
        int embd = strcmp(t[i].name, "token_embd.weight") == 0;
        int expert = ep > 1 && (t[i].flags & PF_EXPERT);
        ZeroBucket *b = z->n_buckets ? &z->buckets[z->n_buckets - 1] : NULL;
        int prev_embd = i > 0 && strcmp(t[i - 1].name, "token_embd.weight") == 0;
        if (!b || b->layer != layer || b->expert != expert || embd || prev_embd) {
            b = &z->buckets[z->n_buckets++];
            b->a = t[i].offset;
            b->layer = layer;
            b->edge = layer < 0 || layer >= n_layer;
            b->expert = expert;
        }
        b->b = t[i].offset + t[i].numel;
    }
    size_t block_run = 0; /* padded buckets of the current block so far */
    for (int i = 0; i < z->n_buckets; i++) {
        ZeroBucket *b = &z->buckets[i];
        const size_t g = (size_t)(b->expert ? dp / ep : dp);
        b->chunk = (b->b - b->a + g - 1) / g;
        const size_t padded = b->chunk * g;
        b->opt_off = z->opt_len;
        z->opt_len += b->chunk;
        if (b->edge) {
            b->soff = z->edge_len;
            z->edge_len += padded;
        } else {
            if (i == 0 || z->buckets[i - 1].layer != b->layer) block_run = 0;
            b->soff = block_run;
            block_run += padded;
            if (block_run > z->block_len) z->block_len = block_run;
        }
        if (padded > z->max_padded) z->max_padded = padded;
        if (b->chunk > z->max_chunk) z->max_chunk = b->chunk;
    }
    return 0;
}

void zero_layout_free(ZeroLayout *z) {
    free(z->buckets);
    memset(z, 0, sizeof *z);
}

ZeroFloats zero_floats(const ZeroLayout *z, size_t n_params, int stage) {
    ZeroFloats f = {n_params, n_params, 2 * n_params, 0};
    if (stage >= 1) { /* padded copy of a bucket for its reduce-scatter and gather, one chunk's result */
        f.optimizer = 2 * z->opt_len;
        f.staging = z->max_padded + z->max_chunk;
    }
    if (stage >= 2) {
        /* own gradient shard; one block and the edge buckets staged in full,
         * and the reduce-scatter's result (one chunk) */
        f.grads = z->opt_len + z->block_len + z->edge_len + z->max_chunk;
        f.staging = 0;
    }
    if (stage >= 3) f.weights = z->opt_len + z->block_len + z->edge_len;
    return f;
}
