#!/usr/bin/env python3
"""Reference outputs of llama.cpp for jarip's GGUF inference tests.

Runs SmolLM2-135M-Instruct Q4_1 (models/, see scripts/fetch_smollm2.sh) in
llama.cpp through PyPI's llama-cpp-python (which builds llama.cpp from
source) on a fixed set of prompts and writes, into tests/fixtures/llamacpp/:

  smollm2_q4_1.json         per prompt: the messages or raw text, the prompt
                            text rendered by the GGUF's own Jinja chat template
                            (llama-cpp-python's Jinja2ChatFormatter), llama.cpp's
                            prompt token ids, 64 greedy token ids (argmax of the
                            logits, end-of-turn tokens not stopping it), the
                            top-1 minus top-2 logit margin at each step, and
                            the same 64 ids with llama.cpp's default f16 KV
                            cache (informational)
  smollm2_q4_1.logits.bin   per prompt, the full-vocabulary logits of the last
                            prompt position, float32 little-endian, in order

llama.cpp settings: n_ctx 2048, n_batch = n_ubatch = 512 (a prompt over 512
tokens runs as two batches), F32 K/V cache, flash attention off, 2 threads.
F32 K/V makes the comparison about the model arithmetic; llama.cpp's default
f16 cache rounds every key and value to half precision, which jarip does not.

Usage: /usr/bin/python3 scripts/make_llamacpp_fixtures.py [model.gguf]
Needs: pip install llama-cpp-python (and numpy).
"""
import json
import os
import struct
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "llamacpp")
N_GEN = 64

LONG_TEXT = """\
The lighthouse keeper's log, kept over one winter on a small northern island, reads like a quiet novel. \
On the first of November he notes that the supply boat came late, that the lamp oil was a shade too \
thin, and that the gulls had left the cliffs earlier than usual. By the tenth he has repaired the \
rain gauge twice and begun to teach himself the names of the stars he sees through the gallery \
windows: Capella, Aldebaran, the slow wheel of the Plough. He writes that the sea sounds different \
when snow falls on it, softer, as if someone had laid a blanket over the rocks.

In December the entries grow longer. A storm takes part of the boat shed, and he spends three days \
rebuilding it from driftwood and the planks of an old crate. He records the barometer every four \
hours, the wind direction, the colour of the sky at dawn. He counts the ships that pass: a trawler \
from the south, a cargo vessel riding low, a sailing yacht whose crew waved a red flag he could not \
read. On the longest night he lights an extra lamp in the kitchen, "for company," and bakes bread \
that he admits was too dense to eat.

January brings ice. The landing stage freezes solid, and for nine days no boat can reach him. He \
rations coffee, reads the three books he has left twice over, and writes letters he knows he cannot \
send until spring. One of them, copied into the log, is to his sister: he tells her that solitude \
is not the same as loneliness, that the light must be kept whether anyone is watching or not, and \
that he has started to hear music in the hum of the generator. He asks her to plant tomatoes for him \
in April, because he misses the smell of the leaves.

In February the days lengthen and the tone of the log changes. He notices the first returning birds, \
a pair of oystercatchers arguing on the shingle. He paints the lamp room railings, mends his boots, \
and makes a list of everything he wants to do when he returns to the mainland: swim in a warm lake, \
eat an orange, listen to someone else talk for an hour without interrupting. The last entry, on the \
second of March, is short. The relief keeper has arrived; the lamp is clean; the oil is good. He \
writes that he will miss the island more than he expected, and that the sea, this morning, was the \
colour of pewter and perfectly calm.

A century later the log sits in a glass case in the harbour museum, open at the page about the snow \
on the sea. Visitors read it and fall quiet. Some of them copy the line about the light into their \
notebooks. The museum guide says that people often ask whether he was happy out there, and that she \
always answers the same way: he kept the light, and he kept the log, and both of them are still here."""

