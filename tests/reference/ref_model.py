"""A PyTorch implementation of jarip's decoder-only transformer, written from
the config semantics (not from jarip's code) so that it can serve as the
reference in test_model_vs_pytorch.py.

Parameters live in a dict keyed by jarip's GGUF-style tensor names
("blk.0.attn_q.weight"); shapes are PyTorch's (Linear weight = (out, in)).

  GPT-2  : learned positions, LayerNorm, GELU (tanh form), biases, tied lm_head
  Llama  : RMSNorm, RoPE, SwiGLU, grouped-query attention, untied lm_head
  MoE    : softmax router over n_expert, top-k, weights renormalised over the
           k, Switch/Mixtral load-balancing loss coef * E * sum_e f_e * P_e
           per MoE layer (f_e = slots routed to e / N, P_e = mean prob of e)

RoPE rotates the pair (x[2i], x[2i+1]) (GGUF / original Llama layout) or
(x[i], x[i + D/2]) (GPT-NeoX / Hugging Face layout) by the angle
pos * theta^(-2i/D).
"""
import math

import torch
import torch.nn.functional as F


def config_defaults(cfg):
    """Fill derived fields the way the config format documents them."""
    c = dict(cfg)
    gpt2 = c["arch"] == "gpt2"
    c.setdefault("norm", "layernorm" if gpt2 else "rmsnorm")
    c.setdefault("norm_eps", 1e-5)
    c.setdefault("pos", "learned" if gpt2 else "rope")
    c.setdefault("rope_theta", 10000.0)
    c.setdefault("rope_style", "gguf")
    c.setdefault("act", "gelu" if gpt2 else "swiglu")
    c.setdefault("bias", gpt2)
    c.setdefault("tie_embeddings", gpt2)
    c.setdefault("n_kv_head", c["n_head"])
    c.setdefault("head_dim", c["d_model"] // c["n_head"])
    c.setdefault("n_expert", 0)
    c.setdefault("n_expert_active", 0)
    c.setdefault("moe_aux_coef", 0.01)
    if "d_ff" not in c:
        raise ValueError("reference configs must give d_ff explicitly")
    return c


def param_shapes(c):
    """name -> shape of every parameter the architecture has, in forward order."""
    C, V, F_, E = c["d_model"], c["vocab_size"], c["d_ff"], c["n_expert"]
    qd, kvd = c["n_head"] * c["head_dim"], c["n_kv_head"] * c["head_dim"]
    ln, b = c["norm"] == "layernorm", c["bias"]
    s = {"token_embd.weight": (V, C)}
    if c["pos"] == "learned":
        s["position_embd.weight"] = (c["context_length"], C)
    for l in range(c["n_layer"]):
        p = "blk.%d." % l
        s[p + "attn_norm.weight"] = (C,)
        if ln:
            s[p + "attn_norm.bias"] = (C,)
        for n, d in (("q", qd), ("k", kvd), ("v", kvd)):
            s[p + "attn_%s.weight" % n] = (d, C)
            if b:
                s[p + "attn_%s.bias" % n] = (d,)
        s[p + "attn_output.weight"] = (C, qd)
        if b:
            s[p + "attn_output.bias"] = (C,)
        s[p + "ffn_norm.weight"] = (C,)
        if ln:
            s[p + "ffn_norm.bias"] = (C,)
        if E:
            s[p + "ffn_gate_inp.weight"] = (E, C)
            if c["act"] == "swiglu":
                s[p + "ffn_gate_exps.weight"] = (E, F_, C)
            s[p + "ffn_up_exps.weight"] = (E, F_, C)
            if b:
                s[p + "ffn_up_exps.bias"] = (E, F_)
            s[p + "ffn_down_exps.weight"] = (E, C, F_)
            if b:
                s[p + "ffn_down_exps.bias"] = (E, C)
        else:
            if c["act"] == "swiglu":
                s[p + "ffn_gate.weight"] = (F_, C)
            s[p + "ffn_up.weight"] = (F_, C)
            if b:
                s[p + "ffn_up.bias"] = (F_,)
            s[p + "ffn_down.weight"] = (C, F_)
            if b:
                s[p + "ffn_down.bias"] = (C,)
    s["output_norm.weight"] = (C,)
    if ln:
        s["output_norm.bias"] = (C,)
    if not c["tie_embeddings"]:
        s["output.weight"] = (V, C)
    return s


def decays(name, shape):
    """AdamW weight decay applies to weight matrices (stacked expert matrices
    included), not to embeddings, norms or biases (expert biases are 2-D)."""
    return name.endswith(".weight") and len(shape) >= 2 and not name.startswith(("token_embd", "position_embd"))


def _norm(c, x, w, b):
    if c["norm"] == "layernorm":
        return F.layer_norm(x, (x.shape[-1],), w, b, c["norm_eps"])
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + c["norm_eps"]) * w


