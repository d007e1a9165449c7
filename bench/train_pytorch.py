"""The PyTorch peer of `jarip bench train`: GPT-2 124M (or another GPT-2
shape) trained in float32 on CPU on random tokens, one full optimizer step
per iteration (forward, cross-entropy, backward, global grad-norm clip,
AdamW with decay on matrices only), as jarip's trainer does.
--precision bf16: the forward and loss under torch.autocast("cpu",
torch.bfloat16), PyTorch's fastest CPU mode (float32 weights and optimizer,
matmuls in bf16), the peer of `jarip bench train --precision bf16`.

  python train_pytorch.py --batch 8 --seq 256 --steps 3 --threads 2 [--precision bf16]

Prints `torch: VERSION (...)`, one line per step and finally
`tokens_per_s: X` (median over the timed steps, after --warmup untimed ones).
Runs with whatever torch the interpreter imports (bench/train_vs_pytorch.sh
picks the fastest one available).
"""
import argparse
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.up = nn.Linear(d, 4 * d)
        self.down = nn.Linear(4 * d, d)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in (q, k, v))
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # torch 1.x
            s = (q @ k.transpose(-1, -2)) / math.sqrt(C // self.h)
            s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
            y = s.softmax(-1) @ v
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.down(F.gelu(self.up(self.ln2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, vocab, ctx, layers, d, heads):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.lnf = nn.LayerNorm(d)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith(("proj.weight", "down.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for b in self.blocks:
            x = b(x)
        logits = F.linear(self.lnf(x), self.wte.weight)  # tied lm_head
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3, help="timed steps")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    a = ap.parse_args()
    if a.seq > a.ctx:
        sys.exit("train_pytorch: --seq %d exceeds --ctx %d" % (a.seq, a.ctx))
    torch.set_num_threads(a.threads)
    torch.manual_seed(1337)
    blas = "MKL" if torch.backends.mkl.is_available() else "OpenBLAS/other"
    print("torch: %s (%s, %d threads, mkldnn %s, %s)" % (torch.__version__, blas, torch.get_num_threads(),
                                                          torch.backends.mkldnn.is_available(), a.precision), flush=True)
    model = GPT2(a.vocab, a.ctx, a.layers, a.d_model, a.heads)
    n = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() == 2 and p is not model.wte.weight and
             p is not model.wpe.weight]
    ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in ids]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8)
    print("parameters: %d" % n, flush=True)
    g = torch.Generator().manual_seed(0)
    rates = []
    for step in range(a.warmup + a.steps):
        tok = torch.randint(0, a.vocab, (a.batch, a.seq + 1), generator=g)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if a.precision == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(tok[:, :-1], tok[:, 1:])
        else:
            loss = model(tok[:, :-1], tok[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        rate = a.batch * a.seq / dt
        timed = step >= a.warmup
        if timed:
            rates.append(rate)
        print("step %d loss %.4f %.2f s %.1f tok/s%s" % (step + 1, loss.item(), dt, rate, "" if timed else " (warmup)"),
              flush=True)
    print("tokens_per_s: %.2f" % statistics.median(rates))


if __name__ == "__main__":
    main()
