/* dist: the communicator over MPI (OpenMPI from Debian, any MPI-3 works).
 *
 * Every op runs on the process's main thread (MPI_THREAD_FUNNELED: OpenMP
 * threads only compute). Errors come back as codes (MPI_ERRORS_RETURN on
 * the world, inherited by every split) and become one-line Err messages that
 * name the operation, this rank and, for point-to-point, the peer's rank in
 * the group and in the world.
 *
 * MPI counts are ints. Messages larger than a chunk (1 GiB by default, far
 * below 2^31 elements) are cut into several calls; the environment variable
 * JARIP_MPI_CHUNK_BYTES lowers the chunk so tests reach that path with small
 * buffers.
 *
 * Large f32 all-reduces, reduce-scatters and all-gathers run as rings of
 * MPI_Sendrecv in segments (RING_SEGMENT, at most a chunk): p-1 steps of one
 * block each, the ring algorithm's volume. On one machine this is several
 * times faster than OpenMPI 4.1's own collectives at these sizes (measured
 * between 2 ranks, 44 MB: MPI_Reduce_scatter_block ~150 ms, MPI_Allreduce
 * ~100 ms, a sendrecv ring reduce-scatter ~45 ms and all-gather ~15 ms);
 * small messages keep MPI's latency-optimised collectives. Sums are taken
 * in a fixed order, so every rank gets bitwise the same result, every run.
 *
 * bytes_sent is what this rank puts on the wire: exact for send and
 * alltoallv, the ring-algorithm volume for collectives (allreduce
 * 2(p-1)/p*bytes, reduce-scatter (p-1)/p of the input, allgather (p-1)
 * times the own block, broadcast as a chain: every rank but the chain's
 * last forwards the whole buffer). comm_seconds is the wall time spent
 * inside these calls, waiting included.
 *
 * With JARIP_COMM_STATS=DIR in the environment, every rank writes
 * DIR/comm_rank<R>.json when its world ends: calls, seconds and bytes per
 * op over all of the process's communicators (bench/scaling.sh reads them). */
#include <jansson.h>
#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"

enum { OP_ALLREDUCE, OP_REDUCE_SCATTER, OP_ALLGATHER, OP_BROADCAST, OP_SEND, OP_RECV, OP_BARRIER, OP_SPLIT,
       OP_ALLTOALLV, N_OPS };
static const char *const op_names[N_OPS] = {"allreduce", "reduce_scatter", "allgather", "broadcast", "send",
                                            "recv",      "barrier",        "split",     "alltoallv"};

/* Per-process totals, shared by the world and every communicator split
 * from it (reference-counted: whichever is destroyed last frees them). */
typedef struct {
    int refs;
    double seconds[N_OPS];
    double bytes[N_OPS];
    long calls[N_OPS];
} Stats;

typedef struct {
    MPI_Comm comm;
    int is_world;      /* destroy finalizes MPI (when this code initialized it) */
    int we_initialized;
    size_t chunk;      /* largest message of one MPI call, in bytes */
    Stats *stats;
} MpiImpl;

static MpiImpl *impl_of(Comm *c) { return (MpiImpl *)c->impl; }

/* Book one op that started at t0 and put `bytes` on the wire. */
static void account(Comm *c, int op, double t0, size_t bytes) {
    double dt = MPI_Wtime() - t0;
    Stats *s = impl_of(c)->stats;
    c->comm_seconds += dt;
    c->bytes_sent += bytes;
    s->seconds[op] += dt;
    s->bytes[op] += (double)bytes;
    s->calls[op]++;
}

