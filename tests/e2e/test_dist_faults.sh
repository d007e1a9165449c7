#!/usr/bin/env bash
# Faults: killing one rank mid-run ends the whole job within 30 s with a
# non-zero exit and a message naming the lost rank (never a hang); the last
# checkpoint is intact and `jarip train --resume` continues exactly as an
# uninterrupted run would. Then rank 0 is killed inside a checkpoint write
# (held there by the JARIP_TEST_CKPT_SLEEP_MS hook): the job ends naming it,
# `latest` still names the previous, complete checkpoint, and a resume under
# another layout (one process) continues as an uninterrupted run would.
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
# kill_rank R: kill -9 rank R of the job (the child of mpirun whose
# environment says so); the job must end within 30 s, non-zero, with a
# message naming rank R in $WORK/job.txt. Sets secs and code.
kill_rank() {
  local r=$1 victim= pid
  for pid in $(pgrep -P $job); do
    if tr '\0' '\n' < /proc/$pid/environ 2> /dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$r"; then victim=$pid; fi
  done
  [ -n "$victim" ] || { kill $job; fail "cannot find rank $r among mpirun's children"; }
  kill -9 "$victim"
  local t0 ended=0
  t0=$(date +%s.%N)
  for _ in $(seq 300); do
    if ! kill -0 $job 2> /dev/null; then ended=1; break; fi
    sleep 0.1
  done
  if [ $ended = 0 ]; then
    kill -9 $job 2> /dev/null
    fail "the job still runs 30 s after rank $r was killed (a hang)"
  fi
  set +e
  wait $job
  code=$?
  set -e
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  [ $code -ne 0 ] || fail "the job exited 0 after losing rank $r"
  grep -Eiq "rank $r([^0-9]|\$)" "$WORK/job.txt" || { cat "$WORK/job.txt" >&2; fail "no message names the lost rank $r"; }
}
at=$(steps_logged)
kill_rank 1
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

# 2. Rank 0 (the writer) killed inside a checkpoint write: not the first
#    checkpoint, so a complete one exists before it.
run="$WORK/run2"
"${MPIRUN[@]}" -np 2 -x JARIP_TEST_CKPT_SLEEP_MS=1000 "$JARIP" train "${args[@]}" --out "$run" > "$WORK/job.txt" 2>&1 &
job=$!
t=0
until [ -f "$run/latest" ] && ls "$run" | grep -q '^ckpt_.*\.tmp$'; do
  kill -0 $job 2> /dev/null || { cat "$WORK/job.txt" >&2; fail "the job ended before its second checkpoint"; }
  sleep 0.05
  t=$((t + 1))
  [ $t -lt 2400 ] || { kill $job; fail "no second checkpoint write within 120 s"; }
done
writing=$(ls "$run" | grep '^ckpt_.*\.tmp$')
kill_rank 0
ck=$(cat "$run/latest")
k=$((10#${ck#ckpt_}))
[ "$ck.tmp" != "$writing" ] || fail "latest names the checkpoint that was being written"
pass "rank 0 killed while writing $writing: job ended in ${secs}s, exit $code; latest is still $ck"
# Resume under another layout (one process): the losses and weights of one
# uninterrupted process to step k+4 (up to the float order of the reductions).
run_np 1 "$WORK/straight1" "${args[@]}" --stop-after $((k + 4))
timeout "$RUN_TIMEOUT" "$JARIP" train --resume "$run" --stop-after 4 --threads 1 --quiet > "$WORK/resume.txt" 2>&1 \
  || { cat "$WORK/resume.txt" >&2; fail "resume from $ck as one process failed"; }
ls "$run" | grep -q '\.tmp' && fail "the killed write's temporary files are still there after the resume"
compare_runs "$WORK/straight1" "$run" "resume of $ck (written by 2 ranks) as one process"
pass "resume of $ck under another layout (1 process) continues to step $((k + 4)) as an uninterrupted run"
