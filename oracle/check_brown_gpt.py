"""Loads brown-gpt, brown-bert (or any model directory apps/bench/scripts/check-with-python.ts exported for)
with Python transformers, and compares its tokenizer's ids and the model's logits with ours.
Exits 1 on any id difference or a logit difference above 1e-3 (the weights are stored in F16 and
both sides compute in float32 from the same F16 values, so 1e-4 is expected).

run: oracle/.venv/bin/python oracle/check_brown_gpt.py OUT.json
"""
import json
import sys

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer


def main(path):
    exported = json.loads(open(path).read())
    tokenizer = AutoTokenizer.from_pretrained(exported["directory"])
    masked = AutoConfig.from_pretrained(exported["directory"]).architectures[0].endswith("ForMaskedLM")
    auto = AutoModelForMaskedLM if masked else AutoModelForCausalLM
    # float32 compute from the same F16 values on both sides (the config names F16, which transformers 5 would keep)
    model = auto.from_pretrained(exported["directory"], attn_implementation="eager", dtype=torch.float32).eval()
    worst, ids_equal = 0.0, True
    for case in exported["cases"]:
        ids = tokenizer(case["text"])["input_ids"]
        same = ids == case["ids"]
        ids_equal &= same
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([case["ids"]])).logits.flatten()
        diff = (logits - torch.tensor(case["logits"])).abs().max().item()
        worst = max(worst, diff)
        print(f"{len(ids)} tokens, ids {'equal' if same else 'DIFFER'}, max |logit diff| {diff:.2e}: {case['text'][:50]}")
    print(f"{type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} parameters; ids equal: {ids_equal}; worst logit diff {worst:.2e}")
    return 0 if ids_equal and worst <= 1e-3 else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
