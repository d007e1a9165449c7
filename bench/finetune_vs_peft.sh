#!/usr/bin/env bash
# Fine-tuning throughput and memory: jarip against Hugging Face transformers
# + peft on CPU, SmolLM2-135M-Instruct, float32 compute.
#
#   bench/finetune_vs_peft.sh            (from the repository root or anywhere)
#
# For LoRA (r 16, alpha 32, q,k,v,o,gate,up,down) and then full fine-tuning,
# it alternates jarip (`jarip finetune --format text` on a generated text,
# rows of B x T tokens) and the peer (bench/finetune_peft.py: the same GGUF
# loaded by transformers, random rows of the same shape, same thread count,
# one step = forward + backward + clip + AdamW) for ROUNDS rounds: this
# machine's speed drifts by tens of percent within minutes. Each run's
# tokens/s is its median timed step (jarip: log.jsonl after the first
# step); peak RSS is the whole process's (/usr/bin/time). It prints every
# run, the medians and the ratios jarip / peer (tokens/s: higher is better
# for jarip; RSS: lower).
#
# jarip's LoRA keeps the base in the GGUF's own type (MODEL's, Q8_0 by
# default: QLoRA-style); the peer dequantizes it to float32 (transformers
# has no quantized CPU training), as jarip --full does.
#
# The peer lives in bench/.venv (PyPI torch + transformers + peft + gguf,
# installed there on first use unless BENCH_NO_INSTALL=1; Debian's torch
# 1.13 is too old for current peft). Without it only jarip's rows print.
#
# Environment: JARIP (default build/jarip), MODEL (models/SmolLM2-135M-
# Instruct.Q8_0.gguf), THREADS (2), ROUNDS (3), B (8), T (256), STEPS (timed
# steps per run, 3, after one untimed step), RANK (16), MODES ("lora full";
# "lora" alone for a quick check), BENCH_NO_INSTALL=1.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
jarip=${JARIP:-$root/build/jarip}
model=${MODEL:-$root/models/SmolLM2-135M-Instruct.Q8_0.gguf}
threads=${THREADS:-2} rounds=${ROUNDS:-3} B=${B:-8} T=${T:-256} steps=${STEPS:-3} rank=${RANK:-16}
modes=${MODES:-lora full}
venv=$here/.venv
die() { echo "finetune_vs_peft: $*" >&2; exit 1; }
[ -x "$jarip" ] || die "$jarip not found; build first (cmake --build build)"
[ -f "$model" ] || die "$model not found (scripts/fetch_smollm2.sh --all-types)"
[ -x /usr/bin/time ] || die "/usr/bin/time is needed for peak RSS (Debian package time)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads

peer=""
if [ ! -x "$venv/bin/python" ] && [ -z "${BENCH_NO_INSTALL:-}" ]; then
    echo "installing PyPI's torch, transformers, peft and gguf into $venv (first use; BENCH_NO_INSTALL=1 skips)"
    { /usr/bin/python3 -m venv "$venv" && "$venv/bin/pip" install -q torch transformers peft gguf numpy; } \
        >"$work/pip.log" 2>&1 || { echo "  did not install: $(tail -1 "$work/pip.log")"; rm -rf "$venv"; }
fi
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import torch, transformers, peft' 2>/dev/null; then
    peer="$venv/bin/python"
else
    echo "no transformers + peft peer (bench/.venv); jarip's rows only"
fi

# text for jarip's rows: words enough for many rows of T tokens
awk 'BEGIN { srand(3); split("the a model learns every token from data on small machines quickly and well", w, " ");
             for (i = 0; i < 60000; i++) printf "%s%s", w[int(rand() * 13) + 1], (i % 17 == 16) ? ".\n" : " " }' \
    > "$work/text.txt"

jarip_run() { # mode -> "tokens_per_s peak_rss_mib"
    local flags=(--lora-rank "$rank")
    [ "$1" = full ] && flags=(--full)
    rm -rf "$work/run"
    /usr/bin/time -f "%M" -o "$work/rss" "$jarip" finetune --model "$model" --data "$work/text.txt" --format text \
        --out "$work/run" "${flags[@]}" --steps $((steps + 1)) --batch "$B" --seq "$T" --threads "$threads" \
        --eval-batches 0 --save-every 0 --val-fraction 0 --quiet 2>"$work/err" || { cat "$work/err" >&2; die "jarip failed"; }
    local tps
    tps=$(tail -n +2 "$work/run/log.jsonl" | sed 's/.*"tokens_per_s": \([0-9.]*\).*/\1/' | sort -g |
          awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
    echo "$tps $(awk '{ printf "%.0f", $1 / 1024 }' "$work/rss")"
}
peer_run() {
    /usr/bin/time -f "%M" -o "$work/rss" "$peer" "$here/finetune_peft.py" "$model" "$1" "$B" "$T" "$steps" "$threads" \
        "$rank" >"$work/peer.json" 2>"$work/err" || { tail -3 "$work/err" >&2; die "peer failed"; }
    "$venv/bin/python" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["tokens_per_s"])' "$work/peer.json" |
        tr '\n' ' '
    awk '{ printf "%.0f\n", $1 / 1024 }' "$work/rss"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "model $(basename "$model"), B=$B T=$T, $threads threads, $rounds rounds, $steps timed steps per run, LoRA r=$rank"
for mode in $modes; do
    : > "$work/j.$mode"
    : > "$work/p.$mode"
    for r in $(seq "$rounds"); do
        read -r jt jm < <(jarip_run "$mode")
        echo "$jt $jm" >> "$work/j.$mode"
        printf '%-5s round %d  jarip %8.1f tok/s %6s MiB' "$mode" "$r" "$jt" "$jm"
        if [ -n "$peer" ]; then
            read -r pt pm < <(peer_run "$mode")
            echo "$pt $pm" >> "$work/p.$mode"
            printf '   peft %8.1f tok/s %6s MiB' "$pt" "$pm"
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
