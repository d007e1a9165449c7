#!/usr/bin/env bash
# The MPI communicator itself (src/dist/comm_mpi.c): every op against values
# worked out by hand, at 2, 3 and 4 ranks, with whole messages and with a
# tiny chunk limit that sends every buffer as many MPI calls (the path that
# messages over 2^31 bytes take); errors name the operation and the peer;
# bytes_sent follows the documented volumes.
source "$(dirname "$0")/dist_lib.sh"
command -v mpicc > /dev/null || { skip "mpicc not installed (apt-get install libopenmpi-dev)"; exit 0; }
LIB=$(dirname "$JARIP")/libjarip_lib.a
[ -f "$LIB" ] || fail "no $LIB next to $JARIP"
nm "$LIB" 2> /dev/null | grep -q ' T comm_mpi_create' || { skip "this build has no MPI (comm_mpi.c not compiled)"; exit 0; }
SRC=$(cd "$(dirname "$0")/../../src" && pwd)

cat > "$WORK/commcheck.c" << 'CEOF'
/* Every op of the MPI communicator against values worked out by hand. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dist/launch.h"

static int bad;
#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "rank %d: ", w->rank); fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); bad = 1; } } while (0)
#define OK(call) do { Err e_ = {0}; Err *err = &e_; if (call) { fprintf(stderr, "rank %d: %s: %s\n", w->rank, #call, e_.msg); comm_world_end(w, 1); return 1; } } while (0)

int main(int argc, char **argv) {
    Err err0 = {0};
    Comm *w = comm_world_create(&argc, &argv, &err0);
    if (!w) { fprintf(stderr, "%s\n", err0.msg); return 1; }
    const int p = w->size, me = w->rank;
    if (p < 2) { fprintf(stderr, "run with mpirun -np >= 2\n"); return 1; }
    /* allreduce f32 / f64 (the chunk limit of the test splits them) */
    enum { N = 1000 };
    float *f = malloc(N * sizeof *f);
    double *d = malloc(N * sizeof *d);
    for (int i = 0; i < N; i++) f[i] = (float)(me * 1000 + i), d[i] = me + 0.5 * i;
    size_t b0 = w->bytes_sent;
    OK(comm_allreduce_sum(w, f, N, err));
    CHECK(w->bytes_sent - b0 == (size_t)(2.0 * (p - 1) / p * N * 4), "allreduce bytes_sent %zu", w->bytes_sent - b0);
    OK(comm_allreduce_sum_f64(w, d, N, err));
    for (int i = 0; i < N; i++) {
        CHECK(f[i] == (float)(p * i + 1000 * p * (p - 1) / 2), "allreduce f32 [%d] = %g", i, f[i]);
        CHECK(d[i] == p * (p - 1) / 2.0 + p * 0.5 * i, "allreduce f64 [%d] = %g", i, d[i]);
    }
    /* reduce-scatter: out of place, in place, and into the own slice */
    const int blk = 37, n = blk * p;
    float *s = malloc(n * sizeof *s), *r = malloc(blk * sizeof *r);
    for (int mode = 0; mode < 3; mode++) {
        for (int i = 0; i < n; i++) s[i] = (float)(me + i);
        float *out = mode == 0 ? r : mode == 1 ? s : s + me * blk;
        OK(comm_reduce_scatter_sum(w, s, out, n, err));
        for (int j = 0; j < blk; j++)
            CHECK(out[j] == (float)(p * (p - 1) / 2 + p * (me * blk + j)), "reduce-scatter mode %d [%d] = %g", mode, j, out[j]);
    }
    {
        Err e = {0};
        CHECK(comm_reduce_scatter_sum(w, s, r, n + 1, &e) == ERR_INVALID && strstr(e.msg, "not divisible"), "reduce-scatter n %% p: %s", e.msg);
    }
    /* allgather: out of place and in place */
    const int g = 41;
    float *gs = malloc(g * sizeof *gs), *gr = malloc((size_t)g * p * sizeof *gr);
    for (int mode = 0; mode < 2; mode++) {
        memset(gr, 0, (size_t)g * p * sizeof *gr);
        float *src = mode ? gr + me * g : gs;
        for (int i = 0; i < g; i++) src[i] = (float)(me * 100 + i);
        OK(comm_allgather(w, src, gr, g, err));
        for (int q = 0; q < p; q++)
            for (int i = 0; i < g; i++) CHECK(gr[q * g + i] == (float)(q * 100 + i), "allgather mode %d [%d][%d] = %g", mode, q, i, gr[q * g + i]);
    }
    /* broadcast from the last rank */
    unsigned char bc[1003];
    for (int i = 0; i < (int)sizeof bc; i++) bc[i] = me == p - 1 ? (unsigned char)(i * 7) : 0;
    OK(comm_broadcast(w, bc, sizeof bc, p - 1, err));
    for (int i = 0; i < (int)sizeof bc; i++) CHECK(bc[i] == (unsigned char)(i * 7), "broadcast [%d]", i);
    /* send/recv around a ring (even ranks send first), 1001 bytes and 0 bytes */
    unsigned char tx[1001], rx[1001];
    for (int i = 0; i < (int)sizeof tx; i++) tx[i] = (unsigned char)(me + i);
    int next = (me + 1) % p, prev = (me + p - 1) % p;
    b0 = w->bytes_sent;
    for (int round = 0; round < 2; round++) {
        size_t len = round ? 0 : sizeof tx;
        if (me % 2 == 0) {
            OK(comm_send(w, tx, len, next, err));
            OK(comm_recv(w, rx, len, prev, err));
        } else {
            OK(comm_recv(w, rx, len, prev, err));
            OK(comm_send(w, tx, len, next, err));
        }
    }
    CHECK(w->bytes_sent - b0 == sizeof tx, "send bytes_sent %zu", w->bytes_sent - b0);
    for (int i = 0; i < (int)sizeof rx; i++) CHECK(rx[i] == (unsigned char)(prev + i), "recv [%d]", i);
    {
        Err e = {0};
        CHECK(comm_send(w, tx, 1, me, &e) == ERR_INVALID, "send to self accepted");
        CHECK(comm_recv(w, rx, 1, p, &e) == ERR_INVALID && strstr(e.msg, "rank"), "recv from rank %d accepted", p);
    }
    /* a short message and a too long one: errors name the peer */
    if (me == 0) {
        OK(comm_send(w, tx, 10, 1, err));
        OK(comm_send(w, tx, 12, 1, err));
    } else if (me == 1) {
        Err e = {0};
        CHECK(comm_recv(w, rx, 20, 0, &e) != 0 && strstr(e.msg, "10 bytes arrived"), "short message: '%s'", e.msg);
        Err e2 = {0};
        /* 12 bytes are one message even at the 16-byte chunk limit */
        CHECK(comm_recv(w, rx, 10, 0, &e2) != 0 && strstr(e2.msg, "rank 0 (world rank 0)"), "truncated message: '%s'", e2.msg);
        fprintf(stderr, "(expected) %s\n", e2.msg);
    }
    OK(comm_barrier(w, err));
    /* split: parity groups, ordered by descending world rank */
    Comm *sub = NULL;
    OK(comm_split(w, me % 2, -me, &sub, err));
    int members = (p - me % 2 + 1) / 2;
    CHECK(sub->size == members, "split size %d, expected %d", sub->size, members);
    int expect_rank = 0;
    for (int q = me + 2; q < p; q += 2) expect_rank++;
    CHECK(sub->rank == expect_rank, "split rank %d, expected %d", sub->rank, expect_rank);
    float one = 1.0f;
    OK(comm_allreduce_sum(sub, &one, 1, err));
    CHECK(one == (float)members, "allreduce in split: %g", one);
    if (sub->size > 1) {
        Err e = {0};
        CHECK(comm_send(sub, tx, 1, sub->size, &e) == ERR_INVALID, "split send out of range accepted");
    }
    comm_destroy(sub);
    /* alltoallv: rank q gets (q+1) floats from everyone */
    int *sc = malloc(p * sizeof(int)), *sd = malloc(p * sizeof(int)), *rc = malloc(p * sizeof(int)), *rd = malloc(p * sizeof(int));
    int tot = 0;
    for (int q = 0; q < p; q++) sc[q] = q + 1, sd[q] = tot, tot += q + 1;
    float *as = malloc(tot * sizeof *as), *ar = malloc((size_t)p * (me + 1) * sizeof *ar);
    for (int q = 0; q < p; q++)
        for (int j = 0; j < sc[q]; j++) as[sd[q] + j] = (float)(me * 1000 + q * 10 + j);
    for (int q = 0; q < p; q++) rc[q] = me + 1, rd[q] = q * (me + 1);
    b0 = w->bytes_sent;
    OK(w->ops->alltoallv(w, as, sc, sd, ar, rc, rd, err));
    CHECK(w->bytes_sent - b0 == (size_t)(tot - sc[me]) * 4, "alltoallv bytes_sent %zu", w->bytes_sent - b0);
    for (int q = 0; q < p; q++)
        for (int j = 0; j <= me; j++) CHECK(ar[q * (me + 1) + j] == (float)(q * 1000 + me * 10 + j), "alltoallv from %d [%d]", q, j);
    /* large buffers take the sendrecv rings (>= 64 KiB); sizes that do not
     * divide by the ranks, every aliasing the small path allows */
    {
        enum { NL = 50001 };
        float *a = malloc(NL * sizeof *a);
        for (int i = 0; i < NL; i++) a[i] = (float)((me + 1) * (i % 1000));
        OK(comm_allreduce_sum(w, a, NL, err));
        for (int i = 0; i < NL; i++) CHECK(a[i] == (float)(p * (p + 1) / 2 * (i % 1000)), "ring allreduce [%d] = %g", i, a[i]);
        const int lb = 20011, ln = lb * p;
        float *ls = malloc(ln * sizeof *ls), *lr = malloc(lb * sizeof *lr);
        for (int mode = 0; mode < 3; mode++) {
            for (int i = 0; i < ln; i++) ls[i] = (float)(me + i % 4096);
            float *out = mode == 0 ? lr : mode == 1 ? ls : ls + me * lb;
            OK(comm_reduce_scatter_sum(w, ls, out, ln, err));
            for (int j = 0; j < lb; j++)
                CHECK(out[j] == (float)(p * (p - 1) / 2 + p * ((me * lb + j) % 4096)), "ring reduce-scatter mode %d [%d] = %g", mode, j, out[j]);
        }
        const int lg = 17003;
        float *gsrc = malloc(lg * sizeof *gsrc), *gall = malloc((size_t)lg * p * sizeof *gall);
        for (int mode = 0; mode < 2; mode++) {
            memset(gall, 0, (size_t)lg * p * sizeof *gall);
            float *src = mode ? gall + (size_t)me * lg : gsrc;
            for (int i = 0; i < lg; i++) src[i] = (float)(me * 100000 + i);
            OK(comm_allgather(w, src, gall, lg, err));
            for (int q = 0; q < p; q++)
                for (int i = 0; i < lg; i++)
                    CHECK(gall[(size_t)q * lg + i] == (float)(q * 100000 + i), "ring allgather mode %d [%d][%d]", mode, q, i);
        }
        free(a), free(ls), free(lr), free(gsrc), free(gall);
    }
    CHECK(w->comm_seconds > 0, "comm_seconds not counted");
    int failed = bad;
    float fl = (float)failed;
    OK(comm_allreduce_sum(w, &fl, 1, err));
    if (me == 0) printf(fl == 0 ? "comm ok: %d ranks\n" : "comm FAILED on some rank (%d ranks)\n", p);
    comm_world_end(w, 0);
    return fl != 0;
}
CEOF
mpicc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O1 -I"$SRC" "$WORK/commcheck.c" "$LIB" -fopenmp -ldnnl -ljansson -lpcre2-8 -lz -lm \
  -o "$WORK/commcheck" || fail "cannot build the communicator check"
