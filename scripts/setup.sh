#!/usr/bin/env bash
# Install everything jarip needs (Debian packages, PyPI packages for the
# reference tests) and build it. Idempotent: run it as often as you like.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(build-essential cmake pkg-config libdnnl-dev libopenblas-dev libpcre2-dev libjansson-dev
  zlib1g-dev libmicrohttpd-dev libomp-dev openmpi-bin libopenmpi-dev python3 python3-pip python3-numpy python3-torch
  fortunes fortunes-min iproute2 unzip time bc clang libclang-rt-14-dev chromium chromium-driver)
# PyPI packages used only by tests (reference values) and benchmarks (peers).
PIP_PACKAGES=(tokenizers tiktoken gguf openai selenium)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

pip_missing=()
for p in "${PIP_PACKAGES[@]}"; do
  /usr/bin/python3 -c "import $p" 2>/dev/null || pip_missing+=("$p")
done
if [ ${#pip_missing[@]} -gt 0 ]; then
  echo "setup: installing PyPI packages: ${pip_missing[*]}"
  /usr/bin/python3 -m pip install -q --break-system-packages "${pip_missing[@]}"
fi

# Hugging Face transformers + PEFT, the peers of tests/reference/test_lora_vs_peft.py and
# bench/finetune_vs_peft.sh, in a venv that sees Debian's torch 1.13 (as scripts/make_eval_fixtures.sh
# makes it). transformers 4.46 is the last series that runs on torch 1.13; PEFT 0.13.2 runs on both but
# asks for torch>=1.13.0, which Debian's 1.13.0a0 does not satisfy: --no-deps keeps pip from replacing
# it with torch 2.x (its other dependencies are Debian's or transformers').
EVAL_VENV="${EVAL_VENV:-$HOME/.cache/jarip/venv-eval}"
if ! "$EVAL_VENV/bin/python" -c "import transformers, accelerate, gguf, peft" 2>/dev/null; then
  echo "setup: installing transformers, accelerate, gguf and peft into $EVAL_VENV"
  { [ -x "$EVAL_VENV/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$EVAL_VENV"; } &&
    "$EVAL_VENV/bin/pip" install -q "transformers==4.46.3" "accelerate<1.2" gguf &&
    "$EVAL_VENV/bin/pip" install -q --no-deps "peft==0.13.2" ||
    echo "setup: could not install them (offline?): test_lora_vs_peft will skip, the benchmark has no peer"
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" 2>&1 | grep -E "error|warning" || true
test -x build/jarip || { echo "setup: build failed" >&2; exit 1; }
echo "setup: build/jarip is ready"
