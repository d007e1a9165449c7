#!/usr/bin/env bash
# Faults: killing one rank mid-run ends the whole job within 30 s with a
# non-zero exit and a message naming the lost rank (never a hang); the last
# checkpoint is intact and `jarip train --resume` continues exactly as an
# uninterrupted run would.
source "$(dirname "$0")/dist_lib.sh"
require_mpi
make_corpus 3000 > "$WORK/corpus.txt"
args=(--preset gpt2-tiny --data "$WORK/corpus.txt" --steps 400 --seq 32 --lr 1e-3 --save-every 2 --keep 2 --eval-every 0
  --eval-batches 0 --batch 8 --threads 1 --quiet)
run="$WORK/run"
steps_logged() { [ -f "$run/log.jsonl" ] && wc -l < "$run/log.jsonl" || echo 0; }

# Start the job in the background; mpirun forks the ranks as its children.
"${MPIRUN[@]}" -np 2 "$JARIP" train "${args[@]}" --out "$run" > "$WORK/job.txt" 2>&1 &
job=$!
trap 'kill $job 2> /dev/null || true; rm -rf "$WORK"' EXIT # never leave the job behind
t=0
while [ "$(steps_logged)" -lt 3 ]; do
  kill -0 $job 2> /dev/null || { cat "$WORK/job.txt" >&2; fail "the job ended before step 3"; }
  sleep 0.1
  t=$((t + 1))
  [ $t -lt 1200 ] || { kill $job; fail "no step 3 within 120 s"; }
done
# Rank 1: the child of mpirun whose environment says so.
victim=
for pid in $(pgrep -P $job); do
  if tr '\0' '\n' < /proc/$pid/environ 2> /dev/null | grep -qx OMPI_COMM_WORLD_RANK=1; then victim=$pid; fi
done
[ -n "$victim" ] || { kill $job; fail "cannot find rank 1 among mpirun's children"; }
at=$(steps_logged)
kill -9 "$victim"
t0=$(date +%s.%N)
ended=0
for _ in $(seq 300); do
  if ! kill -0 $job 2> /dev/null; then ended=1; break; fi
  sleep 0.1
done
if [ $ended = 0 ]; then
  kill -9 $job 2> /dev/null
  fail "the job still runs 30 s after rank 1 was killed (a hang)"
fi
set +e
wait $job
code=$?
set -e
secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
[ $code -ne 0 ] || fail "the job exited 0 after losing rank 1"
grep -Eiq 'rank 1([^0-9]|$)' "$WORK/job.txt" || { cat "$WORK/job.txt" >&2; fail "no message names the lost rank 1"; }
pass "rank 1 killed at step ~$at: job ended in ${secs}s, exit $code, message: $(grep -Ei -m1 'rank 1([^0-9]|$)' "$WORK/job.txt" | sed 's/^ *//')"

# The checkpoint `latest` names is complete (resume verifies its CRC-32) ...
ck=$(cat "$run/latest")
k=$((10#${ck#ckpt_}))
[ $k -ge 2 ] && [ $((k % 2)) = 0 ] || fail "latest checkpoint is $ck"
# ... and resuming continues: 4 more steps under the same layout give the
# losses of an uninterrupted run to step k+4, bit for bit.
timeout "$RUN_TIMEOUT" "${MPIRUN[@]}" -np 2 "$JARIP" train --resume "$run" --stop-after 4 --threads 1 --quiet > "$WORK/resume.txt" 2>&1 \
  || { cat "$WORK/resume.txt" >&2; fail "resume from $ck failed"; }
[ "$(cat "$run/latest")" = "$(printf 'ckpt_%08d' $((k + 4)))" ] || fail "resume did not reach step $((k + 4))"
run_np 2 "$WORK/straight" "${args[@]}" --stop-after $((k + 4))
strip() { sed 's/"tokens_per_s": [0-9.]*, "mfu": [0-9.]*//' "$1"; }
diff <(strip "$WORK/straight/log.jsonl") <(strip "$run/log.jsonl") > /dev/null || fail "resumed log differs from an uninterrupted run"
cmp -s "$(last_model "$WORK/straight")" "$(last_model "$run")" || fail "resumed weights differ from an uninterrupted run"
pass "checkpoint $ck intact; resume continues to step $((k + 4)) exactly as an uninterrupted run"
