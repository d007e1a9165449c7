#!/usr/bin/env bash
# Build the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang in build-fuzz/
# and run each for SECONDS (default 60) on its committed corpus
# (tests/fuzz/corpus/<target>) with its dictionary (tests/fuzz/dict/<target>.dict),
# one target at a time under nice -n 19 (FUZZ_NICE); then replay every kept crash input
# (tests/fuzz/regressions/<target>/*). Prints executions per target; exits
# non-zero when a target crashed, leaked, hit UB, ran out of memory or timed
# out on an input, or a regression input fails again.
#   bench/fuzz.sh [SECONDS]                 every target
#   FUZZ_TARGETS="gguf shard" bench/fuzz.sh 600
#   FUZZ_RUNS=10500000 bench/fuzz.sh 3600   stop each target after N inputs
#                                           (or SECONDS, whichever comes first)
# New inputs that add coverage go to build-fuzz/corpus/<target> (not the
# committed corpus); findings to build-fuzz/findings/<target>/. To keep a
# finding as a regression case, copy it to tests/fuzz/regressions/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=${1:-60}
B=${FUZZ_BUILD:-build-fuzz}
command -v clang >/dev/null || { echo "fuzz: clang is not installed (apt-get install clang)" >&2; exit 1; }
CC=clang cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DJARIP_FUZZ=ON >/dev/null
if ! cmake --build "$B" -j "$(nproc)" > "$B/build.log" 2>&1; then
  grep -E "error" "$B/build.log" >&2 || tail -20 "$B/build.log" >&2
  echo "fuzz: the build failed" >&2
  exit 1
fi
targets=${FUZZ_TARGETS:-$(cd tests/fuzz && ls fuzz_*.c | sed 's/^fuzz_//; s/\.c$//')}
# ASan's leak check stays on (libFuzzer reports a leak as a finding); UBSan
# stops at the first report (the build also uses -fno-sanitize-recover).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
bad=0
printf '%-16s %14s %10s %8s %s\n' target executions exec/s corpus result
for t in $targets; do
  bin="$B/fuzz_$t"
  [ -x "$bin" ] || { echo "fuzz: no target $bin" >&2; bad=1; continue; }
  mkdir -p "$B/corpus/$t" "$B/findings/$t" tests/fuzz/corpus/$t
  dict=(); [ -f tests/fuzz/dict/$t.dict ] && dict=(-dict=tests/fuzz/dict/$t.dict)
  runs=(); [ -n "${FUZZ_RUNS:-}" ] && runs=(-runs="$FUZZ_RUNS")
  log="$B/findings/$t/last.log"
  set +e
  nice -n "${FUZZ_NICE:-19}" "$bin" -max_total_time="$SECONDS_PER" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    "${runs[@]}" "${dict[@]}" -artifact_prefix="$B/findings/$t/" "$B/corpus/$t" "tests/fuzz/corpus/$t" > "$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  ncorp=$(ls "$B/corpus/$t" "tests/fuzz/corpus/$t" | grep -cv -e '^$' -e ':$' || true)
  result=ok
  if [ $rc -ne 0 ]; then
    result="FOUND: $(grep -m1 -E 'ERROR|runtime error|SUMMARY' "$log" | cut -c1-120) (see $log)"
    bad=1
  fi
  printf '%-16s %14s %10s %8s %s\n' "$t" "${execs:-?}" "${rate:-?}" "$ncorp" "$result"
  # replay every input that ever crashed this target
  if compgen -G "tests/fuzz/regressions/$t/*" >/dev/null; then
    if ! "$bin" -timeout=10 -rss_limit_mb=2048 tests/fuzz/regressions/$t/* > "$B/findings/$t/regressions.log" 2>&1; then
      echo "fuzz: $t: a regression input fails again (see $B/findings/$t/regressions.log)" >&2
      bad=1
    else
      echo "$t: $(ls tests/fuzz/regressions/$t | wc -l) regression inputs replayed, all pass"
    fi
  fi
done
exit $bad
