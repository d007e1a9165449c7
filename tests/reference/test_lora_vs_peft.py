"""jarip's LoRA fine-tuning against Hugging Face PEFT itself, on a tiny Llama.

Usage (CTest): /usr/bin/python3 test_lora_vs_peft.py BUILD/jarip

The peer is transformers' LlamaForCausalLM (eager attention, float64) with
the same weights as jarip's model, wrapped by peft.get_peft_model with
LoraConfig(r, lora_alpha, q,k,v,o,gate,up,down, lora_dropout=0): the code
users fine-tune with, not a re-implementation of its formula (that is
test_lora_vs_pytorch.py, which this test reuses to make the base, the
adapter and the batch and to run jarip on them).

Names and layout: GGUF's blk.N.attn_q.weight is transformers'
model.layers.N.self_attn.q_proj.weight with each head's rows interleaved
for GGUF's RoPE (llama.cpp's convert permutes them); the same holds for
attn_k and for the rows of q's and k's LoRA B. The test undoes that
permutation for the peer and redoes it on the peer's gradients.

Checks, each as max|jarip - peer| / max|peer| <= 1e-4, for an f32 and a
q8_0 base (the peer gets the base as the engine held it, dequantized):
the loss (transformers' own, labels -100 where jarip's targets are
ignored), the logits, the gradient of every A and B, and A and B after 3
steps of torch.optim.AdamW on PEFT's trainable parameters (jarip's lr,
betas, eps, weight decay 0.1 on A and B, the same gradient clip).
A freshly made PEFT adapter is also checked against jarip's init rule:
B zero, A uniform within 1/sqrt(in).

Dropout (f32 base, lora_dropout 0.25 on both sides): PEFT's LoRA layers
hold a torch.nn.Dropout(0.25) on the adapter's input; the test replaces it
by a module that multiplies by jarip's mask of that pass (recomputed here
from the hash model.h's LoraDropout documents) and by 1/(1-p), as
nn.Dropout scales: the same checks then test that jarip drops out the
adapter's input only, scales it as PEFT does, and takes the gradients
through the mask (a new mask each of the 3 steps).

Needs transformers and peft: when /usr/bin/python3 lacks them the test
re-runs itself with the venv scripts/setup.sh makes for them
(~/.cache/jarip/venv-eval, or JARIP_PEFT_PYTHON), and skips when neither
has them.
"""
import os
import subprocess
import sys
import warnings

warnings.filterwarnings("ignore", message=".*urllib3")  # Debian's requests, imported by transformers


def peer_python():
    """This interpreter if it has transformers and peft, else another that has, else None."""
    try:
        import peft  # noqa: F401
        import transformers  # noqa: F401
        return sys.executable
    except ImportError:
        pass
    cand = os.environ.get("JARIP_PEFT_PYTHON") or os.path.expanduser("~/.cache/jarip/venv-eval/bin/python")
    # a venv's python is a link to the system's: compare the paths, not their targets
    if os.environ.get("JARIP_PEFT_REEXEC") or os.path.abspath(cand) == os.path.abspath(sys.executable) \
            or not os.access(cand, os.X_OK):
        return None
    ok = subprocess.run([cand, "-c", "import torch, transformers, peft"], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL).returncode == 0
    return cand if ok else None


py = peer_python()
if py is None:
    print("skip: transformers and peft are not installed (scripts/setup.sh installs them in ~/.cache/jarip/venv-eval)")
    sys.exit(0)
if py != sys.executable:
    os.environ["JARIP_PEFT_REEXEC"] = "1"
    os.execv(py, [py] + sys.argv)

import numpy as np  # noqa: E402
import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_lora_vs_pytorch as tl  # noqa: E402
import test_model_vs_pytorch as tm  # noqa: E402

# GGUF tensor -> (transformers module in layer N, heads whose rows GGUF's RoPE permutes)
MODULES = {"attn_q": ("self_attn.q_proj", "n_head"), "attn_k": ("self_attn.k_proj", "n_kv_head"),
           "attn_v": ("self_attn.v_proj", None), "attn_output": ("self_attn.o_proj", None),
           "ffn_gate": ("mlp.gate_proj", None), "ffn_up": ("mlp.up_proj", None), "ffn_down": ("mlp.down_proj", None)}


