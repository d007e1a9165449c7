"""jarip's engine against PyTorch (CPU).

Usage (CTest): /usr/bin/python3 test_model_vs_pytorch.py BUILD/jarip

For each tiny config (GPT-2; Llama with GQA + RoPE + SwiGLU, untied; the same
with NeoX RoPE and head_dim != d_model/n_head; a two-layer SwiGLU MoE top-2 of
4; a one-layer GELU MoE with biases, top-1 of 3) it writes random weights at
larger-than-init scales and a random batch with some ignored (-1) targets,
runs build/jarip_ref (the engine in float32) and the PyTorch model in
tests/reference/ref_model.py (written from the config semantics) in float64,
and compares:
  - logits, loss, and the gradient of every parameter tensor;
  - the weights after 3 AdamW steps on that batch (torch.optim.AdamW with
    beta1 .9, beta2 .95, eps 1e-8, weight decay 0.1 on matrices only,
    torch.nn.utils.clip_grad_norm_ with a clip that is active on step 1).
Error of a tensor = max|jarip - ref| / max|ref| (relative to the tensor's
largest magnitude); the bound is 1e-4 for every tensor. The same PyTorch
model run in float32 is measured the same way and printed as the floor that
float32 arithmetic itself sets.

Then it runs `jarip train` briefly on a generated text file and checks the
logged learning rates against linear warmup + cosine decay.
Any mismatch fails the test with a message naming the tensor.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_model  # noqa: E402

TOL = 1e-4
ADAM = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
ADAM_STEPS = 3

CONFIGS = [
    ("gpt2", dict(arch="gpt2", vocab_size=61, context_length=16, n_layer=2, d_model=32, n_head=4, d_ff=128),
     3, 11),
    ("llama-gqa", dict(arch="llama", vocab_size=67, context_length=32, n_layer=2, d_model=48, n_head=6,
                       n_kv_head=2, d_ff=80, rope_theta=1000.0), 2, 13),
    ("llama-neox-hd", dict(arch="llama", vocab_size=59, context_length=32, n_layer=2, d_model=40, n_head=4,
                           n_kv_head=2, head_dim=12, d_ff=72, rope_style="neox"), 2, 9),
    ("moe-swiglu-top2", dict(arch="llama", vocab_size=53, context_length=32, n_layer=2, d_model=32, n_head=4,
                             n_kv_head=2, d_ff=48, n_expert=4, n_expert_active=2, moe_aux_coef=0.1), 2, 13),
    ("moe-gelu-top1", dict(arch="gpt2", vocab_size=47, context_length=16, n_layer=1, d_model=32, n_head=2,
                           d_ff=64, n_expert=3, n_expert_active=1, moe_aux_coef=0.1), 3, 7),
]

failures = []


def check(what, err, tol=TOL):
    ok = err <= tol
    if not ok:
        failures.append("%s: error %.3e > %.0e" % (what, err, tol))
    return ok


def rel_err(a, b):
    """max|a-b| / max|b| over a tensor (0-d tensors: |a-b|/|b|)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = np.max(np.abs(b)) if b.size else 0.0
    diff = np.max(np.abs(a - b)) if b.size else 0.0
    if scale == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return float(diff / scale)


def run(cmd, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if p.returncode != 0:
        sys.exit("FAIL: %s exited %d: %s" % (" ".join(cmd), p.returncode, p.stderr.strip()))
    return p


def random_weights(c, shapes, gen):
    """Larger-than-init scales so every path matters: unit-ish activations,
    attention scores of order 1, decisive routers, norm gains away from 1."""
    P = {}
    for name, shape in shapes.items():
        if name.endswith("norm.weight"):
            t = 1.0 + 0.3 * torch.randn(shape, generator=gen, dtype=torch.float64)
        elif name.endswith(".bias"):
            t = 0.2 * torch.randn(shape, generator=gen, dtype=torch.float64)
        elif name.startswith(("token_embd", "position_embd", "output.")):
            t = 0.3 * torch.randn(shape, generator=gen, dtype=torch.float64)
        elif "ffn_gate_inp" in name:
            t = 3.0 / math.sqrt(shape[-1]) * torch.randn(shape, generator=gen, dtype=torch.float64)
        else:
            t = 1.0 / math.sqrt(shape[-1]) * torch.randn(shape, generator=gen, dtype=torch.float64)
        P[name] = t.float().double()  # exactly representable in float32
    return P


def to_flat(P, reg, n):
    flat = np.zeros(n, dtype=np.float32)
    for t in reg:
        flat[t["offset"]:t["offset"] + t["numel"]] = P[t["name"]].numpy().astype(np.float32).ravel()
    return flat


def from_flat(flat, reg, shapes):
    return {t["name"]: flat[t["offset"]:t["offset"] + t["numel"]].reshape(shapes[t["name"]]) for t in reg}


def ref_pass(c, P0, inp, tgt, dtype):
    P = {k: v.to(dtype).clone().requires_grad_(True) for k, v in P0.items()}
    logits, loss, ce, aux, stats = ref_model.forward(c, P, inp, tgt)
    loss.backward()
    return P, logits.detach(), loss.detach(), aux, stats


def ref_adam(c, P0, inp, tgt, dtype, clip):
    """ADAM_STEPS steps of torch.optim.AdamW on the same batch, decay on matrices only."""
    P = {k: v.to(dtype).clone().requires_grad_(True) for k, v in P0.items()}
    decay = [v for k, v in P.items() if ref_model.decays(k, v.shape)]
    no_decay = [v for k, v in P.items() if not ref_model.decays(k, v.shape)]
    opt = torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], **ADAM)
    norms = []
    for _ in range(ADAM_STEPS):
        opt.zero_grad()
        ref_model.forward(c, P, inp, tgt)[1].backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(list(P.values()), clip)))
        opt.step()
    return {k: v.detach() for k, v in P.items()}, norms


