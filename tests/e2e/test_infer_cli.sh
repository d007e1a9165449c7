#!/usr/bin/env bash
# jarip generate / chat / bench infer from the command line: help, bad input
# (one-line errors, no crash), and, when the SmolLM2 model is present
# (scripts/fetch_smollm2.sh), real answers: greedy generate is repeatable,
# prints only the generated text, honours -n and --stop; chat answers
# several turns, /reset, /exit; bench infer prints pp/tg/RSS; --kv-type
# f16 (the default) and f32 both run, anything else is refused.
source "$(dirname "$0")/lib.sh"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
MODEL="${JARIP_SMOLLM2:-$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf}"

for c in generate chat; do
  "$JARIP" $c --help | grep -q -- "--temperature" || fail "$c --help lacks the sampling flags"
done
"$JARIP" bench infer --help | grep -q "pp" || fail "bench infer --help"
pass "help"

expect_error "required" -- "$JARIP" generate --prompt hi
expect_error "--prompt" -- "$JARIP" generate --model "$WORK/none.gguf"
expect_error "cannot open\|no such\|not found" -- "$JARIP" generate --model "$WORK/none.gguf" --prompt hi
expect_error "unknown flag" -- "$JARIP" chat --model x --bogus
expect_error "temperature" -- "$JARIP" generate --model x --prompt hi --temperature -1
expect_error "top-p" -- "$JARIP" generate --model x --prompt hi --top-p 2
head -c 4096 /dev/urandom > "$WORK/junk.gguf"
expect_error "junk.gguf\|gguf" -- "$JARIP" generate --model "$WORK/junk.gguf" --prompt hi
printf 'GGUF\003\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000' > "$WORK/empty.gguf"
expect_error "architecture" -- "$JARIP" generate --model "$WORK/empty.gguf" --prompt hi
expect_error "kv-type" -- "$JARIP" generate --model x --prompt hi --kv-type q8_0
expect_error "kv-type" -- "$JARIP" bench infer --model x --kv-type f8
expect_error "integer" -- "$JARIP" bench infer --model x -d -5

if [ ! -f "$MODEL" ]; then
  echo "SKIP: $MODEL is absent (scripts/fetch_smollm2.sh); real-model checks not run"
  exit 0
fi

G=("$JARIP" generate --model "$MODEL" --temperature 0 --threads 2)
"${G[@]}" --chat --prompt "What is 2+2?" -n 24 > "$WORK/a" 2> "$WORK/ae"
"${G[@]}" --chat --prompt "What is 2+2?" -n 24 > "$WORK/b" 2> /dev/null
[ -s "$WORK/a" ] || fail "no text generated: $(cat "$WORK/ae")"
cmp -s "$WORK/a" "$WORK/b" || fail "greedy generation is not repeatable"
[ ! -s "$WORK/ae" ] || fail "generate wrote to stderr: $(cat "$WORK/ae")"
grep -q "4" "$WORK/a" || fail "2+2 answer lacks 4: $(cat "$WORK/a")"
pass "generate --chat: $(cat "$WORK/a")"
# the F32 KV cache (f16 is the default) answers too
"${G[@]}" --chat --prompt "What is 2+2?" -n 24 --kv-type f32 > "$WORK/a32"
grep -q "4" "$WORK/a32" || fail "2+2 answer with --kv-type f32 lacks 4: $(cat "$WORK/a32")"
pass "generate --kv-type f32: $(cat "$WORK/a32")"
# the weights from the file's page cache (where the kernel maps it with 2 MiB pages) and from
# the private copy (JARIP_MAP_WEIGHTS=0) give the same text; bench infer says which it used
JARIP_MAP_WEIGHTS=0 "${G[@]}" --chat --prompt "What is 2+2?" -n 24 > "$WORK/acopy"
cmp -s "$WORK/a" "$WORK/acopy" || fail "the copied weights answer differently: $(cat "$WORK/acopy")"
JARIP_MAP_WEIGHTS=0 "$JARIP" bench infer --model "$MODEL" -p 0 -n 1 -r 1 | grep -q "^weights: private copy" ||
  fail "JARIP_MAP_WEIGHTS=0 did not copy"
