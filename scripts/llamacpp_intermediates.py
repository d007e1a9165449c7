#!/usr/bin/env python3
"""Dump llama.cpp's intermediate tensors for one prompt (debugging numerics).

Runs a GGUF model in llama.cpp through llama-cpp-python's low-level API with
an eval callback that copies every F32/F16 tensor of the graph as it is
computed, and saves them to an .npz keyed by ggml's tensor names
(embd, attn_norm-L, Qcur-L#2 (after RoPE), Kcur-L#2, Vcur-L, kq-L,
kq_soft_max-L, kqv-L, kqv_out-L, ffn_inp-L, ffn_norm-L, ffn_gate-L,
ffn_up-L, ffn_swiglu-L, l_out-L, result_norm, and __logits; a name seen
again gets #1, #2...). Settings as scripts/make_llamacpp_fixtures.py: F32 KV
cache (--kv-type f16: llama.cpp's default F16 cache, as
scripts/make_llamacpp_f16kv_fixtures.py), flash attention off,
n_batch = n_ubatch = 512. The K/V cache views (k-L, v-L, F16 with
--kv-type f16) are dumped too when the graph names them.

This is how jarip's inference kernels (src/kernels/quant_llamacpp.c) were
matched to llama.cpp's bit for bit: compare each tensor with jarip's
activation of the same step (model.h Activations: ln1, q, k, v, atty,
res_att, ln2, ffn_g, ffn_h, ffn_a, res_ffn) and fix the first one that differs.

Usage: /usr/bin/python3 scripts/llamacpp_intermediates.py [--kv-type f32|f16] MODEL.gguf '[ids...]' OUT.npz [threads] [next_id]
With next_id, the dump is of one decoding step of that token after the prompt.
"""
import ctypes as C
import json
import os
import sys

import numpy as np
import llama_cpp as L

LIB = os.path.join(os.path.dirname(L.__file__), "lib")
base = C.CDLL(os.path.join(LIB, "libggml-base.so"), mode=C.RTLD_GLOBAL)
base.ggml_get_name.restype = C.c_char_p
base.ggml_get_name.argtypes = [C.c_void_p]
base.ggml_nbytes.restype = C.c_size_t
base.ggml_nbytes.argtypes = [C.c_void_p]
base.ggml_backend_tensor_get.argtypes = [C.c_void_p, C.c_void_p, C.c_size_t, C.c_size_t]

# struct ggml_tensor: type (int, padded to 8), buffer pointer, int64 ne[4], size_t nb[4], ...
OFF_NE, OFF_NB = 16, 48


KV_TYPES = {"f32": 0, "f16": 1}  # ggml type ids: GGML_TYPE_F32, GGML_TYPE_F16


def main():
    args = sys.argv[1:]
    kv = "f32"
    if len(args) >= 2 and args[0] == "--kv-type":
        kv = args[1]
        args = args[2:]
    if kv not in KV_TYPES or len(args) < 3:
        raise SystemExit(__doc__)
    model_path, ids, out = args[0], json.loads(args[1]), args[2]
    nth = int(args[3]) if len(args) > 3 else 2
    store = {}

    @L.ggml_backend_sched_eval_callback
    def cb(t, ask, _ud):
        if ask:
            return True
        typ = C.c_int.from_address(t).value
        if typ not in (0, 1):  # F32, F16
            return True
        name = base.ggml_get_name(t).decode()
        ne = [C.c_int64.from_address(t + OFF_NE + 8 * i).value for i in range(4)]
        nb = [C.c_size_t.from_address(t + OFF_NB + 8 * i).value for i in range(4)]
        n = base.ggml_nbytes(t)
        buf = (C.c_uint8 * n)()
        base.ggml_backend_tensor_get(t, buf, 0, n)
        raw = np.frombuffer(bytes(buf), dtype=np.float32 if typ == 0 else np.float16)
        try:
            arr = np.lib.stride_tricks.as_strided(raw, shape=ne[::-1], strides=nb[::-1]).copy()
        except ValueError:
            arr = raw.copy()
        key, i = name, 1
        while key in store:
            key, i = f"{name}#{i}", i + 1
        store[key] = arr
        return True

    L.llama_backend_init()
    model = L.llama_model_load_from_file(model_path.encode(), L.llama_model_default_params())
    cp = L.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch = 2048, 512, 512
    cp.n_threads = cp.n_threads_batch = nth
    cp.type_k = cp.type_v = KV_TYPES[kv]
    cp.flash_attn_type = 0
    cp.cb_eval = cb
    ctx = L.llama_init_from_model(model, cp)
    arr = (L.llama_token * len(ids))(*ids)
    if L.llama_decode(ctx, L.llama_batch_get_one(arr, len(ids))) != 0:
        raise SystemExit("llama_decode failed")
    if len(args) > 4:
        store.clear()
        nxt = (L.llama_token * 1)(int(args[4]))
        if L.llama_decode(ctx, L.llama_batch_get_one(nxt, 1)) != 0:
            raise SystemExit("llama_decode failed")
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    store["__logits"] = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)).copy()
    np.savez(out, **store)
    print(f"{len(store)} tensors -> {out}")


if __name__ == "__main__":
    main()
