#!/usr/bin/env bash
# jarip finetune on a tiny llama made here (train -> export GGUF): LoRA on a
# q8_0 base and --full on an f32 one, log/plot/checkpoints, exact resume,
# the adapter (llama.cpp's format) applied at run time equals the merged
# export's greedy text, and bad input gives one line and writes nothing.
source "$(dirname "$0")/lib.sh"
make_corpus 2000 > "$WORK/corpus.txt"
"$JARIP" train --preset llama-tiny --data "$WORK/corpus.txt" --out "$WORK/pre" --steps 30 --batch 8 --seq 64 --lr 3e-3 \
  --eval-every 0 --eval-batches 1 --threads 2 --quiet
"$JARIP" export --ckpt "$WORK/pre" --out "$WORK/base.gguf" 2> /dev/null
"$JARIP" export --ckpt "$WORK/pre" --out "$WORK/base.q8.gguf" --type q8_0 2> /dev/null
# a few made-up chat facts
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
  printf '{"messages": [{"role": "user", "content": "What does the fox %s?"}, {"role": "assistant", "content": "The fox likes %s."}]}\n' $i $((i * 7))
done > "$WORK/chat.jsonl"
FT=(--data "$WORK/chat.jsonl" --batch 4 --seq 80 --lora-rank 4 --lr 1e-2 --eval-every 3 --eval-batches 1 --save-every 3
    --threads 2 --quiet)

# LoRA on the quantized base: the run directory of jarip train
"$JARIP" finetune --model "$WORK/base.q8.gguf" --out "$WORK/lora" --steps 6 "${FT[@]}"
[ "$(wc -l < "$WORK/lora/log.jsonl")" -eq 6 ] || fail "log.jsonl should have 6 steps"
grep -q val_loss "$WORK/lora/log.jsonl" || fail "no validation loss in log.jsonl"
[ -s "$WORK/lora/loss.svg" ] && [ -s "$WORK/lora/finetune.json" ] && [ -d "$WORK/lora/ckpt_00000006" ] || fail "run files missing"
grep -q '"lora_rank": 4' "$WORK/lora/ckpt_00000006/config.json" || fail "checkpoint config lacks the LoRA rank"
first=$(head -1 "$WORK/lora/log.jsonl" | sed 's/.*"loss": \([0-9.e+-]*\).*/\1/')
last=$(tail -1 "$WORK/lora/log.jsonl" | sed 's/.*"loss": \([0-9.e+-]*\).*/\1/')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' || fail "loss did not fall ($first -> $last)"
pass "LoRA on a q8_0 base: 6 steps, loss $first -> $last, log, plot, checkpoints"

# exact resume: 3 + 3 steps give the 6 straight steps' losses and adapter
"$JARIP" finetune --model "$WORK/base.q8.gguf" --out "$WORK/lora2" --steps 6 --stop-after 3 "${FT[@]}"
"$JARIP" finetune --resume "$WORK/lora2" --threads 2 --quiet
cut -d, -f1-2 "$WORK/lora/log.jsonl" > "$WORK/a"
cut -d, -f1-2 "$WORK/lora2/log.jsonl" > "$WORK/b"
cmp -s "$WORK/a" "$WORK/b" || { paste "$WORK/a" "$WORK/b" >&2; fail "resumed run's losses differ"; }
"$JARIP" export --ckpt "$WORK/lora" --lora-out "$WORK/a.gguf" 2> /dev/null
"$JARIP" export --ckpt "$WORK/lora2" --lora-out "$WORK/b.gguf" 2> /dev/null
cmp -s "$WORK/a.gguf" "$WORK/b.gguf" || fail "resumed run's adapter differs"
pass "3 steps + resume + 3 steps == 6 steps (losses and adapter, bit for bit)"

