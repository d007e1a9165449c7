#!/usr/bin/env bash
# Scaling of `jarip train` from one process to two (one thread each): tokens/s
# of a fixed model at 1 process, dp=2, and tp=2 / pp=2 where jarip has them;
# the share of each step spent inside communicator calls; bytes each rank
# sends per step against the ring all-reduce volume 2(n-1)/n x gradient bytes.
# Layouts alternate over several rounds (the machine is shared; each figure
# is the median over rounds). Target: dp=2 >= 1.8x one process.
#
# On a machine that others load too, wall-clock speedups mostly measure the
# load, so the table adds a proxy: CPU seconds per step of the busiest rank
# (user+sys of a run of STEPS steps minus a run of 1 step, which removes
# start-up, warm-up and the checkpoint; the same difference gives the
# per-step comm time and bytes, without the one-time broadcast of the
# initial state). A rank that waits for its peer
# spins, so waiting counts as CPU time as it would count as wall time on
# idle cores.
#
# This VM's host noise comes in bursts: a step now and then, or a whole run,
# 15-50% slower (seen on both ranks at once, CPU time equal to wall time).
# Two processes use both cores, so a burst on either stalls both ranks at
# the next exchange, while one process leaves a core free. So each run's
# tokens/s is taken at its median step (the "mean" column keeps the plain
# average), and each speedup is the median over rounds of the ratio to the
# one-process run of the same round (minutes apart, not the whole bench).
#
# Usage: bench/scaling.sh [path/to/jarip]
#   PRESET=gpt2-mini (10.9M parameters)  BATCH=8 (global)  SEQ=128  STEPS=10
#   ROUNDS=3  MICRO=2 (pp=2: rows per micro-batch, so 1F1B has several in
#   flight).  The first step of every run is warm-up and not counted.
#   BASE=path/to/another/jarip adds its 1-process and dp=2 runs to the same
#   rounds (rows "base 1", "base dp=2"; their speedup is against base 1), so a
#   change is measured against the build before it under the same load.
# Rows: dp=2 at ZeRO 0 (gradients all-reduced, the optimizer replicated),
# ZeRO 1 (reduce-scatter, each rank updates its half, all-gather) and ZeRO 2
# (each block's gradients reduce-scattered as the backward finishes it).
# Two more rows keep each rank's batch at BATCH (global 2 x BATCH): "dp=2 w"
# (ZeRO 0) and "dp=2 z1 w" (ZeRO 1). The rows above divide one fixed global
# batch (strong scaling: each rank does half the work but still all of the
# optimizer and the whole gradient exchange); these are the weak-scaling
# figure PyTorch DDP and Horovod report, where a second process adds a
# second batch of the same size. Their speedups are in tokens/s against the
# one process at BATCH, as every row's.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
JARIP="${1:-$ROOT/build/jarip}"
PRESET=${PRESET:-gpt2-mini} BATCH=${BATCH:-8} SEQ=${SEQ:-128} STEPS=${STEPS:-10} ROUNDS=${ROUNDS:-3} MICRO=${MICRO:-2}
BASE=${BASE:-}
PY=/usr/bin/python3
[ -x "$JARIP" ] || { echo "no jarip at $JARIP (build it first)" >&2; exit 1; }
command -v mpirun > /dev/null || { echo "mpirun not installed (apt-get install openmpi-bin libopenmpi-dev)" >&2; exit 1; }
grep -qa MPI_Init_thread "$JARIP" || { echo "$JARIP does not join an MPI world (built without MPI?)" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jarip-scaling.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=1

# Text with enough variety that every window differs (byte-level, 256 vocab).
awk 'BEGIN { srand(11); for (i = 0; i < 20000; i++) { s = "";
  for (j = 0; j < 6; j++) s = s sprintf("%c", 97 + int(rand() * 26)); print s " sat on the mat, said the " s "." } }' \
  > "$WORK/corpus.txt"
params=$("$JARIP" info --preset "$PRESET" | sed -n 's/^parameters: //p')

# the target's rows run right after the one-process run they are compared to
has_zero=0
"$JARIP" train --help 2>&1 | grep -q -- --zero && has_zero=1
layouts=("1" "dp2")
[ $has_zero = 1 ] && layouts+=("dp2z1")
layouts+=("dp2w")
[ $has_zero = 1 ] && layouts+=("dp2z1w" "dp2z2")
"$JARIP" train --help 2>&1 | grep -q -- --tp && layouts+=("tp2")
"$JARIP" train --help 2>&1 | grep -q -- --pp && layouts+=("pp2")
if [ -n "$BASE" ]; then
  [ -x "$BASE" ] || { echo "BASE=$BASE is not an executable" >&2; exit 1; }
  layouts+=("base1" "basedp2")
fi

# Each process reports its CPU time to WORK/<run>.cpu.<rank>.
cat > "$WORK/cputime.sh" << 'SH'
#!/bin/sh
exec /usr/bin/time -f "%U %S" -o "$CPU_OUT.${OMPI_COMM_WORLD_RANK:-0}" "$@"
SH
chmod +x "$WORK/cputime.sh"

