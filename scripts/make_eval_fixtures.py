#!/usr/bin/env python3
"""Reference figures for tests/e2e/test_eval.sh, from the tools people trust.

  perplexity  llama.cpp's llama-perplexity on tests/fixtures/eval/text.txt,
              -c 128 --chunks 4 -fa off, SmolLM2-135M Q8_0 and Q4_1 (2
              threads, its defaults otherwise). The build must be AVX2 without
              AVX-512 (make_eval_fixtures.sh builds one), and flash attention
              off: that is the arithmetic jarip's llama.cpp-numerics kernels
              reproduce bit for bit (llama-cpp-python's default; README). With
              8-bit activations a quantized model's perplexity on a few hundred
              tokens moves by 0.05-0.5% under any change of rounding: llama.cpp's
              native AVX-512 build gives Q4_1 13.4194 with flash attention,
              13.4598 without, against 13.4799 here; jarip itself 13.5609 /
              13.5672 on Q8_0 with an F16 / F32 KV cache.
  kld         llama-perplexity --kl-divergence-base (F16) then
              --kl-divergence (Q4_1): mean KLD, percentiles, same top
  choice      Hugging Face transformers (GGUF loader, float32) log-likelihood
              of each choice of tests/fixtures/eval/tasks.jsonl, tokenized as
              lm-evaluation-harness does (_encode_pair, no special tokens, an
              empty context replaced by the BOS token)

Writes tests/fixtures/eval/expected.json. Run through
scripts/make_eval_fixtures.sh (it prepares a venv with transformers).
Usage: make_eval_fixtures.py MODELS_DIR LLAMACPP_BIN_DIR [--skip-llamacpp] [--skip-hf]
"""
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "tests", "fixtures", "eval")
TEXT = os.path.join(FIX, "text.txt")
TASKS = os.path.join(FIX, "tasks.jsonl")
OUT = os.path.join(FIX, "expected.json")
CTX = 128
CHUNKS = 4  # the first 4 of the text's 8 chunks: the test runs in seconds
NAME = "SmolLM2-135M-Instruct.%s.gguf"


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), p.stderr[-3000:]))
    return p.stdout + p.stderr


def num(pattern, text):
    m = re.search(pattern, text)
    if not m:
        sys.exit("no match for %r in llama-perplexity's output:\n%s" % (pattern, text[-3000:]))
    return float(m.group(1))


def llamacpp(models, bindir):
    exe = os.path.join(bindir, "llama-perplexity")
    base = [exe, "-f", TEXT, "-c", str(CTX), "--chunks", str(CHUNKS), "-t", "2", "-fa", "off"]
    res = {"ctx": CTX, "chunks": CHUNKS, "tool": run([exe, "--version"]).strip().splitlines()[-1]}
    for q in ("Q8_0", "Q4_1"):
        out = run(base + ["-m", os.path.join(models, NAME % q)])
        res["ppl_" + q] = num(r"Final estimate: PPL = ([0-9.]+)", out)
        res["ppl_err_" + q] = num(r"Final estimate: PPL = [0-9.]+ \+/- ([0-9.]+)", out)
    with tempfile.TemporaryDirectory() as tmp:
        kl = os.path.join(tmp, "f16.kld")
        run(base + ["-m", os.path.join(models, NAME % "F16"), "--kl-divergence-base", kl])
        out = run(base + ["-m", os.path.join(models, NAME % "Q4_1"), "--kl-divergence-base", kl, "--kl-divergence"])
    k = {}
    for key, pat in [("ppl", r"Mean PPL\(Q\)\s*:\s*([0-9.]+)"), ("base_ppl", r"Mean PPL\(base\)\s*:\s*([0-9.]+)"),
                     ("kld", r"Mean\s+KLD:\s*(-?[0-9.]+)"), ("kld_err", r"Mean\s+KLD:\s*-?[0-9.]+\s*±\s*([0-9.]+)"),
                     ("kld_max", r"Maximum KLD:\s*([0-9.]+)"), ("kld_p99", r"99\.0%\s+KLD:\s*([0-9.]+)"),
                     ("kld_p90", r"90\.0%\s+KLD:\s*([0-9.]+)"), ("kld_median", r"Median\s+KLD:\s*([0-9.]+)"),
                     ("same_top", r"Same top p:\s*([0-9.]+)")]:
        k[key] = num(pat, out)
    k["same_top"] /= 100.0
    res["kld_F16_Q4_1"] = k
    return res


def hf_choice(models):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    f = NAME % "F16"
    tok = AutoTokenizer.from_pretrained(models, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(models, gguf_file=f, torch_dtype=torch.float32,
                                                 tie_word_embeddings=True)
    model.eval()
    enc = lambda s: tok(s, add_special_tokens=False).input_ids

    def encode_pair(context, cont):  # lm-evaluation-harness's _encode_pair
        n = len(context) - len(context.rstrip())
        if n > 0:
            cont = context[-n:] + cont
            context = context[:-n]
        whole, ctx = enc(context + cont), enc(context)
        return ctx, whole[len(ctx):]

    out = []
    with open(TASKS) as fh:
        for line in fh:
            if not line.strip():
                continue
            t = json.loads(line)
            lls, ntok = [], []
            for ch in t["choices"]:
                ctx, cont = encode_pair(t["context"], " " + ch)
                if not ctx:
                    ctx = [tok.bos_token_id]
                ids = torch.tensor([ctx + cont[:-1]])
                with torch.no_grad():
                    logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
                ll = sum(logp[len(ctx) - 1 + i, c].item() for i, c in enumerate(cont))
                lls.append(ll)
                ntok.append(len(cont))
            out.append({"ll": lls, "tokens": ntok})
    import transformers
    return {"model": f, "transformers": transformers.__version__, "torch": torch.__version__, "tasks": out}


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    models, bindir = sys.argv[1], sys.argv[2]
    res = json.load(open(OUT)) if os.path.exists(OUT) else {}
    if "--skip-llamacpp" not in sys.argv:
        res["llamacpp"] = llamacpp(models, bindir)
    if "--skip-hf" not in sys.argv:
        res["hf_choice"] = hf_choice(models)
    with open(OUT + ".tmp", "w") as fh:
        json.dump(res, fh, indent=1)
        fh.write("\n")
    os.replace(OUT + ".tmp", OUT)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
