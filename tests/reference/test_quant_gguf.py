"""Block formats and the GGUF writer/reader against gguf-py (llama.cpp's own
Python package, whose numpy quantizers mirror GGML's reference code).

1. gguf-py writes an F32 model; `jarip quantize --pure` converts it to each
   type; gguf-py reads jarip's file (writer compatibility) and the quantized
   bytes must equal gguf-py's quantize() of the same data (reference
   rounding, byte for byte) for f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1.
2. For every type incl. the K-quants: `jarip quantize --type f32` of jarip's
   quantized file must equal gguf-py's dequantize() of those bytes
   (dequantization exact against GGML's definition), and the round-trip
   error must be small.

Usage: python3 test_quant_gguf.py path/to/jarip   (skips when gguf-py is absent)
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

try:
    import gguf
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import dequantize, quantize
except ImportError:
    print("SKIP: python package 'gguf' not installed (pip install gguf)")
    sys.exit(0)

JARIP = sys.argv[1] if len(sys.argv) > 1 else "build/jarip"
EXACT = ["f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"]
ALL = EXACT + ["q4_k", "q5_k", "q6_k"]
QT = {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0, "q4_0": Q.Q4_0, "q4_1": Q.Q4_1,
      "q5_0": Q.Q5_0, "q5_1": Q.Q5_1, "q4_k": Q.Q4_K, "q5_k": Q.Q5_K, "q6_k": Q.Q6_K}
# relative RMS error of quantize -> dequantize on these (normal + outliers) weights
RT_BOUND = {"f16": 1e-3, "bf16": 5e-3, "q8_0": 0.01, "q6_k": 0.035, "q5_0": 0.06, "q5_1": 0.06,
            "q5_k": 0.06, "q4_0": 0.13, "q4_1": 0.13, "q4_k": 0.13}


def run(*args):
    r = subprocess.run([JARIP, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"FAIL: jarip {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def tensors(path):
    rd = gguf.GGUFReader(path)
    return {t.name: t for t in rd.tensors}


def raw_bytes(t):
    return np.asarray(t.data).view(np.uint8).reshape(-1)


def main():
    rng = np.random.default_rng(1234)
    failures = []
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "f32.gguf")
        w = gguf.GGUFWriter(src, "llama")
        w.add_uint32("llama.block_count", 1)
        w.add_array("test.strings", ["a", "bc", "d\u00e9"])
        weights = {
            "blk.0.ffn_up.weight": (rng.standard_normal((24, 512)) * 0.05).astype(np.float32),
            "blk.0.attn_q.weight": (rng.standard_normal((16, 768)) * 2.0).astype(np.float32),
        }
        weights["blk.0.attn_q.weight"][3, 7] = 40.0  # an outlier
        weights["blk.0.attn_q.weight"][5, :32] = 0.0  # an all-zero block
        for name, arr in weights.items():
            w.add_tensor(name, arr)
        w.add_tensor("blk.0.attn_norm.weight", np.ones(512, dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

        for ty in ALL:
            out = os.path.join(d, f"{ty}.gguf")
            run("quantize", src, out, "--type", ty, "--pure", "--quiet")
            ts = tensors(out)  # gguf-py must read jarip's file
            back = os.path.join(d, f"{ty}_f32.gguf")
            run("quantize", out, back, "--type", "f32", "--quiet")
            tb = tensors(back)
            if ts["blk.0.attn_norm.weight"].tensor_type != Q.F32:
                failures.append(f"{ty}: norm not kept f32")
            for name, ref in weights.items():
                t = ts[name]
                if t.tensor_type != QT[ty]:
                    failures.append(f"{ty}: {name} has type {t.tensor_type.name}")
                    continue
                got = raw_bytes(t)
                if ty in EXACT:
                    want = quantize(ref, QT[ty]).view(np.uint8).reshape(-1)
                    nbad = int(np.count_nonzero(got != want))
                    if got.shape != want.shape or nbad:
                        failures.append(f"{ty}: {name}: {nbad} bytes differ from gguf-py's reference quantizer")
                deq_py = dequantize(got.reshape(ref.shape[0], -1), QT[ty]).astype(np.float32)
                deq_j = np.asarray(tb[name].data, dtype=np.float32).reshape(ref.shape)
                diff = np.max(np.abs(deq_py - deq_j)) / (np.max(np.abs(deq_py)) + 1e-30)
                if diff > 1e-6:
                    failures.append(f"{ty}: {name}: jarip dequantization differs from gguf-py by {diff:.2e} (rel)")
                rel = float(np.sqrt(np.sum((deq_j - ref) ** 2) / np.sum(ref ** 2)))
                if rel > RT_BOUND[ty]:
                    failures.append(f"{ty}: {name}: round-trip error {rel:.4f} > {RT_BOUND[ty]}")
                print(f"{ty:5s} {name:24s} bytes {'= ref' if ty in EXACT else 'n/a  '}  "
                      f"dequant diff {diff:.1e}  round-trip rel err {rel:.4f}")
        # dequantization of blocks jarip did not make: random bytes with sane
        # half-precision scales, for every K-quant incl. the read-only q2_k/q3_k
        raw_path = os.path.join(d, "raw.gguf")
        w = gguf.GGUFWriter(raw_path, "llama")
        # byte offsets of the half scales (d, and dmin where present) per block
        layout = {Q.Q2_K: (84, [80, 82]), Q.Q3_K: (110, [108]), Q.Q4_K: (144, [0, 2]),
                  Q.Q5_K: (176, [0, 2]), Q.Q6_K: (210, [208])}
        raw_blocks = {}
        for qt, (bb, offs) in layout.items():
            rows, nblk = 4, 3
            blob = rng.integers(0, 256, size=(rows, nblk * bb), dtype=np.uint8)
            for r in range(rows):
                for b in range(nblk):
                    for o in offs:
                        h = np.array([rng.uniform(0.001, 0.05)], dtype=np.float16).view(np.uint8)
                        blob[r, b * bb + o: b * bb + o + 2] = h
            raw_blocks[qt] = blob
            w.add_tensor(f"raw.{qt.name.lower()}", blob, raw_dtype=qt)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        raw_f32 = os.path.join(d, "raw_f32.gguf")
        run("quantize", raw_path, raw_f32, "--type", "f32", "--pure", "--quiet")
        tr = tensors(raw_f32)
        for qt, blob in raw_blocks.items():
            want = dequantize(blob, qt).astype(np.float32).reshape(-1)
            got = np.asarray(tr[f"raw.{qt.name.lower()}"].data, dtype=np.float32).reshape(-1)
            diff = float(np.max(np.abs(want - got)) / (np.max(np.abs(want)) + 1e-30))
            print(f"{qt.name:5s} random blocks           dequant diff {diff:.1e}")
            if want.shape != got.shape or diff > 1e-6:
                failures.append(f"{qt.name}: dequantization of random blocks differs from gguf-py by {diff:.2e}")

        # bad input: one-line error, non-zero exit, never a crash
        with open(src, "rb") as fsrc:
            blob = fsrc.read()
        cut = os.path.join(d, "cut.gguf")
        with open(cut, "wb") as fcut:
            fcut.write(blob[: len(blob) // 2])
        for args, want in [((os.path.join(d, "missing.gguf"), os.path.join(d, "o.gguf"), "--type", "q4_0"), "cannot open"),
                           ((cut, os.path.join(d, "o.gguf"), "--type", "q4_0"), "outside"),
                           ((src, os.path.join(d, "o.gguf"), "--type", "q9_9"), "unknown"),
                           ((src, os.path.join(d, "o.gguf")), "--type")]:
            r = subprocess.run([JARIP, "quantize", *args], capture_output=True, text=True)
            if r.returncode == 0 or r.returncode >= 128 or want not in r.stderr or r.stderr.count("\n") != 1:
                failures.append(f"quantize {args[-2:]}: rc {r.returncode}, stderr {r.stderr!r}")
            if os.path.exists(os.path.join(d, "o.gguf")):
                failures.append("a failed quantize left an output file")
        # jarip reads gguf-py's metadata (string array) and writes it back intact
        rd = gguf.GGUFReader(os.path.join(d, "q4_0.gguf"))
        f = rd.fields["test.strings"]
        got = [bytes(f.parts[i]).decode() for i in f.data]
        if got != ["a", "bc", "d\u00e9"]:
            failures.append(f"string array not copied: {got}")
        # the real llama.cpp-made model, when fetched: jarip's dequantization of
        # its q4_1 / q8_0 tensors equals gguf-py's, bit for bit
        model = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models",
                             "SmolLM2-135M-Instruct.Q4_1.gguf")
        if os.path.exists(model):
            f32 = os.path.join(d, "smollm2_f32.gguf")
            run("quantize", model, f32, "--type", "f32", "--quiet")
            src_t, f32_t = tensors(model), tensors(f32)
            for name in ["token_embd.weight", "blk.0.attn_q.weight", "blk.29.ffn_down.weight", "output_norm.weight"]:
                t = src_t[name]
                want = dequantize(raw_bytes(t).reshape(int(t.shape[-1] if len(t.shape) > 1 else 1), -1),
                                  t.tensor_type).astype(np.float32).reshape(-1)
                got = np.asarray(f32_t[name].data, dtype=np.float32).reshape(-1)
                diff = float(np.max(np.abs(want - got)) / (np.max(np.abs(want)) + 1e-30))
                print(f"SmolLM2 {name:24s} {t.tensor_type.name:5s} dequant diff {diff:.1e}")
                if want.shape != got.shape or diff > 1e-6:
                    failures.append(f"SmolLM2 {name}: dequantization differs from gguf-py by {diff:.2e}")
        else:
            print("note: models/SmolLM2-135M-Instruct.Q4_1.gguf absent; real-model check skipped")
    if failures:
        print("\n".join("FAIL: " + f for f in failures))
        sys.exit(1)
    print("test_quant_gguf: ok")


if __name__ == "__main__":
    main()
