#!/usr/bin/env bash
# ZeRO really shards: under mpirun with dp=2,
# 1. each rank's training-state bytes (weights, gradients, Adam, ZeRO staging,
#    counted from the buffers allocated; OUT/memory.json) equal what
#    `jarip train --dry-run` prints for that rank, and fall with each stage;
# 2. peak resident memory falls from ZeRO 0 to ZeRO 3 by most of the saved
#    state (gpt2-mini: 10.9M parameters, 44 MB per buffer);
# 3. ZeRO 0-3 stay equal to one process with gradient accumulation and
#    micro-batches; ZeRO 2/3 also with pipeline (tied embeddings), tensor
#    and expert parallel; a ZeRO-3 run resumes at one process (and one
#    process at ZeRO 2).
source "$(dirname "$0")/dist_lib.sh"
require_mpi
make_corpus 3000 > "$WORK/corpus.txt"

# 1 + 2: state bytes against the dry run, RSS falling
mem=(--preset gpt2-mini --data "$WORK/corpus.txt" --steps 2 --batch 2 --seq 32 --eval-batches 0 --save-every 0)
for z in 0 1 2 3; do
  run_np 2 "$WORK/mem$z" "${mem[@]}" --zero "$z"
  OMPI_COMM_WORLD_SIZE=2 "$JARIP" train --dry-run --preset gpt2-mini --zero "$z" > "$WORK/dry$z.txt" || fail "dry run --zero $z"
done
"$PY" - "$WORK" << 'PY' || fail "ZeRO memory"
import json, re, sys
work = sys.argv[1]
state, rss = {}, {}
for z in range(4):
    m = json.load(open(f"{work}/mem{z}/memory.json"))
    dry = [int(x) for x in re.findall(r"bytes: weights \d+  grads \d+  optimizer \d+  total (\d+)", open(f"{work}/dry{z}.txt").read())]
    if m["zero"] != z or dry != m["state_bytes"]:
        sys.exit(f"zero {z}: allocated {m['state_bytes']} (stage {m['zero']}) but the dry run says {dry}")
    state[z], rss[z] = m["state_bytes"], m["peak_rss_mib"]
for z in range(1, 4):
    for r in range(2):
        if not state[z][r] < state[z - 1][r]:
            sys.exit(f"rank {r}: zero {z} holds {state[z][r]} bytes, not less than zero {z - 1}'s {state[z - 1][r]}")
for r in range(2):
    saved = (state[0][r] - state[3][r]) / 2**20
    dropped = rss[0][r] - rss[3][r]
    if dropped < 0.75 * saved:
        sys.exit(f"rank {r}: peak RSS {rss[0][r]:.0f} -> {rss[3][r]:.0f} MiB from zero 0 to 3, expected ~{saved:.0f} MiB less")
print("ok: state bytes equal the dry run's per rank; zero 0..3 state MiB rank 0:",
      [round(state[z][0] / 2**20, 1) for z in range(4)], "peak RSS MiB:", [[round(x) for x in rss[z]] for z in range(4)])
PY

# 3: equality in the harder schedules
args=(--data "$WORK/corpus.txt" --steps 10 --seq 32 --lr 1e-3 --save-every 0 --eval-every 5 --eval-batches 2 --batch 8)
run_np 1 "$WORK/gpt-ref-acc" --preset gpt2-tiny "${args[@]}" --accum 2
# (ZeRO 0/1 reduce each block after the step's last of its 4 backward passes)
for z in 0 1 2 3; do
  run_np 2 "$WORK/gpt-z$z-acc" --preset gpt2-tiny "${args[@]}" --accum 2 --micro-batch 2 --zero "$z"
  compare_runs "$WORK/gpt-ref-acc" "$WORK/gpt-z$z-acc" "gpt2-tiny dp=2 zero=$z accum=2 micro-batch 2" 10
