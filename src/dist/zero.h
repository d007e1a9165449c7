/* ZeRO sharding of one rank's parameter registry over its data-parallel
 * group: the bucket scheme and the size of every buffer it implies. The
 * trainer (src/train/parallel.c) allocates exactly these buffers and the
 * dry run (src/plan/dryrun.c) prints them, so the two agree by construction.
 *
 * Buckets, in registry order: the token embedding alone (so its shards line
 * up on the first and the last pipeline stage when they tie it), the other
 * tensors before the blocks, each block, the tensors after the blocks; with
 * expert parallelism (ep > 1) a block's expert tensors form buckets of their
 * own. A bucket is cut into equal chunks (the last padded with zeros) over
 * the ranks that hold the same values: the dp ranks, or for expert buckets
 * the dp/ep ranks holding the same experts. Chunk r belongs to rank r of
 * that group and sits at opt_off in the compact shard buffers.
 *
 * Buffers per rank, in floats (P = the rank's parameters):
 *   stage 0: weights P, gradients P, Adam 2P
 *   stage 1: weights P, gradients P, Adam 2 S, staging (the largest padded
 *            bucket, for the gradients' reduce-scatter and the weights'
 *            all-gather, and one chunk: the reduce-scatter's result)
 *   stage 2: weights P, gradients S (own shard) + staging for one block and
 *            for the edge buckets (the backward writes a bucket there in
 *            full, which is reduce-scattered when the bucket is done),
 *            Adam 2 S
 *   stage 3: weights S + one block and the edge buckets gathered, the rest
 *            as stage 2
 * where S = opt_len (sum of the chunks, padding included). */
#ifndef JARIP_ZERO_H
#define JARIP_ZERO_H

#include "model/model.h"

typedef struct {
    size_t a, b;      /* local flat range of the bucket */
    size_t chunk;     /* elements per dp rank (ceil((b-a)/dp)) */
    size_t opt_off;   /* this rank's chunk in the compact shard buffers */
    size_t soff;      /* offset in the staging area of its kind (edge or block) */
    int layer;        /* block index; -1 before the blocks, n_layer after */
    int edge;         /* not a block: staged in the edge area for the whole backward */
    int expert;       /* expert tensors sharded over the dp/ep ranks holding them */
} ZeroBucket;

typedef struct {
    ZeroBucket *buckets;
    int n_buckets;
    size_t opt_len;       /* S: elements of each compact shard buffer */
    size_t block_len;     /* staging of one block: its padded buckets, the largest block */
    size_t edge_len;      /* staging of all edge buckets, padded */
    size_t max_padded;    /* largest padded bucket (stage 1 staging) */
    size_t max_chunk;
} ZeroLayout;

/* Buckets of the n tensors (one rank's registry, offsets contiguous) over
 * dp data-parallel ranks of which ep share out the experts (ep | dp). */
int zero_layout_build(const Tensor *t, int n, int n_layer, int dp, int ep, ZeroLayout *z, Err *err);
void zero_layout_free(ZeroLayout *z);

/* Elements of each kind of buffer a rank allocates at this stage. */
typedef struct {
    size_t weights, grads, optimizer, staging;
} ZeroFloats;
ZeroFloats zero_floats(const ZeroLayout *z, size_t n_params, int stage);

#endif
