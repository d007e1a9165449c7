# Shared helpers for the e2e tests: sourced, not run.
set -euo pipefail
JARIP=${1:?usage: test.sh path/to/jarip}
JARIP=$(cd "$(dirname "$JARIP")" && pwd)/$(basename "$JARIP")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jarip-e2e.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

# Bad input: a non-zero exit (not a signal) and one "jarip: " line on stderr
# that mentions EXPECTED_SUBSTRING.
# expect_error EXPECTED_SUBSTRING -- command...
expect_error() {
  local want=$1; shift; shift
  set +e
  "$@" > "$WORK/out" 2> "$WORK/err"
  local rc=$?
  set -e
  [ $rc -ne 0 ] || fail "expected failure: $*"
  [ $rc -lt 128 ] || fail "crashed with signal $((rc - 128)): $*"
  [ "$(wc -l < "$WORK/err")" -eq 1 ] || { cat "$WORK/err" >&2; fail "expected exactly one line on stderr: $*"; }
  grep -q "^jarip: " "$WORK/err" || fail "error does not start with 'jarip: ': $(cat "$WORK/err")"
  grep -qi -- "$want" "$WORK/err" || fail "error for '$*' should mention '$want': $(cat "$WORK/err")"
  echo "ok: $(cat "$WORK/err")"
}

# A learnable, deterministic English-like corpus (about $1 lines): sentences
# from a small grammar, so a tiny byte-level model can learn its structure.
make_corpus() {
  awk -v n="$1" 'BEGIN {
    srand(7);
    split("the a one every this that", det, " ");
    split("cat dog king queen bird fox child sailor farmer poet", noun, " ");
    split("sees likes follows finds calls helps watches loves", verb, " ");
    split("quickly slowly gladly quietly often never", adv, " ");
    for (i = 0; i < n; i++) {
      s = det[int(rand()*6)+1] " " noun[int(rand()*10)+1] " " adv[int(rand()*6)+1] " " verb[int(rand()*8)+1] " " det[int(rand()*6)+1] " " noun[int(rand()*10)+1];
      print toupper(substr(s,1,1)) substr(s,2) ".";
    }
  }'
}

# tiny_config FILE [D_MODEL]: a two-layer llama config with the byte
# vocabulary (256), d_model D_MODEL (default 32), d_ff twice that: a model
# whose steps take milliseconds, for the fault tests.
tiny_config() {
  local d=${2:-32}
  printf '{"arch": "llama", "vocab_size": 256, "context_length": 32, "n_layer": 2, "d_model": %d, "n_head": 2, "n_kv_head": 1, "d_ff": %d}\n' \
    "$d" $((2 * d)) > "$1"
}
