#!/usr/bin/env bash
# Seed corpora for the libFuzzer targets, made from real files:
#   gguf            tiny models exported by `jarip export` (f32, f16, q8_0, with
#                   a tokenizer) and the first 16 KiB of SmolLM2's GGUF (real keys)
#   tokenizer_load  tokenizer.json trained by jarip, gpt2_hf.json (fixture), the
#                   first lines of a tiktoken rank file, a GGUF with a tokenizer
#   config          config.json of every preset and of a trained checkpoint
#   checkpoint      a real checkpoint: config.json, state.json, model.bin, latest
#   shard           train and val shards from `jarip data prepare`
#   serve_http      OpenAI API requests as clients send them (chat, completions,
#                   streaming, logprobs, tokenize, every route, wrong keys/methods)
#   sft_chat        fine-tuning chat JSONL under each chat template family
#                   (SmolLM2's ChatML with its default system prompt, Llama 3,
#                   Llama 2, plain)
# then minimized (libFuzzer -merge=1: only inputs that add coverage stay).
# usage: tests/fuzz/make_corpus.sh BUILD_DIR(release, has jarip) FUZZ_BUILD_DIR
#   CORPUS_TARGETS="serve_http sft_chat" remakes only those corpora.
set -euo pipefail
cd "$(dirname "$0")/../.."
JARIP=$(realpath "${1:-build}")/jarip
FUZZ=$(realpath "${2:-build-fuzz}")
OUT=tests/fuzz/corpus
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
SEP=$'\n--8<--\n'
mkdir -p "$W"/{gguf,tokenizer_load,config,checkpoint,shard,serve_http,sft_chat}

# a small corpus, a tiny model (d_model 32: q8_0 rows) and its 264-token tokenizer
for i in $(seq 300); do echo "The cat $i sees the dog; a fox finds $((i * 7)) birds."; done > "$W/text.txt"
cat > "$W/cfg.json" <<'JSON'
{"arch": "llama", "vocab_size": 264, "context_length": 16, "n_layer": 1, "d_model": 32, "n_head": 2,
 "n_kv_head": 1, "d_ff": 32, "tie_embeddings": true}
JSON
cat > "$W/cfg_small.json" <<'JSON'
{"arch": "gpt2", "vocab_size": 256, "context_length": 8, "n_layer": 1, "d_model": 4, "n_head": 1, "d_ff": 8}
JSON
"$JARIP" train --config "$W/cfg.json" --data "$W/text.txt" --out "$W/run" --steps 2 --batch 2 --seq 8 \
  --eval-batches 1 --threads 1 --quiet
"$JARIP" train --config "$W/cfg_small.json" --data "$W/text.txt" --out "$W/small" --steps 2 --batch 2 --seq 8 \
  --eval-batches 1 --threads 1 --quiet
"$JARIP" tokenizer train --vocab-size 264 --input "$W/text.txt" --out "$W/tok.json" --threads 1 2>/dev/null
"$JARIP" export --ckpt "$W/run" --out "$W/gguf/tiny_f16.gguf" --type f16 --tokenizer "$W/tok.json" >/dev/null
"$JARIP" export --ckpt "$W/small" --out "$W/gguf/small_f32.gguf" >/dev/null
"$JARIP" export --ckpt "$W/run" --out "$W/tokenizer_load/tiny_tok.gguf" --type q8_0 --tokenizer "$W/tok.json" >/dev/null
cp "$W/tokenizer_load/tiny_tok.gguf" "$W/gguf/"
for f in models/SmolLM2-135M-Instruct.Q8_0.gguf; do
  if [ -f "$f" ]; then head -c 16384 "$f" > "$W/gguf/smollm2_head.gguf"; fi
done

cp "$W/tok.json" "$W/tokenizer_load/trained.json"
cp tests/fixtures/tokenizer/gpt2_hf.json "$W/tokenizer_load/gpt2_hf.json"
head -n 300 tests/fixtures/tokenizer/llama3_hf.tiktoken > "$W/tokenizer_load/llama3_head.tiktoken"

cp "$W/cfg.json" "$W/config/tiny_llama.json"
cp "$W/cfg_small.json" "$W/config/tiny_gpt2.json"
cp "$W/run/ckpt_00000002/config.json" "$W/config/ckpt_config.json"
cat > "$W/config/moe.json" <<'JSON'
{"arch": "llama", "vocab_size": 512, "context_length": 64, "n_layer": 2, "d_model": 64, "n_head": 4, "n_kv_head": 2,
 "head_dim": 16, "d_ff": 96, "norm": "rmsnorm", "norm_eps": 1e-5, "pos": "rope", "rope_theta": 10000.0,
 "rope_style": "neox", "act": "swiglu", "bias": false, "tie_embeddings": true, "n_expert": 4, "n_expert_active": 2,
 "moe_aux_coef": 0.01, "note": "seed"}
JSON

ck="$W/small/ckpt_00000002"
{ cat "$ck/config.json"; printf '%s' "$SEP"; cat "$ck/state.json"; printf '%s' "$SEP"; cat "$ck/model.bin";
  printf '%s' "$SEP"; printf 'ckpt_00000001\n'; } > "$W/checkpoint/small_with_adam"
{ cat "$ck/config.json"; printf '%s' "$SEP"; cat "$ck/state.json"; printf '%s' "$SEP"; cat "$ck/model.bin"; } \
  > "$W/checkpoint/small_direct"

