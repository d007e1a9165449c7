"""jarip's LoRA fine-tuning against PyTorch (CPU), on a tiny Llama.

Usage (CTest): /usr/bin/python3 test_lora_vs_pytorch.py BUILD/jarip

The reference is ref_model.py's Llama in float64 with PEFT's LoRA numerics
on every one of q,k,v,o,gate,up,down: y = x W^T + (alpha / r) (x A^T) B^T,
W frozen, A (r, in) and B (out, r) trained (written here as the effective
weight W + (alpha / r) B A inside the same autograd graph: the same function
and the same gradients of A and B). PEFT itself, on transformers' Llama, is
test_lora_vs_peft.py's peer; it reuses run_jarip below.

For a frozen base in f32 and in q8_0 (the base as a quantized GGUF holds it;
the reference gets the engine's dequantized values), with the same base,
the same A and B (B non-zero, so A has a gradient) and the same batch
(some targets ignored), it compares the loss, the logits, the gradient of
every A and B, and A and B after 3 AdamW steps (torch.optim.AdamW, weight
decay 0.1, clipping active on step 1). Error of a tensor = max|jarip - ref|
/ max|ref|; the bound is 1e-4.
"""
import json
import math
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_model  # noqa: E402
import test_model_vs_pytorch as tm  # noqa: E402

CFG = dict(arch="llama", vocab_size=64, context_length=32, n_layer=2, d_model=64, n_head=4, n_kv_head=2, d_ff=96,
           rope_theta=1000.0)
RANK, ALPHA = 4, 8.0
TARGETS = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
B, T = 2, 16  # 32 rows: the quantized matmuls take their dequantize + GEMM path


def lora_forward(c, base, L, inp, tgt):
    """ref_model.forward with every target weight W -> W + (alpha/r) B A."""
    P = dict(base)
    for l in range(c["n_layer"]):
        for t in TARGETS:
            w = "blk.%d.%s.weight" % (l, t)
            P[w] = base[w] + (ALPHA / RANK) * L[w + ".lora_b"] @ L[w + ".lora_a"]
    return ref_model.forward(c, P, inp, tgt)


def run_jarip(tool, tmp, base_type, dropout=0.0):
    """Make a base, an adapter (A, B) and a batch, run jarip_ref on them (loss, logits,
    A/B gradients, A/B after 3 AdamW steps) and return all of it, the base as the
    engine held it (dequantized) and the adapters' order (lora_a names) included:
    test_lora_vs_peft.py reuses it. dropout > 0: jarip_ref's passes run with LoRA
    dropout (the reference must apply jarip's masks: no test here does)."""
    c = ref_model.config_defaults(CFG)
    d = os.path.join(tmp, base_type + ("_dropout" if dropout else ""))
    os.makedirs(d)
    base_cfg, lora_cfg = os.path.join(d, "base.json"), os.path.join(d, "lora.json")
    with open(base_cfg, "w") as f:
        json.dump(CFG, f)
    with open(lora_cfg, "w") as f:
        json.dump(dict(CFG, lora_rank=RANK, lora_alpha=ALPHA, lora_targets="q,k,v,o,gate,up,down",
                       lora_dropout=dropout), f)
    tm.run([tool, "--config", base_cfg, "--registry-out", os.path.join(d, "base_reg.json")])
    tm.run([tool, "--config", lora_cfg, "--registry-out", os.path.join(d, "lora_reg.json")])
    with open(os.path.join(d, "base_reg.json")) as f:
        breg = json.load(f)
    with open(os.path.join(d, "lora_reg.json")) as f:
        lreg = json.load(f)
    shapes = ref_model.param_shapes(c)
    want = {}
    for l in range(c["n_layer"]):
        for t in TARGETS:
            w = "blk.%d.%s.weight" % (l, t)
            out, inn = shapes[w]
            want[w + ".lora_a"], want[w + ".lora_b"] = (RANK, inn), (out, RANK)
    got = {t["name"]: tuple(t["shape"]) for t in lreg["tensors"]}
    if got != want:
        sys.exit("FAIL: LoRA registry %s, expected %s" % (got, want))
    gen = torch.Generator().manual_seed(4321)
    base0 = tm.random_weights(c, shapes, gen)
    L0 = {}
    for name, shp in want.items():
        if name.endswith("lora_a"):  # PEFT's Kaiming-uniform bound 1/sqrt(in)
            t = (torch.rand(shp, generator=gen, dtype=torch.float64) * 2 - 1) / math.sqrt(shp[1])
        else:  # PEFT starts B at zero; non-zero here so that A has a gradient
            t = 0.1 * torch.randn(shp, generator=gen, dtype=torch.float64)
        L0[name] = t.float().double()
    tok = torch.randint(0, c["vocab_size"], (B, T + 1), generator=gen, dtype=torch.int64)
    inp, tgt = tok[:, :T].clone(), tok[:, 1:].clone()
    tgt[torch.rand(B, T, generator=gen) < 0.25] = -1
    tm.to_flat(base0, breg["tensors"], breg["n_params"]).tofile(os.path.join(d, "base.f32"))
    tm.to_flat(L0, lreg["tensors"], lreg["n_params"]).tofile(os.path.join(d, "lora.f32"))
    tok.numpy().astype("<i4").tofile(os.path.join(d, "tokens.i32"))
    tgt.numpy().astype("<i4").tofile(os.path.join(d, "targets.i32"))
    # the float64 reference's gradient norm sets a clip active on step 1
    Lg = {k: v.clone().requires_grad_(True) for k, v in L0.items()}
    lora_forward(c, base0, Lg, inp, tgt)[1].backward()
    clip = 0.7 * math.sqrt(sum(float((p.grad ** 2).sum()) for p in Lg.values()))
    out = {k: os.path.join(d, k) for k in ("logits.f32", "grads.f32", "final.f32", "result.json", "base_used.f32")}
    tm.run([tool, "--config", lora_cfg, "--base-config", base_cfg, "--base-weights", os.path.join(d, "base.f32"),
            "--base-type", base_type, "--base-out", out["base_used.f32"], "--weights", os.path.join(d, "lora.f32"),
            "--tokens", os.path.join(d, "tokens.i32"), "--targets", os.path.join(d, "targets.i32"), "--batch", str(B),
            "--seq", str(T), "--logits-out", out["logits.f32"], "--grads-out", out["grads.f32"], "--weights-out",
            out["final.f32"], "--result-out", out["result.json"], "--steps", str(tm.ADAM_STEPS), "--lr",
            str(tm.ADAM["lr"]), "--weight-decay", str(tm.ADAM["weight_decay"]), "--beta1", str(tm.ADAM["betas"][0]),
            "--beta2", str(tm.ADAM["betas"][1]), "--eps", str(tm.ADAM["eps"]), "--grad-clip", repr(clip),
            "--threads", "2"])
    # the reference runs on the base exactly as the engine held it (dequantized q8_0)
    used = tm.from_flat(np.fromfile(out["base_used.f32"], dtype="<f4"), breg["tensors"], shapes)
    base = {k: torch.from_numpy(v.astype(np.float64)) for k, v in used.items()}
    grads = tm.from_flat(np.fromfile(out["grads.f32"], dtype="<f4"), lreg["tensors"], want)
    final = tm.from_flat(np.fromfile(out["final.f32"], dtype="<f4"), lreg["tensors"], want)
    with open(out["result.json"]) as f:
        res = json.load(f)
    order = [t["name"] for t in lreg["tensors"] if t["name"].endswith(".lora_a")]
    return dict(c=c, want=want, order=order, base=base, L0=L0, inp=inp, tgt=tgt, tok=tok, clip=clip, loss=res["loss"], grads=grads,
                final=final, logits=np.fromfile(out["logits.f32"], dtype="<f4").reshape(B, T, -1))