static int write_stats(Comm *c, const char *dir) {
    const Stats *s = impl_of(c)->stats;
    json_t *o = json_object(), *ops = json_object();
    json_object_set_new(o, "rank", json_integer(c->rank));
    json_object_set_new(o, "size", json_integer(c->size));
    for (int i = 0; i < N_OPS; i++) {
        if (!s->calls[i]) continue;
        json_t *e = json_object();
        json_object_set_new(e, "calls", json_integer(s->calls[i]));
        json_object_set_new(e, "seconds", json_real(s->seconds[i]));
        json_object_set_new(e, "bytes", json_real(s->bytes[i]));
        json_object_set_new(ops, op_names[i], e);
    }
    json_object_set_new(o, "ops", ops);
    char *text = json_dumps(o, JSON_INDENT(1));
    json_decref(o);
    char path[4200];
    snprintf(path, sizeof path, "%s/comm_rank%d.json", dir, c->rank);
    int rc = text ? file_write_atomic(path, text, strlen(text), NULL) : ERR_NOMEM;
    free(text);
    return rc;
}

/* The rank in MPI_COMM_WORLD of rank `peer` of c (for messages). */
static int world_rank_of(Comm *c, int peer) {
    MpiImpl *m = impl_of(c);
    if (m->is_world || peer < 0) return peer;
    MPI_Group g, w;
    int out = MPI_UNDEFINED;
    if (MPI_Comm_group(m->comm, &g) != MPI_SUCCESS) return -1;
    if (MPI_Comm_group(MPI_COMM_WORLD, &w) == MPI_SUCCESS) {
        MPI_Group_translate_ranks(g, 1, &peer, w, &out);
        MPI_Group_free(&w);
    }
    MPI_Group_free(&g);
    return out == MPI_UNDEFINED ? -1 : out;
}

/* Turn an MPI error code into err; peer < 0 for collectives. */
static int mpi_fail(Comm *c, int code, const char *op, int peer, Err *err) {
    char text[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "MPI error %d", code);
    int me = world_rank_of(c, c->rank);
    if (peer < 0)
        return err_set(err, ERR_IO, "MPI %s failed on rank %d of %d (world rank %d): %s", op, c->rank, c->size, me, text);
    return err_set(err, ERR_IO, "MPI %s with rank %d (world rank %d) failed on rank %d of %d (world rank %d): %s", op,
                   peer, world_rank_of(c, peer), c->rank, c->size, me, text);
}

/* Largest element count of one call for elements of `size` bytes. */
static size_t chunk_elems(Comm *c, size_t size) {
    size_t n = impl_of(c)->chunk / size;
    return n ? n : 1;
}

static int overlap(const void *a, size_t alen, const void *b, size_t blen) {
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y + blen && y < x + alen;
}

/* Rings: below this many bytes MPI's own collectives (latency-bound) win. */
enum { RING_MIN_BYTES = 64 << 10, RING_SEGMENT = 1 << 20, RING_TAG = 23 };

static size_t ring_seg(Comm *c) {
    size_t s = chunk_elems(c, sizeof(float));
    return s < RING_SEGMENT / sizeof(float) ? s : RING_SEGMENT / sizeof(float);
}

/* Block b of a buffer cut into blocks of q elements (the last may be short). */
static void ring_block(size_t q, size_t total, int b, size_t *off, size_t *len) {
    size_t o = (size_t)b * q;
    *off = o < total ? o : total;
    *len = o + q < total ? q : total - *off;
}

/* Reduce-scatter around the ring: work (total floats, blocks of q) holds this
 * rank's input; out receives the sum over ranks of block `rank`. Step s sends
 * the partial sum of block rank-1-s to the right and adds the left's partial
 * sum of block rank-2-s; work's other blocks are scratch, written only with
 * more than 2 ranks. out may be work's own block. tmp: ring_seg floats. */
