#!/usr/bin/env bash
# An adapter written by jarip, applied by llama.cpp: SmolLM2-135M-Instruct
# Q8_0 gets a LoRA adapter from 3 steps of `jarip finetune` on a text; then
# llama.cpp's `llama-perplexity` runs the text (ctx 128, 4 chunks, -fa off:
# the attention jarip computes) without and with `--lora` and saves its
# log-probabilities (--kl-divergence-base), and `jarip eval kld
# --base-logits` measures jarip's distributions against them: the base
# against llama.cpp's base, `--lora` against llama.cpp's base + adapter.
# This llama.cpp build (AVX-512) is not jarip's arithmetic (jarip matches
# the AVX2 build's to 1e-4, test_eval.sh), so the base alone already has a
# KL divergence; the test asks that the adapter add none beyond it:
# KLD(with adapter) <= 1.25 KLD(base) + 1e-4, and that the adapter matters
# (llama.cpp's log PPL moves by > 0.05).
# Measured here: KLD base 0.00329, with the adapter 0.00288 (same top token
# 98.0% / 96.4%; PPL 11.2010 jarip, 11.2075 llama.cpp; 13.5609 and
# 13.5905 without); the adapter moves log PPL by 0.19; jarip at
# --lora-scale 0.9 gives KLD 0.00446 (fails), without the adapter 0.152.
# Skips (saying so) without the model or llama-perplexity (absent in CI).
source "$(dirname "$0")/lib.sh"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
MODEL="${JARIP_SMOLLM2_Q8:-$ROOT/models/SmolLM2-135M-Instruct.Q8_0.gguf}"
LLAMA_PPL="${LLAMA_PERPLEXITY:-/root/.cache/jarip/llama.cpp/build/bin/llama-perplexity}"
TEXT="$ROOT/tests/fixtures/eval/text.txt"
if [ ! -f "$MODEL" ]; then
  echo "skip: $MODEL not present (scripts/fetch_smollm2.sh --all-types)"
  exit 0
fi
if [ ! -x "$LLAMA_PPL" ]; then
  echo "skip: llama-perplexity not built ($LLAMA_PPL; scripts/build_llamacpp.sh): no llama.cpp comparison"
  exit 0
fi
"$JARIP" finetune --model "$MODEL" --data "$TEXT" --format text --out "$WORK/run" --steps 3 --warmup 0 --batch 2 \
  --seq 64 --lr 5e-3 --lora-rank 8 --val-fraction 0 --eval-batches 0 --save-every 0 --threads 2 --quiet
"$JARIP" export --ckpt "$WORK/run" --lora-out "$WORK/ad.gguf" 2> /dev/null
llama_run() { # OUT.kld [--lora FILE] -> llama.cpp's final PPL; its log-probabilities in OUT.kld
  local out=$1; shift
  "$LLAMA_PPL" -m "$MODEL" "$@" -f "$TEXT" -c 128 --chunks 4 -t 2 -fa off --kl-divergence-base "$out" \
    > "$WORK/l.out" 2>&1 || { tail -5 "$WORK/l.out" >&2; fail "llama-perplexity $*"; }
  sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$WORK/l.out"
}
lb=$(llama_run "$WORK/base.kld")
ll=$(llama_run "$WORK/lora.kld" --lora "$WORK/ad.gguf")
[ -n "$lb" ] && [ -n "$ll" ] || fail "no 'Final estimate' from llama-perplexity"
K=(--model "$MODEL" --threads 2 --json)
"$JARIP" eval kld --base-logits "$WORK/base.kld" "${K[@]}" > "$WORK/k_base.json"
"$JARIP" eval kld --base-logits "$WORK/lora.kld" --lora "$WORK/ad.gguf" \
  ${JARIP_LORA_SCALE:+--lora-scale "$JARIP_LORA_SCALE"} "${K[@]}" > "$WORK/k_lora.json"
python3 - "$WORK" "$lb" "$ll" <<'PY' || fail "jarip's and llama.cpp's outputs with jarip's adapter differ"
import json, math, sys
w, lb, ll = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
kb, kl = (json.load(open("%s/k_%s.json" % (w, k))) for k in ("base", "lora"))
print("base: KLD %.5f, same top %.1f%%, PPL jarip %.4f llama.cpp %.4f" % (kb["kld"], 100 * kb["same_top"], kb["ppl"], lb))
print("with the adapter: KLD %.5f, same top %.1f%%, PPL jarip %.4f llama.cpp %.4f" % (
    kl["kld"], 100 * kl["same_top"], kl["ppl"], ll))
assert abs(math.log(ll / lb)) > 0.05, "the adapter barely changes llama.cpp's perplexity: not a test"
assert kl["kld"] <= 1.25 * kb["kld"] + 1e-4, "the adapter adds divergence from llama.cpp"
PY
pass "jarip's adapter in jarip (eval kld --lora) == in llama.cpp (llama-perplexity --lora), to this build's base noise"
