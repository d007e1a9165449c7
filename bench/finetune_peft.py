"""The peer of bench/finetune_vs_peft.sh: Hugging Face transformers + peft
fine-tuning the same GGUF (transformers dequantizes GGUF files to float32)
on the same kind of batch: LoRA (r, alpha = 2r, dropout 0, q,k,v,o,gate,up,
down) or every weight, AdamW, B x T random token rows, THREADS threads.
Prints one JSON line: tokens/s at the median timed step and peak RSS (MiB).

    python finetune_peft.py MODEL.gguf lora|full B T STEPS THREADS [RANK]
"""
import json
import os
import resource
import statistics
import sys
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    path, mode, B, T, steps, threads = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
    rank = int(sys.argv[7]) if len(sys.argv) > 7 else 16
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(os.path.abspath(path)),
                                                 gguf_file=os.path.basename(path), torch_dtype=torch.float32)
    if mode == "lora":
        from peft import LoraConfig, get_peft_model
        cfg = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, task_type="CAUSAL_LM",
                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        model = get_peft_model(model, cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4 if mode == "lora" else 2e-5, betas=(0.9, 0.95), weight_decay=0.0)
    vocab = model.config.vocab_size
    times = []
    for step in range(steps + 1):  # one untimed warmup step
        ids = torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(step))
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step:
            times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"tokens_per_s": B * T / statistics.median(times), "peak_rss_mib": rss,
                      "loss": float(loss), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
