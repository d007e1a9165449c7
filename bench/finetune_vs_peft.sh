#!/usr/bin/env bash
# Fine-tuning throughput and memory: jarip against Hugging Face transformers
# + peft on CPU, SmolLM2-135M-Instruct.
#
#   bench/finetune_vs_peft.sh            (from the repository root or anywhere)
#
# For LoRA (r 16, alpha 32, dropout 0, q,k,v,o,gate,up,down) and then full
# fine-tuning, it alternates jarip (`jarip finetune --format text`) and the
# peer (bench/finetune_peft.py) for ROUNDS rounds: this machine's speed
# drifts by tens of percent within minutes. Each run's tokens/s is its
# median timed step (jarip: log.jsonl after the first step; the peer: after
# its untimed first step); peak RSS is the whole process's (/usr/bin/time).
# It prints every run, the medians and the ratios jarip / peer (tokens/s:
# higher is better for jarip; RSS: lower).
#
# The same work on both sides:
# - the same weights in float32: MODEL (SmolLM2 F16) converted once to an
#   F32 GGUF that both load (BASE=model keeps MODEL's own type for jarip,
#   e.g. a Q8_0 base stays quantized, QLoRA-style, while transformers
#   dequantizes it to float32: then the work differs);
# - the same tokens and targets: the peer reads the rows jarip's run
#   prepared (OUT/data.sft) and takes at step s the rows jarip's loader
#   takes (same seed, same hash), B rows of T inputs and T targets, loss =
#   mean cross-entropy over the labelled targets;
# - the same step: forward, backward, gradient clip at 1.0, AdamW (betas
#   0.9/0.95, eps 1e-8, no weight decay), all in float32, no dropout, no
#   gradient checkpointing; LoRA A Kaiming-uniform and B zero on both.
#   jarip's lr follows its warm-up + cosine schedule, the peer's is constant
#   (the same lr at the start; no effect on the work);
# - THREADS threads each (OMP/MKL/OpenBLAS variables and --threads /
#   torch.set_num_threads).
# Check: step 1's loss (the base's: B starts at zero) is printed for both
# and must agree (a warning when they differ by more than 1e-3 relative;
# measured with B=2 T=32: 4.137166 jarip, 4.137150 peft).
#
# The peer runs in ~/.cache/jarip/venv-eval (PEER_PYTHON overrides), which
# scripts/setup.sh makes: transformers 4.46.3 + peft 0.13.2 on Debian's
# torch 1.13. Without it only jarip's rows print.
#
# Environment: JARIP (default build/jarip), MODEL (models/SmolLM2-135M-
# Instruct.F16.gguf), BASE (f32 | model), THREADS (2), ROUNDS (3), B (8),
# T (256), STEPS (timed steps per run, 3, after one untimed step), RANK
# (16), MODES ("lora full"; "lora" alone for a quick check), SEED (1337),
# PRECISION (fp32; bf16: `jarip finetune --precision bf16` against the peer
# under torch.autocast("cpu", bfloat16), both with float32 master weights;
# step 1's losses then agree to ~1e-2, the warning's threshold).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
jarip=${JARIP:-$root/build/jarip}
model=${MODEL:-$root/models/SmolLM2-135M-Instruct.F16.gguf}
threads=${THREADS:-2} rounds=${ROUNDS:-3} B=${B:-8} T=${T:-256} steps=${STEPS:-3} rank=${RANK:-16} seed=${SEED:-1337}
modes=${MODES:-lora full} base_kind=${BASE:-f32} precision=${PRECISION:-fp32}
case $precision in fp32) tol=1e-3 ;; bf16) tol=1e-2 ;; *) echo "finetune_vs_peft: PRECISION must be fp32 or bf16" >&2; exit 2 ;; esac
peer=${PEER_PYTHON:-$HOME/.cache/jarip/venv-eval/bin/python}
die() { echo "finetune_vs_peft: $*" >&2; exit 1; }
[ -x "$jarip" ] || die "$jarip not found; build first (cmake --build build)"
[ -f "$model" ] || die "$model not found (scripts/fetch_smollm2.sh --all-types)"
[ -x /usr/bin/time ] || die "/usr/bin/time is needed for peak RSS (Debian package time)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads

if ! { [ -x "$peer" ] && "$peer" -c 'import torch, transformers, peft, gguf' 2>/dev/null; }; then
    echo "no transformers + peft peer ($peer; scripts/setup.sh makes it); jarip's rows only"
    peer=""
