#!/usr/bin/env bash
# Training end to end: it learns, it resumes exactly, it samples.
source "$(dirname "$0")/lib.sh"
make_corpus 6000 > "$WORK/corpus.txt"

# 1. It learns: validation loss (nats per byte) falls below 1.2 within 150
#    steps of gpt2-tiny (uniform guessing is ln 256 = 5.55; the grammar's
#    entropy is well under 1).
"$JARIP" train --preset gpt2-tiny --data "$WORK/corpus.txt" --out "$WORK/learn" --steps 150 --batch 8 --seq 64 \
  --lr 3e-3 --eval-every 50 --eval-batches 4 --threads 2 --quiet
val=$(grep val_loss "$WORK/learn/log.jsonl" | tail -1 | sed 's/.*"val_loss": \([0-9.e+-]*\).*/\1/')
first=$(head -1 "$WORK/learn/log.jsonl" | sed 's/.*"loss": \([0-9.e+-]*\),.*/\1/')
awk -v v="$val" -v f="$first" 'BEGIN { exit !(v < 1.2 && f > 5.0) }' || fail "did not learn: first loss $first, final val_loss $val"
pass "learns: first loss $first -> val_loss $val"
for key in step loss lr grad_norm tokens_per_s; do
  grep -q "\"$key\"" "$WORK/learn/log.jsonl" || fail "log.jsonl lacks $key"
done
[ "$(wc -l < "$WORK/learn/log.jsonl")" = 150 ] || fail "log.jsonl should have 150 lines"
grep -q "<svg" "$WORK/learn/loss.svg" || fail "no loss plot"
pass "log.jsonl and loss.svg"

# 2. Resume is exact: 40 straight == 20 + resume + 20 (same threads).
for llama in gpt2-tiny llama-tiny moe-tiny; do
  common=(--data "$WORK/corpus.txt" --steps 40 --batch 4 --seq 32 --eval-every 10 --eval-batches 2 --save-every 0 --threads 2 --quiet)
  "$JARIP" train --preset $llama --out "$WORK/a_$llama" "${common[@]}"
  "$JARIP" train --preset $llama --out "$WORK/b_$llama" "${common[@]}" --stop-after 20
  [ "$(cat "$WORK/b_$llama/latest")" = ckpt_00000020 ] || fail "stop-after did not checkpoint step 20"
  "$JARIP" train --resume "$WORK/b_$llama" --quiet
  strip() { sed 's/"tokens_per_s": [0-9.]*, "mfu": [0-9.]*//' "$1"; }
  diff <(strip "$WORK/a_$llama/log.jsonl") <(strip "$WORK/b_$llama/log.jsonl") > /dev/null || fail "$llama: resumed log differs"
  cmp "$WORK/a_$llama/ckpt_00000040/model.bin" "$WORK/b_$llama/ckpt_00000040/model.bin" || fail "$llama: resumed weights differ"
  pass "$llama: 40 steps == 20 + resume + 20 (losses and weights bit-identical)"
done

# 3. Sampling: prompt echoed, greedy is deterministic, seeds reproduce.
out1=$("$JARIP" sample --ckpt "$WORK/learn" --prompt "The king" -n 40 --temperature 0)
out2=$("$JARIP" sample --ckpt "$WORK/learn" --prompt "The king" -n 40 --temperature 0)
[ "$out1" = "$out2" ] || fail "greedy sampling is not deterministic"
case "$out1" in "The king"*) ;; *) fail "sample does not start with the prompt: $out1" ;; esac
s1=$("$JARIP" sample --ckpt "$WORK/learn" --prompt "A" -n 40 --seed 3 --top-k 5 --top-p 0.9)
s2=$("$JARIP" sample --ckpt "$WORK/learn" --prompt "A" -n 40 --seed 3 --top-k 5 --top-p 0.9)
[ "$s1" = "$s2" ] || fail "seeded sampling is not reproducible"
pass "sample: $out1"

# 4. info reports the exact count of the trained model.
"$JARIP" info --ckpt "$WORK/learn" | grep -q "^parameters: $("$JARIP" info --preset gpt2-tiny | sed -n 's/^parameters: //p')$" \
  || fail "info --ckpt parameter count"
"$JARIP" info --preset gpt2-small | grep -qx "parameters: 124439808" || fail "gpt2-small parameter count"
"$JARIP" info --preset gpt2-xl | grep -qx "parameters: 1557611200" || fail "gpt2-xl parameter count"
"$JARIP" info --preset smollm2-135m | grep -qx "parameters: 134515008" || fail "smollm2-135m parameter count"
pass "info"

# 5. --dry-run: every rank's shapes without allocating, even for 405B.
"$JARIP" train --preset llama3-405b --dry-run --tp 8 --pp 9 > "$WORK/dry.txt"
grep -q "^rank 71 of 72" "$WORK/dry.txt" || fail "dry run of 405B"
"$JARIP" train --preset gpt2-tiny --dry-run --tp 2 > "$WORK/dry.txt"
grep -q "local shape" "$WORK/dry.txt" || fail "dry run prints shapes"
pass "train --dry-run"
