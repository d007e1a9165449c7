# Shared helpers for the distributed-training e2e tests: sourced, not run.
#
# Every check trains a tiny model for a few steps twice, once as one plain
# process and once under mpirun with some layout (dp, ZeRO, tp, pp, ep), with
# the same GLOBAL batch (--batch; each data-parallel rank takes its share of
# the rows), and requires the same per-step loss and the same
# final weights (see compare_runs).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# One thread per rank: the machine has 2 cores and the suite runs up to 4 ranks.
export OMP_NUM_THREADS=1
# OpenMPI refuses root without these; --oversubscribe lets 4 ranks share 2
# cores (OpenMPI then yields instead of spinning while it waits).
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --bind-to none --mca mpi_yield_when_idle 1)
PY=/usr/bin/python3
RUN_TIMEOUT=${RUN_TIMEOUT:-180}

skip() { echo "skip: $*"; }

# Exit 0 (a pass with a message) when this machine or build cannot run MPI jobs.
require_mpi() {
  command -v mpirun > /dev/null || { skip "mpirun not installed (apt-get install openmpi-bin libopenmpi-dev)"; exit 0; }
  # The binary links MPI only when its train command joins the MPI world.
  grep -qa MPI_Init_thread "$JARIP" || {
    skip "$(basename "$JARIP") is not built with MPI, or jarip train does not join the MPI world yet (cmd_train.c: comm_world_create)"
    exit 0
  }
  "$PY" -c 'import numpy' 2> /dev/null || fail "$PY has no numpy (needed to compare weights)"
}

# Does `jarip train` accept this flag yet?
has_flag() { "$JARIP" train --help 2>&1 | grep -q -- "$1"; }


# run_np NP OUT ARGS...: `jarip train ARGS --out OUT` as NP MPI ranks (NP=1:
# a plain process, no mpirun), bounded in time, output kept in OUT.txt.
run_np() {
  local np=$1 out=$2
  shift 2
  local cmd=("$JARIP" train "$@" --out "$out" --threads 1 --quiet)
  [ "$np" -gt 1 ] && cmd=("${MPIRUN[@]}" -np "$np" "${cmd[@]}")
  if ! timeout "$RUN_TIMEOUT" "${cmd[@]}" > "$out.txt" 2>&1; then
    tail -20 "$out.txt" >&2
    fail "run failed (exit $?): ${cmd[*]}"
  fi
}

# The final checkpoint's model.bin of a run directory.
last_model() { echo "$1/$(cat "$1/latest")/model.bin"; }

# compare_runs REF OUT LABEL [STEPS]: same per-step loss (and val_loss), one
# log line per step (rank 0 alone logs), same final weights, within a relative
# COMPARE_TOL (default 1e-5: float32 summed in another order).
compare_runs() {
  local ref=$1 out=$2 label=$3 steps=${4:-}
  "$PY" - "$ref/log.jsonl" "$out/log.jsonl" "$(last_model "$ref")" "$(last_model "$out")" "$label" "$steps" << 'EOF' || fail "$label"
import json, os, struct, sys
import numpy as np

ref_log, out_log, ref_bin, out_bin, label, steps = sys.argv[1:7]
TOL = float(os.environ.get("COMPARE_TOL", "1e-5"))

def rows(path):
    return [json.loads(l) for l in open(path) if l.strip()]

a, b = rows(ref_log), rows(out_log)
sa, sb = [r["step"] for r in a], [r["step"] for r in b]
if sb != sorted(set(sb)):
    sys.exit(f"{label}: {out_log} has repeated or unordered steps {sb} (only rank 0 may log)")
if sa != sb or (steps and len(sb) != int(steps)):
    sys.exit(f"{label}: steps differ: {sa} vs {sb}")
worst = 0.0
for ra, rb in zip(a, b):
    for key in ("loss", "val_loss"):
        if key not in ra and key not in rb:
            continue
        if key not in ra or key not in rb:
            sys.exit(f"{label}: step {ra['step']}: {key} in one log only")
        d = abs(ra[key] - rb[key]) / abs(ra[key])
        worst = max(worst, d)
        if d > TOL:
            sys.exit(f"{label}: step {ra['step']} {key} {rb[key]!r} vs one process {ra[key]!r} (relative {d:.2e} > {TOL})")

def load(path):
    """Tensors of a checkpoint (layout: src/train/checkpoint.c)."""
    buf = open(path, "rb").read()
    if buf[:8] != b"JARIPCK1":
        sys.exit(f"{label}: {path} is not a jarip checkpoint")
    _, nt, npar, _, _ = struct.unpack_from("<IIQII", buf, 8)
    w = np.frombuffer(buf, dtype="<f4", count=npar, offset=32 + 96 * nt)
    out = {}
    for i in range(nt):
        off = 32 + 96 * i
        name = buf[off:off + 48].split(b"\0")[0].decode()
        ndim, _ = struct.unpack_from("<ii", buf, off + 48)
        shape = struct.unpack_from("<4q", buf, off + 56)[:ndim]
        (o,) = struct.unpack_from("<Q", buf, off + 88)
        out[name] = w[o:o + int(np.prod(shape))].astype(np.float64)
    return out

wa, wb = load(ref_bin), load(out_bin)
if list(wa) != list(wb) or any(wa[k].shape != wb[k].shape for k in wa):
    sys.exit(f"{label}: the checkpoints hold different tensors")
# The key bias gets a gradient that is zero in exact arithmetic (it adds
# q.b_k to every score of a row; softmax ignores a shift), so it moves by
# Adam-normalised rounding noise alone: no two summation orders agree on it.
keys = [k for k in wa if not k.endswith("attn_k.bias")]
num = sum(float(np.sum((wa[k] - wb[k]) ** 2)) for k in keys)
den = sum(float(np.sum(wa[k] ** 2)) for k in keys)
rel = (num / den) ** 0.5
tensor = max(keys, key=lambda k: np.linalg.norm(wa[k] - wb[k]) / (np.linalg.norm(wa[k]) or 1))
trel = np.linalg.norm(wa[tensor] - wb[tensor]) / (np.linalg.norm(wa[tensor]) or 1)
if not rel <= TOL:
    sys.exit(f"{label}: final weights differ from one process: relative L2 {rel:.2e} > {TOL} (worst tensor {tensor}: {trel:.2e})")
print(f"ok: {label}: {len(sb)} steps, loss within {worst:.1e}, weights within {rel:.1e} (worst tensor {tensor} {trel:.1e})")
EOF
}