def unpermute(w, heads):
    """GGUF row order -> transformers' (inverse of llama.cpp convert's permute)."""
    out = w.shape[0]
    return w.reshape(heads, out // heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def permute(w, heads):
    """transformers' row order -> GGUF's."""
    out = w.shape[0]
    return w.reshape(heads, 2, out // heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def rows(x, c, heads_key, fn):
    return fn(x, c[heads_key]) if heads_key else x


def hf_state(c, base):
    """jarip's (GGUF-named) base -> transformers' LlamaForCausalLM state dict."""
    s = {"model.embed_tokens.weight": base["token_embd.weight"], "model.norm.weight": base["output_norm.weight"],
         "lm_head.weight": base["output.weight"]}
    for l in range(c["n_layer"]):
        p, b = "model.layers.%d." % l, "blk.%d." % l
        s[p + "input_layernorm.weight"] = base[b + "attn_norm.weight"]
        s[p + "post_attention_layernorm.weight"] = base[b + "ffn_norm.weight"]
        for g, (m, heads) in MODULES.items():
            s[p + m + ".weight"] = rows(base[b + g + ".weight"], c, heads, unpermute)
    return s


def peft_model(c, state=None, dropout=0.0):
    """transformers' Llama for config c (base weights from state if given), wrapped by PEFT."""
    cfg = transformers.LlamaConfig(
        vocab_size=c["vocab_size"], hidden_size=c["d_model"], intermediate_size=c["d_ff"],
        num_hidden_layers=c["n_layer"], num_attention_heads=c["n_head"], num_key_value_heads=c["n_kv_head"],
        max_position_embeddings=c["context_length"], rms_norm_eps=c["norm_eps"], rope_theta=c["rope_theta"],
        hidden_act="silu", tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
        attn_implementation="eager")
    model = transformers.LlamaForCausalLM(cfg)
    if state is not None:
        model = model.double()
        model.load_state_dict(state, strict=True)
    lcfg = peft.LoraConfig(r=tl.RANK, lora_alpha=tl.ALPHA, lora_dropout=dropout, bias="none",
                           target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    return peft.get_peft_model(model, lcfg)


def lora_layers(c, model):
    """GGUF weight name -> (PEFT LoRA layer, heads key) for every adapted weight."""
    out = {}
    for l in range(c["n_layer"]):
        for g, (m, heads) in MODULES.items():
            mod = model.get_submodule("base_model.model.model.layers.%d.%s" % (l, m))
            out["blk.%d.%s.weight" % (l, g)] = (mod, heads)
    return out


def check_init(c):
    """A fresh PEFT adapter follows jarip's init rule (src/model: A uniform +-1/sqrt(in), B zero)."""
    torch.manual_seed(0)
    for w, (mod, _) in lora_layers(c, peft_model(c)).items():
        a, b = mod.lora_A["default"].weight, mod.lora_B["default"].weight
        bound = 1.0 / np.sqrt(a.shape[1])
        ok = float(b.abs().max()) == 0.0 and float(a.abs().max()) <= bound and float(a.abs().max()) > 0.8 * bound
        if not ok:
            tm.failures.append("PEFT's init of %s: |A| max %.4f (bound %.4f), |B| max %.4f" % (
                w, float(a.abs().max()), bound, float(b.abs().max())))


def set_adapter(c, layers, L):
    with torch.no_grad():
        for w, (mod, heads) in layers.items():
            mod.lora_A["default"].weight.copy_(L[w + ".lora_a"])
            mod.lora_B["default"].weight.copy_(rows(L[w + ".lora_b"], c, heads, unpermute))


def get_adapter(c, layers, grad):
    """GGUF-named A and B (or their gradients) of the PEFT model, as numpy float64."""
    out = {}
    for w, (mod, heads) in layers.items():
        a, b = mod.lora_A["default"].weight, mod.lora_B["default"].weight
        if grad:
            a, b = a.grad, b.grad
        out[w + ".lora_a"] = a.detach().numpy()
        out[w + ".lora_b"] = rows(b.detach(), c, heads, permute).numpy()
    return out


G = 0x9E3779B97F4A7C15
M64 = (1 << 64) - 1
DROPOUT, DROPOUT_SEED = 0.25, 1234  # jarip_ref's seed for its passes' masks


def mix64(z):
    """src/core/rng.c's splitmix64 finaliser."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def jarip_mask(p, seed, batch, link, rows, K):
    """Adapter `link`'s dropout mask (rows, K) of pass (seed, batch), rows from 0, as
    src/model/lora.c draws it: 16 bits per element of hash(key, element / 4)."""
    key = mix64((mix64(mix64((seed + G) & M64) ^ batch) + link) & M64)
    thr = int(np.float32(p) * np.float32(65536.0) + np.float32(0.5))
    keep = np.empty(rows * K, dtype=bool)
    for g in range(rows * K // 4 + 1):
        h = mix64(key ^ mix64((g + G) & M64))
        for q in range(4):
            if 4 * g + q < rows * K:
                keep[4 * g + q] = ((h >> (16 * q)) & 0xFFFF) >= thr
    return keep.reshape(rows, K)


class JaripDropout(torch.nn.Module):
    """nn.Dropout(p) with jarip's mask of the current pass (step)."""

    def __init__(self, masks, p):
        super().__init__()
        self.masks, self.scale, self.step = masks, 1.0 / (1.0 - p), 0

    def forward(self, x):  # x (B, T+1, K): the last position's output is never used
        m = torch.ones(x.shape, dtype=x.dtype)
        m[:, :-1] = torch.from_numpy(self.masks[self.step]).to(x.dtype).reshape(x.shape[0], x.shape[1] - 1, -1)
        return x * m * self.scale


def use_jarip_masks(j, layers, p):
    """Replace each PEFT layer's nn.Dropout(p) by JaripDropout; returns the modules."""
    B, T = j["tgt"].shape
    mods = []
    for w, (mod, _) in layers.items():
        d = mod.lora_dropout["default"]
        if not isinstance(d, torch.nn.Dropout) or d.p != p:
            tm.failures.append("PEFT's dropout of %s is %r, expected nn.Dropout(p=%g)" % (w, d, p))
        link = j["order"].index(w + ".lora_a")
        K = mod.lora_A["default"].weight.shape[1]
        masks = [jarip_mask(p, DROPOUT_SEED, s, link, B * T, K) for s in range(tm.ADAM_STEPS)]
        kept = float(np.mean(masks))  # ~ B*T*K*3 >= 6000 draws: 1 - p within 0.02 (4 sigma)
        if abs(kept - (1 - p)) > 0.02 or any((a == b).all() for a, b in zip(masks, masks[1:])):
            tm.failures.append("jarip's masks of %s keep %.3f (expected %.2f), or repeat across steps" % (w, kept, 1 - p))
        mod.lora_dropout["default"] = JaripDropout(masks, p)
        mods.append(mod.lora_dropout["default"])
    return mods


def compare(tool, tmp, base_type, dropout=0.0):
    j = tl.run_jarip(tool, tmp, base_type, dropout)
    c, tok, tgt = j["c"], j["tok"], j["tgt"]
    model = peft_model(c, hf_state(c, j["base"]), dropout).double()
    layers = lora_layers(c, model)
    set_adapter(c, layers, j["L0"])
    drops = use_jarip_masks(j, layers, dropout) if dropout else []
    params = [p for p in model.parameters() if p.requires_grad]
    if len(params) != len(j["want"]):
        tm.failures.append("PEFT trains %d tensors, jarip %d" % (len(params), len(j["want"])))
    # the whole row tok (B, T+1) in: transformers shifts labels by one, and causal
    # attention makes the first T logits those of inp = tok[:, :T]
    labels = torch.cat([torch.full_like(tgt[:, :1], -100), torch.where(tgt < 0, -100, tgt)], dim=1)
    T = tgt.shape[1]
    opt = torch.optim.AdamW(params, **tm.ADAM)
    worst = 0.0
    for step in range(tm.ADAM_STEPS):
        opt.zero_grad()
        for d in drops:
            d.step = step
        res = model(input_ids=tok, labels=labels)
        res.loss.backward()
        if step == 0:
            loss = float(res.loss)
            checks = [("loss", abs(j["loss"] - loss) / abs(loss)),
                      ("logits", tm.rel_err(j["logits"], res.logits[:, :T].detach().numpy()))]
            g = get_adapter(c, layers, grad=True)
            checks += [("gradient of " + n, tm.rel_err(j["grads"][n], g[n])) for n in j["want"]]
        torch.nn.utils.clip_grad_norm_(params, j["clip"])
        opt.step()
    f = get_adapter(c, layers, grad=False)
    checks += [("%s after %d AdamW steps" % (n, tm.ADAM_STEPS), tm.rel_err(j["final"][n], f[n])) for n in j["want"]]
    base_type += " (dropout %g)" % dropout if dropout else ""
    for what, e in checks:
        tm.check("%s %s" % (base_type, what), e)
        worst = max(worst, e)
    print("== PEFT %s LoRA r=%d on a %s base: loss %.6f (jarip %.6f), %d A/B tensors; worst relative error %.2e" % (
        peft.__version__, tl.RANK, base_type, loss, j["loss"], len(j["want"]), worst))


def compare_all(tool, tmp, base_type):
    compare(tool, tmp, base_type)
    if base_type == "f32":
        compare(tool, tmp, base_type, DROPOUT)


if __name__ == "__main__":
    print("transformers %s, peft %s, torch %s (%s)" % (transformers.__version__, peft.__version__, torch.__version__,
                                                      sys.executable))
    check_init(tm.ref_model.config_defaults(tl.CFG))
    tl.main(compare_all)
