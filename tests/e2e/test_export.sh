#!/usr/bin/env bash
# Export: a model trained by `jarip train`, exported to GGUF and reloaded by
# the inference engine, gives the same greedy text as the checkpoint.
source "$(dirname "$0")/lib.sh"
make_corpus 3000 > "$WORK/corpus.txt"
declare -A qtype=([gpt2-tiny]=f16 [llama-tiny]=q8_0 [moe-tiny]=q4_0)
for preset in gpt2-tiny llama-tiny moe-tiny; do
  "$JARIP" train --preset $preset --data "$WORK/corpus.txt" --out "$WORK/$preset" --steps 15 --batch 4 --seq 64 \
    --lr 3e-3 --eval-every 0 --eval-batches 1 --threads 2 --quiet
  "$JARIP" export --ckpt "$WORK/$preset" --out "$WORK/$preset.gguf" 2> /dev/null
  from_ckpt=$("$JARIP" sample --ckpt "$WORK/$preset" --prompt "The king" -n 40 --temperature 0)
  from_gguf=$("$JARIP" generate --model "$WORK/$preset.gguf" --prompt "The king" -n 40 --temperature 0)
  [ "$from_ckpt" = "The king$from_gguf" ] || fail "$preset: checkpoint '$from_ckpt' vs GGUF 'The king$from_gguf'"
  "$JARIP" info --model "$WORK/$preset.gguf" | grep -q "^parameters: $("$JARIP" info --ckpt "$WORK/$preset" | sed -n 's/^parameters: //p')$" \
    || fail "$preset: GGUF parameter count differs from the checkpoint's"
  t=${qtype[$preset]}
  "$JARIP" export --ckpt "$WORK/$preset" --out "$WORK/$preset.$t.gguf" --type $t 2> /dev/null
  out=$("$JARIP" generate --model "$WORK/$preset.$t.gguf" --prompt "The king" -n 20 --temperature 0) || fail "$preset $t: generate failed"
  [ -n "$out" ] || fail "$preset $t: no text"
  pass "$preset: export f32 == checkpoint greedy ('$from_gguf'); $t loads and generates"
done
# The whole path with a trained tokenizer: BPE -> shards -> train -> sample
# -> export (tokenizer inside the GGUF) -> generate.
"$JARIP" tokenizer train --vocab-size 400 --input "$WORK/corpus.txt" --out "$WORK/tok.json" 2> /dev/null
"$JARIP" data prepare --tokenizer "$WORK/tok.json" --input "$WORK/corpus.txt" --out "$WORK/shards" --format lines \
  --val-fraction 0.1 > /dev/null 2>&1
echo '{"arch": "llama", "vocab_size": 512, "context_length": 128, "n_layer": 2, "d_model": 64, "n_head": 4, "n_kv_head": 2}' > "$WORK/bpe.json"
"$JARIP" train --config "$WORK/bpe.json" --data "$WORK/shards" --tokenizer "$WORK/tok.json" --out "$WORK/bpe" --steps 40 \
  --batch 8 --seq 32 --lr 3e-3 --eval-every 0 --eval-batches 1 --threads 2 --quiet
[ -s "$WORK/bpe/tokenizer.json" ] || fail "train --tokenizer did not keep the tokenizer"
from_ckpt=$("$JARIP" sample --ckpt "$WORK/bpe" --prompt "The dog" -n 30 --temperature 0)
"$JARIP" export --ckpt "$WORK/bpe" --out "$WORK/bpe.gguf" 2> /dev/null
from_gguf=$("$JARIP" generate --model "$WORK/bpe.gguf" --prompt "The dog" -n 30 --temperature 0)
[ "$from_ckpt" = "The dog$from_gguf" ] || fail "BPE model: checkpoint '$from_ckpt' vs GGUF 'The dog$from_gguf'"
pass "BPE tokenizer -> shards -> train -> sample == export -> generate ('$from_gguf')"

set +e
"$JARIP" export --ckpt "$WORK/gpt2-tiny" --out "$WORK/x.gguf" --type q9_9 2> "$WORK/err"; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "unknown --type" "$WORK/err" || fail "bad --type not rejected"
[ ! -e "$WORK/x.gguf" ] || fail "a failed export left a file"
pass "bad input rejected"
