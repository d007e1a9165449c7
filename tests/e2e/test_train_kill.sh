#!/usr/bin/env bash
# kill -9 campaign: a training run killed at random moments (checkpoint
# writes slowed by the JARIP_TEST_CKPT_SLEEP_MS hook, so many kills land
# inside one), each time resumed with `jarip train --resume`. After every
# kill: `latest` names a complete checkpoint that loads, and at most one
# --save-every interval of steps is lost. At the end the weights (and the
# loss log) equal an uninterrupted run's bit for bit.
# JARIP_KILLS=N sets the number of kills (default 10 here; 50 for the full
# campaign: JARIP_KILLS=50 bash tests/e2e/test_train_kill.sh build/jarip).
source "$(dirname "$0")/lib.sh"
KILLS=${JARIP_KILLS:-10}
SAVE=5
STEPS=$((KILLS * 12))
make_corpus 2000 > "$WORK/corpus.txt"
tiny_config "$WORK/cfg.json"
common=(--data "$WORK/corpus.txt" --steps $STEPS --batch 4 --seq 16 --eval-every 25 --eval-batches 1 --save-every $SAVE
  --keep 2 --threads 1 --quiet)
"$JARIP" train --config "$WORK/cfg.json" --out "$WORK/ref" "${common[@]}"
ref_final=$(printf 'ckpt_%08d' $STEPS)
[ "$(cat "$WORK/ref/latest")" = "$ref_final" ] || fail "the reference run did not finish"

run="$WORK/run"
step_of() { sed -n 's/^ckpt_0*\([0-9][0-9]*\)$/\1/p' "$1/latest" 2>/dev/null || true; }
logged_max() { grep -o '"step": [0-9]*' "$1/log.jsonl" 2>/dev/null | awk '{ if ($2 > m) m = $2 } END { print m + 0 }'; }
export JARIP_TEST_CKPT_SLEEP_MS=${JARIP_TEST_CKPT_SLEEP_MS:-25}
RANDOM=42
kills=0 inside=0 finished=0 max_lost=0
while [ $kills -lt $KILLS ]; do
  if [ -f "$run/latest" ]; then
    "$JARIP" train --resume "$run" --quiet --threads 1 & pid=$!
  else
    "$JARIP" train --config "$WORK/cfg.json" --out "$run" "${common[@]}" & pid=$!
  fi
  # a random moment: 20..420 ms after the start (the whole run takes seconds)
  sleep "0.$(printf '%03d' $((20 + RANDOM % 400)))"
  if ! kill -9 $pid 2>/dev/null; then
    wait $pid || fail "the run failed on its own"
    finished=1
    break
  fi
  wait $pid 2>/dev/null || true
  kills=$((kills + 1))
  # killed inside a checkpoint write: its temporary directory or file is there
  if ls "$run" | grep -q -e '\.tmp$' -e '\.tmp\.'; then inside=$((inside + 1)); fi
  [ -f "$run/latest" ] || continue # killed before the first checkpoint: start again
  s=$(step_of "$run")
  [ -n "$s" ] || fail "kill $kills: latest is malformed: $(cat "$run/latest")"
  "$JARIP" sample --ckpt "$run" --prompt "The" -n 1 --temperature 0 > /dev/null 2> "$WORK/err" \
    || fail "kill $kills: the latest checkpoint (step $s) does not load: $(cat "$WORK/err")"
  lost=$(( $(logged_max "$run") - s ))
  [ $lost -le $SAVE ] || fail "kill $kills: $lost steps lost (more than one --save-every interval of $SAVE)"
  [ $lost -gt $max_lost ] && max_lost=$lost
done
# finish the run
# (on a loaded machine every kill may have come before the first checkpoint:
# then there is nothing to resume and the run starts again)
if [ $finished != 1 ]; then
  if [ -f "$run/latest" ]; then "$JARIP" train --resume "$run" --quiet --threads 1
  else "$JARIP" train --config "$WORK/cfg.json" --out "$run" "${common[@]}"; fi
fi
[ "$(cat "$run/latest")" = "$ref_final" ] || fail "the resumed run did not finish: $(cat "$run/latest")"
cmp "$WORK/ref/$ref_final/model.bin" "$run/$ref_final/model.bin" || fail "final weights differ from the uninterrupted run"
strip() { sed 's/"tokens_per_s": [0-9.]*, "mfu": [0-9.]*//' "$1"; }
diff <(strip "$WORK/ref/log.jsonl") <(strip "$run/log.jsonl") > /dev/null || fail "the loss log differs from the uninterrupted run"
ls "$run" | grep -e '\.tmp$' -e '\.tmp\.' && fail "temporary files left behind"
pass "$kills kills ($inside inside a checkpoint write), at most $max_lost steps lost each (--save-every $SAVE), final weights and log bit-identical to an uninterrupted run"
