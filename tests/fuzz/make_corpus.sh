#!/usr/bin/env bash
# Seed corpora for the libFuzzer targets, made from real files:
#   gguf            tiny models exported by `jarip export` (f32, f16, q8_0, with
#                   a tokenizer) and the first 16 KiB of SmolLM2's GGUF (real keys)
#   tokenizer_load  tokenizer.json trained by jarip, gpt2_hf.json (fixture), the
#                   first lines of a tiktoken rank file, a GGUF with a tokenizer
#   config          config.json of every preset and of a trained checkpoint
#   checkpoint      a real checkpoint: config.json, state.json, model.bin, latest
#   shard           train and val shards from `jarip data prepare`
# then minimized (libFuzzer -merge=1: only inputs that add coverage stay).
# usage: tests/fuzz/make_corpus.sh BUILD_DIR(release, has jarip) FUZZ_BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
JARIP=$(realpath "${1:-build}")/jarip
FUZZ=$(realpath "${2:-build-fuzz}")
OUT=tests/fuzz/corpus
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
SEP=$'\n--8<--\n'
mkdir -p "$W"/{gguf,tokenizer_load,config,checkpoint,shard}

# a small corpus, a tiny model (d_model 32: q8_0 rows) and its 264-token tokenizer
for i in $(seq 300); do echo "The cat $i sees the dog; a fox finds $((i * 7)) birds."; done > "$W/text.txt"
cat > "$W/cfg.json" <<'JSON'
{"arch": "llama", "vocab_size": 264, "context_length": 16, "n_layer": 1, "d_model": 32, "n_head": 2,
 "n_kv_head": 1, "d_ff": 32, "tie_embeddings": true}
JSON
cat > "$W/cfg_small.json" <<'JSON'
{"arch": "gpt2", "vocab_size": 256, "context_length": 8, "n_layer": 1, "d_model": 4, "n_head": 1, "d_ff": 8}
JSON
"$JARIP" train --config "$W/cfg.json" --data "$W/text.txt" --out "$W/run" --steps 2 --batch 2 --seq 8 \
  --eval-batches 1 --threads 1 --quiet
"$JARIP" train --config "$W/cfg_small.json" --data "$W/text.txt" --out "$W/small" --steps 2 --batch 2 --seq 8 \
  --eval-batches 1 --threads 1 --quiet
"$JARIP" tokenizer train --vocab-size 264 --input "$W/text.txt" --out "$W/tok.json" --threads 1 2>/dev/null
"$JARIP" export --ckpt "$W/run" --out "$W/gguf/tiny_f16.gguf" --type f16 --tokenizer "$W/tok.json" >/dev/null
"$JARIP" export --ckpt "$W/small" --out "$W/gguf/small_f32.gguf" >/dev/null
"$JARIP" export --ckpt "$W/run" --out "$W/tokenizer_load/tiny_tok.gguf" --type q8_0 --tokenizer "$W/tok.json" >/dev/null
cp "$W/tokenizer_load/tiny_tok.gguf" "$W/gguf/"
for f in models/SmolLM2-135M-Instruct.Q8_0.gguf; do
  if [ -f "$f" ]; then head -c 16384 "$f" > "$W/gguf/smollm2_head.gguf"; fi
done

cp "$W/tok.json" "$W/tokenizer_load/trained.json"
cp tests/fixtures/tokenizer/gpt2_hf.json "$W/tokenizer_load/gpt2_hf.json"
head -n 300 tests/fixtures/tokenizer/llama3_hf.tiktoken > "$W/tokenizer_load/llama3_head.tiktoken"

cp "$W/cfg.json" "$W/config/tiny_llama.json"
cp "$W/cfg_small.json" "$W/config/tiny_gpt2.json"
cp "$W/run/ckpt_00000002/config.json" "$W/config/ckpt_config.json"
cat > "$W/config/moe.json" <<'JSON'
{"arch": "llama", "vocab_size": 512, "context_length": 64, "n_layer": 2, "d_model": 64, "n_head": 4, "n_kv_head": 2,
 "head_dim": 16, "d_ff": 96, "norm": "rmsnorm", "norm_eps": 1e-5, "pos": "rope", "rope_theta": 10000.0,
 "rope_style": "neox", "act": "swiglu", "bias": false, "tie_embeddings": true, "n_expert": 4, "n_expert_active": 2,
 "moe_aux_coef": 0.01, "note": "seed"}
JSON

ck="$W/small/ckpt_00000002"
{ cat "$ck/config.json"; printf '%s' "$SEP"; cat "$ck/state.json"; printf '%s' "$SEP"; cat "$ck/model.bin";
  printf '%s' "$SEP"; printf 'ckpt_00000001\n'; } > "$W/checkpoint/small_with_adam"
{ cat "$ck/config.json"; printf '%s' "$SEP"; cat "$ck/state.json"; printf '%s' "$SEP"; cat "$ck/model.bin"; } \
  > "$W/checkpoint/small_direct"

"$JARIP" data prepare --tokenizer "$W/tok.json" --input "$W/text.txt" --out "$W/prep" --format lines \
  --val-fraction 0.1 --shard-tokens 2000 --threads 1 >/dev/null 2>&1
{ cat "$W/prep/train_000000.bin"; printf '%s' "$SEP"; cat "$W/prep/val_000000.bin"; } > "$W/shard/train_val"
cp "$W/prep/train_000001.bin" "$W/shard/train_only" 2>/dev/null || cp "$W/prep/train_000000.bin" "$W/shard/train_only"

for t in gguf tokenizer_load config checkpoint shard; do
  rm -rf "${OUT:?}/$t"
  mkdir -p "$OUT/$t"
  "$FUZZ/fuzz_$t" -merge=1 "$OUT/$t" "$W/$t" 2>/dev/null >/dev/null
  echo "make_corpus: $t: $(ls "$OUT/$t" | wc -l) inputs, $(du -sk "$OUT/$t" | cut -f1) KiB"
done