def compare_config(tool, tmp, name, cfg, B, T, seed):
    c = ref_model.config_defaults(cfg)
    d = os.path.join(tmp, name)
    os.makedirs(d)
    cfg_path = os.path.join(d, "config.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    run([tool, "--config", cfg_path, "--registry-out", os.path.join(d, "registry.json")])
    with open(os.path.join(d, "registry.json")) as f:
        regj = json.load(f)
    reg, n = regj["tensors"], regj["n_params"]

    # the registry is the architecture's parameter list, with decay on matrices only
    shapes = ref_model.param_shapes(c)
    got = {t["name"]: tuple(t["shape"]) for t in reg}
    if got != shapes:
        sys.exit("FAIL %s: registry differs from the architecture:\n  jarip %s\n  ref   %s" % (name, got, shapes))
    off = 0
    for t in reg:
        if t["offset"] != off or t["numel"] != int(np.prod(t["shape"])):
            sys.exit("FAIL %s: registry offsets are not contiguous at %s" % (name, t["name"]))
        off += t["numel"]
        if ("decay" in t["flags"]) != ref_model.decays(t["name"], t["shape"]):
            failures.append("%s: %s has weight decay %s, expected %s" % (
                name, t["name"], "decay" in t["flags"], ref_model.decays(t["name"], t["shape"])))
    if off != n:
        sys.exit("FAIL %s: n_params %d != sum of tensors %d" % (name, n, off))

    # a batch whose MoE routing has no near-tie that float32 could flip (the
    # first seed that qualifies; deterministic)
    for attempt in range(50):
        gen = torch.Generator().manual_seed(seed * 100 + attempt)
        P0 = random_weights(c, shapes, gen)
        V = c["vocab_size"]
        tok = torch.randint(0, V, (B, T + 1), generator=gen, dtype=torch.int64)
        inp, tgt = tok[:, :T].clone(), tok[:, 1:].clone()
        ign = torch.rand(B, T, generator=gen) < 0.2
        ign[0, 0] = True
        tgt[ign] = -1
        # float64 reference (the truth) and float32 PyTorch (the noise floor)
        P64, logits64, loss64, aux64, stats = ref_pass(c, P0, inp, tgt, torch.float64)
        k = c["n_expert_active"]
        margin = min([float((pr.detach().sort(-1, descending=True)[0][:, k - 1] -
                             pr.detach().sort(-1, descending=True)[0][:, k]).min()) for pr, _ in stats] + [1.0])
        if margin >= 1e-3:
            break
    else:
        sys.exit("FAIL %s: no seed without a routing near-tie" % name)
    P32, logits32, loss32, _, _ = ref_pass(c, P0, inp, tgt, torch.float32)
    to_flat(P0, reg, n).tofile(os.path.join(d, "weights.f32"))
    tok.numpy().astype("<i4").tofile(os.path.join(d, "tokens.i32"))
    tgt.numpy().astype("<i4").tofile(os.path.join(d, "targets.i32"))
    gnorm = math.sqrt(sum(float((p.grad ** 2).sum()) for p in P64.values()))
    clip = 0.7 * gnorm  # step 1 is clipped; later steps may or may not be

    out = {k: os.path.join(d, k) for k in ("logits.f32", "grads.f32", "final.f32", "result.json")}
    run([tool, "--config", cfg_path, "--weights", os.path.join(d, "weights.f32"), "--tokens",
         os.path.join(d, "tokens.i32"), "--targets", os.path.join(d, "targets.i32"), "--batch", str(B), "--seq",
         str(T), "--logits-out", out["logits.f32"], "--grads-out", out["grads.f32"], "--weights-out",
         out["final.f32"], "--result-out", out["result.json"], "--steps", str(ADAM_STEPS), "--lr", str(ADAM["lr"]),
         "--weight-decay", str(ADAM["weight_decay"]), "--beta1", str(ADAM["betas"][0]), "--beta2",
         str(ADAM["betas"][1]), "--eps", str(ADAM["eps"]), "--grad-clip", repr(clip), "--threads", "2"])
    with open(out["result.json"]) as f:
        res = json.load(f)
    logits_j = np.fromfile(out["logits.f32"], dtype="<f4").reshape(B, T, V)
    grads_j = from_flat(np.fromfile(out["grads.f32"], dtype="<f4"), reg, shapes)
    final_j = from_flat(np.fromfile(out["final.f32"], dtype="<f4"), reg, shapes)

    print("== %s: %d params, batch %dx%d, %d targets of %d counted" % (
        name, n, B, T, res["count"], B * T))
    if res["count"] != int((tgt >= 0).sum()):
        failures.append("%s: jarip counted %d targets, expected %d" % (name, res["count"], int((tgt >= 0).sum())))
    e_l, e_l32 = rel_err(logits_j, logits64), rel_err(logits32, logits64)
    e_loss, e_loss32 = rel_err(res["loss"], loss64), rel_err(loss32, loss64)
    print("  logits   jarip %.2e  torch-f32 %.2e" % (e_l, e_l32))
    print("  loss     jarip %.2e  torch-f32 %.2e  (jarip %.6f, ref %.6f)" % (e_loss, e_loss32, res["loss"],
                                                                          float(loss64)))
    check("%s logits" % name, e_l)
    check("%s loss" % name, e_loss)
    if c["n_expert"]:
        e_aux = rel_err(res["aux_loss"], float(aux64))
        # Hugging Face's formula applied to each sequence, averaged over the batch
        Tq = tgt.shape[1]
        nseq = stats[0][0].shape[0] // Tq
        hf = sum(float(ref_model.aux_loss_hf_mixtral(c, [(p[b * Tq:(b + 1) * Tq], k[b * Tq:(b + 1) * Tq])
                                                          for p, k in stats])) for b in range(nseq)) / nseq
        print("  aux loss jarip %.8f  per-layer ref %.8f (err %.2e); HF-Mixtral all-layers form per sequence %.8f%s" % (
            res["aux_loss"], float(aux64), e_aux, hf,
            " (same: one MoE layer)" if c["n_layer"] == 1 else ""))
        check("%s aux loss" % name, e_aux)
        if c["n_layer"] == 1:
            check("%s aux loss vs HF Mixtral" % name, rel_err(res["aux_loss"], hf))
    # A gradient that is zero in exact arithmetic (the key bias: softmax does not
    # change when every score of a query shifts by the same q.b_k) is float
    # noise in both; relative error is meaningless there, so such a tensor must
    # instead be zero to within 1e-6 of the model's largest gradient.
    gmax = max(float(P64[t["name"]].grad.abs().max()) for t in reg)
    zero_grad = set()
    worst, worst32, worst_name = 0.0, 0.0, ""
    for t in reg:
        k = t["name"]
        if not np.all(np.isfinite(grads_j[k])):
            check("%s grad %s is finite" % (name, k), math.inf)
            continue
        if float(P64[k].grad.abs().max()) < 1e-12 * gmax:
            zero_grad.add(k)
            check("%s grad %s (exactly zero in theory) / largest gradient" % (name, k),
                  float(np.abs(grads_j[k]).max()) / gmax, 1e-6)
            continue
        e = rel_err(grads_j[k], P64[k].grad.numpy())
        e32 = rel_err(P32[k].grad.numpy(), P64[k].grad.numpy())
        check("%s grad %s" % (name, k), e)
        worst32 = max(worst32, e32)
        if e >= worst:
            worst, worst_name = e, k
    print("  grads    jarip %.2e (worst: %s)  torch-f32 %.2e  over %d tensors%s" % (
        worst, worst_name, worst32, len(reg) - len(zero_grad),
        "; zero in theory, |jarip| <= %.1e of the largest: %s" % (
            max(float(np.abs(grads_j[k]).max()) for k in zero_grad) / gmax, ", ".join(sorted(zero_grad)))
        if zero_grad else ""))
    Pf64, norms = ref_adam(c, P0, inp, tgt, torch.float64, clip)
    Pf32, _ = ref_adam(c, P0, inp, tgt, torch.float32, clip)
    jn = [s["grad_norm"] for s in res["steps"]]
    e_norm = max(rel_err(a, b) for a, b in zip(jn, norms))
    check("%s grad norms over the AdamW steps" % name, e_norm)
    wa, wa32, upd, wname = 0.0, 0.0, 0.0, ""
    for t in reg:
        k = t["name"]
        ref, w0 = Pf64[k].numpy(), P0[k].numpy()
        if k in zero_grad:
            # Adam turns gradient noise into steps of up to lr: only bound them
            check("%s weights of %s (zero gradient) moved at most %d x lr" % (name, k, ADAM_STEPS),
                  float(np.abs(final_j[k] - w0).max()), ADAM_STEPS * ADAM["lr"] * 1.001)
            continue
        e = rel_err(final_j[k], ref)
        check("%s weights after %d AdamW steps: %s" % (name, ADAM_STEPS, k), e)
        wa32 = max(wa32, rel_err(Pf32[k].numpy(), ref))
        # the same difference relative to how far the weights moved (informational:
        # Adam's g/(|g|+eps) amplifies float noise on near-zero gradients)
        upd = max(upd, rel_err(final_j[k] - w0, ref - w0))
        if e >= wa:
            wa, wname = e, k
    clipped = [s["clip_scale"] for s in res["steps"]]
    print("  adamw    jarip %.2e (worst: %s)  torch-f32 %.2e  | update-relative %.2e | grad norms %s clip %.4f "
          "scales %s" % (wa, wname, wa32, upd, ["%.4f" % x for x in jn], clip, ["%.3f" % x for x in clipped]))
    if clipped[0] >= 1.0:
        failures.append("%s: clipping was not active on step 1 (scale %g)" % (name, clipped[0]))
    return wa


def lr_formula(s, lr, lr_min, warmup, steps):
    """Linear warmup to lr over `warmup` steps (step s is 0-based, the first
    step gets lr/warmup), then half a cosine from lr down to lr_min at `steps`."""
    if s < warmup:
        return lr * (s + 1) / warmup
    p = (s - warmup) / (steps - warmup)
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * p))