def compare(tool, tmp, base_type):
    j = run_jarip(tool, tmp, base_type)
    c, want, base, L0, inp, tgt, clip = (j[k] for k in ("c", "want", "base", "L0", "inp", "tgt", "clip"))
    Lg = {k: v.clone().requires_grad_(True) for k, v in L0.items()}
    logits, loss, _, _, _ = lora_forward(c, base, Lg, inp, tgt)
    loss.backward()
    worst = 0.0
    e = abs(j["loss"] - float(loss)) / abs(float(loss))
    tm.check("%s loss" % base_type, e)
    worst = max(worst, e)
    e = tm.rel_err(j["logits"], logits.detach().numpy())
    tm.check("%s logits" % base_type, e)
    worst = max(worst, e)
    for name in want:
        e = tm.rel_err(j["grads"][name], Lg[name].grad.numpy())
        tm.check("%s gradient of %s" % (base_type, name), e)
        worst = max(worst, e)
    # 3 AdamW steps on the same batch
    Lp = {k: v.clone().requires_grad_(True) for k, v in L0.items()}
    opt = torch.optim.AdamW(list(Lp.values()), **tm.ADAM)
    for _ in range(tm.ADAM_STEPS):
        opt.zero_grad()
        lora_forward(c, base, Lp, inp, tgt)[1].backward()
        torch.nn.utils.clip_grad_norm_(list(Lp.values()), clip)
        opt.step()
    for name in want:
        e = tm.rel_err(j["final"][name], Lp[name].detach().numpy())
        tm.check("%s %s after %d AdamW steps" % (base_type, name, tm.ADAM_STEPS), e)
        worst = max(worst, e)
    print("== LoRA r=%d on a %s base: loss %.6f (jarip %.6f), %d A/B tensors; worst relative error %.2e" % (
        RANK, base_type, float(loss), j["loss"], len(want), worst))


def main(compare_fn=compare):
    """Runs compare_fn(jarip_ref, tmp, base type) for an f32 and a q8_0 base; exits 1 on any failure."""
    if len(sys.argv) != 2:
        sys.exit("usage: %s BUILD_DIR/jarip" % os.path.basename(sys.argv[0]))
    tool = os.path.join(os.path.dirname(os.path.abspath(sys.argv[1])), "jarip_ref")
    if not os.access(tool, os.X_OK):
        sys.exit("FAIL: %s is missing (build it first)" % tool)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="jarip_lora_") as tmp:
        for t in ("f32", "q8_0"):
            compare_fn(tool, tmp, t)
    if tm.failures:
        print("FAILED (%d):" % len(tm.failures))
        for f in tm.failures:
            print("  " + f)
        sys.exit(1)
    print("all comparisons within %.0e" % tm.TOL)


if __name__ == "__main__":
    main()
