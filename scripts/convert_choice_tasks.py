#!/usr/bin/env python3
"""Convert HellaSwag or ARC to the task file of `jarip eval choice`.

usage: scripts/convert_choice_tasks.py hellaswag|arc IN.jsonl OUT.jsonl

Writes one {"context": str, "choices": [str, ...], "label": int} per line,
with the context and choices lm-evaluation-harness builds for its
`hellaswag` and `arc_easy`/`arc_challenge` tasks (jarip eval choice scores
" " + choice after the context, the harness's target delimiter):

  hellaswag  (HellaSwag's jsonl: ctx_a, ctx_b, activity_label, endings, label)
             context = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())
             choices = preprocess(ending) for each ending
             preprocess: strip, " [title]" -> ". ", drop [bracketed] text, "  " -> " "
  arc        (AI2 ARC's jsonl: {"question": {"stem", "choices": [{"text", "label"}]}, "answerKey"},
             or the Hugging Face datasets export: question, choices {text, label}, answerKey)
             context = "Question: " + question + "\\nAnswer:"
             choices = the choices' texts; label = index of answerKey among their labels

Lines that fail to parse are reported with their line number and stop the
conversion; nothing is written then.
"""
import json
import os
import re
import sys


def preprocess(text):
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def hellaswag(doc):
    ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
    return {"context": preprocess(doc["activity_label"] + ": " + ctx),
            "choices": [preprocess(e) for e in doc["endings"]], "label": int(doc["label"])}


def arc(doc):
    q = doc["question"]
    if isinstance(q, dict):  # AI2's own jsonl
        stem, texts, labels = q["stem"], [c["text"] for c in q["choices"]], [c["label"] for c in q["choices"]]
    else:  # Hugging Face datasets export
        stem, texts, labels = q, list(doc["choices"]["text"]), list(doc["choices"]["label"])
    return {"context": "Question: " + stem + "\nAnswer:", "choices": texts, "label": labels.index(doc["answerKey"])}


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("hellaswag", "arc"):
        sys.exit(__doc__)
    conv = hellaswag if sys.argv[1] == "hellaswag" else arc
    out = []
    with open(sys.argv[2], encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(json.dumps(conv(json.loads(line)), ensure_ascii=False))
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                sys.exit("%s:%d: not a %s record (%s: %s)" % (sys.argv[2], n, sys.argv[1], type(e).__name__, e))
    tmp = sys.argv[3] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    os.replace(tmp, sys.argv[3])
    print("%d tasks -> %s" % (len(out), sys.argv[3]))


if __name__ == "__main__":
    main()
