#!/usr/bin/env python3
"""Make the tokenizer test fixtures in tests/fixtures/tokenizer/ with
Hugging Face `tokenizers` (the reference implementation).

  gpt2_hf.json    byte-level BPE, GPT-2 split pattern, trained here by HF's BpeTrainer
  llama3_hf.json  byte-level BPE, Llama-3 split pattern (Split + ByteLevel, ignore_merges)
  cases.hex       the test texts, one per line, hex-encoded (so invalid UTF-8 fits)
  <name>.ids      HF's ids for each case, one line per case
  llama3_hf.tiktoken  llama3_hf.json's vocabulary as a tiktoken rank file (rank = id)
  tiktoken.ids    tiktoken's own ids for it (cl100k-style pattern); "-" for cases
                  tiktoken cannot take (invalid UTF-8)
  smollm2.ids     the same for SmolLM2's vocabulary, read from
                  models/SmolLM2-135M-Instruct.Q4_1.gguf (written only when present)

Invalid UTF-8 cannot be given to HF (it takes str), so for those cases the
reference follows jarip's documented policy with HF's own parts: each byte
that is not part of a valid UTF-8 sequence is shown to HF's pre-tokenizer
as U+FFFD, the pieces are mapped back to the original bytes, and HF's BPE
model merges those bytes. For valid texts that route is checked against
tokenizer.encode() here, so it is the same computation.

Usage: /usr/bin/python3 scripts/make_tokenizer_fixtures.py   (needs: pip install tokenizers)
"""
import json
import os
import random
import struct
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
GGUF = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
          r"\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def corpus():
    """A small mixed corpus, deterministic, so merges cover every script."""
    rng = random.Random(1234)
    en = ("the quick brown fox jumps over the lazy dog while a tokenizer learns merges from text and "
          "every language model starts from bytes that become tokens it's they're we'll I'd you've "
          "Shakespeare wrote plays poems sonnets; programmers write functions, loops and tests").split()
    code = ["def encode(self, text):\n    return [self.vocab[t] for t in text]\n",
            "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
            "for (size_t i = 0; i < n; i++) x[i] += y[i] * 2.5f;\n",
            "    if x == None:  # comment\n        pass\n"]
    ko = ("안녕하세요 오늘 날씨가 정말 좋네요 영화가 너무 재미있었어요 배우들의 연기가 최고 "
          "ㅋㅋㅋㅋ ㅠㅠ ㅎㅎ 진짜 별로였다 시간 낭비 한국어 토크나이저 테스트 입니다").split()
    ja = ("日本語 の テキスト です 東京 は 大きな 都市 です カタカナ ひらがな 漢字 を 書きます").split()
    zh = ("我们 今天 去 北京 学习 中文 很 有意思 你好 世界 人工 智能 语言 模型").split()
    emo = ["👍", "👍🏽", "👨‍👩‍👧‍👦", "❤️", "🏳️‍🌈", "😀", "🎉", "🇰🇷"]
    lines = []
    for _ in range(1500):
        kind = rng.randrange(6)
        if kind == 0:
            words = [rng.choice(en) for _ in range(rng.randrange(5, 15))]
            lines.append(" ".join(words).capitalize() + rng.choice([".", "!", "?", ","]) + "\n")
        elif kind == 1:
            lines.append(rng.choice(code))
        elif kind == 2:
            lines.append(" ".join(rng.choice(ko) for _ in range(rng.randrange(3, 10))) + "\n")
        elif kind == 3:
            lines.append("".join(rng.choice(ja) for _ in range(rng.randrange(3, 10))) + "。\n")
        elif kind == 4:
            lines.append("".join(rng.choice(zh) for _ in range(rng.randrange(3, 10))) + "。\n")
        else:
            lines.append(f"{rng.randrange(10**6)} items cost {rng.random()*100:.2f} {rng.choice(emo)} "
                         f"{rng.choice(emo)}{rng.choice(emo)}  \t  {rng.randrange(1900, 2100)}-0{rng.randrange(1, 10)}\n")
    return lines


