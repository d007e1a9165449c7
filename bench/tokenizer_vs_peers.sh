#!/usr/bin/env bash
# Tokenizer speed, jarip against its peers, side by side:
#   1. training a 32k byte-level BPE (GPT-2 pattern) on the Korean text:
#      jarip vs Hugging Face BpeTrainer (seconds; ratio = peer / jarip)
#   2. encoding English and Korean text with the same 32k vocabulary:
#      jarip vs Hugging Face `tokenizers` and tiktoken (MB/s; ratio =
#      jarip / the faster peer), with one thread and with all threads.
# The machine is shared, so jarip and the peers alternate over ROUNDS
# rounds and each keeps its best figure. Token counts are printed so a
# reader can see all three produced the same number of tokens.
#
# usage: bench/tokenizer_vs_peers.sh [path/to/jarip]
#   ROUNDS (default 3), DATA (default ../shared/data), PYTHON (default /usr/bin/python3)
# needs: pip install tokenizers tiktoken
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
JARIP=${1:-$ROOT/build/jarip}
DATA=${DATA:-$ROOT/../shared/data}
PY=${PYTHON:-/usr/bin/python3}
ROUNDS=${ROUNDS:-3}
NT=$(nproc)
EN=$DATA/tinyshakespeare.txt
KO=$DATA/nsmc_reviews_ko.txt
HELP=$ROOT/bench/tokenizer_peers.py
for f in "$EN" "$KO"; do [ -f "$f" ] || { echo "missing $f (set DATA=)"; exit 1; }; done
"$PY" -c 'import tokenizers, tiktoken' || { echo "needs: $PY -m pip install tokenizers tiktoken"; exit 1; }
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT

best_min() { awk 'NR == 1 || $1 < m { m = $1 } END { print m }'; }
best_max() { awk 'NR == 1 || $1 > m { m = $1 } END { print m }'; }

echo "== training: 32k vocabulary on $(basename "$KO") ($(du -h "$KO" | cut -f1)), $ROUNDS rounds, best of each"
for th in 1 "$NT"; do
  : > "$WORK/jt"; : > "$WORK/ht"
  for r in $(seq "$ROUNDS"); do
    s=$(date +%s.%N)
    "$JARIP" tokenizer train --vocab-size 32000 --input "$KO" --out "$WORK/ko.json" --threads "$th" 2> /dev/null
    echo "$(date +%s.%N) - $s" | bc >> "$WORK/jt"
    RAYON_NUM_THREADS=$th "$PY" "$HELP" train "$KO" 32000 | awk '{ print $2 }' >> "$WORK/ht"
  done
  j=$(best_min < "$WORK/jt"); h=$(best_min < "$WORK/ht")
  printf "threads %-3s jarip %7.2f s   hf BpeTrainer %7.2f s   ratio %.2fx\n" "$th" "$j" "$h" "$(echo "$h / $j" | bc -l)"
done

echo "== encoding: 32k vocabulary trained by jarip on both texts; ids of all three agree in count"
"$JARIP" tokenizer train --vocab-size 32000 --input "$EN" "$KO" --out "$WORK/tok.json" 2> /dev/null
printf "%-22s %-7s %10s %10s %10s %8s   %s\n" text threads "jarip MB/s" "hf MB/s" "tiktoken" ratio "tokens (jarip hf tiktoken)"
for f in "$EN" "$KO"; do
  for th in 1 "$NT"; do
    : > "$WORK/j"; : > "$WORK/h"; : > "$WORK/k"
    for r in $(seq "$ROUNDS"); do
      "$JARIP" tokenizer encode --tokenizer "$WORK/tok.json" --input "$f" --threads "$th" --stats 2> "$WORK/s" > /dev/null
      sed -E 's/.* ([0-9.]+) MB\/s.*/\1/' "$WORK/s" >> "$WORK/j"
      jn=$(sed -E 's/.*into ([0-9]+) tokens.*/\1/' "$WORK/s")
      "$PY" "$HELP" encode "$WORK/tok.json" "$f" "$th" > "$WORK/p"
      awk '$1 == "hf" { print $2 }' "$WORK/p" >> "$WORK/h"
      awk '$1 == "tiktoken" { print $2 }' "$WORK/p" >> "$WORK/k"
      hn=$(awk '$1 == "hf" { print $3 }' "$WORK/p"); kn=$(awk '$1 == "tiktoken" { print $3 }' "$WORK/p")
    done
    j=$(best_max < "$WORK/j"); h=$(best_max < "$WORK/h"); k=$(best_max < "$WORK/k")
    peer=$(echo "if ($h > $k) $h else $k" | bc -l)
    printf "%-22s %-7s %10.2f %10.2f %10.2f %7.2fx   %s %s %s\n" "$(basename "$f")" "$th" "$j" "$h" "$k" \
      "$(echo "$j / $peer" | bc -l)" "$jn" "$hn" "$kn"
  done
done
