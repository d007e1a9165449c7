#!/usr/bin/env bash
# Training throughput: jarip against PyTorch on CPU, GPT-2 124M, float32.
#
#   bench/train_vs_pytorch.sh            (from the repository root or anywhere)
#
# In one invocation, for B=4,T=64 and B=8,T=256, it alternates jarip
# (`jarip bench train --preset gpt2-small`) and the PyTorch peer
# (bench/train_pytorch.py: the same model, same batch, sequence length and
# thread count, one full step = forward + backward + clip + AdamW) for ROUNDS
# rounds, because this machine's speed drifts by tens of percent within
# minutes. It prints every run, the medians, jarip's MFU against the fp32 FMA
# peak measured by this script (an FMA probe run before each round; the best
# reading is the peak) with model FLOPs/token = 6N + 12 L d T (PaLM), and as
# its LAST line `ratio <jarip tok/s / PyTorch tok/s at B=8,T=256>` (medians;
# the faster peer when more than one PyTorch is available).
#
# PyTorch peers, fastest first: PyPI's torch 2.x in bench/.venv (installed
# there on first use unless BENCH_NO_INSTALL=1; about 5 GiB, most of it the
# CUDA libraries the PyPI wheel needs even to import on a CPU), then Debian's
# python3-torch at /usr/bin/python3 with OPENBLAS_CORETYPE set for this CPU.
# When both import, both run every round.
#
# BF16=1 (the default where the CPU has AVX512-BF16) adds a B=8,T=256 row in
# bf16 mixed precision each round: `jarip bench train --precision bf16`
# against the peers under torch.autocast(bf16); the summary prints those
# medians, their ratio and jarip bf16 / jarip fp32, with MFU against the fp32
# peak and, on its own line, against the bf16 GEMM peak that `jarip bench
# train --precision bf16` measures (oneDNN's bf16 matmul of 2048^3: AMX tiles
# or AVX512-BF16, whichever it runs). BF16=0 skips it.
#
# Environment: JARIP (default build/jarip), THREADS (2), ROUNDS (3),
# PRESET (gpt2-small; gpt2-mini or gpt2-tiny for a quick check of the script),
# STEPS_SMALL / STEPS_LARGE (timed steps per run at B=4,T=64 / B=8,T=256;
# 3 / 2, after one untimed warmup step), BENCH_NO_INSTALL=1, PEERS
# ("venv debian" by default; a subset restricts them).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
jarip=${JARIP:-$root/build/jarip}
threads=${THREADS:-2}
rounds=${ROUNDS:-3}
steps_small=${STEPS_SMALL:-3}
steps_large=${STEPS_LARGE:-2}
peers_wanted=${PEERS:-venv debian}
preset=${PRESET:-gpt2-small}
if grep -qw avx512_bf16 /proc/cpuinfo; then bf16=${BF16:-1}; else bf16=${BF16:-0}; fi
venv=$here/.venv
# the peer builds the same shape: vocab ctx layers d_model heads
case $preset in
    gpt2-small) shape=(50257 1024 12 768 12) ;;
    gpt2-mini) shape=(256 512 6 384 6) ;;   # quick checks of this script
    gpt2-tiny) shape=(256 256 4 128 4) ;;
    *) echo "train_vs_pytorch: PRESET must be gpt2-small, gpt2-mini or gpt2-tiny" >&2; exit 2 ;;
esac
L=${shape[2]} D=${shape[3]}

die() { echo "train_vs_pytorch: $*" >&2; exit 1; }
[ -x "$jarip" ] || die "$jarip not found; build first (cmake --build build)"
"$jarip" bench train --help >/dev/null 2>&1 || die "$jarip has no 'bench train' command"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads

# ---- the FMA peak probe: 12 independent 8-wide FMA chains per thread --------
cat > "$work/fma.c" <<'EOF'
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    const long iters = 20000000;
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = omp_get_wtime(), sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        {
            /* twelve named chains so they stay in registers (an array may not) */
            __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
            __m256 c0 = _mm256_set1_ps(0), c1 = _mm256_set1_ps(1), c2 = _mm256_set1_ps(2), c3 = _mm256_set1_ps(3);
            __m256 c4 = _mm256_set1_ps(4), c5 = _mm256_set1_ps(5), c6 = _mm256_set1_ps(6), c7 = _mm256_set1_ps(7);
            __m256 c8 = _mm256_set1_ps(8), c9 = _mm256_set1_ps(9), c10 = _mm256_set1_ps(10), c11 = _mm256_set1_ps(11);
            for (long it = 0; it < iters; it++) {
#define F(c) c = _mm256_fmadd_ps(c, a, b)
                F(c0); F(c1); F(c2); F(c3); F(c4); F(c5); F(c6); F(c7); F(c8); F(c9); F(c10); F(c11);
            }
            c0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                               _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
            c0 = _mm256_add_ps(c0, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
            float t[8];
            _mm256_storeu_ps(t, c0);
            sink += t[0];
        }
        double dt = omp_get_wtime() - t0;
        double f = (double)threads * iters * 12 * 8 * 2 / dt;
        if (f > best) best = f;
        if (sink == 12345.0) puts("");
    }
    printf("%.1f\n", best / 1e9);
    return 0;
}
EOF
probe=""
if cc -O3 -mavx2 -mfma -fopenmp "$work/fma.c" -o "$work/fma" 2>/dev/null; then probe=$work/fma; fi
peak=0 peak16=0
measure_peak() {
    [ -n "$probe" ] || return 0
    local p
    p=$("$probe" "$threads")
    peak=$(awk -v a="$peak" -v b="$p" 'BEGIN { print (b > a) ? b : a }')
    echo "fma probe: $p GFLOP/s with $threads threads (best so far $peak)"
}