"$JARIP" bench infer --model "$MODEL" -p 0 -n 1 -r 1 | grep -q "^weights: " || fail "bench infer names no weights' place"
pass "weights in place and copied: same text ($("$JARIP" bench infer --model "$MODEL" -p 0 -n 1 -r 1 | grep '^weights:'))"

# a raw continuation of exactly -n tokens, and --stop cuts before the stop string
"${G[@]}" --prompt "The days of the week are Monday, Tuesday," -n 12 --ignore-eos --stats > "$WORK/c" 2> "$WORK/ce"
grep -q "generated: 12 tokens" "$WORK/ce" || fail "-n 12: $(cat "$WORK/ce")"
grep -q "Wednesday" "$WORK/c" || fail "continuation: $(cat "$WORK/c")"
"${G[@]}" --prompt "The days of the week are Monday, Tuesday," -n 12 --ignore-eos --stop "Thursday" > "$WORK/d"
grep -q "Thursday" "$WORK/d" && fail "--stop string printed: $(cat "$WORK/d")"
case "$(cat "$WORK/c")" in "$(cat "$WORK/d")"*) ;; *) fail "--stop output is not a prefix: $(cat "$WORK/d")";; esac
pass "generate -n / --stop: $(cat "$WORK/d")"

# sampling with a seed is repeatable; another seed may differ but still runs
S=("$JARIP" generate --model "$MODEL" --threads 2 --prompt "Once upon a time" -n 16 --temperature 0.9 --top-k 40 --top-p 0.9 --min-p 0.02 --repeat-penalty 1.1 --frequency-penalty 0.2 --presence-penalty 0.1)
"${S[@]}" --seed 7 > "$WORK/s1"
"${S[@]}" --seed 7 > "$WORK/s2"
cmp -s "$WORK/s1" "$WORK/s2" || fail "seeded sampling is not repeatable"
pass "seeded sampling: $(cat "$WORK/s1")"

printf 'My name is Ada.\nWhat is my name?\n/reset\nHi\n/exit\nnever read\n' |
  "$JARIP" chat --model "$MODEL" --temperature 0 -n 32 --threads 2 > "$WORK/chat" 2> "$WORK/chate"
[ "$(grep -c . "$WORK/chat")" -ge 3 ] || fail "chat gave fewer than 3 answers: $(cat "$WORK/chat") $(cat "$WORK/chate")"
# the first answer is what generate --chat says to the same message
"${G[@]}" --chat --prompt "My name is Ada." -n 32 > "$WORK/first"
[ "$(head -1 "$WORK/chat")" = "$(cat "$WORK/first")" ] || fail "chat's first answer differs from generate --chat: $(head -1 "$WORK/chat") vs $(cat "$WORK/first")"
# after /reset the conversation starts over: "Hi" alone answers as in a fresh generate --chat
"${G[@]}" --chat --prompt "Hi" -n 32 > "$WORK/hi"
[ "$(sed -n 3p "$WORK/chat")" = "$(cat "$WORK/hi")" ] || fail "/reset did not start over: $(sed -n 3p "$WORK/chat") vs $(cat "$WORK/hi")"
pass "chat: $(tr '\n' '|' < "$WORK/chat")"

"$JARIP" bench infer --model "$MODEL" --threads 2 -p 32 -n 8 -r 1 > "$WORK/bench"
grep -q "^pp32: " "$WORK/bench" && grep -q "^tg8: " "$WORK/bench" && grep -q "^peak_rss_mib: " "$WORK/bench" || fail "bench infer: $(cat "$WORK/bench")"
grep -q "kv cache f16" "$WORK/bench" || fail "bench infer's default KV cache is not f16: $(head -1 "$WORK/bench")"
pass "bench infer: $(tr '\n' ' ' < "$WORK/bench")"
# -d: both figures start from a cache of that many tokens; past the context, an error
"$JARIP" bench infer --model "$MODEL" --threads 2 -p 16 -n 4 -d 40 -r 1 > "$WORK/benchd"
grep -q "^pp16 @ d40: " "$WORK/benchd" && grep -q "^tg4 @ d40: " "$WORK/benchd" || fail "bench infer -d: $(cat "$WORK/benchd")"
expect_error "context of [1-9]" -- "$JARIP" bench infer --model "$MODEL" -p 16 -n 4 -d 1000000 -r 1
pass "bench infer -d: $(tr '\n' ' ' < "$WORK/benchd")"
