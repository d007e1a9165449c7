/* dist: the communicator the trainer talks to. World size 1 is a real
 * implementation (comm_single.c: collectives are copies); MPI (comm_mpi.c)
 * and NCCL plug in behind the same calls. Groups (dp, tp, pp, ep) are
 * sub-communicators made by comm_split. */
#ifndef JARIP_COMM_H
#define JARIP_COMM_H

#include <stddef.h>

#include "core/core.h"

typedef struct Comm Comm;

struct CommOps {
    int (*allreduce_sum)(Comm *c, float *buf, size_t n, Err *err);
    int (*allreduce_sum_f64)(Comm *c, double *buf, size_t n, Err *err);
    /* recv (n/size) = sum over ranks of send's rank-th slice; n % size == 0 */
    int (*reduce_scatter_sum)(Comm *c, const float *send, float *recv, size_t n, Err *err);
    /* recv (n*size) = concatenation of every rank's send (n) */
    int (*allgather)(Comm *c, const float *send, float *recv, size_t n, Err *err);
    int (*broadcast)(Comm *c, void *buf, size_t bytes, int root, Err *err);
    int (*send)(Comm *c, const void *buf, size_t bytes, int dst, Err *err);
    int (*recv)(Comm *c, void *buf, size_t bytes, int src, Err *err);
    int (*barrier)(Comm *c, Err *err);
    /* Ranks with the same color form a new communicator, ordered by key. */
    int (*split)(Comm *c, int color, int key, Comm **out, Err *err);
    /* Each rank sends send_counts[r] floats (at send_displs[r]) to rank r and
     * receives recv_counts[r] floats at recv_displs[r] (expert parallel). */
    int (*alltoallv)(Comm *c, const float *send, const int *send_counts, const int *send_displs, float *recv,
                     const int *recv_counts, const int *recv_displs, Err *err);
    void (*destroy)(Comm *c);
};

struct Comm {
    const struct CommOps *ops;
    int rank, size;
    void *impl;
    size_t bytes_sent; /* for the scaling benchmark */
    double comm_seconds; /* wall time inside comm ops (waiting included) */
};

/* The one-process communicator. */
Comm *comm_single_create(void);
/* The MPI world (comm_mpi.c); NULL with err set when MPI is unavailable.
 * comm_launched_by_mpi() says whether this process was started by mpirun. */
Comm *comm_mpi_create(int *argc, char ***argv, Err *err);
int comm_launched_by_mpi(void);

static inline int comm_allreduce_sum(Comm *c, float *buf, size_t n, Err *err) {
    return c->ops->allreduce_sum(c, buf, n, err);
}
static inline int comm_allreduce_sum_f64(Comm *c, double *buf, size_t n, Err *err) {
    return c->ops->allreduce_sum_f64(c, buf, n, err);
}
static inline int comm_barrier(Comm *c, Err *err) { return c->ops->barrier(c, err); }
static inline int comm_reduce_scatter_sum(Comm *c, const float *send, float *recv, size_t n, Err *err) {
    return c->ops->reduce_scatter_sum(c, send, recv, n, err);
}
static inline int comm_allgather(Comm *c, const float *send, float *recv, size_t n, Err *err) {
    return c->ops->allgather(c, send, recv, n, err);
}
static inline int comm_broadcast(Comm *c, void *buf, size_t bytes, int root, Err *err) {
    return c->ops->broadcast(c, buf, bytes, root, err);
}
static inline int comm_send(Comm *c, const void *buf, size_t bytes, int dst, Err *err) {
    return c->ops->send(c, buf, bytes, dst, err);
}
static inline int comm_recv(Comm *c, void *buf, size_t bytes, int src, Err *err) {
    return c->ops->recv(c, buf, bytes, src, err);
}
static inline int comm_split(Comm *c, int color, int key, Comm **out, Err *err) {
    return c->ops->split(c, color, key, out, err);
}
static inline void comm_destroy(Comm *c) {
    if (c) c->ops->destroy(c);
}

#endif
