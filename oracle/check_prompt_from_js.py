"""Loads prompt-learning adapters (prefix tuning, P-tuning v2, prompt tuning, P-tuning) trained and
saved in TypeScript with Python peft, and compares peft's logits at the real tokens with ours.
Exits 1 when any differs by more than 1e-4.

run: oracle/.venv/bin/python oracle/check_prompt_from_js.py DIRECTORY
"""
import json
import pathlib
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoModelForTokenClassification


def main(root):
    worst = 0.0
    for case in sorted(p for p in pathlib.Path(root).iterdir() if p.is_dir()):
        inputs = json.loads((case / "inputs.json").read_text())
        base_dir = pathlib.Path(inputs["model"])
        architecture = json.loads((base_dir / "config.json").read_text())["architectures"][0]
        auto = (AutoModelForSequenceClassification if "Sequence" in architecture
                else AutoModelForTokenClassification if "Token" in architecture else AutoModelForCausalLM)
        base = auto.from_pretrained(base_dir, attn_implementation="eager").eval()
        model = PeftModel.from_pretrained(base, case / "adapter").eval()
        ours = load_file(case / "expected.safetensors")["logits"]
        ids = torch.tensor(inputs["input_ids"])
        mask = torch.tensor(inputs["attention_mask"])
        with torch.no_grad():
            theirs = model(input_ids=ids, attention_mask=mask).logits
        if theirs.dim() == 3:  # per-token logits: compare the real tokens (the last `length` positions hold them)
            real = torch.cat([torch.ones(mask.shape[0], theirs.shape[1] - mask.shape[1]), mask], 1).bool()
            diff = (theirs - ours).abs()[real].max().item()
        else:
            diff = (theirs - ours).abs().max().item()
        worst = max(worst, diff)
        print(f"{case.name}: peft vs ours {diff:.2e}")
    print(f"worst: {worst:.2e} (tolerance 1e-4)")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
