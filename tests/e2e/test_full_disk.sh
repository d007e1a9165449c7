#!/usr/bin/env bash
# A full disk: training, export, quantize and data prepare write into a small
# tmpfs that fills during the write. Each must end with one error line, leave
# no partial file, and keep what was there before (the previous checkpoint
# intact and loadable, an existing output file unchanged).
#
# Why a tmpfs, not an LD_PRELOAD shim that fails write(): the kernel's own
# ENOSPC reaches every path jarip writes by (write, stdio's internal writes,
# which a preload cannot intercept, fsync, rename). The tmpfs lives in a
# private mount namespace (`unshare --mount`, or a user namespace when not
# root), so nothing outside the test sees it and it vanishes with the test.
# Where neither can mount, the test says so and skips.
source "$(dirname "$0")/lib.sh"
if [ "${JARIP_IN_NS:-}" != 1 ]; then
  for how in "unshare --mount" "unshare --user --map-root-user --mount"; do
    if $how sh -c "mount -t tmpfs -o size=1m tmpfs '$WORK' && umount '$WORK'" 2>/dev/null; then
      rm -rf "$WORK"
      trap - EXIT
      JARIP_IN_NS=1 exec $how bash "$0" "$JARIP"
    fi
  done
  echo "skip: cannot mount a tmpfs in a private namespace here (needs unshare and mount rights)"
  exit 0
fi

D="$WORK/disk"
trap 'umount "$D" 2>/dev/null || true; rm -rf "$WORK"' EXIT
make_corpus 3000 > "$WORK/corpus.txt"
tiny_config "$WORK/cfg.json" 64
common=(--config "$WORK/cfg.json" --data "$WORK/corpus.txt" --batch 4 --seq 16 --eval-every 0 --eval-batches 1
  --threads 2 --quiet)
# sizes measured on the real disk first
"$JARIP" train "${common[@]}" --out "$WORK/ref" --steps 2 --save-every 1 --keep 10
CK=$(stat -c %s "$WORK/ref/ckpt_00000001/model.bin")
"$JARIP" export --ckpt "$WORK/ref" --out "$WORK/ref.gguf" 2>/dev/null
GG=$(stat -c %s "$WORK/ref.gguf")

mkdir -p "$D"
mount_disk() { umount "$D" 2>/dev/null || true; mount -t tmpfs -o size="$1" tmpfs "$D"; }
# Leave about $1 bytes free on the tmpfs.
fill_to() {
  local avail=$(( $(stat -f -c '%a * %S' "$D") ))
  local fill=$(( avail - $1 ))
  [ $fill -le 0 ] || head -c $fill /dev/zero > "$D/filler.$RANDOM"
}
# run_full NAME CMD...: must fail with one "jarip: ...No space left on device" line
run_full() {
  local name=$1; shift
  set +e
  "$@" > "$WORK/out" 2> "$WORK/err"
  local rc=$?
  set -e
  [ $rc -ne 0 ] && [ $rc -lt 128 ] || fail "$name: expected an error exit on a full disk (rc $rc)"
  [ "$(wc -l < "$WORK/err")" = 1 ] || fail "$name: expected one error line: $(cat "$WORK/err")"
  grep -q "^jarip: .*No space left on device" "$WORK/err" || fail "$name: error should say the disk is full: $(cat "$WORK/err")"
}
no_partials() {
  local left
  left=$(find "$D" \( -name '*.tmp' -o -name '*.tmp.*' -o -name '*.partial' -o -name '*.f32.*' \) | head -3)
  [ -z "$left" ] || fail "$1: partial files left behind: $left"
}

# 1. Training: checkpoints every step, none pruned, until one does not fit.
mount_disk $(( 4 * CK + 256 * 1024 ))
run_full "train" "$JARIP" train "${common[@]}" --out "$D/run" --steps 50 --save-every 1 --keep 1000
last=$(cat "$D/run/latest")
no_partials train
[ -f "$D/run/$last/model.bin" ] || fail "train: latest ($last) is not complete"
"$JARIP" sample --ckpt "$D/run" --prompt "The" -n 4 --temperature 0 > /dev/null || fail "train: the last checkpoint does not load"
pass "train: $(sed 's/^jarip: //' "$WORK/err" | cut -c1-90); $last intact and loads"
# ... and a resume into the same full disk fails the same way, keeping it
run_full "train --resume" "$JARIP" train --resume "$D/run" --quiet --threads 2
[ "$(cat "$D/run/latest")" = "$last" ] || fail "train --resume: latest changed"
"$JARIP" sample --ckpt "$D/run" --prompt "The" -n 4 --temperature 0 > /dev/null || fail "resume: the checkpoint does not load"
no_partials "train --resume"
pass "train --resume on a full disk: $last kept"

# 2. Export: a GGUF that does not fit; an older file of the same name stays.
mount_disk $(( 3 * GG ))
cp "$WORK/ref.gguf" "$D/model.gguf"
sum=$(md5sum < "$D/model.gguf")
fill_to $(( GG / 2 ))
run_full "export" "$JARIP" export --ckpt "$WORK/ref" --out "$D/model.gguf"
[ "$(md5sum < "$D/model.gguf")" = "$sum" ] || fail "export: the existing model.gguf changed"
run_full "export q8_0" "$JARIP" export --ckpt "$WORK/ref" --out "$D/new.gguf" --type q8_0
[ -e "$D/new.gguf" ] && fail "export: a partial new.gguf exists"
no_partials export
pass "export: $(sed 's/^jarip: //' "$WORK/err" | cut -c1-90); the old file intact"

# 3. Quantize.
run_full "quantize" "$JARIP" quantize "$WORK/ref.gguf" "$D/q.gguf" --type f16
[ -e "$D/q.gguf" ] && fail "quantize: a partial q.gguf exists"
no_partials quantize
pass "quantize: $(sed 's/^jarip: //' "$WORK/err" | cut -c1-90)"

# 4. Data prepare: shards that do not fit; no output directory appears.
mount_disk 1m
for i in $(seq 8); do cat "$WORK/corpus.txt"; done > "$WORK/big.txt"
"$JARIP" tokenizer train --vocab-size 300 --input "$WORK/corpus.txt" --out "$WORK/tok.json" --threads 2 2>/dev/null
fill_to $(( 64 * 1024 ))
run_full "data prepare" "$JARIP" data prepare --tokenizer "$WORK/tok.json" --input "$WORK/big.txt" --out "$D/shards" \
  --shard-tokens 20000 --threads 2
[ -e "$D/shards" ] && fail "data prepare: the output directory exists"
no_partials "data prepare"
pass "data prepare: $(sed 's/^jarip: //' "$WORK/err" | cut -c1-90)"
umount "$D"
