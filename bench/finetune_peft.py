"""The peer of bench/finetune_vs_peft.sh: Hugging Face transformers + peft
fine-tuning the GGUF jarip fine-tunes (transformers dequantizes GGUF files
to float32) on the very rows jarip trains on.

    python finetune_peft.py MODEL.gguf lora|full ROWS.sft SEED B T STEPS THREADS [RANK]

ROWS.sft is the examples file `jarip finetune` prepared (docs/examples.md);
step s takes the B rows jarip's loader takes at step s with seed SEED
(src/data/examples.c: example rng_u64(rng_key(SEED, "data" split 0, s), r)
mod n for row r), inputs ids[0..T), targets ids[1..T] where labelled, -1
(ignored) elsewhere, and the loss is the mean cross-entropy over the
targets, as jarip's. One step = forward + backward + clip at 1.0 + AdamW
(betas 0.9/0.95, eps 1e-8, no weight decay: jarip finetune's defaults).
LoRA: r = RANK, alpha = 2r, dropout 0 on q,k,v,o,gate,up,down (PEFT's
init: A Kaiming-uniform, B zeros, as jarip's); full: every weight.
Step 0 is untimed (warm-up); prints one JSON line: tokens/s at the median
of the STEPS timed steps, peak RSS (MiB) and the losses (step 0's is the
base's, the same on both sides: B starts at zero).
"""
import json
import os
import resource
import statistics
import struct
import sys
import time
import warnings

warnings.filterwarnings("ignore", message=".*urllib3")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from gguf import GGUFReader  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

G = 0x9E3779B97F4A7C15
M64 = (1 << 64) - 1


def mix64(z):
    """src/core/rng.c's splitmix64 finaliser."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def rng_key(seed, a, b):
    return mix64((mix64(mix64((seed + G) & M64) ^ a) + b) & M64)


def rng_u64(key, counter):
    return mix64(key ^ mix64((counter + G) & M64))


def read_rows(path):
    """ids (rows, row) int32 and labels (rows, row) uint8 of an examples file; n_train."""
    with open(path, "rb") as f:
        head = f.read(40)
        magic, version, row, n_train, n_val, _vocab, _crc = struct.unpack("<8sIIQQII", head)
        if magic != b"JARIPSFT" or version != 1:
            sys.exit("finetune_peft: %s is not a jarip examples file" % path)
        rows = n_train + n_val
        ids = np.frombuffer(f.read(rows * row * 4), dtype="<i4").reshape(rows, row)
        labels = np.frombuffer(f.read(rows * row), dtype=np.uint8).reshape(rows, row)
    return ids, labels, n_train


def batch(ids, labels, n_train, seed, step, B, T):
    """jarip's training batch `step` (accumulation 1, one process): inputs, targets (B, T)."""
    key = rng_key(seed, 0x6461746100, step)
    e = [rng_u64(key, r) % n_train for r in range(B)]
    inp = torch.from_numpy(ids[e, :T].astype(np.int64))
    tgt = np.where(labels[e, 1:T + 1] != 0, ids[e, 1:T + 1], -1)
    return inp, torch.from_numpy(tgt.astype(np.int64))


def main():
    if len(sys.argv) < 9:
        sys.exit(__doc__)
    path, mode, rows_path = sys.argv[1:4]
    seed, B, T, steps, threads = map(int, sys.argv[4:9])
    rank = int(sys.argv[9]) if len(sys.argv) > 9 else 16
    # bf16: torch.autocast's CPU mixed precision (bf16 matmul inputs, float32 weights, moments and loss)
    bf16 = len(sys.argv) > 10 and sys.argv[10] == "bf16"
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    ids, labels, n_train = read_rows(rows_path)
    if ids.shape[1] < T + 1:
        sys.exit("finetune_peft: rows of %d tokens do not fit T = %d" % (ids.shape[1] - 1, T))
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(os.path.abspath(path)),
                                                 gguf_file=os.path.basename(path), torch_dtype=torch.float32)
    if "output.weight" not in {t.name for t in GGUFReader(path).tensors}:
        # a GGUF without output.weight ties the output to the embeddings (llama.cpp, jarip);
        # transformers 4.46 leaves lm_head randomly initialised instead
        model.config.tie_word_embeddings = True
        model.tie_weights()
    if mode == "lora":
        from peft import LoraConfig, get_peft_model
        cfg = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, bias="none",
                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        model = get_peft_model(model, cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4 if mode == "lora" else 2e-5, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.0)
    times, losses = [], []
    for step in range(steps + 1):  # step 0: untimed warm-up
        inp, tgt = batch(ids, labels, n_train, seed, step, B, T)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=inp).logits
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), tgt.reshape(-1), ignore_index=-1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step:
            times.append(time.perf_counter() - t0)
        losses.append(float(loss))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"tokens_per_s": B * T / statistics.median(times), "peak_rss_mib": rss, "losses": losses,
                      "trainable": sum(p.numel() for p in params), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
