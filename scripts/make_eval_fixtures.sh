#!/usr/bin/env bash
# Make tests/fixtures/eval/expected.json (see scripts/make_eval_fixtures.py):
# llama-perplexity's figures and Hugging Face transformers' log-likelihoods.
# Needs models/SmolLM2-135M-Instruct.{F16,Q8_0,Q4_1}.gguf
# (scripts/fetch_smollm2.sh --all-types) and llama.cpp's tools
# (scripts/build_llamacpp.sh, here an AVX2 build in ~/.cache/jarip/llama.cpp-avx2,
# or LLAMACPP_BIN=dir of such a build); installs transformers 4.46 (the last series
# that runs on Debian's torch 1.13), gguf and accelerate into a venv that
# sees the system packages (~/.cache/jarip/venv-eval).
# Extra arguments go to the Python script (--skip-llamacpp, --skip-hf).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${EVAL_VENV:-$HOME/.cache/jarip/venv-eval}"
if ! "$venv/bin/python" -c "import transformers, accelerate, gguf" 2>/dev/null; then
    /usr/bin/python3 -m venv --system-site-packages "$venv"
    "$venv/bin/pip" install -q "transformers==4.46.3" "accelerate<1.2" gguf
fi
# llama.cpp for AVX2 without AVX-512: the arithmetic jarip reproduces (see the .py)
bin="${LLAMACPP_BIN:-$(LLAMACPP_DIR="$HOME/.cache/jarip/llama.cpp-avx2" \
    LLAMACPP_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF" \
    bash scripts/build_llamacpp.sh | tail -1)}"
"$venv/bin/python" scripts/make_eval_fixtures.py models "$bin" "$@"