def _rope(c, x):
    """x (B, T, H, D) at positions 0..T-1."""
    B, T, H, D = x.shape
    half = D // 2
    i = torch.arange(half, dtype=torch.float64)
    inv = c["rope_theta"] ** (-2.0 * i / D)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]  # (T, half)
    cos = torch.cos(ang).to(x.dtype)[None, :, None, :]
    sin = torch.sin(ang).to(x.dtype)[None, :, None, :]
    if c["rope_style"] == "neox":
        x0, x1 = x[..., :half], x[..., half:]
        return torch.cat([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).reshape(B, T, H, D)


def _attention(c, P, p, h):
    B, T, _ = h.shape
    Hq, Hkv, D = c["n_head"], c["n_kv_head"], c["head_dim"]

    def lin(n):
        return F.linear(h, P[p + "attn_%s.weight" % n], P.get(p + "attn_%s.bias" % n))

    q = lin("q").view(B, T, Hq, D)
    k = lin("k").view(B, T, Hkv, D)
    v = lin("v").view(B, T, Hkv, D)
    if c["pos"] == "rope":
        q, k = _rope(c, q), _rope(c, k)
    # query head h reads kv head h // (Hq / Hkv)
    k = k.repeat_interleave(Hq // Hkv, dim=2)
    v = v.repeat_interleave(Hq // Hkv, dim=2)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
    s = q @ k.transpose(-1, -2) / math.sqrt(D)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    s = s.masked_fill(~mask, float("-inf"))
    y = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, Hq * D)
    return F.linear(y, P[p + "attn_output.weight"], P.get(p + "attn_output.bias"))


def _mlp(c, x, w_gate, w_up, b_up, w_down, b_down):
    u = F.linear(x, w_up, b_up)
    if c["act"] == "swiglu":
        a = F.silu(F.linear(x, w_gate)) * u
    else:
        a = F.gelu(u, approximate="tanh")
    return F.linear(a, w_down, b_down)


def _moe(c, P, p, x, stats):
    """x (N, C). Appends (router probs, top-k indices) of this layer to stats."""
    E, K = c["n_expert"], c["n_expert_active"]
    probs = F.linear(x, P[p + "ffn_gate_inp.weight"]).softmax(-1)  # (N, E)
    topv, topi = probs.topk(K, dim=-1)
    w = topv / topv.sum(-1, keepdim=True)
    outs = []
    for e in range(E):
        g = P[p + "ffn_gate_exps.weight"][e] if c["act"] == "swiglu" else None
        bu = P[p + "ffn_up_exps.bias"][e] if c["bias"] else None
        bd = P[p + "ffn_down_exps.bias"][e] if c["bias"] else None
        outs.append(_mlp(c, x, g, P[p + "ffn_up_exps.weight"][e], bu, P[p + "ffn_down_exps.weight"][e], bd))
    allout = torch.stack(outs, dim=1)  # (N, E, C): every expert on every token, then pick
    picked = allout.gather(1, topi[:, :, None].expand(-1, -1, x.shape[-1]))  # (N, K, C)
    stats.append((probs, topi))
    return (w[:, :, None] * picked).sum(1)


def aux_loss_per_layer(c, stats, T):
    """Switch Transformer load balancing per sequence, averaged over the B
    sequences of the batch and summed over MoE layers (jarip's definition,
    README "Model config"): coef * E * sum_e f_e * P_e with f_e = (slots of
    the sequence routed to e) / T (so sum_e f_e = k, as Mixtral counts every
    slot) and P_e = mean router prob over the sequence's T tokens."""
    E = c["n_expert"]
    total = 0.0
    for probs, topi in stats:
        B = probs.shape[0] // T
        p = probs.reshape(B, T, E)
        f = F.one_hot(topi, E).to(probs.dtype).reshape(B, T, -1, E).sum((1, 2)) / T  # (B, E)
        total = total + c["moe_aux_coef"] * E * (f * p.mean(1)).sum(1).mean()
    return total


def aux_loss_hf_mixtral(c, stats):
    """Hugging Face Mixtral's variant: router rows of ALL layers concatenated
    before the means are taken (equal to the per-layer sum for one layer)."""
    E = c["n_expert"]
    probs = torch.cat([s[0] for s in stats])
    topi = torch.cat([s[1] for s in stats])
    f = F.one_hot(topi, E).to(probs.dtype).mean(0)  # (K, E)
    return c["moe_aux_coef"] * E * (f * probs.mean(0)[None, :]).sum()


def forward(c, P, inp, tgt=None):
    """inp, tgt (B, T) int64; tgt -1 = ignored. Returns (logits, loss, ce, aux, stats)."""
    B, T = inp.shape
    x = P["token_embd.weight"][inp]
    if c["pos"] == "learned":
        x = x + P["position_embd.weight"][:T][None]
    stats = []
    for l in range(c["n_layer"]):
        p = "blk.%d." % l
        x = x + _attention(c, P, p, _norm(c, x, P[p + "attn_norm.weight"], P.get(p + "attn_norm.bias")))
        h = _norm(c, x, P[p + "ffn_norm.weight"], P.get(p + "ffn_norm.bias"))
        if c["n_expert"]:
            y = _moe(c, P, p, h.reshape(B * T, -1), stats).view(B, T, -1)
        else:
            y = _mlp(c, h, P.get(p + "ffn_gate.weight"), P[p + "ffn_up.weight"], P.get(p + "ffn_up.bias"),
                     P[p + "ffn_down.weight"], P.get(p + "ffn_down.bias"))
        x = x + y
    x = _norm(c, x, P["output_norm.weight"], P.get("output_norm.bias"))
    head = P["token_embd.weight"] if c["tie_embeddings"] else P["output.weight"]
    logits = F.linear(x, head)
    if tgt is None:
        return logits, None, None, None, stats
    ce = F.cross_entropy(logits.reshape(B * T, -1), tgt.reshape(-1), ignore_index=-1)
    aux = aux_loss_per_layer(c, stats, T) if c["n_expert"] else torch.zeros((), dtype=logits.dtype)
    return logits, ce + aux, ce, aux, stats
