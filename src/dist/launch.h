/* dist: how a command gets its world communicator. A process started by
 * mpirun (OpenMPI, or any launcher that sets PMI/PMIx variables) joins the
 * MPI world; any other process is a world of one. Commands call these two
 * functions and never look at MPI themselves. */
#ifndef JARIP_LAUNCH_H
#define JARIP_LAUNCH_H

#include "comm.h"

/* The world for this process: MPI's (MPI_Init_thread, FUNNELED) when
 * launched by mpirun, else comm_single_create(). NULL with err set when
 * mpirun started us but this build has no MPI, or MPI fails to start.
 * Call it once, early (before any output), with main's argc/argv or NULLs. */
Comm *comm_world_create(int *argc, char ***argv, Err *err);

/* End the world. failed == 0: a normal end (comm_destroy, MPI_Finalize).
 * failed != 0 with more than one rank: this rank hit an error its peers may
 * not have seen, and they may be blocked in a collective it will never join,
 * so the whole job is aborted (MPI_Abort with exit code `failed`); this call
 * then does not return. Print the error before calling it. */
void comm_world_end(Comm *world, int failed);

#endif
