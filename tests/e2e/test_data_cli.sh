#!/usr/bin/env bash
# jarip data prepare/info: formats, summary, determinism across thread
# counts, verification of shards, clear errors, no half output.
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TOK="$ROOT/tests/fixtures/tokenizer/gpt2_hf.json"

make_corpus 4000 > "$WORK/corpus.txt"
printf '안녕하세요 \xff broken\n\n' >> "$WORK/corpus.txt"
"$JARIP" data prepare --tokenizer "$TOK" --input "$WORK/corpus.txt" --out "$WORK/d1" --format lines \
  --val-fraction 0.1 --shard-tokens 5000 --threads 2 > "$WORK/sum" || fail "prepare lines"
grep -q "documents   3601 train, 400 val" "$WORK/sum" || fail "summary: $(cat "$WORK/sum")"
grep -q "1 invalid UTF-8" "$WORK/sum" || fail "invalid UTF-8 not counted: $(cat "$WORK/sum")"
grep -q "uint16" "$WORK/sum" || fail "1500-token vocabulary should give uint16 shards"
ls "$WORK/d1"/train_000001.bin > /dev/null || fail "expected several train shards"
"$JARIP" data prepare --tokenizer "$TOK" --input "$WORK/corpus.txt" --out "$WORK/d2" --format lines \
  --val-fraction 0.1 --shard-tokens 5000 --threads 1 > /dev/null
for f in "$WORK"/d1/*.bin; do cmp -s "$f" "$WORK/d2/$(basename "$f")" || fail "$(basename "$f") differs by thread count"; done
"$JARIP" data info --data "$WORK/d1" | grep -q "checksums   ok" || fail "data info"
pass "lines: summary, shards, split, determinism"

# jsonl and text
printf '{"text": "one"}\n{"body": "x", "text": "two\\nlines"}\n' > "$WORK/c.jsonl"
"$JARIP" data prepare --tokenizer "$TOK" --input "$WORK/c.jsonl" --out "$WORK/dj" --format jsonl --val-fraction 0 \
  | grep -q "documents   2 train, 0 val" || fail "jsonl"
printf '{"body": "one"}\n' > "$WORK/b.jsonl"
"$JARIP" data prepare --tokenizer "$TOK" --input "$WORK/b.jsonl" --out "$WORK/db" --format jsonl --jsonl-field body \
  | grep -q "documents   1 train" || fail "--jsonl-field"
"$JARIP" data prepare --tokenizer "$TOK" --input "$WORK/corpus.txt" "$WORK/c.jsonl" --out "$WORK/dt" \
  | grep -q "documents   2 train" || fail "text: one document per file"
pass "jsonl and text formats"

# corrupt and truncated shards are named
cp -r "$WORK/d1" "$WORK/bad"
printf 'X' | dd of="$WORK/bad/train_000000.bin" bs=1 seek=200 conv=notrunc 2> /dev/null
set +e; "$JARIP" data info --data "$WORK/bad" 2> "$WORK/err"; rc=$?; set -e
[ $rc -eq 1 ] && grep -q "checksum" "$WORK/err" || fail "corrupt shard: rc=$rc $(cat "$WORK/err")"
cp "$WORK/d1/train_000000.bin" "$WORK/bad/train_000000.bin"
truncate -s -3 "$WORK/bad/val_000000.bin"
set +e; "$JARIP" data info --data "$WORK/bad" 2> "$WORK/err"; rc=$?; set -e
[ $rc -eq 1 ] && grep -q "truncated" "$WORK/err" || fail "truncated shard: rc=$rc $(cat "$WORK/err")"
pass "corrupt and truncated shards are refused"

# errors: one line, non-zero, no output left behind
expect_fail() { # CODE SUBSTRING -- command...
  local code=$1 want=$2; shift 3
  set +e; "$@" > /dev/null 2> "$WORK/err"; local rc=$?; set -e
  [ $rc -eq "$code" ] || fail "expected exit $code, got $rc: $* ($(cat "$WORK/err"))"
  [ "$(wc -l < "$WORK/err")" -eq 1 ] || fail "expected one error line: $(cat "$WORK/err")"
  grep -qi -- "$want" "$WORK/err" || fail "error should mention '$want': $(cat "$WORK/err")"
}
: > "$WORK/empty.txt"
expect_fail 1 "no documents" -- "$JARIP" data prepare --tokenizer "$TOK" --input "$WORK/empty.txt" --out "$WORK/e1"
[ ! -e "$WORK/e1" ] && [ ! -e "$WORK/e1.partial" ] || fail "failed prepare left output"
expect_fail 1 "exists" -- "$JARIP" data prepare --tokenizer "$TOK" --input "$WORK/corpus.txt" --out "$WORK/d1"
printf '{"text": "ok"}\n{"text": 7}\n' > "$WORK/n.jsonl"
expect_fail 1 "n.jsonl:2:" -- "$JARIP" data prepare --tokenizer "$TOK" --input "$WORK/c.jsonl" "$WORK/n.jsonl" --out "$WORK/e2" --format jsonl
printf '{"text": "ok"}\n{broken\n' > "$WORK/broken.jsonl"
expect_fail 1 "not valid JSON" -- "$JARIP" data prepare --tokenizer "$TOK" --input "$WORK/broken.jsonl" --out "$WORK/e3" --format jsonl
echo "garbage" > "$WORK/tok.bad"
expect_fail 1 "tiktoken" -- "$JARIP" data prepare --tokenizer "$WORK/tok.bad" --input "$WORK/corpus.txt" --out "$WORK/e4"
expect_fail 1 "cannot open" -- "$JARIP" data prepare --tokenizer "$TOK" --input "$WORK/missing.txt" --out "$WORK/e5"
expect_fail 2 "text, lines or jsonl" -- "$JARIP" data prepare --tokenizer "$TOK" --input "$WORK/corpus.txt" --out "$WORK/e6" --format csv
expect_fail 2 "out of range" -- "$JARIP" data prepare --tokenizer "$TOK" --input "$WORK/corpus.txt" --out "$WORK/e7" --val-fraction 1.5
expect_fail 1 "no training tokens" -- "$JARIP" data info --data "$WORK"
for sub in "" prepare info; do "$JARIP" data $sub --help | grep -q -- "--tokenizer" || fail "data $sub --help"; done
pass "errors"
