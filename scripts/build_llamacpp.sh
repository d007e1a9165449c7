#!/usr/bin/env bash
# Build llama.cpp's own tools (llama-server, llama-perplexity, llama-bench,
# llama-cli) from the llama.cpp tree vendored in llama-cpp-python's PyPI
# sdist: the peers of bench/ and the source of some test fixtures.
# Idempotent: does nothing when the binaries already run.
#
# Usage: scripts/build_llamacpp.sh            # native build (GGML_NATIVE=ON)
#   LLAMACPP_DIR  where to unpack and build (default ~/.cache/jarip/llama.cpp)
#   LLAMACPP_FLAGS extra CMake flags (e.g. "-DGGML_NATIVE=OFF -DGGML_AVX2=ON")
#   LLAMACPP_PY_VERSION the llama-cpp-python sdist (default 0.3.36: llama.cpp 0c1e570, the
#                 version jarip's fixtures and figures were made against)
# Prints the bin folder on its last line.
set -euo pipefail
DIR="${LLAMACPP_DIR:-$HOME/.cache/jarip/llama.cpp}"
FLAGS="${LLAMACPP_FLAGS:--DGGML_NATIVE=ON}"
BIN="$DIR/build/bin"
TOOLS="llama-server llama-perplexity llama-bench llama-cli"
ok=1
for t in $TOOLS; do [ -x "$BIN/$t" ] || ok=0; done
if [ $ok = 1 ] && "$BIN/llama-server" --version >/dev/null 2>&1; then echo "$BIN"; exit 0; fi
mkdir -p "$DIR"
if [ ! -d "$DIR/src/vendor/llama.cpp" ]; then
    tmp="$(mktemp -d)"
    python3 -m pip download --no-binary :all: --no-deps -d "$tmp" "llama-cpp-python==${LLAMACPP_PY_VERSION:-0.3.36}" >&2
    sdist="$(ls "$tmp"/llama_cpp_python-*.tar.gz | head -1)"
    rm -rf "$DIR/src"; mkdir -p "$DIR/src"
    tar -xzf "$sdist" -C "$DIR/src" --strip-components=1
    rm -rf "$tmp"
fi
# shellcheck disable=SC2086
cmake -S "$DIR/src/vendor/llama.cpp" -B "$DIR/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON \
    -DBUILD_SHARED_LIBS=OFF $FLAGS >&2
cmake --build "$DIR/build" -j "$(nproc)" --target $TOOLS >&2
"$BIN/llama-server" --version >&2
echo "$BIN"