def cases():
    c = [
        "Hello world! The quick brown fox jumps over the lazy dog.",
        "It's a dog's life; they're here, we'll see, I'd go, you've been, she'll say. YOU'RE DON'T I'M",
        "def encode(self, text):\n    return [self.vocab[t] for t in text]\n\n\tindented\ttabs\n",
        "int main(void) {\n\tprintf(\"%d\\n\", 42); // 주석\n\treturn 0;\n}\r\n",
        "안녕하세요. 오늘 날씨가 정말 좋네요! 영화가 너무 재미있었어요~",
        "ㅋㅋㅋㅋㅋ ㅠㅠ ㅎㅎ ㄱㄴㄷㄹ ㅏㅑㅓㅕ 진짜ㅋㅋ",
        "\u1100\u1161\u11a8 \u1112\u1161\u11ab",  # conjoining jamo
        "日本語のテキストです。東京は大きな都市です。カタカナ、ひらがな、ｶﾀｶﾅ。",
        "我们今天去北京学习中文，很有意思！你好，世界。",
        "👍 👍🏽 👍🏿👨‍👩‍👧‍👦 family 🏳️‍🌈 ❤️🔥 🇰🇷🇯🇵 😀😀😀",
        "3.14159 1,000,000 2024-01-01 12345678901234567890 ١٢٣٤ ½ ² Ⅻ 0x1F",
        "a   b\t\t c  \n\n\n  d   ",
        "\r\n\r\nline\n\n\nx\n \n  \n",
        "   leading and trailing   ",
        "",
        " ",
        "\n",
        "<|endoftext|>hello<|endoftext|> world<|im_start|>user\nhi<|im_end|>\n",
        "a<|endoftext|>",
        "<|endoftext",
        "a" * 300,
        "supercalifragilisticexpialidocious" * 5,
        "tab\tsep\tvalues\u3000ideographic\u00a0nbsp\u2028line\u2029para\u0085nel",
        "a\u1680b\u2000c \u200a d\u202fe\u205ff\u001cg\u001f h\u180ei \u180e j\u200bk\ufeffl  \u3000\u3000x",
        "mixed한국어English日本語123abc!!!???...",
        "Ω≈ç√∫˜µ≤≥÷ åß∂ƒ©˙∆˚¬… ¡™£¢∞§¶•ªº–≠",
        "’curly quotes’ “double” — dash 'single'",
        "'s 's'S 'LL 'll 'Re",
    ]
    data = [s.encode("utf-8") for s in c]
    data += [
        b"\xff\xfe abc \xc3\x28 \xe2\x82 end \x80\x80",
        b"\xed\xa0\x80 surrogate \xf4\x90\x80\x80 too big \xc0\xaf overlong",
        b"abc\xffdef ghi\x80 \xe2\x82\xac\xe2\x82",
        b"\xf0\x9f\x98",
        b"\x00\x01\x02 ctrl \x1b[0m \x7f",
        bytes(range(256)),
    ]
    return data


def policy_ids(tok, b):
    """jarip's invalid-byte policy computed with HF's pre-tokenizer and model."""
    s = b.decode("utf-8", "surrogateescape")
    bad = [0xDC80 <= ord(ch) <= 0xDCFF for ch in s]
    shown = "".join("\ufffd" if x else ch for ch, x in zip(s, bad))
    offs = [0]
    for ch, x in zip(s, bad):
        offs.append(offs[-1] + (1 if x else len(ch.encode("utf-8"))))
    enc = bytes_to_unicode()
    ids = []
    for _, (a, e) in tok.pre_tokenizer.pre_tokenize_str(shown):
        piece = b[offs[a]:offs[e]]
        ids += [t.id for t in tok.model.tokenize("".join(enc[x] for x in piece))]
    return ids


def reference_ids(tok, b):
    """HF's ids for bytes b: tok.encode for UTF-8 text, else the policy route."""
    s = b.decode("utf-8", "surrogateescape")
    if any(0xDC80 <= ord(ch) <= 0xDCFF for ch in s):
        return policy_ids(tok, b)
    ids = tok.encode(s).ids
    if b"<|" not in b:  # the policy route has no special tokens; elsewhere it must agree
        assert ids == policy_ids(tok, b), (s, ids, policy_ids(tok, b))
    return ids


