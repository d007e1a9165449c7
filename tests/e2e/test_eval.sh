#!/usr/bin/env bash
# jarip eval perplexity | kld | choice, and train --eval-text.
#  - a byte-level checkpoint, its exported GGUF and train --eval-text give
#    the same perplexity; KLD of a model against its own saved
#    log-probabilities is 0 with the same top token everywhere
#  - bad input: a text shorter than two chunks, a tasks file with a missing
#    field or a label out of range (line number), log-probabilities of
#    another vocabulary, a corrupted or truncated log-probability file ->
#    one-line error, non-zero exit
#  - with models/SmolLM2-135M-Instruct.{F16,Q8_0,Q4_1}.gguf (skipped, saying
#    so, when absent): perplexity equals llama-perplexity's (Q8_0, Q4_1),
#    KLD of Q8_0 against itself is 0 / same top 100%, KLD of Q4_1 from F16
#    equals llama-perplexity --kl-divergence's, and per-choice
#    log-likelihoods equal Hugging Face transformers' (within 1e-3 nats);
#    four chunks in one pass give the bits of one chunk per pass (Q8_0);
#    reference figures: tests/fixtures/eval/expected.json, made by
#    scripts/make_eval_fixtures.sh.
source "$(dirname "$0")/lib.sh"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
FIX="$ROOT/tests/fixtures/eval"
MODELS="${JARIP_MODELS:-$ROOT/models}"
TEXT="$FIX/text.txt"
E=("$JARIP" eval)

"${E[@]}" --help | grep -q "kl-divergence" || fail "eval --help"
"${E[@]}" perplexity --help | grep -q -- "--save-logits" || fail "eval perplexity --help"
expect_error "unknown mode" -- "${E[@]}" bogus --model x
expect_error "unknown flag" -- "${E[@]}" perplexity --model x --bogus
expect_error "--model FILE or --ckpt" -- "${E[@]}" perplexity --text "$TEXT"
expect_error "--text" -- "${E[@]}" perplexity --model "$WORK/none.gguf"
expect_error "--base" -- "${E[@]}" kld --model x --text "$TEXT"
expect_error "kv-type" -- "${E[@]}" perplexity --model x --kv-type q8

# ---- a byte-level checkpoint: checkpoint == GGUF == train --eval-text ----
make_corpus 1500 > "$WORK/corpus.txt"
"$JARIP" train --preset gpt2-tiny --data "$WORK/corpus.txt" --out "$WORK/run" --steps 6 --batch 4 --seq 64 \
  --eval-every 0 --eval-batches 1 --threads 2 --quiet --eval-text "$TEXT"
"$JARIP" export --ckpt "$WORK/run" --out "$WORK/run.gguf" 2> /dev/null
P=(--text "$TEXT" --ctx 64 --kv-type f32 --threads 2 --json)
"${E[@]}" perplexity --ckpt "$WORK/run" "${P[@]}" > "$WORK/ckpt.json"
"${E[@]}" perplexity --model "$WORK/run.gguf" "${P[@]}" --batch 24 --save-logits "$WORK/run.logits" > "$WORK/gguf.json"
python3 - "$WORK" <<'EOF' || fail "checkpoint, GGUF and train --eval-text perplexities differ"
import json, sys
w = sys.argv[1]
a, b = json.load(open(w + "/ckpt.json")), json.load(open(w + "/gguf.json"))
t = [json.loads(l) for l in open(w + "/run/log.jsonl")][-1]["eval_ppl"]
assert a["chunks"] == b["chunks"] == 91 and a["tokens_scored"] == 91 * 31, (a["chunks"], a["tokens_scored"])
for x, y, what in [(a["ppl"], b["ppl"], "GGUF"), (a["ppl"], t, "train --eval-text")]:
    assert abs(x - y) <= 1e-5 * x, (what, x, y)
assert len(a["running"]) == 91 and a["running"][-1]["ppl"] == a["ppl"]
print("ok: perplexity %.4f (checkpoint) = %.4f (GGUF, --batch 24) = %.4f (train --eval-text)" % (a["ppl"], b["ppl"], t))
EOF
"${E[@]}" kld --base-logits "$WORK/run.logits" --model "$WORK/run.gguf" --kv-type f32 --threads 2 --json > "$WORK/self.json"
python3 - "$WORK/self.json" <<'EOF' || fail "KLD against its own log-probabilities"
import json, sys
k = json.load(open(sys.argv[1]))
assert abs(k["kld"]) < 1e-4 and k["kld_max"] < 1e-3 and k["same_top"] == 1.0, k
assert abs(k["ppl"] / k["base_ppl"] - 1) < 1e-4, k
print("ok: self KLD %.2e (max %.2e), same top %.0f%%" % (k["kld"], k["kld_max"], 100 * k["same_top"]))
EOF

