#!/usr/bin/env bash
# Data parallel under mpirun: dp=2 (plain, with gradient accumulation, and
# with ZeRO 1/2/3) trains to the same per-step losses and final weights as
# one process with the same global batch, for gpt2-tiny, llama-tiny and
# moe-tiny.
source "$(dirname "$0")/dist_lib.sh"
require_mpi
make_corpus 3000 > "$WORK/corpus.txt"

for preset in gpt2-tiny llama-tiny moe-tiny; do
  args=(--preset "$preset" --data "$WORK/corpus.txt" --steps 10 --seq 32 --lr 1e-3 --save-every 0 --eval-every 5 --eval-batches 2)
  run_np 1 "$WORK/$preset-ref" "${args[@]}" --batch 8
  run_np 2 "$WORK/$preset-dp2" "${args[@]}" --batch 8
  compare_runs "$WORK/$preset-ref" "$WORK/$preset-dp2" "$preset dp=2" 10
  if [ "$preset" = gpt2-tiny ]; then
    run_np 1 "$WORK/$preset-ref-acc" "${args[@]}" --batch 8 --accum 2
    run_np 2 "$WORK/$preset-dp2-acc" "${args[@]}" --batch 8 --accum 2
    compare_runs "$WORK/$preset-ref-acc" "$WORK/$preset-dp2-acc" "$preset dp=2 accum=2" 10
  fi
  [ "$preset" = moe-tiny ] && continue
  for z in 1 2 3; do
    if ! has_flag --zero; then skip "$preset dp=2 --zero $z: --zero not implemented yet"; continue; fi
    run_np 2 "$WORK/$preset-z$z" "${args[@]}" --batch 8 --zero "$z"
    compare_runs "$WORK/$preset-ref" "$WORK/$preset-z$z" "$preset dp=2 zero=$z" 10
  done
done

# Ranks sharing a host split its cores when no thread count is given, and
# the lead rank warns when one given oversubscribes them. Unbound ranks
# (--bind-to none) each see every core.
cores=$(getconf _NPROCESSORS_ONLN) # what jarip counts (nproc would follow OMP_NUM_THREADS)
tiny=(--preset gpt2-tiny --data "$WORK/corpus.txt" --steps 1 --seq 32 --batch 8 --eval-batches 0 --save-every 0)
env -u OMP_NUM_THREADS timeout "$RUN_TIMEOUT" "${MPIRUN[@]}" -np 2 "$JARIP" train "${tiny[@]}" --out "$WORK/fit" \
  > "$WORK/fit.txt" 2>&1 || { cat "$WORK/fit.txt" >&2; fail "dp=2 without --threads"; }
fit=$(( cores / 2 > 0 ? cores / 2 : 1 ))
if [ "$cores" -ge 2 ]; then
  grep -q "2 ranks share this host's $cores cores: $fit thread" "$WORK/fit.txt" || { cat "$WORK/fit.txt" >&2; fail "no thread split note"; }
fi
grep -q ", $fit threads x 2 ranks" "$WORK/fit.txt" || { cat "$WORK/fit.txt" >&2; fail "ranks did not get $fit threads each"; }
[ "$(grep -c "share this host" "$WORK/fit.txt")" -le 1 ] || fail "the thread split note printed by more than the lead rank"
over=$(( cores > 1 ? cores : 2 ))
env -u OMP_NUM_THREADS timeout "$RUN_TIMEOUT" "${MPIRUN[@]}" -np 2 "$JARIP" train "${tiny[@]}" --out "$WORK/over" \
  --threads "$over" > "$WORK/over.txt" 2>&1 || { cat "$WORK/over.txt" >&2; fail "dp=2 --threads $over"; }
grep -q "warning: 2 ranks x $over threads on this host.s $cores cores" "$WORK/over.txt" || { cat "$WORK/over.txt" >&2; fail "no warning: 2 ranks x $over threads on this host.s $cores cores"; }
grep -q ", $over threads x 2 ranks" "$WORK/over.txt" || fail "an explicit --threads was not kept"
pass "ranks split the host's $cores cores ($fit thread(s) each); --threads $over x 2 ranks warns"