# LoRA dropout: 0 is the path without dropout; above 0 the masks change the
# run from step 2 (B is zero at step 1) and come from the run's seed and step,
# so a resumed run draws the masks the uninterrupted one drew
"$JARIP" finetune --model "$WORK/base.q8.gguf" --out "$WORK/drop0" --steps 6 --lora-dropout 0 "${FT[@]}"
cut -d, -f1-2 "$WORK/drop0/log.jsonl" > "$WORK/c"
cmp -s "$WORK/a" "$WORK/c" || { paste "$WORK/a" "$WORK/c" >&2; fail "--lora-dropout 0 changed the run"; }
"$JARIP" finetune --model "$WORK/base.q8.gguf" --out "$WORK/drop" --steps 6 --lora-dropout 0.3 "${FT[@]}"
grep -q '"lora_dropout": 0.3' "$WORK/drop/ckpt_00000006/config.json" || fail "checkpoint config lacks the dropout"
cut -d, -f1-2 "$WORK/drop/log.jsonl" > "$WORK/d"
[ "$(head -1 "$WORK/a")" = "$(head -1 "$WORK/d")" ] || fail "dropout changed step 1, where B is zero"
[ "$(sed -n 2p "$WORK/a")" != "$(sed -n 2p "$WORK/d")" ] || fail "--lora-dropout 0.3 changed nothing"
"$JARIP" finetune --model "$WORK/base.q8.gguf" --out "$WORK/drop2" --steps 6 --stop-after 3 --lora-dropout 0.3 "${FT[@]}"
expect_error "--lora-dropout" -- "$JARIP" finetune --resume "$WORK/drop2" --lora-dropout 0.1
"$JARIP" finetune --resume "$WORK/drop2" --threads 2 --quiet
cut -d, -f1-2 "$WORK/drop2/log.jsonl" > "$WORK/e"
cmp -s "$WORK/d" "$WORK/e" || { paste "$WORK/d" "$WORK/e" >&2; fail "resumed dropout run's losses differ"; }
pass "--lora-dropout: 0 == no dropout; 0.3 changes the run; 3 + resume + 3 steps == 6 steps"

# the adapter at run time == merged into the base (f32 base: same arithmetic up to rounding)
"$JARIP" finetune --model "$WORK/base.gguf" --out "$WORK/lora32" --steps 6 "${FT[@]}"
"$JARIP" export --ckpt "$WORK/lora32" --lora-out "$WORK/ad.gguf" --out "$WORK/merged.gguf" 2> /dev/null
"$JARIP" info --model "$WORK/ad.gguf" > "$WORK/info"
grep -q 'general.type.*"adapter"' "$WORK/info" && grep -q 'adapter.lora.alpha' "$WORK/info" || fail "adapter lacks its keys"
P='<|im_start|>user
What does the fox 3?<|im_end|>
<|im_start|>assistant
'
with_lora=$("$JARIP" generate --model "$WORK/base.gguf" --lora "$WORK/ad.gguf" --prompt "$P" -n 24 --temperature 0)
merged=$("$JARIP" generate --model "$WORK/merged.gguf" --prompt "$P" -n 24 --temperature 0)
plain=$("$JARIP" generate --model "$WORK/base.gguf" --prompt "$P" -n 24 --temperature 0)
[ "$with_lora" = "$merged" ] || fail "base + --lora '$with_lora' vs merged '$merged'"
[ "$with_lora" != "$plain" ] || fail "the adapter changed nothing ('$plain')"
pass "base + --lora == merged export ('$with_lora'; base alone: '$plain')"
# eval with the adapter at run time == eval of the merged export
EV=(--text "$WORK/corpus.txt" --ctx 64 --chunks 4 --threads 2 --json)
"$JARIP" eval perplexity --model "$WORK/base.gguf" --lora "$WORK/ad.gguf" "${EV[@]}" > "$WORK/pl.json"
"$JARIP" eval perplexity --model "$WORK/merged.gguf" "${EV[@]}" > "$WORK/pm.json"
"$JARIP" eval perplexity --model "$WORK/base.gguf" "${EV[@]}" > "$WORK/pb.json"
python3 - "$WORK" <<'PY' || fail "eval --lora differs from the merged export"
import json, sys
l, m, b = (json.load(open("%s/p%s.json" % (sys.argv[1], k)))["ppl"] for k in "lmb")
print("perplexity: base + --lora %.6f, merged %.6f, base %.6f" % (l, m, b))
assert abs(l / m - 1) < 1e-4 and abs(l / b - 1) > 1e-3
PY
expect_error "applies to a --model" -- "$JARIP" eval perplexity --ckpt "$WORK/pre" --lora "$WORK/ad.gguf" "${EV[@]}"
expect_error "not a LoRA adapter" -- "$JARIP" eval perplexity --model "$WORK/base.gguf" --lora "$WORK/base.gguf" "${EV[@]}"
pass "eval perplexity --lora == the merged export's; bad --lora refused"

