#!/usr/bin/env bash
# Training survives a NaN/Inf loss or gradient (injected with the
# JARIP_INJECT_NAN test hook): the step is skipped with a warning and the
# weights stay those of the last good step; K bad steps in a row stop the
# run with one error line naming the last good checkpoint, never a poisoned one.
source "$(dirname "$0")/lib.sh"
make_corpus 2000 > "$WORK/corpus.txt"
tiny_config "$WORK/cfg.json"
common=(--config "$WORK/cfg.json" --data "$WORK/corpus.txt" --batch 4 --seq 16 --eval-every 0 --eval-batches 1
  --threads 2 --quiet)

# 1. A NaN loss at step 3 and an Inf gradient at step 5: both skipped, the run finishes.
JARIP_INJECT_NAN=3,g5 "$JARIP" train "${common[@]}" --out "$WORK/a" --steps 8 --save-every 1 --keep 100 \
  2> "$WORK/err" || { cat "$WORK/err" >&2; fail "a run with two bad steps should finish"; }
grep -q "warning: step 3: loss is nan: step skipped" "$WORK/err" || fail "no warning for the NaN loss: $(cat "$WORK/err")"
grep -q "warning: step 5: gradient norm is inf: step skipped" "$WORK/err" || fail "no warning for the Inf gradient"
grep -q '"step": 3, "skipped": "loss is nan"' "$WORK/a/log.jsonl" || fail "log.jsonl does not record skipped step 3"
grep -q '"step": 5, "skipped": "gradient norm is inf"' "$WORK/a/log.jsonl" || fail "log.jsonl does not record skipped step 5"
[ "$(grep -c '"loss"' "$WORK/a/log.jsonl")" = 6 ] || fail "6 good steps should be logged with their loss"
# a skipped step changes nothing: weights and Adam moments equal the step before
cmp -s "$WORK/a/ckpt_00000002/model.bin" "$WORK/a/ckpt_00000003/model.bin" || fail "step 3 (NaN loss) changed the state"
cmp -s "$WORK/a/ckpt_00000004/model.bin" "$WORK/a/ckpt_00000005/model.bin" || fail "step 5 (Inf gradient) changed the state"
cmp -s "$WORK/a/ckpt_00000005/model.bin" "$WORK/a/ckpt_00000006/model.bin" && fail "step 6 (good) should change the state"
pass "a NaN loss and an Inf gradient are skipped with a warning; the run goes on"

# 2. Three bad steps in a row with --max-bad-steps 3: the run stops, naming
#    the last checkpoint, which loads and resumes.
set +e
JARIP_INJECT_NAN=5,6,g7 "$JARIP" train "${common[@]}" --out "$WORK/b" --steps 12 --save-every 2 --max-bad-steps 3 \
  2> "$WORK/err"
rc=$?
set -e
[ $rc -ne 0 ] && [ $rc -lt 128 ] || fail "three bad steps in a row should stop the run with an error (rc $rc)"
grep -v "warning:" "$WORK/err" > "$WORK/err1"
[ "$(wc -l < "$WORK/err1")" = 1 ] || fail "expected one error line: $(cat "$WORK/err1")"
grep -q "^jarip: 3 steps in a row (5-7) had a non-finite loss or gradient: stopped; the last good checkpoint is .*ckpt_00000006" \
  "$WORK/err1" || fail "error should name the steps and the last checkpoint: $(cat "$WORK/err1")"
[ "$(cat "$WORK/b/latest")" = ckpt_00000006 ] || fail "latest should stay ckpt_00000006"
ls "$WORK/b" | grep -q "ckpt_00000008" && fail "no checkpoint may be written past the stop"
cmp -s "$WORK/b/ckpt_00000004/model.bin" "$WORK/b/ckpt_00000006/model.bin" || fail "ckpt 6 should hold step 4's state (5, 6 skipped)"
"$JARIP" train --resume "$WORK/b" --quiet --threads 2 || fail "resume after the stop"
[ "$(cat "$WORK/b/latest")" = ckpt_00000012 ] || fail "the resumed run should finish"
"$JARIP" sample --ckpt "$WORK/b" --prompt "The" -n 8 --temperature 0 > /dev/null || fail "the checkpoint should load"
pass "$(sed 's/^jarip: //' "$WORK/err1" | cut -c1-80)...; resumes"

# 3. Bad steps from the very start: the error says no checkpoint was written.
set +e
JARIP_INJECT_NAN=1,2 "$JARIP" train "${common[@]}" --out "$WORK/c" --steps 6 --save-every 3 --max-bad-steps 2 2> "$WORK/err"
rc=$?
set -e
[ $rc -ne 0 ] && [ $rc -lt 128 ] || fail "bad steps from the start should stop the run (rc $rc)"
grep -v "warning:" "$WORK/err" | grep -q "^jarip: .*stopped before any checkpoint" || fail "$(cat "$WORK/err")"
[ -e "$WORK/c/latest" ] && fail "no checkpoint should exist"
pass "bad steps from the start: stopped before any checkpoint"
