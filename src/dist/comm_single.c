/* World size 1: every collective is the identity (or a copy). */
#include <stdlib.h>
#include <string.h>

#include "comm.h"

static int single_allreduce(Comm *c, float *buf, size_t n, Err *err) {
    (void)c; (void)buf; (void)n; (void)err;
    return 0;
}
static int single_allreduce_f64(Comm *c, double *buf, size_t n, Err *err) {
    (void)c; (void)buf; (void)n; (void)err;
    return 0;
}
static int single_reduce_scatter(Comm *c, const float *send, float *recv, size_t n, Err *err) {
    (void)c; (void)err;
    if (recv != send) memmove(recv, send, n * sizeof(float));
    return 0;
}
static int single_allgather(Comm *c, const float *send, float *recv, size_t n, Err *err) {
    (void)c; (void)err;
    if (recv != send) memmove(recv, send, n * sizeof(float));
    return 0;
}
static int single_broadcast(Comm *c, void *buf, size_t bytes, int root, Err *err) {
    (void)c; (void)buf; (void)bytes; (void)root; (void)err;
    return 0;
}
static int single_p2p(Comm *c, const void *buf, size_t bytes, int peer, Err *err) {
    (void)c; (void)buf; (void)bytes;
    return err_set(err, ERR_INVALID, "point-to-point to rank %d in a world of size 1", peer);
}
static int single_recv(Comm *c, void *buf, size_t bytes, int peer, Err *err) {
    return single_p2p(c, buf, bytes, peer, err);
}
static int single_barrier(Comm *c, Err *err) {
    (void)c; (void)err;
    return 0;
}
static int single_split(Comm *c, int color, int key, Comm **out, Err *err) {
    (void)c; (void)color; (void)key;
    *out = comm_single_create();
    return *out ? 0 : err_set(err, ERR_NOMEM, "out of memory");
}
static int single_alltoallv(Comm *c, const float *send, const int *sc, const int *sd, float *recv, const int *rc,
                            const int *rd, Err *err) {
    (void)c; (void)err;
    (void)rc;
    memmove(recv + rd[0], send + sd[0], (size_t)sc[0] * sizeof(float));
    return 0;
}
static void single_destroy(Comm *c) { free(c); }

static const struct CommOps single_ops = {
    single_allreduce, single_allreduce_f64, single_reduce_scatter, single_allgather, single_broadcast,
    single_p2p, single_recv, single_barrier, single_split, single_alltoallv, single_destroy,
};

/* Without comm_mpi.c linked in (no MPI found at build time). */
__attribute__((weak)) Comm *comm_mpi_create(int *argc, char ***argv, Err *err) {
    (void)argc; (void)argv;
    err_set(err, ERR_UNSUPPORTED, "this build has no MPI support (install libopenmpi-dev and rebuild)");
    return NULL;
}

int comm_launched_by_mpi(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

Comm *comm_single_create(void) {
    Comm *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->ops = &single_ops;
    c->rank = 0;
    c->size = 1;
    return c;
}
