#!/usr/bin/env python3
"""llama.cpp's outputs with its default F16 KV cache, for jarip's f16 cache test.

scripts/make_llamacpp_fixtures.py records llama.cpp with an F32 K/V cache
(tests/fixtures/llamacpp/smollm2_q4_1.json). This script runs the same
prompts (the prompt ids of that fixture, so both share one tokenization)
with type_k = type_v = F16 (GGML type id 1, llama.cpp's default), flash
attention off, and writes into tests/fixtures/llamacpp/:

  smollm2_q4_1_f16kv.json        per prompt: name, prompt ids, 64 greedy ids
                                 (argmax of llama.cpp's logits, end-of-turn
                                 tokens not stopping it) and the top-1 minus
                                 top-2 margin at each step
  smollm2_q4_1_f16kv.logits.bin  per prompt, the full-vocabulary logits of the
                                 last prompt position, float32 little-endian

Other settings as the F32 fixtures: n_ctx 2048, n_batch = n_ubatch = 512
(a prompt over 512 tokens runs as two batches), 2 threads.
tests/unit/test_infer_llamacpp_f16kv.c compares jarip's --kv-type f16 with it.

Usage: /usr/bin/python3 scripts/make_llamacpp_f16kv_fixtures.py [model.gguf]
Needs: pip install llama-cpp-python (and numpy).
"""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_llamacpp_fixtures import N_GEN, OUT, ROOT, greedy  # noqa: E402  (same greedy loop and settings)

GGML_TYPE_F16 = 1


def main():
    import llama_cpp
    from llama_cpp import Llama
    model = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    with open(os.path.join(OUT, "smollm2_q4_1.json"), encoding="utf-8") as f:
        base = json.load(f)
    llm = Llama(model_path=model, n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=2, n_threads_batch=2,
                flash_attn=False, verbose=False, logits_all=False, type_k=GGML_TYPE_F16, type_v=GGML_TYPE_F16)
    cases, blobs = [], []
    for c in base["cases"]:
        first, gen, margins = greedy(llm, c["prompt_ids"])
        cases.append({"name": c["name"], "prompt_ids": c["prompt_ids"], "generated": gen,
                      "margins": [round(m, 5) for m in margins]})
        blobs.append(first)
        same = sum(a == b for a, b in zip(gen, c["generated"]))
        print(f"{c['name']}: {len(c['prompt_ids'])} prompt tokens, min margin {min(margins):.4f}, "
              f"equal to the f32-cache tokens at {same}/{N_GEN}")
    meta = dict(base, settings="n_ctx 2048, n_batch 512, n_ubatch 512, type_k/type_v f16, flash_attn off, "
                "threads 2, greedy argmax of llama.cpp's logits, prompt ids of smollm2_q4_1.json",
                logits_file="smollm2_q4_1_f16kv.logits.bin", cases=cases, llama_cpp_python=llama_cpp.__version__)
    stem = os.path.join(OUT, "smollm2_q4_1_f16kv")
    with open(stem + ".json", "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)
    with open(stem + ".logits.bin", "wb") as f:
        f.write(b"".join(struct.pack(f"<{b.size}f", *b.tolist()) for b in blobs))
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
