#!/usr/bin/env bash
# bf16 for MoE experts: `jarip bench train` of a mixture of experts whose
# experts hold most of the work (8 experts, top 2, SwiGLU, d_model 1024, d_ff
# 2816 per expert, 2 layers, a byte vocabulary so the head is small),
# --precision fp32 against bf16, alternating for ROUNDS rounds (this
# machine's speed drifts within minutes). Prints every run and the medians
# of tokens/s, and as its LAST line `ratio <bf16 / fp32>`.
#
#   bench/train_moe_bf16.sh          (from the repository root or anywhere)
#
# Environment: JARIP (default build/jarip), THREADS (2), ROUNDS (3), BATCH (8),
# SEQ (128), STEPS (4); D_MODEL (1024), D_FF (2816), LAYERS (2), VOCAB (256)
# shape it; a quick check of the script: D_MODEL=64 D_FF=128 LAYERS=1 BATCH=2 SEQ=32.
set -euo pipefail
cd "$(dirname "$0")/.."
JARIP=${JARIP:-build/jarip} THREADS=${THREADS:-2} ROUNDS=${ROUNDS:-3}
BATCH=${BATCH:-8} SEQ=${SEQ:-128} STEPS=${STEPS:-4}
D_MODEL=${D_MODEL:-1024} D_FF=${D_FF:-2816} LAYERS=${LAYERS:-2} VOCAB=${VOCAB:-256}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/moe.json" <<JSON
{"arch": "llama", "vocab_size": $VOCAB, "context_length": 1024, "n_layer": $LAYERS, "d_model": $D_MODEL,
 "n_head": 8, "n_kv_head": 4, "d_ff": $D_FF, "n_expert": 8, "n_expert_active": 2}
JSON
echo "config: $(tr -d '\n' < "$tmp/moe.json")"
echo "batch $BATCH, seq $SEQ, steps $STEPS, threads $THREADS, rounds $ROUNDS"
for r in $(seq "$ROUNDS"); do
  for p in fp32 bf16; do
    tps=$("$JARIP" bench train --config "$tmp/moe.json" --batch "$BATCH" --seq "$SEQ" --steps "$STEPS" \
      --threads "$THREADS" --precision "$p" | sed -n 's/^tokens_per_s: //p')
    echo "round $r $p $tps tok/s"
    echo "$tps" >> "$tmp/$p"
  done
done
med() { sort -g "$1" | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
f=$(med "$tmp/fp32") b=$(med "$tmp/bf16")
echo "median fp32 $f tok/s, bf16 $b tok/s"
awk -v b="$b" -v f="$f" 'BEGIN { printf "ratio %.3f\n", b / f }'