def check_schedule(jarip, tmp):
    text = os.path.join(tmp, "text.txt")
    rng = np.random.default_rng(7)
    words = ["alpha", "beta", "gamma", "delta", "sun", "moon", "river", "stone", "the", "a", "of", "and"]
    with open(text, "w") as f:
        for _ in range(3000):
            f.write(" ".join(rng.choice(words, size=8)) + ".\n")
    cfg = os.path.join(tmp, "sched.json")
    with open(cfg, "w") as f:
        json.dump(dict(arch="gpt2", vocab_size=256, context_length=32, n_layer=1, d_model=32, n_head=2), f)
    cases = [  # (flags, lr, lr_min, warmup, steps)
        (["--lr", "1e-3", "--lr-min", "1e-4", "--warmup", "5"], 1e-3, 1e-4, 5, 25),
        (["--lr", "2e-3"], 2e-3, 2e-4, 3, 30),  # defaults: warmup min(100, steps/10), lr_min lr/10
    ]
    worst = 0.0
    for i, (flags, lr, lr_min, warmup, steps) in enumerate(cases):
        out = os.path.join(tmp, "run%d" % i)
        run([jarip, "train", "--config", cfg, "--data", text, "--out", out, "--steps", str(steps), "--batch", "2",
             "--seq", "16", "--eval-every", "0", "--eval-batches", "1", "--threads", "2", "--quiet"] + flags)
        with open(os.path.join(out, "log.jsonl")) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        if [r["step"] for r in rows] != list(range(1, steps + 1)):
            failures.append("schedule case %d: log.jsonl steps are %s" % (i, [r["step"] for r in rows]))
            continue
        for r in rows:
            want = lr_formula(r["step"] - 1, lr, lr_min, warmup, steps)
            e = abs(r["lr"] - want) / want
            worst = max(worst, e)
            if e > 1e-6:
                failures.append("schedule case %d step %d: lr %.9g, expected %.9g" % (i, r["step"], r["lr"], want))
    print("== lr schedule (warmup + cosine) over %d logged steps: max relative error %.2e" % (
        sum(c[4] for c in cases), worst))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: test_model_vs_pytorch.py BUILD_DIR/jarip")
    jarip = os.path.abspath(sys.argv[1])
    tool = os.path.join(os.path.dirname(jarip), "jarip_ref")
    for p in (jarip, tool):
        if not os.access(p, os.X_OK):
            sys.exit("FAIL: %s is missing (build it first)" % p)
    torch.set_num_threads(2)
    print("torch %s, reference in float64; error = max|jarip-ref| / max|ref| per tensor, bound %.0e" % (
        torch.__version__, TOL))
    with tempfile.TemporaryDirectory(prefix="jarip_ref_") as tmp:
        for i, (name, cfg, B, T) in enumerate(CONFIGS):
            compare_config(tool, tmp, name, cfg, B, T, 1234 + i)
        check_schedule(jarip, tmp)
    if failures:
        print("FAILED (%d):" % len(failures))
        for f in failures:
            print("  " + f)
        sys.exit(1)
    print("all comparisons within %.0e" % TOL)


if __name__ == "__main__":
    main()