done
# three ranks: chunks padded, rings of three
args6=(--data "$WORK/corpus.txt" --steps 10 --seq 32 --lr 1e-3 --save-every 0 --eval-every 5 --eval-batches 2 --batch 6)
run_np 1 "$WORK/gpt-ref6" --preset gpt2-tiny "${args6[@]}"
for z in 1 2; do # ZeRO 1 reduce-scatters unpadded buckets in place, padded ones through a copy
  run_np 3 "$WORK/gpt-z$z-dp3" --preset gpt2-tiny "${args6[@]}" --zero "$z"
  compare_runs "$WORK/gpt-ref6" "$WORK/gpt-z$z-dp3" "gpt2-tiny dp=3 zero=$z" 10
done
run_np 1 "$WORK/gpt-ref" --preset gpt2-tiny "${args[@]}"
run_np 4 "$WORK/gpt-pp-z3" --preset gpt2-tiny "${args[@]}" --pp 2 --micro-batch 2 --zero 3
compare_runs "$WORK/gpt-ref" "$WORK/gpt-pp-z3" "gpt2-tiny pp=2 x dp=2 zero=3 (tied embeddings)" 10
run_np 1 "$WORK/llama-ref" --preset llama-tiny "${args[@]}"
run_np 4 "$WORK/llama-tp-z3" --preset llama-tiny "${args[@]}" --tp 2 --zero 3
compare_runs "$WORK/llama-ref" "$WORK/llama-tp-z3" "llama-tiny tp=2 x dp=2 zero=3" 10

# experts: ZeRO shards expert tensors over the dp/ep ranks holding them
run_np 1 "$WORK/moe-ref" --preset moe-tiny "${args[@]}"
run_np 4 "$WORK/moe-ep-z3" --preset moe-tiny "${args[@]}" --ep 2 --zero 3
compare_runs "$WORK/moe-ref" "$WORK/moe-ep-z3" "moe-tiny ep=2 dp=4 zero=3" 10
run_np 2 "$WORK/moe-ep-z1" --preset moe-tiny "${args[@]}" --ep 2 --zero 1
compare_runs "$WORK/moe-ref" "$WORK/moe-ep-z1" "moe-tiny ep=2 dp=2 zero=1" 10
OMPI_COMM_WORLD_SIZE=4 "$JARIP" train --dry-run --preset moe-tiny --ep 2 --zero 3 > "$WORK/moe-dry.txt" || fail "dry run moe"
"$PY" - "$WORK/moe-ep-z3/memory.json" "$WORK/moe-dry.txt" << 'PY' || fail "moe ep=2 zero=3: allocated bytes differ from the dry run"
import json, re, sys
m = json.load(open(sys.argv[1]))
dry = [int(x) for x in re.findall(r"bytes: weights \d+  grads \d+  optimizer \d+  total (\d+)", open(sys.argv[2]).read())]
sys.exit(0 if dry == m["state_bytes"] else f"allocated {m['state_bytes']}, dry run {dry}")
PY
pass "moe-tiny ep=2 dp=4 zero=3: state bytes equal the dry run's"

# resume across layouts with sharded state
long=(--data "$WORK/corpus.txt" --steps 20 --seq 32 --lr 1e-3 --save-every 0 --eval-every 5 --eval-batches 2 --batch 8)
run_np 1 "$WORK/ref20" --preset llama-tiny "${long[@]}"
run_np 2 "$WORK/z3-to-1" --preset llama-tiny "${long[@]}" --zero 3 --stop-after 10
run_np 1 "$WORK/z3-to-1" --resume "$WORK/z3-to-1"
compare_runs "$WORK/ref20" "$WORK/z3-to-1" "llama-tiny 10 steps at dp=2 zero=3, 10 more at 1 process" 20
run_np 1 "$WORK/1-to-z2" --preset llama-tiny "${long[@]}" --stop-after 10
run_np 2 "$WORK/1-to-z2" --resume "$WORK/1-to-z2" --zero 2
compare_runs "$WORK/ref20" "$WORK/1-to-z2" "llama-tiny 10 steps at 1 process, 10 more at dp=2 zero=2" 20
