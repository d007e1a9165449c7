#!/bin/bash
# jarip plan from the command line: --help, the JSON keys issue 5 lists,
# rejections with one-line messages and exit code 2, --search, --svg, a
# hardware JSON file, and `--gpu cpu` (measured, engine activations).
# Published figures are checked in tests/unit/test_plan.c; here the CLI.
set -u
JARIP=${1:?usage: test_plan.sh path/to/jarip}
PY=/usr/bin/python3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fail=1; }

# --help documents every flag of the issue
"$JARIP" plan --help >"$TMP/help" || bad "--help exits 0"
hfail=$fail
for f in --preset --config --tokens --seq --global-batch --micro-batch --gpu --gpus --tp --pp --dp --ep --vpp \
         --zero --recompute --sequence-parallel --precision --grad-dtype --mfu --tflops-per-gpu --tokens-per-s \
         --step-time --search --json --svg; do
    grep -q -- "$f" "$TMP/help" || bad "--help lacks $f"
done
[ $fail = $hfail ] && ok "help lists the flags"

# JSON with exactly the keys of the issue (and their types)
"$JARIP" plan --preset gpt3-175b --gpu a100-80g --gpus 1024 --tp 8 --pp 8 --global-batch 1536 --tokens 300e9 \
    --recompute full --tflops-per-gpu 140 --json >"$TMP/g3.json" || bad "gpt3 plan runs"
$PY - "$TMP/g3.json" <<'EOF' || fail=1
import json, sys
o = json.load(open(sys.argv[1]))
need = ["params_total", "params_active", "flops_per_token", "train_flops", "devices", "layout",
        "memory_per_device_bytes", "fits", "step_time_s", "train_days", "mfu", "energy_mwh"]
missing = [k for k in need if k not in o]
assert not missing, f"missing keys {missing}"
assert isinstance(o["params_total"], int) and isinstance(o["params_active"], int)
assert set(["weights", "grads", "optimizer", "activations", "total"]) <= set(o["memory_per_device_bytes"])
m = o["memory_per_device_bytes"]
assert m["total"] == m["weights"] + m["grads"] + m["optimizer"] + m["activations"], m
assert o["layout"]["tp"] == 8 and o["layout"]["pp"] == 8 and o["layout"]["dp"] == 16, o["layout"]
assert o["devices"] == 1024
assert abs(o["train_flops"] / 3.14e23 - 1) < 0.005, o["train_flops"]   # GPT-3 paper, Table D.1
assert abs(o["train_days"] / 34 - 1) < 0.03, o["train_days"]           # Narayanan et al. 2021, Sec. 5.1
assert "candidates" not in o
print("ok   json keys and values")
EOF

# --search adds ranked candidates that fit; --svg draws them
"$JARIP" plan --preset llama3-70b --gpu h100-80g --gpus 64 --global-batch 512 --search --json --svg "$TMP/s.svg" \
    >"$TMP/s.json" || bad "search runs"
$PY - "$TMP/s.json" "$TMP/s.svg" <<'EOF' || fail=1
import json, sys, xml.etree.ElementTree as ET
o = json.load(open(sys.argv[1]))
c = o["candidates"]
assert len(c) > 0 and all(x["fits"] for x in c), "candidates fit"
t = [x["step_time_s"] for x in c]
assert t == sorted(t), "ranked by step time"
assert o["layout"]["tp"] == c[0]["layout"]["tp"] and o["fits"]
root = ET.parse(sys.argv[2]).getroot()
assert root.tag.endswith("svg") and len(list(root.iter())) > 20
print("ok   search candidates and svg")
EOF

# the presets chart (no search)
"$JARIP" plan --preset gpt2-xl --gpu h100-80g --svg "$TMP/p.svg" >/dev/null || bad "preset svg"
$PY -c "import sys,xml.etree.ElementTree as E; r=E.parse(sys.argv[1]).getroot(); t=E.tostring(r).decode(); assert 'olympus-2t' in t and 'llama3-405b' in t" "$TMP/p.svg" \
    && ok "presets svg" || bad "presets svg content"

# estimated presets print their assumptions
"$JARIP" plan --preset gpt4-1.76t-moe --gpu h100-80g --gpus 1024 --tp 8 --pp 8 --ep 16 --mfu 0.35 >"$TMP/g4" \
    || bad "gpt4 estimate plan"
grep -q "ESTIMATE" "$TMP/g4" && grep -q "16 experts" "$TMP/g4" && ok "estimate note printed" || bad "estimate note"