static int ring_reduce_scatter(Comm *c, float *work, float *out, size_t q, size_t total, float *tmp, Err *err) {
    const int p = c->size, r = c->rank, right = (r + 1) % p, left = (r + p - 1) % p;
    const size_t seg = ring_seg(c);
    MPI_Comm comm = impl_of(c)->comm;
    for (int s = 0; s < p - 1; s++) {
        size_t so, sl, ro, rl;
        ring_block(q, total, (r - 1 - s + 2 * p) % p, &so, &sl);
        ring_block(q, total, (r - 2 - s + 2 * p) % p, &ro, &rl);
        const int last = s == p - 2; /* then the received block is this rank's */
        for (size_t k = 0; k < sl || k < rl; k += seg) {
            size_t sk = sl > k ? (sl - k < seg ? sl - k : seg) : 0, rk = rl > k ? (rl - k < seg ? rl - k : seg) : 0;
            int e = MPI_Sendrecv(work + so + k, (int)sk, MPI_FLOAT, right, RING_TAG, tmp, (int)rk, MPI_FLOAT, left,
                                 RING_TAG, comm, MPI_STATUS_IGNORE);
            if (e != MPI_SUCCESS) return mpi_fail(c, e, "reduce-scatter (ring)", -1, err);
            const float *acc = work + ro + k;
            float *dst = last ? out + k : work + ro + k;
            for (size_t i = 0; i < rk; i++) dst[i] = acc[i] + tmp[i];
        }
    }
    return 0;
}

/* All-gather around the ring: buf (total floats, blocks of q) holds this
 * rank's block in place; step s passes block rank-s to the right. */
static int ring_allgather(Comm *c, float *buf, size_t q, size_t total, Err *err) {
    const int p = c->size, r = c->rank, right = (r + 1) % p, left = (r + p - 1) % p;
    const size_t seg = ring_seg(c);
    MPI_Comm comm = impl_of(c)->comm;
    for (int s = 0; s < p - 1; s++) {
        size_t so, sl, ro, rl;
        ring_block(q, total, (r - s + p) % p, &so, &sl);
        ring_block(q, total, (r - s - 1 + p) % p, &ro, &rl);
        for (size_t k = 0; k < sl || k < rl; k += seg) {
            size_t sk = sl > k ? (sl - k < seg ? sl - k : seg) : 0, rk = rl > k ? (rl - k < seg ? rl - k : seg) : 0;
            int e = MPI_Sendrecv(buf + so + k, (int)sk, MPI_FLOAT, right, RING_TAG, buf + ro + k, (int)rk, MPI_FLOAT,
                                 left, RING_TAG, comm, MPI_STATUS_IGNORE);
            if (e != MPI_SUCCESS) return mpi_fail(c, e, "allgather (ring)", -1, err);
        }
    }
    return 0;
}

static int allreduce_typed(Comm *c, void *buf, size_t n, size_t esize, MPI_Datatype t, const char *op, Err *err) {
    double t0 = MPI_Wtime();
    size_t step = chunk_elems(c, esize);
    int rc = 0;
    for (size_t off = 0; off < n && !rc; off += step) {
        size_t k = n - off < step ? n - off : step;
        int e = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * esize, (int)k, t, MPI_SUM, impl_of(c)->comm);
        if (e != MPI_SUCCESS) rc = mpi_fail(c, e, op, -1, err);
    }
    account(c, OP_ALLREDUCE, t0, (size_t)(2.0 * (c->size - 1) / c->size * (double)(n * esize)));
    return rc;
}

static int mpi_allreduce(Comm *c, float *buf, size_t n, Err *err) {
    if (n * sizeof(float) < RING_MIN_BYTES || c->size < 2)
        return allreduce_typed(c, buf, n, sizeof(float), MPI_FLOAT, "allreduce (f32 sum)", err);
    double t0 = MPI_Wtime();
    const size_t q = (n + (size_t)c->size - 1) / (size_t)c->size;
    size_t own, len;
    ring_block(q, n, c->rank, &own, &len);
    float *tmp = malloc(ring_seg(c) * sizeof(float));
    int rc = tmp ? ring_reduce_scatter(c, buf, buf + own, q, n, tmp, err) : err_set(err, ERR_NOMEM, "out of memory");
    if (!rc) rc = ring_allgather(c, buf, q, n, err);
    free(tmp);
    account(c, OP_ALLREDUCE, t0, (size_t)(2.0 * (c->size - 1) / c->size * (double)(n * sizeof(float))));
    return rc;
}

