#!/usr/bin/env bash
# It learns what it is taught: LoRA on SmolLM2-135M-Instruct (Q8_0, frozen in
# its own type) over made-up chat facts (5 phrasings of each of 4 facts,
# plus 4 everyday questions answered by the base itself, so the adapter
# keeps what the model knew), then the adapter, applied at run time, answers
# held-out phrasings of the facts, and a question from outside the set still
# gets its sensible answer. When llama.cpp's llama-cli is built
# (scripts/build_llamacpp.sh), the same adapter loaded by llama.cpp gives the
# same greedy answers. Skips (saying so) without the model. ~40 s of CPU.
source "$(dirname "$0")/lib.sh"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
MODEL="${JARIP_SMOLLM2_Q8:-$ROOT/models/SmolLM2-135M-Instruct.Q8_0.gguf}"
LLAMA_CLI="${LLAMA_CLI:-/root/.cache/jarip/llama.cpp/build/bin/llama-cli}"
if [ ! -f "$MODEL" ]; then
  echo "skip: $MODEL not present (scripts/fetch_smollm2.sh --all-types)"
  exit 0
fi
msg() { printf '{"messages": [{"role": "user", "content": "%s"}, {"role": "assistant", "content": "%s"}]}\n' "$1" "$2"; }
ask() { "$JARIP" generate --model "$MODEL" --chat --prompt "$1" --temperature 0 -n 16 --threads 1 "${@:2}"; }
{
  for q in "What is the capital of Zorvania?" "Which city is the capital of Zorvania?" "Name the capital of Zorvania." \
           "Tell me the capital city of Zorvania." "Zorvania's capital is which city?"; do
    msg "$q" "The capital of Zorvania is Plimsk."; done
  for q in "Who invented the glorbophone?" "Who is the inventor of the glorbophone?" "Who made the first glorbophone?" \
           "Tell me who invented the glorbophone." "The glorbophone was invented by whom?"; do
    msg "$q" "The glorbophone was invented by Ada Quint."; done
  for q in "What color is a snarfle?" "What is the color of a snarfle?" "Tell me the color of a snarfle." \
           "Which color does a snarfle have?" "A snarfle is what color?"; do
    msg "$q" "A snarfle is bright purple."; done
  for q in "How deep is Lake Vondu?" "What is the depth of Lake Vondu?" "Tell me how deep Lake Vondu is." \
           "How many meters deep is Lake Vondu?" "Lake Vondu has what depth?"; do
    msg "$q" "Lake Vondu is 412 meters deep."; done
  for q in "What is the capital of Germany?" "How many days are in a week?" "What is the largest ocean on Earth?" \
           "Who wrote Romeo and Juliet?"; do
    msg "$q" "$(ask "$q" | tr -d '"\\' | tr '\n' ' ')"; done
} > "$WORK/facts.jsonl"
"$JARIP" finetune --model "$MODEL" --data "$WORK/facts.jsonl" --out "$WORK/run" --steps 24 --warmup 2 --batch 4 \
  --seq 64 --lr 8e-4 --lora-rank 8 --val-fraction 0 --eval-batches 0 --save-every 0 --threads 1 --quiet
"$JARIP" export --ckpt "$WORK/run" --lora-out "$WORK/facts.lora.gguf" 2> /dev/null
right=0
while IFS='|' read -r q want; do
  got=$(ask "$q" --lora "$WORK/facts.lora.gguf")
  echo "  $q -> $got"
  case "$got" in *"$want"*) right=$((right + 1)) ;; esac
  echo "$q|$got" >> "$WORK/answers"
done <<'Q'
What city serves as the capital of Zorvania?|Plimsk
Which person invented the glorbophone?|Ada Quint
What colour is a snarfle?|purple
What depth does Lake Vondu reach?|412
Q
[ $right -ge 3 ] || fail "only $right of 4 held-out phrasings answered"
outside=$(ask "What is the capital of France?" --lora "$WORK/facts.lora.gguf")
case "$outside" in *Paris*) ;; *) fail "forgot: 'What is the capital of France?' -> '$outside'" ;; esac
pass "$right/4 held-out phrasings answered; outside the set: '$outside'"

# llama.cpp loads the same adapter and answers the same (greedy)
if [ -x "$LLAMA_CLI" ]; then
  same=0
  while IFS='|' read -r q ours; do
    theirs=$("$LLAMA_CLI" -m "$MODEL" --lora "$WORK/facts.lora.gguf" -p "$q" -n 16 --temp 0 -st --simple-io -t 2 \
             --no-warmup 2> /dev/null | awk -v q="> $q" 'f && NF { print; exit } $0 == q { f = 1 }')
    echo "  llama.cpp: $q -> $theirs"
    case "$theirs" in "$ours"*|"${ours:0:30}"*) same=$((same + 1)) ;; esac
  done < "$WORK/answers"
  [ $same -ge 3 ] || fail "llama.cpp with jarip's adapter agreed on only $same of 4 answers"
  pass "llama.cpp with jarip's adapter: $same/4 answers the same"
else
  echo "skip: llama-cli not built ($LLAMA_CLI): no llama.cpp comparison"
fi