# rejections: exit 2 and one line naming the problem
reject() { # expected-substring args...
    local want=$1; shift
    "$JARIP" plan "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    if [ $rc -eq 2 ] && grep -q -- "$want" "$TMP/err" && [ "$(wc -l <"$TMP/err")" -eq 1 ]; then ok "rejects: $want"
    else bad "expected exit 2 with '$want', got $rc: $(cat "$TMP/err")"; fi
}
reject "does not equal --gpus" --preset gpt2-small --gpus 8 --tp 2 --pp 2 --dp 4
reject "heads" --preset gpt2-small --tp 5
reject "layers" --preset gpt2-small --pp 5
reject "experts" --preset mixtral-8x7b --dp 3 --ep 3
echo '{"arch": "llama", "vocab_size": 256, "context_length": 64, "n_layer": 2, "d_model": 384, "n_head": 12,
 "n_kv_head": 4, "d_ff": 1152}' >"$TMP/gqa.json"
reject "kv heads" --config "$TMP/gqa.json" --tp 6
reject "unknown flag" --preset gpt2-small --bogus
reject "unknown --gpu" --preset gpt2-small --gpu z80
reject "one rate" --preset gpt2-small --mfu 0.4 --step-time 3
reject "global batch" --preset gpt2-small --dp 4 --global-batch 6
reject "not one of" --preset gpt2-small --recompute some

# a hardware file
cat >"$TMP/hw.json" <<'EOF'
{"name": "mygpu", "peak_bf16_tflops": 500, "peak_fp32_tflops": 50, "memory_gb": 96,
 "intra_node_gb_s": 400, "network_gb_s": 50, "devices_per_node": 4, "power_w": 600}
EOF
"$JARIP" plan --preset llama2-7b --gpu "$TMP/hw.json" --gpus 8 --mfu 0.5 --json >"$TMP/h.json" || bad "hardware file"
$PY -c "import json,sys; o=json.load(open(sys.argv[1])); assert o['hardware']['name']=='mygpu' and abs(o['mfu']-0.5)<1e-9" \
    "$TMP/h.json" && ok "hardware JSON file" || bad "hardware JSON values"
echo '{"name": "x", "peak_bf16_tflops": 1, "warp": 3}' >"$TMP/bad.json"
reject "unknown key" --preset gpt2-small --gpu "$TMP/bad.json"

# cpu: measured peak, one process, the engine's activation plan
"$JARIP" plan --preset gpt2-tiny --gpu cpu --seq 128 --micro-batch 4 --json >"$TMP/c.json" || bad "cpu plan"
$PY -c "
import json,sys
o=json.load(open(sys.argv[1]))
assert o['hardware']['name']=='cpu' and o['hardware']['peak_flops']>1e9, o['hardware']
m=o['memory_per_device_bytes']; n=o['params_total']
assert m['weights']==4*n and m['grads']==4*n and m['optimizer']==8*n, m
assert m['activations']>0 and o['step_time_s']>0 and o['fits']
" "$TMP/c.json" && ok "cpu plan" || bad "cpu plan values"
# cpu in bf16: what jarip train --precision bf16 allocates (float32 state and
# activations, bf16 conversion scratch; test_plan_shard checks it byte for byte)
"$JARIP" plan --preset moe-tiny --gpu cpu --seq 128 --micro-batch 4 --precision bf16 --json >"$TMP/b.json" || bad "cpu bf16 plan"
"$JARIP" plan --preset moe-tiny --gpu cpu --seq 128 --micro-batch 4 --precision fp32 --json >"$TMP/f.json" || bad "cpu fp32 plan"
$PY -c "
import json,sys
b=json.load(open(sys.argv[1])); f=json.load(open(sys.argv[2]))
m=b['memory_per_device_bytes']; m32=f['memory_per_device_bytes']; n=b['params_total']
assert m['weights']==4*n and m['grads']==4*n and m['optimizer']==8*n, m
assert m['activations']==m32['activations'] and m['scratch']>0 and m32['scratch']==0, (m, m32)
assert m['total']==m32['total']+m['scratch'], (m, m32)
" "$TMP/b.json" "$TMP/f.json" && ok "cpu bf16 plan: the engine's bytes" || bad "cpu bf16 plan values"

# the 2T preset on a big cluster, text report
"$JARIP" plan --preset olympus-2t --gpu b200 --gpus 16384 --tp 8 --pp 21 --recompute full --sequence-parallel \
    --zero 1 --global-batch 4096 >"$TMP/o" 2>&1 && bad "pp 21 does not divide 16384/8" || ok "olympus pp 21 rejected"
"$JARIP" plan --preset olympus-2t --gpu b200 --gpus 16384 --tp 8 --pp 8 --recompute full --sequence-parallel \
    --zero 1 --global-batch 4096 >"$TMP/o" || bad "olympus plan"
grep -q "parameters 2003965607936 total" "$TMP/o" && grep -q "energy" "$TMP/o" && ok "olympus report" || bad "olympus report"

exit $fail
