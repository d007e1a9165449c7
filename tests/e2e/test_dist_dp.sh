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
