"""Loads the LoRA adapters apps/bench/scripts/export-for-python.ts (`lora`) trained and saved in
TypeScript, with Python peft, and compares peft's logits (unmerged and merged) with ours.
Exits 1 when any differs by more than 1e-4.

run: oracle/.venv/bin/python oracle/check_lora_from_js.py DIRECTORY
"""
import json
import pathlib
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification


def main(root):
    worst_all = 0.0
    for case in sorted(p for p in pathlib.Path(root).iterdir() if p.is_dir()):
        inputs = json.loads((case / "inputs.json").read_text())
        base_dir = pathlib.Path(inputs["model"])
        config = json.loads((base_dir / "config.json").read_text())
        auto = AutoModelForSequenceClassification if "ForSequenceClassification" in config["architectures"][0] else AutoModelForCausalLM
        base = auto.from_pretrained(base_dir, attn_implementation="eager").eval()
        model = PeftModel.from_pretrained(base, case / "adapter").eval()
        ours = load_file(case / "expected.safetensors")["logits"]
        ids = torch.tensor(inputs["input_ids"])
        with torch.no_grad():
            unmerged = model(input_ids=ids).logits
            merged_model = model.merge_and_unload()
            merged = merged_model(input_ids=ids).logits
        diff_unmerged = (unmerged - ours).abs().max().item()
        diff_merged = (merged - ours).abs().max().item()
        worst_all = max(worst_all, diff_unmerged, diff_merged)
        print(f"{case.name}: peft unmerged vs ours {diff_unmerged:.2e}, peft merge_and_unload vs ours {diff_merged:.2e}")
    print(f"worst: {worst_all:.2e} (tolerance 1e-4)")
    return 0 if worst_all <= 1e-4 else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
