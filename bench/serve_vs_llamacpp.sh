#!/usr/bin/env bash
# jarip serve vs llama.cpp's llama-server under concurrent streaming load.
#
#   bench/serve_vs_llamacpp.sh [path-to-jarip]
#
# Same GGUF files (TYPES, default "Q4_1 Q8_0": models/SmolLM2-135M-Instruct.*.gguf), same threads
# (THREADS, default 2), same slots (SLOTS, default 16), same context per slot (CTX, default 1024;
# llama-server's -c is the total, CTX x SLOTS, split among its slots), greedy decoding.
# The peer is llama.cpp's own llama-server (LLAMA_SERVER, default the native build of
# scripts/build_llamacpp.sh: /root/.cache/jarip/llama.cpp/build/bin/llama-server).
#
# For each client count in CLIENTS (default "1 4 16 64") and each of ROUNDS rounds (default 2), each
# server is started fresh, alternating (jarip, llama-server, jarip, ...), loaded by bench/serve_load.py
# for DURATION seconds (default 30; requests in flight then finish) with streaming chat requests of at
# most MAX_TOKENS tokens (default 128) from a fixed prompt set, and stopped. Each row: output tokens/s
# in aggregate, requests/s, time to first token and inter-token latency (median and p99, ms), failed
# requests, and the server's peak RSS (VmHWM). The table gives each figure's median over rounds, and
# the ratio jarip / llama-server of aggregate tokens/s.
#
# Each server runs with its defaults otherwise; the load generator shares the machine's cores with
# the server (as a local deployment does). Read ratios, not absolute figures, and only from a quiet
# machine. Tiny check: DURATION=3 CLIENTS="1 4" ROUNDS=1 MAX_TOKENS=8.
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
JARIP="${1:-$ROOT/build/jarip}"
PY="${PYTHON:-/usr/bin/python3}"
LLAMA_SERVER="${LLAMA_SERVER:-/root/.cache/jarip/llama.cpp/build/bin/llama-server}"
TYPES="${TYPES:-Q4_1 Q8_0}"
THREADS="${THREADS:-2}"
SLOTS="${SLOTS:-16}"
CTX="${CTX:-1024}"
CLIENTS="${CLIENTS:-1 4 16 64}"
ROUNDS="${ROUNDS:-2}"
SECONDS_RUN="${DURATION:-30}"
MAX_TOKENS="${MAX_TOKENS:-128}"
OUT="$(mktemp -d "${TMPDIR:-/tmp}/serve-bench.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT

[ -x "$JARIP" ] || { echo "no jarip at $JARIP (build it first)" >&2; exit 1; }
have_llama=1
[ -x "$LLAMA_SERVER" ] || { echo "note: no llama-server at $LLAMA_SERVER (scripts/build_llamacpp.sh): jarip only" >&2; have_llama=0; }

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_health() { # port pid
  for _ in $(seq 1 600); do
    kill -0 "$2" 2>/dev/null || return 1
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/health")" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}

# run_one NAME MODEL CLIENTS -> appends a JSON line to $OUT/NAME.CLIENTS
run_one() {
  local name=$1 model=$2 c=$3 port pid
  port=$(free_port)
  if [ "$name" = jarip ]; then
    "$JARIP" serve --model "$model" --port "$port" --threads "$THREADS" --slots "$SLOTS" --ctx "$CTX" \
      --max-queue 1024 > "$OUT/server.log" 2>&1 &
  else
    "$LLAMA_SERVER" -m "$model" --host 127.0.0.1 --port "$port" -t "$THREADS" -tb "$THREADS" -np "$SLOTS" \
      -c $((CTX * SLOTS)) --no-webui > "$OUT/server.log" 2>&1 &
  fi
  pid=$!
  if ! wait_health "$port" "$pid"; then
    echo "$name did not start: $(tail -3 "$OUT/server.log")" >&2
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    return
  fi
  "$PY" "$ROOT/bench/serve_load.py" "http://127.0.0.1:$port" "$c" "$SECONDS_RUN" "$MAX_TOKENS" "$pid" >> "$OUT/$name.$c"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null
}

summary() { # files... -> median of each figure
  "$PY" - "$@" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for f in sys.argv[1:] for l in open(f) if l.strip()]
if not rows:
    print("-"); sys.exit()
med = lambda k: statistics.median(r[k] for r in rows if r[k] is not None) if any(r[k] is not None for r in rows) else float("nan")
print(f"{med('out_tok_s'):9.1f} {med('req_s'):7.2f} {med('ttft_med_ms'):9.1f} {med('ttft_p99_ms'):9.1f} "
      f"{med('itl_med_ms'):8.1f} {med('itl_p99_ms'):8.1f} {sum(r['failed'] for r in rows):6d} {max(r['peak_rss_mib'] for r in rows):7d}")
EOF
}

echo "jarip serve vs llama-server: threads $THREADS, slots $SLOTS, ctx $CTX per slot, ${SECONDS_RUN} s per run," \
  "max_tokens $MAX_TOKENS, $ROUNDS rounds, $(date -u +%FT%TZ), jarip $(git -C "$ROOT" rev-parse --short HEAD)"
for t in $TYPES; do
  model="$ROOT/models/SmolLM2-135M-Instruct.$t.gguf"
  [ -f "$model" ] || { echo "skip $t: $model absent"; continue; }
  rm -f "$OUT"/jarip.* "$OUT"/llama.*
  for c in $CLIENTS; do
    for _ in $(seq 1 "$ROUNDS"); do
      run_one jarip "$model" "$c"
      [ $have_llama = 1 ] && run_one llama "$model" "$c"
    done
  done
  echo
  echo "## $t"
  printf '%-7s %-12s %9s %7s %9s %9s %8s %8s %6s %7s %s\n' clients server "out tok/s" "req/s" "TTFT med" "TTFT p99" \
    "ITL med" "ITL p99" failed "RSS MiB" "jarip/llama tok/s"
  for c in $CLIENTS; do
    j=$(summary "$OUT/jarip.$c" 2>/dev/null || echo -)
    printf '%-7s %-12s %s\n' "$c" jarip "$j"
    if [ $have_llama = 1 ]; then
      l=$(summary "$OUT/llama.$c" 2>/dev/null || echo -)
      ratio=$("$PY" -c "import sys; a, b = sys.argv[1].split(), sys.argv[2].split(); print(f'{float(a[0]) / float(b[0]):.2f}x' if len(a) > 1 and len(b) > 1 and float(b[0]) > 0 else '-')" "$j" "$l")
      printf '%-7s %-12s %s  %s\n' "$c" llama-server "$l" "$ratio"
    fi
  done
done