def bytes_to_unicode():
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    m, n = {}, 0
    for b in range(256):
        if b in keep:
            m[b] = chr(b)
        else:
            m[b] = chr(256 + n)
            n += 1
    return m


def train(pattern):
    tok = Tokenizer(models.BPE())
    if pattern == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=1500, special_tokens=SPECIALS, show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), tr)
    j = json.loads(tok.to_str())
    if pattern == "llama3":
        j["model"]["ignore_merges"] = True  # as Llama 3's tokenizer.json
    return Tokenizer.from_str(json.dumps(j)), j


def read_gguf_kv(path):
    """The key/value section of a GGUF file (enough for tokenizer.ggml.*)."""
    f = open(path, "rb")
    if f.read(4) != b"GGUF":
        raise ValueError("not GGUF")
    _version, _nt, nkv = struct.unpack("<IQQ", f.read(20))
    scal = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

    def val(t):
        if t == 8:
            (n,) = struct.unpack("<Q", f.read(8))
            return f.read(n).decode("utf-8", "surrogateescape")
        if t == 9:
            et, n = struct.unpack("<IQ", f.read(12))
            return [val(et) for _ in range(n)]
        fmt = scal[t]
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

    kv = {}
    for _ in range(nkv):
        (n,) = struct.unpack("<Q", f.read(8))
        key = f.read(n).decode()
        (t,) = struct.unpack("<I", f.read(4))
        kv[key] = val(t)
    return kv


def smollm2_from_gguf(path):
    kv = read_gguf_kv(path)
    toks, types = kv["tokenizer.ggml.tokens"], kv.get("tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in kv["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(toks)}, merges=merges))
    # SmolLM2's tokenizer.json: digits one by one, then the GPT-2 pattern
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    special = [AddedToken(t, special=True, normalized=False) for i, t in enumerate(toks) if types and types[i] in (3, 4)]
    tok.add_special_tokens(special)
    return tok, kv.get("tokenizer.ggml.pre")


def write_tiktoken(data):
    import base64
    import tiktoken
    j = json.load(open(os.path.join(OUT, "llama3_hf.json"), encoding="utf-8"))
    dec = {v: k for k, v in bytes_to_unicode().items()}
    special = {a["content"] for a in j["added_tokens"]}
    ranks = {bytes(dec[c] for c in t): i for t, i in j["model"]["vocab"].items() if t not in special}
    with open(os.path.join(OUT, "llama3_hf.tiktoken"), "w") as f:
        for b, r in sorted(ranks.items(), key=lambda x: x[1]):
            f.write(base64.b64encode(b).decode() + f" {r}\n")
    enc = tiktoken.Encoding("fixture", pat_str=LLAMA3, mergeable_ranks=ranks, special_tokens={})
    with open(os.path.join(OUT, "tiktoken.ids"), "w") as f:
        for b in data:
            try:
                s = b.decode("utf-8")
            except UnicodeDecodeError:
                f.write("-\n")
                continue
            f.write(" ".join(map(str, enc.encode_ordinary(s))) + "\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    data = cases()
    with open(os.path.join(OUT, "cases.hex"), "w") as f:
        for b in data:
            f.write(b.hex() + "\n")
    for name in ("gpt2", "llama3"):
        tok, j = train(name)
        with open(os.path.join(OUT, f"{name}_hf.json"), "w") as f:
            json.dump(j, f, ensure_ascii=False)
        with open(os.path.join(OUT, f"{name}_hf.ids"), "w") as f:
            for b in data:
                f.write(" ".join(map(str, reference_ids(tok, b))) + "\n")
    write_tiktoken(data)
    if os.path.exists(GGUF):
        tok, pre = smollm2_from_gguf(GGUF)
        print("SmolLM2 pre-tokenizer:", pre)
        with open(os.path.join(OUT, "smollm2.ids"), "w") as f:
            for b in data:
                f.write(" ".join(map(str, reference_ids(tok, b))) + "\n")
    else:
        print("no", GGUF, "- smollm2.ids not written (run scripts/fetch_smollm2.sh)", file=sys.stderr)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
