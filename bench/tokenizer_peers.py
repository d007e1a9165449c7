#!/usr/bin/env python3
"""Peer figures for bench/tokenizer_vs_peers.sh.

  tokenizer_peers.py encode TOKENIZER_JSON TEXT THREADS   -> "hf MBPS" and "tiktoken MBPS" lines
  tokenizer_peers.py train TEXT VOCAB                     -> "hf_train SECONDS"

Both peers get the same vocabulary: Hugging Face `tokenizers` loads the
tokenizer.json; tiktoken is built from its vocabulary (ranks = ids, which
is merge order for a trained BPE) with the GPT-2 split pattern. Single
thread: one encode call on the whole text. All threads: the text cut into
line batches, encoded with encode_batch / encode_ordinary_batch.
Timings are the best of 3 runs.
"""
import json
import os
import sys
import time

GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def byte_decoder():
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    m, n = {}, 0
    for b in range(256):
        if b in keep:
            m[chr(b)] = b
        else:
            m[chr(256 + n)] = b
            n += 1
    return m


def best(f, runs=3):
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = f()
        t.append(time.perf_counter() - t0)
    return min(t), out


def batches(text, n):
    lines = text.splitlines(keepends=True)
    k = max(1, len(lines) // (n * 16))
    return ["".join(lines[i:i + k]) for i in range(0, len(lines), k)]


def encode(tokjson, textfile, threads):
    threads = int(threads)
    from tokenizers import Tokenizer
    import tiktoken
    text = open(textfile, encoding="utf-8").read()
    nbytes = len(text.encode("utf-8"))
    hf = Tokenizer.from_file(tokjson)
    j = json.load(open(tokjson, encoding="utf-8"))
    dec = byte_decoder()
    ranks = {bytes(dec[c] for c in tok): i for tok, i in j["model"]["vocab"].items()}
    specials = {a["content"]: a["id"] for a in j.get("added_tokens", [])}
    for s in specials:
        ranks.pop(s.encode(), None)
    tk = tiktoken.Encoding("bench", pat_str=GPT2, mergeable_ranks=ranks, special_tokens=specials)
    if threads <= 1:
        t_hf, ids_hf = best(lambda: hf.encode(text).ids)
        t_tk, ids_tk = best(lambda: tk.encode_ordinary(text))
    else:
        parts = batches(text, threads)
        t_hf, out = best(lambda: hf.encode_batch(parts))
        ids_hf = [i for e in out for i in e.ids]
        t_tk, out = best(lambda: tk.encode_ordinary_batch(parts, num_threads=threads))
        ids_tk = [i for e in out for i in e]
    print(f"hf {nbytes / t_hf / 1e6:.2f} {len(ids_hf)}")
    print(f"tiktoken {nbytes / t_tk / 1e6:.2f} {len(ids_tk)}")


def train(textfile, vocab):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tr = trainers.BpeTrainer(vocab_size=int(vocab), special_tokens=["<|endoftext|>"], show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    t0 = time.perf_counter()
    tok.train([textfile], tr)
    print(f"hf_train {time.perf_counter() - t0:.3f}")


if __name__ == "__main__":
    if sys.argv[1] == "encode":
        encode(*sys.argv[2:5])
    else:
        train(*sys.argv[2:4])