fi
if [ "$base_kind" = f32 ]; then # the float32 weights both sides load
    "$jarip" quantize "$model" "$work/base.f32.gguf" --type f32 --pure --quiet >/dev/null || die "cannot convert $model to f32"
    model=$work/base.f32.gguf
fi

# text for jarip's rows: words enough for many rows of T tokens
awk 'BEGIN { srand(3); split("the a model learns every token from data on small machines quickly and well", w, " ");
             for (i = 0; i < 60000; i++) printf "%s%s", w[int(rand() * 13) + 1], (i % 17 == 16) ? ".\n" : " " }' \
    > "$work/text.txt"

jarip_run() { # mode -> "tokens_per_s peak_rss_mib first_loss"; keeps its rows in $work/rows.sft
    local flags=(--lora-rank "$rank")
    [ "$1" = full ] && flags=(--full)
    rm -rf "$work/run"
    /usr/bin/time -f "%M" -o "$work/rss" "$jarip" finetune --model "$model" --data "$work/text.txt" --format text \
        --out "$work/run" "${flags[@]}" --steps $((steps + 1)) --batch "$B" --seq "$T" --threads "$threads" \
        --seed "$seed" --eval-batches 0 --save-every 0 --val-fraction 0 --precision "$precision" --quiet 2>"$work/err" ||
        { cat "$work/err" >&2; die "jarip failed"; }
    cp "$work/run/data.sft" "$work/rows.sft"
    local tps
    tps=$(tail -n +2 "$work/run/log.jsonl" | sed 's/.*"tokens_per_s": \([0-9.]*\).*/\1/' | sort -g |
          awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
    echo "$tps $(awk '{ printf "%.0f", $1 / 1024 }' "$work/rss") $(head -1 "$work/run/log.jsonl" |
        sed 's/.*"loss": \([0-9.e+-]*\).*/\1/')"
}
peer_run() { # mode -> "tokens_per_s peak_rss_mib first_loss"
    /usr/bin/time -f "%M" -o "$work/rss" "$peer" "$here/finetune_peft.py" "$model" "$1" "$work/rows.sft" "$seed" "$B" \
        "$T" "$steps" "$threads" "$rank" "$precision" >"$work/peer.json" 2>"$work/err" || { tail -3 "$work/err" >&2; die "peer failed"; }
    "$peer" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["tokens_per_s"], end=" ")' "$work/peer.json"
    awk '{ printf "%.0f ", $1 / 1024 }' "$work/rss"
    "$peer" -c 'import json,sys; print("%.6f" % json.load(open(sys.argv[1]))["losses"][0])' "$work/peer.json"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "model $(basename "${MODEL:-SmolLM2-135M-Instruct.F16.gguf}") as $base_kind, B=$B T=$T, $threads threads, $rounds rounds, $steps timed steps per run, LoRA r=$rank, $precision"
for mode in $modes; do
    : > "$work/j.$mode"
    : > "$work/p.$mode"
    for r in $(seq "$rounds"); do
        read -r jt jm jl < <(jarip_run "$mode")
        echo "$jt $jm" >> "$work/j.$mode"
        printf '%-5s round %d  jarip %8.1f tok/s %6s MiB (step 1 loss %s)' "$mode" "$r" "$jt" "$jm" "$jl"
        if [ -n "$peer" ]; then
            read -r pt pm pl < <(peer_run "$mode")
            echo "$pt $pm" >> "$work/p.$mode"
            printf '   peft %8.1f tok/s %6s MiB (step 1 loss %s)' "$pt" "$pm" "$pl"
            awk -v a="$jl" -v b="$pl" -v t="$tol" 'BEGIN { d = a - b; exit !(d * d > t * t * b * b) }' &&
                printf '\n  WARNING: step 1 losses differ by more than %s: the two sides do not do the same work' "$tol"
        fi
        echo
    done
    jt=$(cut -d' ' -f1 "$work/j.$mode" | median) jm=$(cut -d' ' -f2 "$work/j.$mode" | median)
    if [ -n "$peer" ]; then
        pt=$(cut -d' ' -f1 "$work/p.$mode" | median) pm=$(cut -d' ' -f2 "$work/p.$mode" | median)
        awk -v m="$mode" -v jt="$jt" -v pt="$pt" -v jm="$jm" -v pm="$pm" 'BEGIN {
            printf "%-5s median: jarip %.1f tok/s %d MiB, peft %.1f tok/s %d MiB: tokens/s x%.2f, RSS x%.2f\n",
                   m, jt, jm, pt, pm, jt / pt, jm / pm }'
    else
        printf '%-5s median: jarip %.1f tok/s %s MiB\n' "$mode" "$jt" "$jm"
    fi
done