"$JARIP" data prepare --tokenizer "$W/tok.json" --input "$W/text.txt" --out "$W/prep" --format lines \
  --val-fraction 0.1 --shard-tokens 2000 --threads 1 >/dev/null 2>&1
{ cat "$W/prep/train_000000.bin"; printf '%s' "$SEP"; cat "$W/prep/val_000000.bin"; } > "$W/shard/train_val"
cp "$W/prep/train_000001.bin" "$W/shard/train_only" 2>/dev/null || cp "$W/prep/train_000000.bin" "$W/shard/train_only"

# requests: "METHOD PATH", header lines, then the body after the separator
req() { # name method path body [header...]
  local name=$1 method=$2 path=$3 body=$4
  shift 4
  { printf '%s %s\n' "$method" "$path"; for h in "$@"; do printf '%s\n' "$h"; done; printf '%s%s' "$SEP" "$body"; } \
    > "$W/serve_http/$name"
}
K="Authorization: Bearer fuzz-key"
req chat POST /v1/chat/completions '{"model": "fuzz", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0}' "$K"
req chat_stream POST /v1/chat/completions '{"messages": [{"role": "user", "content": "Tell me a story"}], "stream": true, "stream_options": {"include_usage": true}, "max_completion_tokens": 6, "seed": 7}' "$K" "Content-Length: 120"
req chat_logprobs POST /chat/completions '{"messages": [{"role": "developer", "content": [{"type": "text", "text": "caf\u00e9 "}, {"type": "text", "text": "\u4f60\u597d"}]}, {"role": "assistant", "content": "ok", "name": "bot"}, {"role": "user", "content": "more"}], "logprobs": true, "top_logprobs": 3, "stop": ["\n", "."], "top_p": 0.9, "top_k": 40, "min_p": 0.05}' "$K"
req chat_penalties POST /v1/chat/completions '{"messages": [{"role": "user", "content": "x"}], "presence_penalty": 0.5, "frequency_penalty": -0.5, "repeat_penalty": 1.1, "n": 1, "user": "u1", "stream": false}' "$K"
req completion POST /v1/completions '{"prompt": "The cat sat on", "max_tokens": 5, "echo": true, "logprobs": 2, "stop": "mat"}' "$K"
req completion_array POST /completions '{"prompt": ["Once upon a time"], "stream": true, "seed": 1, "temperature": 1.5}' "$K"
req completion_long POST /v1/completions "{\"prompt\": \"$(printf 'word %.0s' $(seq 40))\"}" "$K"
req tokenize POST /tokenize '{"content": "Hello <|im_start|> world", "add_special": true}' "$K"
req detokenize POST /detokenize '{"tokens": [72, 101, 108, 108, 111, 226, 130]}' "$K"
req models GET /v1/models '' "$K"
req metrics GET /metrics '' "$K"
req health GET /health ''
req loading POST /v1/chat/completions '{"messages": [{"role": "user", "content": "Hi"}]}' "$K" "X-Loading: 1"
req page GET / ''
req wrong_key POST /v1/chat/completions '{"messages": []}' "Authorization: Bearer nope"
req wrong_method GET /v1/completions ''
req unknown_path POST /v2/everything '{}' "$K"
req too_long POST /v1/completions '{"prompt": "x"}' "$K" "Content-Length: 99999999"
req bad_json POST /v1/chat/completions '{"messages": [{"role": "user", "content": "hi"},]}' "$K"
printf 'POST /v1/completions\n%s%s{"prompt": "\xff\xfe bad utf-8"}' "$K" "$SEP" > "$W/serve_http/bad_utf8"

# chat JSONL under each template family (template, separator, data)
SMOL="{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
L3="{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
L2="{% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\n' + messages[0]['content'] + '\n<</SYS>>\n\n' %}{% endif %}{{ bos_token + '[INST] ' + content + ' [/INST]' }}{{ ' ' + content + ' ' + eos_token }}"
CHATS='{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3+3?"}, {"role": "assistant", "content": "6"}]}

{"messages": [{"role": "user", "content": "caf\u00e9 \u4f60\u597d"}, {"role": "assistant", "content": "\ud83d\ude00 ok"}], "id": 3}'
printf '%s\n' "$CHATS" > "$W/sft_chat/chatml_default"
{ printf '%s%s' "$SMOL" "$SEP"; printf '%s\n' "$CHATS"; } > "$W/sft_chat/smollm2"
{ printf '%s%s' "$L3" "$SEP"; printf '%s\n' "$CHATS"; } > "$W/sft_chat/llama3"
{ printf '%s%s' "$L2" "$SEP"; printf '%s\n' "$CHATS"; } > "$W/sft_chat/llama2"
{ printf '{{ messages }}%s' "$SEP"; printf '%s\n' "$CHATS"; } > "$W/sft_chat/plain"
printf '%s\n' '{"messages": [{"role": "user", "content": "no answer"}]}' '{"messages": [{"role": "robot", "content": "x"}]}' \
  '{"messages": "not an array"}' '[1, 2]' > "$W/sft_chat/refused"
printf '{"messages": [{"role": "user", "content": "%s"}, {"role": "assistant", "content": "%s"}]}\n' \
  "$(printf 'long question %.0s' $(seq 20))" "$(printf 'long answer %.0s' $(seq 20))" > "$W/sft_chat/cut"

for t in ${CORPUS_TARGETS:-gguf tokenizer_load config checkpoint shard serve_http sft_chat}; do
  rm -rf "${OUT:?}/$t"
  mkdir -p "$OUT/$t"
  "$FUZZ/fuzz_$t" -merge=1 "$OUT/$t" "$W/$t" 2>/dev/null >/dev/null
  echo "make_corpus: $t: $(ls "$OUT/$t" | wc -l) inputs, $(du -sk "$OUT/$t" | cut -f1) KiB"
done