# full fine-tuning: every weight trains, in float32
"$JARIP" finetune --model "$WORK/base.q8.gguf" --full --out "$WORK/full" --steps 3 "${FT[@]/--lora-rank/--seed}"
grep -q '"mode": "full"' "$WORK/full/finetune.json" || fail "full run not recorded as full"
"$JARIP" export --ckpt "$WORK/full" --out "$WORK/full.gguf" --type q8_0 2> /dev/null
"$JARIP" generate --model "$WORK/full.gguf" --prompt "$P" -n 8 --temperature 0 > /dev/null || fail "full export does not run"
pass "--full: 3 steps, exported as q8_0 and generated"

# a jarip train run as the base (byte-level: no tokenizer.json)
"$JARIP" finetune --ckpt "$WORK/pre" --out "$WORK/ckl" --steps 2 "${FT[@]}"
"$JARIP" export --ckpt "$WORK/ckl" --out "$WORK/ckl.gguf" --lora-out "$WORK/ckl.lora.gguf" 2> /dev/null
a=$("$JARIP" generate --model "$WORK/ckl.gguf" --prompt "$P" -n 12 --temperature 0)
b=$("$JARIP" generate --model "$WORK/base.gguf" --lora "$WORK/ckl.lora.gguf" --prompt "$P" -n 12 --temperature 0)
[ "$a" = "$b" ] || fail "checkpoint base: merged '$a' vs base + --lora '$b'"
pass "a jarip train checkpoint as the base: merged == exported base + --lora ('$a')"

# bad input: one line, non-zero exit, nothing written
bad() { # bad NAME JSONL EXPECTED
  printf '%s\n' "$2" > "$WORK/$1.jsonl"
  expect_error "$3" -- "$JARIP" finetune --model "$WORK/base.q8.gguf" --data "$WORK/$1.jsonl" --out "$WORK/bad_$1" --steps 1
  [ ! -e "$WORK/bad_$1/data.sft" ] && [ ! -e "$WORK/bad_$1/finetune.json" ] || fail "$1: files written"
}
bad json "$(head -2 "$WORK/chat.jsonl")
{\"messages\": [oops" "json.jsonl:3"
bad role '{"messages": [{"content": "hi"}, {"role": "assistant", "content": "x"}]}' 'role'
bad content '{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]}' 'content'
bad noasst '{"messages": [{"role": "user", "content": "hi"}]}' 'no assistant turn'
expect_error "must be > 0" -- "$JARIP" finetune --model "$WORK/base.q8.gguf" --data "$WORK/chat.jsonl" --out "$WORK/r0" --lora-rank 0
expect_error "lora_rank 1000 exceeds" -- "$JARIP" finetune --model "$WORK/base.q8.gguf" --data "$WORK/chat.jsonl" --out "$WORK/r1" --lora-rank 1000
expect_error "finetune --resume" -- "$JARIP" train --resume "$WORK/lora"
expect_error "LoRA fine-tuning run" -- "$JARIP" sample --ckpt "$WORK/lora" --prompt x
expect_error "0.999" -- "$JARIP" finetune --model "$WORK/base.q8.gguf" --data "$WORK/chat.jsonl" --out "$WORK/r3" --lora-dropout 1
expect_error "lora-dropout" -- "$JARIP" finetune --model "$WORK/base.q8.gguf" --data "$WORK/chat.jsonl" --out "$WORK/r4" --full --lora-dropout 0.1
expect_error "not one of" -- "$JARIP" finetune --model "$WORK/base.q8.gguf" --data "$WORK/chat.jsonl" --out "$WORK/r2" --lora-targets q,x
# an adapter made for another base (other shapes)
echo '{"arch": "llama", "vocab_size": 256, "context_length": 128, "n_layer": 4, "d_model": 64, "n_head": 4, "n_kv_head": 2}' > "$WORK/other.json"
"$JARIP" train --config "$WORK/other.json" --data "$WORK/corpus.txt" --out "$WORK/other" --steps 2 --batch 2 --seq 32 \
  --eval-batches 0 --threads 2 --quiet
"$JARIP" export --ckpt "$WORK/other" --out "$WORK/other.gguf" 2> /dev/null
"$JARIP" finetune --model "$WORK/other.gguf" --out "$WORK/olora" --steps 1 "${FT[@]}"
"$JARIP" export --ckpt "$WORK/olora" --lora-out "$WORK/other_ad.gguf" 2> /dev/null
expect_error "another base" -- "$JARIP" generate --model "$WORK/base.gguf" --lora "$WORK/other_ad.gguf" --prompt hi -n 2
expect_error "not a LoRA adapter" -- "$JARIP" generate --model "$WORK/base.gguf" --lora "$WORK/base.gguf" --prompt hi -n 2