# ---- bad input ----
head -c 100 "$TEXT" > "$WORK/short.txt"
expect_error "two chunks" -- "${E[@]}" perplexity --ckpt "$WORK/run" --text "$WORK/short.txt" --ctx 64
expect_error "eval-text.*two chunks" -- "$JARIP" train --resume "$WORK/run" --steps 7 --quiet --eval-text "$WORK/short.txt"
printf '{"context": "a", "choices": ["b", "c"], "label": 1}\n\n{"choices": ["b", "c"], "label": 0}\n' > "$WORK/t1.jsonl"
expect_error "t1.jsonl:3: \"context\"" -- "${E[@]}" choice --ckpt "$WORK/run" --tasks "$WORK/t1.jsonl"
printf '{"context": "a", "choices": ["b", "c"], "label": 2}\n' > "$WORK/t2.jsonl"
expect_error "t2.jsonl:1: label 2 is out of range" -- "${E[@]}" choice --ckpt "$WORK/run" --tasks "$WORK/t2.jsonl"
printf '{"context": "a", "choices": "b", "label": 0}\n' > "$WORK/t3.jsonl"
expect_error "t3.jsonl:1: \"choices\"" -- "${E[@]}" choice --ckpt "$WORK/run" --tasks "$WORK/t3.jsonl"
printf 'not json\n' > "$WORK/t4.jsonl"
expect_error "t4.jsonl:1: not a JSON object" -- "${E[@]}" choice --ckpt "$WORK/run" --tasks "$WORK/t4.jsonl"
# llama.cpp's format without a trailer, vocabulary 300: refused for a 256-token model
python3 - "$WORK/v300.logits" <<'EOF'
import struct, sys
ctx, nv, nch = 16, 300, 2
rows = nch * (ctx - 1 - ctx // 2)
open(sys.argv[1], "wb").write(b"_logits_" + struct.pack("<Iii", ctx, nv, nch) + bytes(4 * nch * ctx)
                              + bytes(2 * rows * (2 * ((nv + 1) // 2) + 4)))
EOF
expect_error "vocabulary of 300 tokens, the model 256" -- "${E[@]}" kld --base-logits "$WORK/v300.logits" --model "$WORK/run.gguf"
cp "$WORK/run.logits" "$WORK/bad.logits"
printf '\x7f' | dd of="$WORK/bad.logits" bs=1 seek=5000 conv=notrunc 2> /dev/null
expect_error "checksum" -- "${E[@]}" kld --base-logits "$WORK/bad.logits" --model "$WORK/run.gguf"
head -c 100000 "$WORK/run.logits" > "$WORK/cut.logits"
expect_error "truncated" -- "${E[@]}" kld --base-logits "$WORK/cut.logits" --model "$WORK/run.gguf"
expect_error "not a log-probability file" -- "${E[@]}" kld --base-logits "$TEXT" --model "$WORK/run.gguf"
"${E[@]}" choice --ckpt "$WORK/run" --tasks "$FIX/tasks.jsonl" --limit 3 --json > "$WORK/c.json"
python3 -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['n']==3 and len(j['tasks'])==3 and 0<=j['acc']<=1" \
  "$WORK/c.json" || fail "choice on a checkpoint"
# the converter: the harness's HellaSwag and ARC contexts and choices
cat > "$WORK/hs.jsonl" <<'JSONL'
{"activity_label": "Baking", "ctx_a": "A man mixes flour and water.", "ctx_b": "he", "endings": ["kneads the dough [title] well.", "flies away.", "sings.", "sleeps."], "label": "0"}
JSONL
cat > "$WORK/arc.jsonl" <<'JSONL'
{"question": {"stem": "What melts ice?", "choices": [{"text": "heat", "label": "A"}, {"text": "cold", "label": "B"}]}, "answerKey": "A"}
{"question": "What is blue?", "choices": {"text": ["grass", "the sky"], "label": ["1", "2"]}, "answerKey": "2"}
JSONL
python3 "$ROOT/scripts/convert_choice_tasks.py" hellaswag "$WORK/hs.jsonl" "$WORK/hs.tasks" > /dev/null
python3 "$ROOT/scripts/convert_choice_tasks.py" arc "$WORK/arc.jsonl" "$WORK/arc.tasks" > /dev/null
python3 - "$WORK" <<'EOF2' || fail "convert_choice_tasks.py"
import json, sys
h = [json.loads(l) for l in open(sys.argv[1] + "/hs.tasks")]
a = [json.loads(l) for l in open(sys.argv[1] + "/arc.tasks")]
assert h == [{"context": "Baking: A man mixes flour and water. He", "choices": ["kneads the dough. well.", "flies away.", "sings.", "sleeps."], "label": 0}], h
assert a[0] == {"context": "Question: What melts ice?\nAnswer:", "choices": ["heat", "cold"], "label": 0}, a
assert a[1]["label"] == 1 and a[1]["choices"] == ["grass", "the sky"], a
EOF2
"${E[@]}" choice --ckpt "$WORK/run" --tasks "$WORK/arc.tasks" > /dev/null || fail "choice on converted ARC tasks"
pass "bad input refused; choice runs on a checkpoint and on converted HellaSwag/ARC files"

Q8="$MODELS/SmolLM2-135M-Instruct.Q8_0.gguf" Q41="$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf" F16="$MODELS/SmolLM2-135M-Instruct.F16.gguf"
if [ ! -f "$Q8" ] || [ ! -f "$Q41" ] || [ ! -f "$F16" ]; then
  echo "SKIP: SmolLM2-135M-Instruct F16/Q8_0/Q4_1 absent (scripts/fetch_smollm2.sh --all-types); llama.cpp and transformers comparisons not run"
  exit 0
fi
expect_error "vocabulary of 49152 tokens, the model 256" -- "${E[@]}" kld --base "$Q8" --model "$WORK/run.gguf" --text "$TEXT" --ctx 64
S=(--text "$TEXT" --ctx 128 --chunks 4 --threads 2 --json)
"${E[@]}" perplexity --model "$Q8" "${S[@]}" > "$WORK/q8.json"
"${E[@]}" perplexity --model "$Q41" "${S[@]}" > "$WORK/q41.json"
# the default packs the 4 chunks into one pass; --batch 128 runs one per pass: the same bits
"${E[@]}" perplexity --model "$Q8" "${S[@]}" --batch 128 > "$WORK/q8b.json"
"${E[@]}" kld --base "$Q8" --model "$Q8" "${S[@]}" > "$WORK/kself.json"
"${E[@]}" kld --base "$F16" --model "$Q41" "${S[@]}" > "$WORK/kq41.json"
"${E[@]}" choice --model "$F16" --tasks "$FIX/tasks.jsonl" --limit 4 --kv-type f32 --threads 2 --json > "$WORK/choice.json"
python3 - "$WORK" "$FIX/expected.json" <<'EOF' || fail "SmolLM2 figures differ from llama.cpp's / transformers'"
import json, sys
w, exp = sys.argv[1], json.load(open(sys.argv[2]))
L = exp["llamacpp"]
for q, f in (("Q8_0", "q8"), ("Q4_1", "q41")):
    j = json.load(open("%s/%s.json" % (w, f)))
    rel = abs(j["ppl"] / L["ppl_" + q] - 1)
    # llama-perplexity prints 4 decimals: its own rounding is up to 5e-5 / ppl (measured: equal to
    # every printed digit, PPL and error, on both types)
    assert rel <= 1e-4, (q, j["ppl"], L["ppl_" + q], rel)
    assert abs(j["ppl_err"] / L["ppl_err_" + q] - 1) <= 1e-4, (q, j["ppl_err"], L["ppl_err_" + q])
    print("ok: %s perplexity %.4f, llama-perplexity %.4f (relative difference %.1e)" % (q, j["ppl"], L["ppl_" + q], rel))
a, b = json.load(open(w + "/q8.json")), json.load(open(w + "/q8b.json"))
assert a["ppl"] == b["ppl"] and a["running"] == b["running"], (a["ppl"], b["ppl"])
print("ok: Q8_0 four chunks per pass = one chunk per pass (%r)" % a["ppl"])
k = json.load(open(w + "/kself.json"))
assert abs(k["kld"]) < 1e-4 and k["same_top"] == 1.0, k
print("ok: Q8_0 against itself: KLD %.1e, same top %.0f%%" % (k["kld"], 100 * k["same_top"]))
k, r = json.load(open(w + "/kq41.json")), L["kld_F16_Q4_1"]
# measured: kld 0.12%, median 1.3%, 99% 2.1%, PPL(Q4_1) 1e-6, PPL(F16) 2.7e-4 (1.3e-4 before
# gemm_f16's summation order; jarip's F16 prompt path multiplies f32 activations, llama.cpp's
# rounds them to half: not the same bits, and 252 scored tokens move in the 4th digit)
for key, tol in (("kld", 0.01), ("kld_median", 0.05), ("kld_p99", 0.05), ("ppl", 1e-4), ("base_ppl", 5e-4)):
    rel = abs(k[key] / r[key] - 1)
    assert rel <= tol, (key, k[key], r[key], rel)
assert abs(k["same_top"] - r["same_top"]) <= 0.005, (k["same_top"], r["same_top"])
print("ok: KLD(F16 || Q4_1) %.6f, llama-perplexity %.6f; same top %.3f%% vs %.3f%%"
      % (k["kld"], r["kld"], 100 * k["same_top"], 100 * r["same_top"]))
c, h = json.load(open(w + "/choice.json")), exp["hf_choice"]["tasks"]
worst = 0.0
for a, b in zip(c["tasks"], h):
    assert a["tokens"] == b["tokens"], (a["tokens"], b["tokens"])
    worst = max([worst] + [abs(x - y) for x, y in zip(a["ll"], b["ll"])])
assert len(c["tasks"]) == 4 and worst <= 1e-3, worst
print("ok: %d tasks, per-choice log-likelihoods within %.1e nats of transformers'; acc %.3f acc_norm %.3f"
      % (len(c["tasks"]), worst, c["acc"], c["acc_norm"]))
EOF