PROMPTS = [
    {"name": "en_chat", "messages": [{"role": "user", "content": "What is the capital of France?"}]},
    {"name": "en_raw", "text": "Once upon a time, in a small village by the sea, there lived"},
    {"name": "ko_chat", "messages": [{"role": "user", "content": "한국의 수도는 어디인가요? 짧게 설명해 주세요."}]},
    {"name": "code_chat", "messages": [
        {"role": "user", "content": "Write a Python function that checks whether a number is prime."}]},
    {"name": "code_raw", "text": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"},
    {"name": "multiturn", "messages": [
        {"role": "system", "content": "You are a concise assistant who answers in one or two sentences."},
        {"role": "user", "content": "I have 3 apples and buy 5 more. How many do I have?"},
        {"role": "assistant", "content": "You have 8 apples."},
        {"role": "user", "content": "And if I give half of them to a friend?"}]},
    {"name": "long_chat", "messages": [
        {"role": "user", "content": LONG_TEXT + "\n\nSummarize the text above in three sentences."}]},
    {"name": "mixed_raw", "text": "Numbers: 3.14159, 2718, 1,000,000. Emoji: 🌞🚀 👩‍💻. Symbols: <div class=\"x\">&amp;</div>\n"},
    # two prompts beyond the list (French, arithmetic with a system turn): agreement is a property
    # of the arithmetic, not of the listed prompts
    {"name": "fr_chat", "messages": [
        {"role": "user", "content": "Explique en deux phrases pourquoi le ciel est bleu."}]},
    {"name": "math_chat", "messages": [
        {"role": "system", "content": "You are a careful math tutor. Show your steps."},
        {"role": "user", "content": "A train travels 180 km in 2.5 hours. What is its average speed in km/h, "
                                    "and how long would it take to travel 252 km at that speed?"}]},
]


def render(llm, messages):
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    tmpl = llm.metadata["tokenizer.chat_template"]
    bos = llm.detokenize([llm.token_bos()], special=True).decode() if llm.token_bos() >= 0 else ""
    eos = llm.detokenize([llm.token_eos()], special=True).decode() if llm.token_eos() >= 0 else ""
    fmt = Jinja2ChatFormatter(template=tmpl, bos_token=bos, eos_token=eos, add_generation_prompt=True)
    return fmt(messages=messages).prompt


def last_logits(llm):
    """Logits of the last evaluated token (the only output row when logits_all is off)."""
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).astype(np.float32).copy()


def greedy(llm, ids):
    """Prompt, then 64 argmax tokens; logits of the last prompt position and margins."""
    llm.reset()
    llm.eval(ids)
    first = last_logits(llm)
    out, margins = [], []
    logits = first
    for _ in range(N_GEN):
        top2 = np.argsort(-logits)[:2]
        margins.append(float(logits[top2[0]] - logits[top2[1]]))
        t = int(np.argmax(logits))
        out.append(t)
        llm.eval([t])
        logits = last_logits(llm)
    return first, out, margins


def main():
    import llama_cpp
    from llama_cpp import Llama
    model = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    common = dict(model_path=model, n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=2, n_threads_batch=2,
                  flash_attn=False, verbose=False, logits_all=False)
    llm = Llama(type_k=0, type_v=0, **common)  # GGML_TYPE_F32 = 0
    llm16 = Llama(**common)
    os.makedirs(OUT, exist_ok=True)
    cases, blobs = [], []
    for p in PROMPTS:
        case = {"name": p["name"]}
        if "messages" in p:
            case["messages"] = p["messages"]
            case["prompt_text"] = render(llm, p["messages"])
        else:
            case["prompt_text"] = p["text"]
        ids = llm.tokenize(case["prompt_text"].encode("utf-8"), add_bos=False, special=True)
        case["prompt_ids"] = ids
        first, gen, margins = greedy(llm, ids)
        case["generated"] = gen
        case["margins"] = [round(m, 5) for m in margins]
        case["generated_f16kv"] = greedy(llm16, ids)[1]
        case["text"] = llm.detokenize(gen, special=True).decode("utf-8", errors="replace")
        blobs.append(first)
        cases.append(case)
        print(f"{p['name']}: {len(ids)} prompt tokens, min margin {min(margins):.4f}, "
              f"f16kv agrees on {sum(a == b for a, b in zip(gen, case['generated_f16kv']))}/{N_GEN}: {case['text'][:60]!r}")
    meta = {
        "model": os.path.basename(model),
        "llama_cpp_python": llama_cpp.__version__,
        "settings": "n_ctx 2048, n_batch 512, n_ubatch 512, type_k/type_v f32, flash_attn off, threads 2, "
                    "greedy argmax of llama.cpp's logits, add_bos false (as the GGUF asks), special tokens parsed",
        "n_vocab": int(llm.n_vocab()),
        "n_generated": N_GEN,
        "logits_file": "smollm2_q4_1.logits.bin",
        "cases": cases,
    }
    with open(os.path.join(OUT, "smollm2_q4_1.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)
    with open(os.path.join(OUT, "smollm2_q4_1.logits.bin"), "wb") as f:
        for b in blobs:
            f.write(struct.pack(f"<{b.size}f", *b.tolist()))
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
