#!/usr/bin/env bash
# jarip tokenizer train/encode/decode/info from the command line: exact
# round trips on any bytes, deterministic training, Hugging Face loads the
# saved tokenizer.json and gives the same ids, clear errors.
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

make_corpus 3000 > "$WORK/corpus.txt"
printf '안녕하세요 오늘 영화 정말 재미있었어요 ㅋㅋㅋ\n日本語のテキスト 中文 👍🏽 👨‍👩‍👧\n' >> "$WORK/corpus.txt"

"$JARIP" tokenizer train --vocab-size 420 --input "$WORK/corpus.txt" --out "$WORK/tok.json" \
  --special '<|endoftext|>' '<|im_start|>' --threads 2 2> "$WORK/train.log" || { cat "$WORK/train.log"; fail "train"; }
"$JARIP" tokenizer train --vocab-size 420 --input "$WORK/corpus.txt" --out "$WORK/tok1.json" \
  --special '<|endoftext|>' '<|im_start|>' --threads 1 2> /dev/null
cmp -s "$WORK/tok.json" "$WORK/tok1.json" || fail "training differs between 1 and 2 threads"
pass "train is deterministic across thread counts"
"$JARIP" tokenizer train --vocab-size 600 --pattern llama3 --input "$WORK/corpus.txt" --out "$WORK/tok_l3.json" 2>/dev/null
"$JARIP" tokenizer info --tokenizer "$WORK/tok.json" > "$WORK/info"
grep -q "vocab size  420" "$WORK/info" || fail "info: $(cat "$WORK/info")"
grep -q "eos         418" "$WORK/info" || fail "eos should be <|endoftext|> = 418: $(cat "$WORK/info")"

# round trips: text, specials, every byte value, invalid UTF-8, empty
printf 'The king sees a fox.<|endoftext|><|im_start|>user\n  tabs\t\tand   spaces\n\n' > "$WORK/t1"
head -c 20000 "$WORK/corpus.txt" > "$WORK/t2"
awk 'BEGIN { for (r = 0; r < 4; r++) for (i = 0; i < 256; i++) printf "%c", i }' LC_ALL=C > "$WORK/t3"
printf '\xff\xfe broken \xc3\x28 \xe2\x82 \xed\xa0\x80 end\x80' > "$WORK/t4"
: > "$WORK/t5"
for tok in tok.json tok_l3.json; do
  for f in t1 t2 t3 t4 t5; do
    "$JARIP" tokenizer encode --tokenizer "$WORK/$tok" --input "$WORK/$f" > "$WORK/$f.ids"
    "$JARIP" tokenizer decode --tokenizer "$WORK/$tok" < "$WORK/$f.ids" > "$WORK/$f.back"
    cmp -s "$WORK/$f" "$WORK/$f.back" || fail "$tok: decode(encode($f)) differs"
  done
  # stdin and threads give the same ids
  "$JARIP" tokenizer encode --tokenizer "$WORK/$tok" --threads 1 < "$WORK/t2" | cmp -s - "$WORK/t2.ids" || fail "stdin/threads"
done
grep -Eqx '[0-9]+( [0-9]+)*' "$WORK/t2.ids" || fail "encode output is not ids separated by single spaces"
[ "$(cat "$WORK/t5.ids")" = "" ] || fail "empty input should give an empty line"
pass "round trips on text, specials, all bytes, invalid UTF-8, empty input"

"$JARIP" tokenizer encode --tokenizer "$WORK/tok.json" --input "$WORK/t1" > "$WORK/a"
"$JARIP" tokenizer encode --tokenizer "$WORK/tok.json" --input "$WORK/t1" --no-special > "$WORK/b"
grep -qw 418 "$WORK/a" || fail "special token not matched"
! grep -qw 418 "$WORK/b" || fail "--no-special still matched the special token"