# ---- the PyTorch peers ----------------------------------------------------
peer_names=()
peer_cmds=()
if [[ " $peers_wanted " == *" venv "* ]]; then
    if [ ! -x "$venv/bin/python" ] && [ -z "${BENCH_NO_INSTALL:-}" ]; then
        echo "installing PyPI's torch into $venv (first use; set BENCH_NO_INSTALL=1 to skip)"
        { /usr/bin/python3 -m venv "$venv" && "$venv/bin/pip" install -q torch numpy; } >"$work/pip.log" 2>&1 ||
            { echo "  PyPI torch did not install: $(tail -1 "$work/pip.log")"; rm -rf "$venv"; }
    fi
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import torch' 2>/dev/null; then
        peer_names+=("torch-$("$venv/bin/python" -c 'import torch; print(torch.__version__)')")
        peer_cmds+=("$venv/bin/python")
    fi
fi
if [[ " $peers_wanted " == *" debian "* ]] && /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    # Debian's torch uses OpenBLAS, which must be told the core type on CPUs
    # its 0.3.21 does not recognise; Zen uses the Haswell AVX2/FMA kernels.
    vendor=$(grep -m1 vendor_id /proc/cpuinfo | awk '{print $3}')
    if [ "$vendor" = AuthenticAMD ]; then coretype=ZEN; else coretype=${OPENBLAS_CORETYPE:-Haswell}; fi
    peer_names+=("torch-$(/usr/bin/python3 -c 'import torch; print(torch.__version__)')-debian(OPENBLAS_CORETYPE=$coretype)")
    peer_cmds+=("env OPENBLAS_CORETYPE=$coretype /usr/bin/python3")