static int mpi_allreduce_f64(Comm *c, double *buf, size_t n, Err *err) {
    return allreduce_typed(c, buf, n, sizeof(double), MPI_DOUBLE, "allreduce (f64 sum)", err);
}

static int mpi_reduce_scatter(Comm *c, const float *send, float *recv, size_t n, Err *err) {
    const size_t p = (size_t)c->size;
    if (n % p) return err_set(err, ERR_INVALID, "reduce-scatter of %zu floats over %zu ranks: not divisible", n, p);
    const size_t blk = n / p;
    double t0 = MPI_Wtime();
    MPI_Comm comm = impl_of(c)->comm;
    int rc = 0, e = MPI_SUCCESS;
    if (n * sizeof(float) >= RING_MIN_BYTES && p > 1) {
        /* two ranks never write into send; more use a copy as scratch */
        float *work = p == 2 ? (float *)send : malloc(n * sizeof(float));
        float *own = (float *)send + (size_t)c->rank * blk;
        int direct = !overlap(send, n * sizeof(float), recv, blk * sizeof(float)) || recv == own || p > 2;
        float *out = direct ? recv : malloc(blk * sizeof(float));
        float *tmp = malloc(ring_seg(c) * sizeof(float));
        if (!work || !out || !tmp) {
            rc = err_set(err, ERR_NOMEM, "out of memory");
        } else {
            if (p > 2) memcpy(work, send, n * sizeof(float));
            rc = ring_reduce_scatter(c, work, out, blk, n, tmp, err);
            if (!rc && !direct) memmove(recv, out, blk * sizeof(float));
        }
        if (p > 2) free(work);
        if (!direct) free(out);
        free(tmp);
        goto done;
    }
    if (n <= chunk_elems(c, sizeof(float))) {
        if (recv == send) {
            e = MPI_Reduce_scatter_block(MPI_IN_PLACE, recv, (int)blk, MPI_FLOAT, MPI_SUM, comm);
        } else if (overlap(send, n * sizeof(float), recv, blk * sizeof(float))) {
            float *tmp = malloc(blk * sizeof(float) + 1);
            if (!tmp) {
                rc = err_set(err, ERR_NOMEM, "out of memory");
                goto done;
            }
            e = MPI_Reduce_scatter_block(send, tmp, (int)blk, MPI_FLOAT, MPI_SUM, comm);
            if (e == MPI_SUCCESS) memmove(recv, tmp, blk * sizeof(float));
            free(tmp);
        } else {
            e = MPI_Reduce_scatter_block(send, recv, (int)blk, MPI_FLOAT, MPI_SUM, comm);
        }
        if (e != MPI_SUCCESS) rc = mpi_fail(c, e, "reduce-scatter", -1, err);
    } else {
        /* Column chunks: gather columns [c0, c0+k) of every rank's block into
         * one packed buffer, reduce-scatter it in place, keep the first k. */
        size_t k = chunk_elems(c, sizeof(float)) / p;
        if (!k) k = 1;
        float *tmp = malloc(k * p * sizeof(float));
        if (!tmp) {
            rc = err_set(err, ERR_NOMEM, "out of memory");
            goto done;
        }
        /* an aliased recv may overwrite blocks not yet packed: copy send first */
        const float *src = send;
        float *copy = NULL;
        if (overlap(send, n * sizeof(float), recv, blk * sizeof(float))) {
            copy = malloc(n * sizeof(float));
            if (!copy) {
                free(tmp);
                rc = err_set(err, ERR_NOMEM, "out of memory");
                goto done;
            }
            memcpy(copy, send, n * sizeof(float));
            src = copy;
        }
        for (size_t c0 = 0; c0 < blk && !rc; c0 += k) {
            size_t kk = blk - c0 < k ? blk - c0 : k;
            for (size_t r = 0; r < p; r++) memcpy(tmp + r * kk, src + r * blk + c0, kk * sizeof(float));
            e = MPI_Reduce_scatter_block(MPI_IN_PLACE, tmp, (int)kk, MPI_FLOAT, MPI_SUM, comm);
            if (e != MPI_SUCCESS)
                rc = mpi_fail(c, e, "reduce-scatter", -1, err);
            else
                memcpy(recv + c0, tmp, kk * sizeof(float));
        }
        free(copy);
        free(tmp);
    }
done:
    account(c, OP_REDUCE_SCATTER, t0, rc ? 0 : (p - 1) * blk * sizeof(float));
    return rc;
}

