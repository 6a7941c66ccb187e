"""Loads the adapters the playground's end-to-end test downloaded from Chromium with Python peft and
compares the last-position logits with the page's (probe.json beside each adapter). Exits 1 when
any differs by more than 1e-4.

run (after the playground e2e test): oracle/.venv/bin/python oracle/check_playground_download.py apps/playground/test-output
"""
import json
import pathlib
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

BROWN_GPT = pathlib.Path(__file__).resolve().parent.parent / "apps/bench/models/brown-gpt"


def main(root):
    cases = sorted(p for p in pathlib.Path(root).iterdir() if (p / "probe.json").exists())
    if not cases:
        sys.exit(f"{root}: no <case>/probe.json (run the playground e2e test first)")
    worst = 0.0
    for case in cases:
        probe = json.loads((case / "probe.json").read_text())
        base = AutoModelForCausalLM.from_pretrained(BROWN_GPT, attn_implementation="eager").eval()
        model = PeftModel.from_pretrained(base, case / "adapter").eval()
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([probe["input_ids"]])).logits[0, -1]
        difference = (logits - torch.tensor(probe["last_logits"])).abs().max().item()
        worst = max(worst, difference)
        config = json.loads((case / "adapter" / "adapter_config.json").read_text())
        print(f"{case.name}: {config['peft_type']} trained in Chromium on {probe['backend']}, loaded by peft: max |logit difference| {difference:.2e}")
    print(f"worst {worst:.2e}")
    sys.exit(0 if worst <= 1e-4 else 1)


if __name__ == "__main__":
    main(sys.argv[1])
