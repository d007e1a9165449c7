#!/usr/bin/env bash
# bf16 mixed precision (--precision bf16): a 300-step run ends within 1% of
# the float32 run's validation loss, resume is exact under bf16, the
# precision survives a resume, and a CPU without native bf16 gets a
# one-line refusal. Skips the first three where oneDNN has no native bf16.
source "$(dirname "$0")/lib.sh"
# threads sleep at barriers: a shared machine (CI) does not pay for spinning
export OMP_WAIT_POLICY=passive
make_corpus 6000 > "$WORK/corpus.txt"

expect_error "not fp32 or bf16" -- "$JARIP" train --preset gpt2-tiny --data "$WORK/corpus.txt" --out "$WORK/x" --precision fp8
# oneDNN capped at AVX2 has no bf16 units: refused, nothing written
expect_error "native bf16" -- env ONEDNN_MAX_CPU_ISA=AVX2 "$JARIP" train --preset gpt2-tiny --data "$WORK/corpus.txt" \
  --out "$WORK/refused" --steps 2 --batch 2 --seq 16 --quiet --precision bf16
[ ! -e "$WORK/refused/log.jsonl" ] || fail "a refused run wrote a log"
expect_error "native bf16" -- env ONEDNN_MAX_CPU_ISA=AVX2 "$JARIP" bench train --preset moe-tiny --batch 1 --seq 8 \
  --steps 1 --precision bf16

if ! "$JARIP" bench train --preset gpt2-tiny --batch 1 --seq 8 --steps 1 --precision bf16 > "$WORK/probe" 2>&1; then
  grep -q "native bf16" "$WORK/probe" || { cat "$WORK/probe" >&2; fail "bench train --precision bf16 failed"; }
  echo "skip: no native bf16 on this CPU ($(tail -1 "$WORK/probe"))"
  exit 0
fi

# 1. 300 steps of gpt2-tiny in each precision: validation losses within 1%
for p in fp32 bf16; do
  "$JARIP" train --preset gpt2-tiny --data "$WORK/corpus.txt" --out "$WORK/$p" --steps 300 --batch 8 --seq 64 \
    --lr 3e-3 --eval-every 100 --eval-batches 8 --threads 2 --quiet --precision $p
done
val() { grep val_loss "$1/log.jsonl" | tail -1 | sed 's/.*"val_loss": \([0-9.e+-]*\).*/\1/'; }
v32=$(val "$WORK/fp32") v16=$(val "$WORK/bf16")
awk -v a="$v32" -v b="$v16" 'BEGIN { d = (b - a) / a; if (d < 0) d = -d; exit !(d < 0.01) }' \
  || fail "bf16 validation loss $v16 is not within 1% of fp32's $v32"
cmp -s "$WORK/fp32/ckpt_00000300/model.bin" "$WORK/bf16/ckpt_00000300/model.bin" && fail "bf16 gave fp32's exact weights: was bf16 used?"
grep -q '"precision": "bf16"' "$WORK/bf16/ckpt_00000300/state.json" || fail "state.json does not record bf16"
pass "300 steps: val_loss fp32 $v32, bf16 $v16 (within 1%)"

# 2. exact resume under bf16 (dense and MoE, whose experts run in bf16), which
# the resumed run keeps without the flag
strip() { sed 's/"tokens_per_s": [0-9.e+-]*, "mfu": [0-9.e+-]*//' "$1"; }
for llama in gpt2-tiny llama-tiny moe-tiny; do
  "$JARIP" train --preset $llama --data "$WORK/corpus.txt" --out "$WORK/a_$llama" --steps 40 --batch 4 --seq 32 \
    --save-every 20 --threads 2 --quiet --precision bf16
  "$JARIP" train --preset $llama --data "$WORK/corpus.txt" --out "$WORK/b_$llama" --steps 40 --batch 4 --seq 32 \
    --save-every 20 --stop-after 20 --threads 2 --quiet --precision bf16
  "$JARIP" train --resume "$WORK/b_$llama" --quiet
  diff <(strip "$WORK/a_$llama/log.jsonl") <(strip "$WORK/b_$llama/log.jsonl") > /dev/null || fail "$llama: resumed bf16 log differs"
  cmp "$WORK/a_$llama/ckpt_00000040/model.bin" "$WORK/b_$llama/ckpt_00000040/model.bin" || fail "$llama: resumed bf16 weights differ"
  pass "$llama bf16: 40 steps == 20 + resume + 20 (losses and weights bit-identical)"
done
