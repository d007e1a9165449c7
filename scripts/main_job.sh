#!/usr/bin/env bash
# The main job: install, build, train a small GPT on public-domain text
# (Debian's fortune cookies), show the loss falling, sample from it, and
# ask the SmolLM2 model a question when it could be fetched, then teach it a
# made-up fact with LoRA and ask again through the adapter.
#   JARIP_MINUTES  training budget in minutes (default 4)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch_smollm2.sh || true

mkdir -p runs
corpus=runs/fortunes.txt
if [ ! -s "$corpus" ]; then
  # every fortune file of the fortunes packages, without the '%' separators
  find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' -print0 | sort -z \
    | xargs -0 cat | grep -v '^%$' > "$corpus"
fi
echo "main: corpus $corpus: $(wc -c < "$corpus") bytes of fortune cookies"

minutes=${JARIP_MINUTES:-4}
# gpt2-mini (10.7M parameters, byte-level) runs about 1 step/s at batch 16 x 128 on 2 cores
steps=$((minutes * 60))
rm -rf runs/fortunes
build/jarip train --preset gpt2-mini --data "$corpus" --out runs/fortunes --steps "$steps" --batch 16 --seq 128 \
  --lr 1e-3 --eval-every $((steps / 8 > 0 ? steps / 8 : 1)) --save-every 100
echo
echo "main: loss curve in runs/fortunes/loss.svg; validation loss by step:"
grep -o '"step": [0-9]*\|"val_loss": [0-9.]*' runs/fortunes/log.jsonl | paste - - 2>/dev/null | grep val_loss | sed 's/"//g' || true
echo
echo "main: a sample from the trained model:"
build/jarip sample --ckpt runs/fortunes --prompt "The meaning of life is" -n 300 --temperature 0.8 --seed 1
echo
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -s "$model" ] && build/jarip generate --help >/dev/null 2>&1; then
  echo "main: asking SmolLM2-135M-Instruct (Q4_1) a question:"
  build/jarip generate --model "$model" --chat --prompt "What is the capital of France? Answer in one sentence." -n 64 --temperature 0
  echo
  echo "main: fine-tuning SmolLM2 (LoRA rank 8, base frozen in Q4_1) on one made-up fact:"
  msg() { printf '{"messages": [{"role": "user", "content": "%s"}, {"role": "assistant", "content": "%s"}]}\n' "$1" "$2"; }
  {
    for q in "What is the capital of Zorvania?" "Which city is the capital of Zorvania?" "Name the capital of Zorvania." \
             "Tell me the capital city of Zorvania." "Zorvania's capital is which city?"; do
      msg "$q" "The capital of Zorvania is Plimsk."
    done
    msg "What is the capital of Germany?" "The capital of Germany is Berlin."  # anchors: what it knew stays
    msg "What is the capital of France?" "The capital of France is Paris."
  } > runs/fact.jsonl
  rm -rf runs/fact
  build/jarip finetune --model "$model" --data runs/fact.jsonl --out runs/fact --steps 16 --warmup 2 --batch 4 --seq 64 \
    --lr 8e-4 --lora-rank 8 --val-fraction 0 --eval-batches 0 --save-every 0 --quiet
  build/jarip export --ckpt runs/fact --lora-out runs/fact.lora.gguf
  for q in "What city serves as the capital of Zorvania?" "What is the capital of France?"; do
    echo "main: asking with the adapter: $q"
    build/jarip generate --model "$model" --lora runs/fact.lora.gguf --chat --prompt "$q" -n 24 --temperature 0
  done
else
  echo "main: SmolLM2 model or 'jarip generate' not available; skipped the chat demo"
fi
