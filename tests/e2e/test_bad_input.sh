#!/usr/bin/env bash
# Bad input never crashes: one line on stderr naming the problem, non-zero
# exit (not a signal), and nothing the user had is damaged.
source "$(dirname "$0")/lib.sh"
make_corpus 2000 > "$WORK/corpus.txt"

T=(train --data "$WORK/corpus.txt" --steps 2 --batch 2 --seq 16 --quiet)
expect_error "unknown command" -- "$JARIP" frobnicate
expect_error "JARIP_ISA" -- env JARIP_ISA=sse4 "$JARIP" info --preset gpt2-tiny
expect_error "unknown flag" -- "$JARIP" train --preset gpt2-tiny --bogus 1
expect_error "unknown preset" -- "$JARIP" "${T[@]}" --preset gpt9 --out "$WORK/r"
expect_error "cannot open" -- "$JARIP" "${T[@]}" --config "$WORK/missing.json" --out "$WORK/r"
echo '{"arch": "gpt2", "n_layer": 2,' > "$WORK/garbled.json"
expect_error "invalid JSON" -- "$JARIP" "${T[@]}" --config "$WORK/garbled.json" --out "$WORK/r"
echo '[1, 2]' > "$WORK/array.json"
expect_error "JSON object" -- "$JARIP" "${T[@]}" --config "$WORK/array.json" --out "$WORK/r"
echo '{"arch": "gpt2", "vocab_size": 256, "n_layer": 2, "d_model": 100, "n_head": 3}' > "$WORK/shape.json"
expect_error "divisible" -- "$JARIP" "${T[@]}" --config "$WORK/shape.json" --out "$WORK/r"
# a hostile config: 2^31-1 layers would make the registry allocate for ever (fuzz_config)
echo '{"arch": "gpt2", "vocab_size": 256, "n_layer": 2147483647, "d_model": 4, "n_head": 1}' > "$WORK/layers.json"
expect_error "n_layer must be in 1..1024" -- "$JARIP" "${T[@]}" --config "$WORK/layers.json" --out "$WORK/r"
echo '{"arch": "llama", "vocab_size": 256, "n_layer": 2, "d_model": 64, "n_head": 4, "n_kv_head": 3}' > "$WORK/gqa.json"
expect_error "n_kv_head" -- "$JARIP" "${T[@]}" --config "$WORK/gqa.json" --out "$WORK/r"
echo '{"arch": "transformer-xl"}' > "$WORK/arch.json"
expect_error "unknown arch" -- "$JARIP" "${T[@]}" --config "$WORK/arch.json" --out "$WORK/r"
echo '{"arch": "gpt2", "vocab_size": 256, "n_layer": 2, "d_model": 64, "n_head": 4, "dropout": 0.1}' > "$WORK/key.json"
expect_error "unknown key" -- "$JARIP" "${T[@]}" --config "$WORK/key.json" --out "$WORK/r"
echo '{"arch": "gpt2", "vocab_size": "many", "n_layer": 2, "d_model": 64, "n_head": 4}' > "$WORK/type.json"
expect_error "vocab_size" -- "$JARIP" "${T[@]}" --config "$WORK/type.json" --out "$WORK/r"
echo '{"arch": "gpt2", "vocab_size": 100, "n_layer": 2, "d_model": 64, "n_head": 4}' > "$WORK/vocab.json"
expect_error "vocab" -- "$JARIP" "${T[@]}" --config "$WORK/vocab.json" --out "$WORK/r"
expect_error "cannot open data" -- "$JARIP" train --preset gpt2-tiny --data "$WORK/nothing.txt" --out "$WORK/r" --steps 2
: > "$WORK/empty.txt"
expect_error "empty" -- "$JARIP" train --preset gpt2-tiny --data "$WORK/empty.txt" --out "$WORK/r" --steps 2 --quiet
expect_error "context_length" -- "$JARIP" "${T[@]}" --preset gpt2-tiny --out "$WORK/r" --seq 100000
expect_error "out of range" -- "$JARIP" "${T[@]}" --preset gpt2-tiny --out "$WORK/r" --batch 0
expect_error "not an integer" -- "$JARIP" "${T[@]}" --preset gpt2-tiny --out "$WORK/r" --steps ten
expect_error "not a number" -- "$JARIP" "${T[@]}" --preset gpt2-tiny --out "$WORK/r" --lr fast
expect_error "needs a value" -- "$JARIP" train --preset
expect_error "required" -- "$JARIP" train --preset gpt2-tiny --data "$WORK/corpus.txt"

# A good checkpoint, then damaged copies of it.
"$JARIP" "${T[@]}" --preset gpt2-tiny --out "$WORK/good"
ck="$WORK/good/$(cat "$WORK/good/latest")"
sum_before=$(md5sum "$ck/model.bin" | cut -d' ' -f1)
cp -r "$WORK/good" "$WORK/trunc"
tck="$WORK/trunc/$(cat "$WORK/trunc/latest")"
truncate -s -100 "$tck/model.bin"
expect_error "checksum" -- "$JARIP" sample --ckpt "$WORK/trunc" --prompt x -n 2
cp -r "$WORK/good" "$WORK/flip"
fck="$WORK/flip/$(cat "$WORK/flip/latest")"
printf '\xff' | dd of="$fck/model.bin" bs=1 seek=5000 conv=notrunc status=none
expect_error "checksum" -- "$JARIP" train --resume "$WORK/flip" --steps 4
expect_error "not a checkpoint" -- "$JARIP" sample --ckpt "$WORK" --prompt x
echo garbage > "$WORK/flip/latest"
expect_error "" -- "$JARIP" info --ckpt "$WORK/flip"
expect_error "already has" -- "$JARIP" train --resume "$WORK/good" --quiet
[ "$(md5sum "$ck/model.bin" | cut -d' ' -f1)" = "$sum_before" ] || fail "a failed command changed the good checkpoint"
pass "all bad inputs rejected cleanly"
