"""Loads the merged models apps/bench/scripts/export-saved-pretrained.ts wrote with savePretrained,
with transformers' AutoModelForCausalLM and AutoTokenizer, and compares:
  1. transformers' logits on our folder with ours (the folder says what our model computes);
  2. for F32 folders, every weight with peft's merge_and_unload of the same adapter on the same base
     model, and the logits of that peft model with transformers' on our folder (our merge is peft's).
Exits 1 when a logit differs by more than 1e-4 or a weight by more than 1e-6.

run: oracle/.venv/bin/python oracle/check_save_pretrained.py DIRECTORY
"""
import json
import pathlib
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

LOGIT_TOLERANCE = 1e-4
WEIGHT_TOLERANCE = 1e-6


def load(directory):
    return AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager").eval()


def main(root):
    worst_logits, worst_weights = 0.0, 0.0
    for case in sorted(p for p in pathlib.Path(root).iterdir() if p.is_dir()):
        inputs = json.loads((case / "inputs.json").read_text())
        ids = torch.tensor(inputs["input_ids"])
        saved = load(case / "model")
        files = sorted(p.name for p in (case / "model").iterdir())
        with torch.no_grad():
            theirs = saved(input_ids=ids).logits
        ours = load_file(case / "expected.safetensors")["logits"]
        diff = (theirs - ours).abs().max().item()
        worst_logits = max(worst_logits, diff)
        line = f"{case.name} ({inputs['dtype']}; {', '.join(files)}): transformers on our folder vs ours {diff:.2e}"

        if (case / "model" / "tokenizer.json").exists():
            tokenizer = AutoTokenizer.from_pretrained(case / "model")
            line += f"; tokenizer loads ({type(tokenizer).__name__}, {len(tokenizer)} tokens)"

        if inputs["dtype"] == "F32":
            reference = PeftModel.from_pretrained(load(inputs["base"]), case / "adapter").merge_and_unload().eval()
            expected_state = reference.state_dict()
            weight_diff = max((saved.state_dict()[k] - v).abs().max().item() for k, v in expected_state.items())
            with torch.no_grad():
                peft_logits = reference(input_ids=ids).logits
            peft_diff = (peft_logits - theirs).abs().max().item()
            worst_weights = max(worst_weights, weight_diff)
            worst_logits = max(worst_logits, peft_diff)
            line += f"; weights vs peft merge_and_unload {weight_diff:.2e}, logits vs peft {peft_diff:.2e}"
        print(line)
    print(f"worst logits: {worst_logits:.2e} (tolerance {LOGIT_TOLERANCE}); worst weights: {worst_weights:.2e} (tolerance {WEIGHT_TOLERANCE})")
    return 0 if worst_logits <= LOGIT_TOLERANCE and worst_weights <= WEIGHT_TOLERANCE else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
