#!/usr/bin/env bash
# bf16 mixed precision under mpirun: expert parallel 2 for moe-tiny (each
# rank's experts run bf16 GEMMs on the rows the others send them) and tensor
# parallel 2 for llama-tiny train to the per-step losses and final weights of
# one bf16 process with the same global batch (dist_lib.sh's compare_runs).
# Skips without MPI or without native bf16.
source "$(dirname "$0")/dist_lib.sh"
require_mpi
if ! "$JARIP" bench train --preset gpt2-tiny --batch 1 --seq 8 --steps 1 --precision bf16 > "$WORK/probe" 2>&1; then
  echo "skip: no native bf16 on this CPU ($(tail -1 "$WORK/probe"))"
  exit 0
fi
make_corpus 3000 > "$WORK/corpus.txt"
# bf16 rounds values that differ in their last float32 bit (another summation
# order) 2^-8 apart, and Adam spreads it: measured 1.3e-4 (loss) and 3.1e-4
# (weights) for moe-tiny ep 2, 2.1e-4 and 8.0e-4 for llama-tiny tp 2. One
# process in fp32 against one in bf16 differs by 5.2e-3 in the weights.
export COMPARE_TOL=2e-3
for run in "moe-tiny 2 --ep 2" "llama-tiny 2 --tp 2"; do
  set -- $run
  preset=$1 np=$2 flag=$3 val=$4
  args=(--preset "$preset" --data "$WORK/corpus.txt" --steps 10 --seq 32 --batch 8 --lr 1e-3 --save-every 0
    --eval-every 5 --eval-batches 2 --precision bf16)
  run_np 1 "$WORK/$preset-ref" "${args[@]}"
  run_np "$np" "$WORK/$preset-$val" "${args[@]}" "$flag" "$val"
  compare_runs "$WORK/$preset-ref" "$WORK/$preset-$val" "$preset bf16 ${flag#--}=$val np=$np" 10
done