static int mpi_allgather(Comm *c, const float *send, float *recv, size_t n, Err *err) {
    const size_t p = (size_t)c->size;
    double t0 = MPI_Wtime();
    MPI_Comm comm = impl_of(c)->comm;
    float *own = recv + (size_t)c->rank * n;
    int rc = 0, e = MPI_SUCCESS;
    /* Own block already in place (or copied there): MPI_IN_PLACE. */
    const int in_place = send == own;
    float *copy = NULL;
    if (!in_place && overlap(send, n * sizeof(float), recv, p * n * sizeof(float))) {
        copy = malloc(n * sizeof(float) + 1);
        if (!copy) {
            rc = err_set(err, ERR_NOMEM, "out of memory");
            goto done;
        }
        memcpy(copy, send, n * sizeof(float));
        send = copy;
    }
    if (p * n * sizeof(float) >= RING_MIN_BYTES && p > 1) {
        if (!in_place) memcpy(own, send, n * sizeof(float));
        rc = ring_allgather(c, recv, n, p * n, err);
    } else if (p * n <= chunk_elems(c, sizeof(float))) {
        e = MPI_Allgather(in_place ? MPI_IN_PLACE : send, (int)n, MPI_FLOAT, recv, (int)n, MPI_FLOAT, comm);
        if (e != MPI_SUCCESS) rc = mpi_fail(c, e, "allgather", -1, err);
    } else {
        /* Column chunks through a packed buffer, unpacked to each block. */
        size_t k = chunk_elems(c, sizeof(float)) / p;
        if (!k) k = 1;
        float *tmp = malloc(k * p * sizeof(float));
        if (!tmp) {
            rc = err_set(err, ERR_NOMEM, "out of memory");
            goto done;
        }
        const float *src = in_place ? own : send;
        for (size_t c0 = 0; c0 < n && !rc; c0 += k) {
            size_t kk = n - c0 < k ? n - c0 : k;
            /* in place, the own block's later columns are still untouched:
             * unpacking writes only columns [c0, c0+kk) */
            e = MPI_Allgather(src + c0, (int)kk, MPI_FLOAT, tmp, (int)kk, MPI_FLOAT, comm);
            if (e != MPI_SUCCESS) {
                rc = mpi_fail(c, e, "allgather", -1, err);
                break;
            }
            for (size_t r = 0; r < p; r++) memcpy(recv + r * n + c0, tmp + r * kk, kk * sizeof(float));
        }
        free(tmp);
    }
done:
    free(copy);
    account(c, OP_ALLGATHER, t0, rc ? 0 : (p - 1) * n * sizeof(float));
    return rc;
}

static int mpi_broadcast(Comm *c, void *buf, size_t bytes, int root, Err *err) {
    if (root < 0 || root >= c->size)
        return err_set(err, ERR_INVALID, "broadcast from rank %d in a group of %d", root, c->size);
    double t0 = MPI_Wtime();
    size_t step = chunk_elems(c, 1);
    int rc = 0;
    for (size_t off = 0; off < bytes && !rc; off += step) {
        size_t k = bytes - off < step ? bytes - off : step;
        int e = MPI_Bcast((char *)buf + off, (int)k, MPI_BYTE, root, impl_of(c)->comm);
        if (e != MPI_SUCCESS) rc = mpi_fail(c, e, "broadcast (root)", root, err);
    }
    account(c, OP_BROADCAST, t0, c->size > 1 && c->rank != (root + c->size - 1) % c->size ? bytes : 0);
    return rc;
}

