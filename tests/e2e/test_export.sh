#!/usr/bin/env bash
# Export: a model trained by `jarip train`, exported to GGUF and reloaded by
# the inference engine, gives the same greedy text as the checkpoint.
source "$(dirname "$0")/lib.sh"
make_corpus 3000 > "$WORK/corpus.txt"
for preset in gpt2-tiny llama-tiny moe-tiny; do
  "$JARIP" train --preset $preset --data "$WORK/corpus.txt" --out "$WORK/$preset" --steps 25 --batch 8 --seq 64 \
    --lr 3e-3 --eval-every 0 --eval-batches 1 --threads 2 --quiet
  "$JARIP" export --ckpt "$WORK/$preset" --out "$WORK/$preset.gguf" 2> /dev/null
  from_ckpt=$("$JARIP" sample --ckpt "$WORK/$preset" --prompt "The king" -n 40 --temperature 0)
  from_gguf=$("$JARIP" generate --model "$WORK/$preset.gguf" --prompt "The king" -n 40 --temperature 0)
  [ "$from_ckpt" = "The king$from_gguf" ] || fail "$preset: checkpoint '$from_ckpt' vs GGUF 'The king$from_gguf'"
  "$JARIP" info --model "$WORK/$preset.gguf" | grep -q "^parameters: $("$JARIP" info --ckpt "$WORK/$preset" | sed -n 's/^parameters: //p')$" \
    || fail "$preset: GGUF parameter count differs from the checkpoint's"
  for t in f16 q8_0 q4_0; do
    "$JARIP" export --ckpt "$WORK/$preset" --out "$WORK/$preset.$t.gguf" --type $t 2> /dev/null
    out=$("$JARIP" generate --model "$WORK/$preset.$t.gguf" --prompt "The king" -n 20 --temperature 0) || fail "$preset $t: generate failed"
    [ -n "$out" ] || fail "$preset $t: no text"
  done
  pass "$preset: export f32 == checkpoint greedy ('$from_gguf'); f16, q8_0, q4_0 load and generate"
done
set +e
"$JARIP" export --ckpt "$WORK/gpt2-tiny" --out "$WORK/x.gguf" --type q9_9 2> "$WORK/err"; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "unknown --type" "$WORK/err" || fail "bad --type not rejected"
[ ! -e "$WORK/x.gguf" ] || fail "a failed export left a file"
pass "bad input rejected"