for np in 2 3 4; do
  for chunk in 1073741824 16; do
    JARIP_MPI_CHUNK_BYTES=$chunk timeout 120 "${MPIRUN[@]}" -np $np "$WORK/commcheck" > "$WORK/out.txt" 2>&1 \
      || { cat "$WORK/out.txt" >&2; fail "communicator check at $np ranks, chunk $chunk bytes"; }
    grep -q "comm ok: $np ranks" "$WORK/out.txt" || fail "communicator check at $np ranks printed no verdict"
  done
  pass "all comm ops at $np ranks, whole and chunked"
done
# JARIP_COMM_STATS: per-rank totals per op (what bench/scaling.sh reads).
mkdir "$WORK/stats"
JARIP_COMM_STATS="$WORK/stats" timeout 60 "${MPIRUN[@]}" -np 2 "$WORK/commcheck" > "$WORK/out.txt" 2>&1 || fail "check with JARIP_COMM_STATS"
"$PY" - "$WORK/stats" << 'PEOF' || fail "JARIP_COMM_STATS files"
import json, sys
for r, sent in ((0, 1001 + 10 + 12), (1, 1001)):
    s = json.load(open(f"{sys.argv[1]}/comm_rank{r}.json"))
    ops = s["ops"]
    assert s["rank"] == r and s["size"] == 2, s
    assert ops["send"]["bytes"] == sent, (r, ops["send"])
    # f32 and f64 of 1000 (ring: (2-1)/2 x 2 x bytes), 50001 f32 on the ring
    # path, the verdict's 1 float; the parity split's groups of one send nothing
    assert ops["allreduce"]["calls"] == 5 and ops["allreduce"]["bytes"] == 4000 + 8000 + 4 * 50001 + 4, ops["allreduce"]
    assert ops["alltoallv"]["bytes"] == 4 * (2 - r), ops["alltoallv"]
    assert all(v["seconds"] >= 0 for v in ops.values())
PEOF
pass "JARIP_COMM_STATS writes per-rank op totals"
# A bad chunk setting is refused with a message, not used.
JARIP_MPI_CHUNK_BYTES=3 timeout 60 "${MPIRUN[@]}" -np 2 "$WORK/commcheck" > "$WORK/out.txt" 2>&1 && fail "JARIP_MPI_CHUNK_BYTES=3 accepted"
grep -q "JARIP_MPI_CHUNK_BYTES=3: expected" "$WORK/out.txt" || { cat "$WORK/out.txt" >&2; fail "no message for a bad JARIP_MPI_CHUNK_BYTES"; }
pass "bad JARIP_MPI_CHUNK_BYTES refused"
