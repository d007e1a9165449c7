#!/usr/bin/env bash
# Install, build and run every test: the release build, then the unit tests
# again under AddressSanitizer + UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch_smollm2.sh || echo "test: SmolLM2 model unavailable; tests that need it will say so"
jobs=$(nproc)
(cd build && ctest --output-on-failure -j "$jobs")
echo "test: sanitizer build"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DJARIP_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$jobs" 2>&1 | grep -E "error|warning" || true
# UBSan's reports are recoverable in this build: halt_on_error makes the first one fail its test
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --output-on-failure -j "$jobs" -R "^unit/|^e2e/test_bad_input")
# Fuzzing, bounded: each libFuzzer target 15 s on its committed corpus, and
# every input that ever crashed one replayed (bench/fuzz.sh; needs clang).
echo "test: fuzz targets (15 s each) and their regression inputs"
bash bench/fuzz.sh "${JARIP_FUZZ_SECONDS:-15}"
echo "test: all passed"