# Hugging Face loads what jarip saved and gives the same ids
if /usr/bin/python3 -c 'import tokenizers' 2>/dev/null; then
  for tok in tok.json tok_l3.json; do
    /usr/bin/python3 - "$WORK/$tok" "$WORK/t1" "$WORK/t2" <<'PY' > "$WORK/hf.ids" || fail "HF could not load $tok"
import sys
from tokenizers import Tokenizer
t = Tokenizer.from_file(sys.argv[1])
for f in sys.argv[2:]:
    print(" ".join(map(str, t.encode(open(f, encoding="utf-8", newline="").read()).ids)))
PY
    { "$JARIP" tokenizer encode --tokenizer "$WORK/$tok" --input "$WORK/t1";
      "$JARIP" tokenizer encode --tokenizer "$WORK/$tok" --input "$WORK/t2"; } > "$WORK/j.ids"
    cmp -s "$WORK/hf.ids" "$WORK/j.ids" || fail "$tok: Hugging Face ids differ from jarip's"
  done
  pass "Hugging Face tokenizers loads jarip's tokenizer.json with the same ids"
else
  echo "skip: python3 without the tokenizers package (pip install tokenizers) -- HF comparison not run"
fi

# GGUF vocabulary (SmolLM2), when the model is there
GG="$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -f "$GG" ]; then
  "$JARIP" tokenizer encode --tokenizer "$GG" --input "$WORK/t4" | "$JARIP" tokenizer decode --tokenizer "$GG" > "$WORK/g"
  "$JARIP" tokenizer info --tokenizer "$GG" | grep -q "pattern     smollm" || fail "SmolLM2 pattern"
  pass "GGUF tokenizer loads"
fi

# help and errors
for sub in "" train encode decode info; do
  "$JARIP" tokenizer $sub --help > "$WORK/h" || fail "tokenizer $sub --help"
  grep -q -- "--tokenizer" "$WORK/h" || fail "help for '$sub' lacks flags"
done
expect_fail() { # CODE SUBSTRING -- command...
  local code=$1 want=$2; shift 3
  set +e; "$@" > /dev/null 2> "$WORK/err"; local rc=$?; set -e
  [ $rc -eq "$code" ] || fail "expected exit $code, got $rc: $* ($(cat "$WORK/err"))"
  [ "$(wc -l < "$WORK/err")" -eq 1 ] || fail "expected one error line: $(cat "$WORK/err")"
  grep -qi -- "$want" "$WORK/err" || fail "error should mention '$want': $(cat "$WORK/err")"
}
expect_fail 2 "required" -- "$JARIP" tokenizer encode
expect_fail 2 "unknown flag" -- "$JARIP" tokenizer encode --tokenizer "$WORK/tok.json" --bogus
expect_fail 2 "unknown subcommand" -- "$JARIP" tokenizer frobnicate
echo '{"model": ' > "$WORK/bad.json"
expect_fail 1 "does not parse" -- "$JARIP" tokenizer encode --tokenizer "$WORK/bad.json" --input "$WORK/t1"
expect_fail 1 "cannot open" -- "$JARIP" tokenizer encode --tokenizer "$WORK/nope.json" --input "$WORK/t1"
echo "1 2 99999" | { expect_fail 1 "not in the vocabulary" -- "$JARIP" tokenizer decode --tokenizer "$WORK/tok.json"; }
echo "1 2 x3" | { expect_fail 1 "expected a token id" -- "$JARIP" tokenizer decode --tokenizer "$WORK/tok.json"; }
expect_fail 1 "no text" -- "$JARIP" tokenizer train --vocab-size 300 --input "$WORK/t5" --out "$WORK/x.json"
expect_fail 2 "out of range" -- "$JARIP" tokenizer train --vocab-size 10 --input "$WORK/t1" --out "$WORK/x.json"
expect_fail 2 "gpt2 or llama3" -- "$JARIP" tokenizer train --vocab-size 300 --pattern x --input "$WORK/t1" --out "$WORK/x.json"
pass "help and errors"