/* Tag of point-to-point traffic: one stream per (src, dst) pair, kept in
 * order by MPI, so chunks of a large message need no numbering. */
enum { P2P_TAG = 17 };

static int mpi_send(Comm *c, const void *buf, size_t bytes, int dst, Err *err) {
    if (dst < 0 || dst >= c->size || dst == c->rank)
        return err_set(err, ERR_INVALID, "send to rank %d from rank %d in a group of %d", dst, c->rank, c->size);
    double t0 = MPI_Wtime();
    size_t step = chunk_elems(c, 1);
    int rc = 0;
    /* one (possibly empty) message at least, so recv of 0 bytes matches */
    size_t off = 0, sent = 0;
    do {
        size_t k = bytes - off < step ? bytes - off : step;
        int e = MPI_Send((const char *)buf + off, (int)k, MPI_BYTE, dst, P2P_TAG, impl_of(c)->comm);
        if (e != MPI_SUCCESS) rc = mpi_fail(c, e, "send", dst, err);
        else sent += k;
        off += k;
    } while (off < bytes && !rc);
    account(c, OP_SEND, t0, sent);
    return rc;
}

static int mpi_recv(Comm *c, void *buf, size_t bytes, int src, Err *err) {
    if (src < 0 || src >= c->size || src == c->rank)
        return err_set(err, ERR_INVALID, "receive from rank %d on rank %d in a group of %d", src, c->rank, c->size);
    double t0 = MPI_Wtime();
    size_t step = chunk_elems(c, 1);
    int rc = 0;
    size_t off = 0;
    do {
        size_t k = bytes - off < step ? bytes - off : step;
        MPI_Status st;
        int e = MPI_Recv((char *)buf + off, (int)k, MPI_BYTE, src, P2P_TAG, impl_of(c)->comm, &st);
        if (e != MPI_SUCCESS) {
            rc = mpi_fail(c, e, "receive", src, err);
        } else {
            int got = 0;
            MPI_Get_count(&st, MPI_BYTE, &got);
            if ((size_t)got != k)
                rc = err_set(err, ERR_INVALID, "receive from rank %d on rank %d: %d bytes arrived, %zu expected", src,
                             c->rank, got, k);
        }
        off += k;
    } while (off < bytes && !rc);
    account(c, OP_RECV, t0, 0);
    return rc;
}

static int mpi_barrier(Comm *c, Err *err) {
    double t0 = MPI_Wtime();
    int e = MPI_Barrier(impl_of(c)->comm), rc = 0;
    if (e != MPI_SUCCESS) rc = mpi_fail(c, e, "barrier", -1, err);
    account(c, OP_BARRIER, t0, 0);
    return rc;
}

static int mpi_alltoallv(Comm *c, const float *send, const int *sc, const int *sd, float *recv, const int *rc_,
                         const int *rd, Err *err) {
    double t0 = MPI_Wtime();
    int rc = 0;
    size_t sent = 0;
    for (int r = 0; r < c->size; r++)
        if (sc[r] < 0 || sd[r] < 0 || rc_[r] < 0 || rd[r] < 0) {
            rc = err_set(err, ERR_INVALID, "alltoallv: negative count or displacement for rank %d", r);
            goto done;
        }
    int e = MPI_Alltoallv(send, sc, sd, MPI_FLOAT, recv, rc_, rd, MPI_FLOAT, impl_of(c)->comm);
    if (e != MPI_SUCCESS) {
        rc = mpi_fail(c, e, "alltoallv", -1, err);
        goto done;
    }
    for (int r = 0; r < c->size; r++)
        if (r != c->rank) sent += (size_t)sc[r] * sizeof(float);
done:
    account(c, OP_ALLTOALLV, t0, sent);
    return rc;
}

static const struct CommOps mpi_ops;