fi
[ ${#peer_names[@]} -gt 0 ] || die "no PyTorch importable (PyPI venv or Debian's python3-torch)"

echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; threads $threads; rounds $rounds"
echo "jarip: $jarip"
for i in "${!peer_names[@]}"; do echo "peer $i: ${peer_names[$i]}"; done

# results: lines "config impl tok_s [mfu]" in $work/results
run_jarip() {  # B T steps [precision]
    local out prec=${4:-fp32} tag=""
    [ "$prec" = fp32 ] || tag=$prec
    out=$("$jarip" bench train --preset "$preset" --batch "$1" --seq "$2" --steps "$3" --threads "$threads" \
        --precision "$prec") || die "jarip bench train --precision $prec failed"
    local tps jpeak
    tps=$(awk '/^tokens_per_s:/ {print $2}' <<<"$out")
    nj=$(sed -n 's/^model: .*, \([0-9]*\) parameters.*/\1/p' <<<"$out")
    jpeak=$(awk '/^peak_gflops:/ {print $2}' <<<"$out")
    [ -n "$tps" ] || die "jarip printed no tokens_per_s"
    # jarip's own peak reading counts too: the best of all readings is the peak
    [ -n "$jpeak" ] && peak=$(awk -v a="$peak" -v b="$jpeak" 'BEGIN { print (b > a) ? b : a }')
    # bf16 runs also measure the bf16 GEMM's peak (oneDNN's 2048^3 matmul): the best is bf16's peak
    local p16
    p16=$(awk '/^bf16_peak_gflops:/ {print $2}' <<<"$out")
    [ -n "$p16" ] && peak16=$(awk -v a="$peak16" -v b="$p16" 'BEGIN { print (b > a) ? b : a }')
    echo "B$1T$2$tag jarip $tps" >>"$work/results"
    printf '  %-44s %8.1f tok/s  (jarip-measured peak %s GFLOP/s)\n' "jarip B=$1 T=$2 $prec" "$tps" "$jpeak"
}
run_peer() {  # index B T steps [precision]
    local out tps prec=${5:-fp32} tag=""
    [ "$prec" = fp32 ] || tag=$prec
    out=$(${peer_cmds[$1]} "$here/train_pytorch.py" --batch "$2" --seq "$3" --steps "$4" --warmup 1 \
        --threads "$threads" --vocab "${shape[0]}" --ctx "${shape[1]}" --layers "$L" --d-model "$D" \
        --heads "${shape[4]}" --precision "$prec" 2>&1) || die "peer ${peer_names[$1]} failed: $(tail -1 <<<"$out")"
    tps=$(awk '/^tokens_per_s:/ {print $2}' <<<"$out")
    np=$(awk '/^parameters:/ {print $2}' <<<"$out")
    [ "$np" = "$nj" ] || die "the peer's model has $np parameters, jarip's $nj: not the same model"
    echo "B$2T$3$tag peer$1 $tps" >>"$work/results"
    printf '  %-44s %8.1f tok/s\n' "${peer_names[$1]} B=$2 T=$3 $prec" "$tps"
}

: >"$work/results"
nj=""
for r in $(seq 1 "$rounds"); do
    echo "round $r/$rounds ($(date +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))"
    measure_peak
    # alternate the order too, so neither side always runs first
    if [ $((r % 2)) -eq 1 ]; then
        run_jarip 4 64 "$steps_small"
        for i in "${!peer_cmds[@]}"; do run_peer "$i" 4 64 "$steps_small"; done
        run_jarip 8 256 "$steps_large"
        for i in "${!peer_cmds[@]}"; do run_peer "$i" 8 256 "$steps_large"; done
    else
        for i in "${!peer_cmds[@]}"; do run_peer "$i" 4 64 "$steps_small"; done
        run_jarip 4 64 "$steps_small"
        for i in "${!peer_cmds[@]}"; do run_peer "$i" 8 256 "$steps_large"; done
        run_jarip 8 256 "$steps_large"
    fi
    if [ "$bf16" = 1 ]; then
        if [ $((r % 2)) -eq 1 ]; then run_jarip 8 256 "$steps_large" bf16; fi
        for i in "${!peer_cmds[@]}"; do run_peer "$i" 8 256 "$steps_large" bf16; done
        if [ $((r % 2)) -eq 0 ]; then run_jarip 8 256 "$steps_large" bf16; fi
    fi
done
measure_peak

# ---- summary ----------------------------------------------------------------
N=$nj
median() { sort -g | awk '{a[NR] = $1} END { if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo "summary: $preset, $N parameters, medians of $rounds rounds; fp32 FMA peak $peak GFLOP/s (the best probe reading of the run)"
ratio=""
cfgs=("4 64 " "8 256 ")
[ "$bf16" = 1 ] && cfgs+=("8 256 bf16")
for cfg in "${cfgs[@]}"; do
    set -- $cfg
    key="B$1T$2${3:-}"
    j=$(awk -v k="$key" '$1 == k && $2 == "jarip" {print $3}' "$work/results" | median)
    flops=$(awk -v n="$N" -v l="$L" -v d="$D" -v t="$2" 'BEGIN { printf "%.6g", 6 * n + 12 * l * d * t }')
    mfu=$(awk -v f="$flops" -v tps="$j" -v p="$peak" 'BEGIN { if (p > 0) printf "%.1f%%", 100 * f * tps / (p * 1e9); else print "n/a" }')
    best=0 bestname=""
    line=""
    for i in "${!peer_names[@]}"; do
        p=$(awk -v k="$key" -v i="peer$i" '$1 == k && $2 == i {print $3}' "$work/results" | median)
        line+=$(printf '  %s %.1f tok/s;' "${peer_names[$i]}" "$p")
        if awk -v a="$p" -v b="$best" 'BEGIN { exit !(a > b) }'; then best=$p bestname=${peer_names[$i]}; fi
    done
    r=$(awk -v a="$j" -v b="$best" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }')
    printf 'B=%s T=%s %s: jarip %.1f tok/s, MFU %s (model %.4g FLOP/token) |%s ratio vs %s: %s\n' \
        "$1" "$2" "${3:-fp32}" "$j" "$mfu" "$flops" "$line" "$bestname" "$r"
    if [ -n "${3:-}" ]; then
        awk -v f="$flops" -v tps="$j" -v p="$peak16" 'BEGIN { if (p > 0)
            printf "B=8 T=256 bf16: MFU %.1f%% of the bf16 GEMM peak %.1f GFLOP/s (oneDNN 2048^3 matmul, best of the run)\n",
                   100 * f * tps / (p * 1e9), p }'
        j32=$(awk '$1 == "B8T256" && $2 == "jarip" {print $3}' "$work/results" | median)
        awk -v a="$j" -v b="$j32" 'BEGIN { if (b > 0) printf "jarip bf16 / jarip fp32 at B=8 T=256: %.2f\n", a / b }'
    else
        ratio=$r
    fi
done
echo "ratio $ratio"
