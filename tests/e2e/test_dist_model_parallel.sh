#!/usr/bin/env bash
# Model parallel under mpirun: tensor parallel (tp=2, and tp=2 x dp=2),
# pipeline parallel (pp=2, and pp=2 x dp=2) for gpt2-tiny and llama-tiny (GQA),
# and expert parallel 2 for moe-tiny: each trains to the same per-step losses
# and final weights as one process with the same global batch.
source "$(dirname "$0")/dist_lib.sh"
require_mpi
make_corpus 3000 > "$WORK/corpus.txt"

# check PRESET NP FLAG VALUE [EXTRA...]: NP ranks with FLAG VALUE (data
# parallel over the rest) against the preset's one-process run.
check() {
  local preset=$1 np=$2 flag=$3 val=$4
  shift 4
  local label="$preset ${flag#--}=$val np=$np${*:+ $*}"
  if ! has_flag "$flag"; then skip "$label: $flag not implemented yet"; return; fi
  local args=(--preset "$preset" --data "$WORK/corpus.txt" --steps 10 --seq 32 --lr 1e-3 --save-every 0 --eval-every 5 --eval-batches 2)
  [ -d "$WORK/$preset-ref" ] || run_np 1 "$WORK/$preset-ref" "${args[@]}" --batch 8
  local out="$WORK/$preset-${flag#--}$val-np$np"
  run_np "$np" "$out" "${args[@]}" --batch 8 "$flag" "$val" "$@"
  compare_runs "$WORK/$preset-ref" "$out" "$label" 10
}

for preset in gpt2-tiny llama-tiny; do
  check "$preset" 2 --tp 2
  check "$preset" 4 --tp 2
  # several micro-batches in flight, so 1F1B really interleaves
  if has_flag --micro-batch; then mb=(--micro-batch 2); else mb=(); fi
  check "$preset" 2 --pp 2 "${mb[@]}"
  check "$preset" 4 --pp 2 "${mb[@]}"
done
check moe-tiny 2 --ep 2