static Comm *wrap(MPI_Comm mc, int is_world, int we_initialized, size_t chunk, Stats *stats, Err *err) {
    Comm *c = calloc(1, sizeof *c);
    MpiImpl *m = calloc(1, sizeof *m);
    if (!stats) stats = calloc(1, sizeof *stats);
    if (!c || !m || !stats) {
        free(c);
        free(m);
        if (stats && !stats->refs) free(stats);
        err_set(err, ERR_NOMEM, "out of memory");
        return NULL;
    }
    stats->refs++;
    m->stats = stats;
    m->comm = mc;
    m->is_world = is_world;
    m->we_initialized = we_initialized;
    m->chunk = chunk;
    c->ops = &mpi_ops;
    c->impl = m;
    MPI_Comm_rank(mc, &c->rank);
    MPI_Comm_size(mc, &c->size);
    return c;
}

static int mpi_split(Comm *c, int color, int key, Comm **out, Err *err) {
    *out = NULL;
    double t0 = MPI_Wtime();
    MPI_Comm nc;
    int rc = 0, e = MPI_Comm_split(impl_of(c)->comm, color < 0 ? MPI_UNDEFINED : color, key, &nc);
    if (e != MPI_SUCCESS) rc = mpi_fail(c, e, "communicator split", -1, err);
    else if (nc == MPI_COMM_NULL) rc = err_set(err, ERR_INVALID, "split with color %d leaves rank %d in no group", color, c->rank);
    else if (!(*out = wrap(nc, 0, 0, impl_of(c)->chunk, impl_of(c)->stats, err))) {
        MPI_Comm_free(&nc);
        rc = ERR_NOMEM;
    }
    account(c, OP_SPLIT, t0, 0);
    return rc;
}

static void mpi_destroy(Comm *c) {
    if (!c) return;
    MpiImpl *m = impl_of(c);
    const char *dir = getenv("JARIP_COMM_STATS");
    if (m->is_world && dir && *dir) write_stats(c, dir); /* best effort: a benchmark's aid */
    if (m->is_world) {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (m->we_initialized && !finalized) MPI_Finalize();
    } else {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Comm_free(&m->comm);
    }
    if (--m->stats->refs == 0) free(m->stats);
    free(m);
    free(c);
}

static const struct CommOps mpi_ops = {
    mpi_allreduce, mpi_allreduce_f64, mpi_reduce_scatter, mpi_allgather, mpi_broadcast, mpi_send,
    mpi_recv,      mpi_barrier,       mpi_split,          mpi_alltoallv, mpi_destroy,
};

Comm *comm_mpi_create(int *argc, char ***argv, Err *err) {
    int inited = 0, provided = 0, we = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            err_set(err, ERR_IO, "MPI_Init_thread failed (is this process started by a working mpirun?)");
            return NULL;
        }
        we = 1;
    } else {
        MPI_Query_thread(&provided);
    }
    if (provided < MPI_THREAD_FUNNELED) {
        err_set(err, ERR_UNSUPPORTED, "the MPI library gives thread level %d; jarip needs MPI_THREAD_FUNNELED", provided);
        if (we) MPI_Finalize();
        return NULL;
    }
    /* Failures come back to the caller as codes, and from it to the user as
     * messages (a lost peer usually makes mpirun end the job first). */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    size_t chunk = (size_t)1 << 30;
    const char *env = getenv("JARIP_MPI_CHUNK_BYTES");
    if (env && *env) {
        char *end;
        unsigned long long v = strtoull(env, &end, 10);
        if (*end || v < 8 || v > ((size_t)1 << 30)) {
            err_set(err, ERR_INVALID, "JARIP_MPI_CHUNK_BYTES=%s: expected a byte count from 8 to 1073741824", env);
            if (we) MPI_Finalize();
            return NULL;
        }
        chunk = (size_t)v;
    }
    Comm *c = wrap(MPI_COMM_WORLD, 1, we, chunk, NULL, err);
    if (!c && we) MPI_Finalize();
    return c;
}

/* Abort every rank of the job (see launch.h). */
void comm_mpi_abort(Comm *c, int code) {
    (void)c;
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized) MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
}