# run LAYOUT ROUND [STEPS]: one training run; leaves WORK/LAYOUT.ROUND[.STEPS]/
run() {
  local layout=$1 out="$WORK/$1.$2${3:+.$3}" np=2 extra=() steps=${3:-$STEPS} bin=$JARIP batch=$BATCH
  case $layout in
    1) np=1 ;;
    dp2) extra=(--zero 0) ;;
    dp2z1) extra=(--zero 1) ;;
    dp2z2) extra=(--zero 2) ;;
    dp2w) extra=(--zero 0) batch=$((2 * BATCH)) ;;
    dp2z1w) extra=(--zero 1) batch=$((2 * BATCH)) ;;
    tp2) extra=(--tp 2) ;;
    pp2) extra=(--pp 2 --micro-batch "$MICRO") ;;
    base1) np=1 bin=$BASE ;;
    basedp2) bin=$BASE ;;
  esac
  # a build before --zero gets no flag for dp2
  "$bin" train --help 2>&1 | grep -q -- --zero || [ "$layout" != dp2 ] || extra=()
  local cmd=("$bin" train --preset "$PRESET" --data "$WORK/corpus.txt" --out "$out" --steps "$steps" --batch "$batch"
    --seq "$SEQ" --eval-batches 0 --save-every 0 --threads 1 --quiet "${extra[@]}")
  mkdir -p "$out.stats"
  cmd=("$WORK/cputime.sh" "${cmd[@]}")
  # two ranks on two cores, each pinned to its own
  [ $np -gt 1 ] && cmd=(mpirun --allow-run-as-root --bind-to core -np $np "${cmd[@]}")
  CPU_OUT="$out.cpu" JARIP_COMM_STATS="$out.stats" "${cmd[@]}" > "$out.txt" 2>&1 || { cat "$out.txt" >&2; echo "run failed: ${cmd[*]}" >&2; exit 1; }
}

echo "model $PRESET ($params parameters), global batch $BATCH x $SEQ tokens (rows ending in w: $BATCH per rank), $STEPS steps (first one not counted), 1 thread per process, $ROUNDS rounds"
echo "machine: $(getconf _NPROCESSORS_ONLN) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
  for l in "${layouts[@]}"; do run "$l" "$r" && run "$l" "$r" 1; done
done

"$PY" - "$WORK" "$params" "$ROUNDS" "$BATCH" "$SEQ" "${layouts[@]}" << 'EOF'
import glob, json, os, statistics, sys
work, params, rounds, batch, seq = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
layouts = sys.argv[6:]
rows = {}
for lay in layouts:
    tokens_per_step = batch * seq * (2 if lay.endswith("w") else 1)
    tps, mean, share, sent, cpu = [], [], [], [], []
    for r in range(1, rounds + 1):
        out = f"{work}/{lay}.{r}"
        log = [json.loads(l) for l in open(f"{out}/log.jsonl") if l.strip()]
        dts = [tokens_per_step / e["tokens_per_s"] for e in log]
        tps.append(tokens_per_step / statistics.median(dts[1:]))
        mean.append(tokens_per_step * (len(dts) - 1) / sum(dts[1:]))
        busiest = lambda run: max(sum(map(float, open(p).read().split()[:2])) for p in glob.glob(f"{run}.cpu.*"))
        # CPU seconds per BATCH x SEQ tokens, so weak-scaling rows compare too
        cpu.append((busiest(out) - busiest(f"{out}.1")) / (len(dts) - 1) * batch * seq / tokens_per_step)
        def comm(run, key):
            # busiest rank; barrier and split are set-up and the wait for rank
            # 0's checkpoint, not training traffic
            stats = [json.load(open(p)) for p in glob.glob(f"{run}.stats/comm_rank*.json")]
            return max((sum(v[key] for k, v in s["ops"].items() if k not in ("barrier", "split")) for s in stats), default=0.0)
        share.append((comm(out, "seconds") - comm(f"{out}.1", "seconds")) / sum(dts[1:]))
        sent.append((comm(out, "bytes") - comm(f"{out}.1", "bytes")) / (len(dts) - 1))
    rows[lay] = (tps, statistics.median(share), statistics.median(sent), cpu, mean)
def ratio(lay, ref, col=0):
    """median over rounds of lay's figure against ref's in the same round"""
    a, b = rows[lay][col], rows[ref][col]
    return statistics.median(b[i] / a[i] if col == 3 else a[i] / b[i] for i in range(len(a)))
med = lambda lay, col: statistics.median(rows[lay][col])
ring = 2 * (2 - 1) / 2 * 4 * params
names = {"1": "1 proc", "dp2": "dp=2", "dp2z1": "dp=2 z1", "dp2z2": "dp=2 z2", "dp2w": "dp=2 w", "dp2z1w": "dp=2 z1 w", "tp2": "tp=2", "pp2": "pp=2", "base1": "base 1",
         "basedp2": "base dp=2"}
print(f"{'layout':10s} {'tokens/s':>9s} {'mean':>7s} {'speedup':>8s} {'comm share':>11s} {'MB sent/step/rank':>18s}"
      f" {'ring all-reduce MB':>19s} {'CPU s/batch':>11s} {'CPU speedup':>12s}")
for lay in layouts:
    ref = "base1" if lay.startswith("base") else "1"
    theo = f"{ring / 1e6:19.1f}" if "dp2" in lay else f"{'-':>19s}"
    print(f"{names[lay]:10s} {med(lay, 0):9.1f} {med(lay, 4):7.1f} {ratio(lay, ref):7.2f}x {100 * rows[lay][1]:10.1f}%"
          f" {rows[lay][2] / 1e6:18.1f} {theo} {med(lay, 3):11.2f} {ratio(lay, ref, 3):11.2f}x")
def line(name, lay, note, ref="1"):
    if lay in rows:
        print(f"{name} {ratio(lay, ref):.2f} ({note}; mean steps {ratio(lay, ref, 4):.2f}), by CPU time {ratio(lay, ref, 3):.2f}")
line("dp2_speedup", "dp2", "ZeRO 0, wall clock; target >= 1.8")
line("dp2_zero1_speedup", "dp2z1", "wall clock")
line("dp2_weak_speedup", "dp2w", f"ZeRO 0, {batch} rows per rank; target >= 1.8")
line("dp2_zero1_weak_speedup", "dp2z1w", "wall clock")
line("base_dp2_speedup", "basedp2", "wall clock", "base1")
EOF
