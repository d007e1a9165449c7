#!/usr/bin/env bash
# jarip eval perplexity vs llama.cpp's llama-perplexity: tokens scored per
# second on the same GGUF files, text, context and threads.
#
#   bench/eval_vs_llamacpp.sh [path-to-jarip]
#
# Text: tests/fixtures/eval/text.txt repeated REPEAT times (default 8, about
# 9K tokens), or TEXT=FILE (e.g. wikitext-2's wiki.test.raw). Models:
# models/SmolLM2-135M-Instruct.{TYPES}.gguf (default "Q8_0 Q4_1 F16";
# missing files skipped). llama-perplexity comes from scripts/build_llamacpp.sh
# (LLAMACPP_BIN=dir to use another build) and runs with its defaults except
# -c CTX and -t THREADS (so n_batch 2048: several chunks per batch, its F16
# KV cache, flash attention auto); jarip with --ctx CTX --threads THREADS
# (its default --batch 2048 too: 2048/ctx chunks per pass, each its own
# sequence; F16 KV cache). Both score the same chunks: ctx/2 - 1
# tokens of each. The time is each process's whole wall time (loading,
# tokenization and scoring), so tokens/s = scored tokens / wall seconds.
# Runs alternate (jarip, llama.cpp, jarip, ...) for ROUNDS rounds (default 3);
# the table gives the median of each side and the ratio of medians. Both
# perplexities are printed too (they agree to llama.cpp's 4 printed decimals).
# The machine is shared: read ratios, and run it when the machine is quiet.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
JARIP="${1:-$ROOT/build/jarip}"
CTX="${CTX:-512}"
THREADS="${THREADS:-2}"
ROUNDS="${ROUNDS:-3}"
REPEAT="${REPEAT:-8}"
TYPES="${TYPES:-Q8_0 Q4_1 F16}"
BIN="${LLAMACPP_BIN:-$(bash "$ROOT/scripts/build_llamacpp.sh" | tail -1)}"
LP="$BIN/llama-perplexity"
[ -x "$JARIP" ] || { echo "no jarip at $JARIP (build first)" >&2; exit 1; }
[ -x "$LP" ] || { echo "no llama-perplexity at $LP" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -n "${TEXT:-}" ]; then
    cp "$TEXT" "$work/text.txt"
else
    for _ in $(seq "$REPEAT"); do cat "$ROOT/tests/fixtures/eval/text.txt"; done > "$work/text.txt"
fi
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "text: $(wc -c < "$work/text.txt") bytes, ctx $CTX, $THREADS threads, $ROUNDS rounds; $(date '+%F %T'), load $(cut -d' ' -f1 /proc/loadavg)"
printf '%-6s %8s %14s %14s %7s %10s %10s\n' type scored "jarip tok/s" "llama tok/s" ratio "jarip PPL" "llama PPL"
for t in $TYPES; do
    m="$ROOT/models/SmolLM2-135M-Instruct.$t.gguf"
    [ -f "$m" ] || { echo "$t: $m absent, skipped"; continue; }
    : > "$work/j"; : > "$work/l"
    for r in $(seq "$ROUNDS"); do
        t0=$(now)
        "$JARIP" eval perplexity --model "$m" --text "$work/text.txt" --ctx "$CTX" --threads "$THREADS" --json > "$work/j.json"
        t1=$(now)
        "$LP" -m "$m" -f "$work/text.txt" -c "$CTX" -t "$THREADS" > "$work/l.out" 2>&1
        t2=$(now)
        scored=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tokens_scored"])' "$work/j.json")
        echo "$scored / ($t1 - $t0)" | bc -l >> "$work/j"
        echo "$scored / ($t2 - $t1)" | bc -l >> "$work/l"
    done
    jp=$(python3 -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["ppl"])' "$work/j.json")
    lp=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$work/l.out")
    jm=$(median < "$work/j"); lm=$(median < "$work/l")
    printf '%-6s %8d %14.1f %14.1f %7.2f %10s %10s\n' "$t" "$scored" "$jm" "$lm" "$(echo "$jm / $lm" | bc -l)" "$jp" "${lp:-?}"
done
