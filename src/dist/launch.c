/* dist: the world communicator of a command (see launch.h). */
#include "launch.h"

#ifdef JARIP_HAVE_MPI
/* comm_mpi.c; naming it here also makes the linker take comm_mpi.o out of
 * the static library, whose strong comm_mpi_create then replaces the weak
 * fallback in comm_single.c. */
void comm_mpi_abort(Comm *c, int code);
#endif

Comm *comm_world_create(int *argc, char ***argv, Err *err) {
    if (!comm_launched_by_mpi()) {
        Comm *c = comm_single_create();
        if (!c) err_set(err, ERR_NOMEM, "out of memory");
        return c;
    }
    Comm *c = comm_mpi_create(argc, argv, err);
    if (!c) err_wrap(err, "started by mpirun");
    return c;
}

void comm_world_end(Comm *world, int failed) {
    if (!world) return;
#ifdef JARIP_HAVE_MPI
    if (failed && world->size > 1) comm_mpi_abort(world, failed);
#else
    (void)failed;
#endif
    comm_destroy(world);
}
