"""Loads the bottleneck adapters apps/bench/scripts/export-for-python.ts (`adapter`) trained and
saved in TypeScript, with AdapterHub's `adapters` library, and compares its logits with ours. Each
must load under the name it was saved with (`load_adapter(dir)` without `load_as`: "default", or
"my_task" for the adapter that came from AdapterHub under that name). Exits 1 when a name differs
or any logit differs by more than 1e-4.

Base models are loaded as make_adapter_fixtures.py does (adapterhub_base: RoPE settings for
transformers 4.57, the Phi-3 interface AdapterHub lacks).

run: oracle/.venv-adapters/bin/python oracle/check_adapters_from_js.py DIRECTORY
"""
import json
import pathlib
import sys

import torch
from adapterhub_base import init_adapters, load_base
from safetensors.torch import load_file


def main(root):
    worst = 0.0
    names_ok = True
    for case in sorted(p for p in pathlib.Path(root).iterdir() if p.is_dir()):
        inputs = json.loads((case / "inputs.json").read_text())
        model = load_base(inputs["model"])
        init_adapters(model)
        name = model.load_adapter(str(case / inputs["adapter"]), use_safetensors=True)
        if name != inputs["adapter_name"]:
            names_ok = False
            print(f"{case.name}: loaded as {name!r}, saved as {inputs['adapter_name']!r}")
        model.set_active_adapters(name)
        model.eval()
        ours = load_file(case / "expected.safetensors")["logits"]
        with torch.no_grad():
            theirs = model(input_ids=torch.tensor(inputs["input_ids"])).logits
            model.set_active_adapters(None)
            base = model(input_ids=torch.tensor(inputs["input_ids"])).logits
        diff = (theirs - ours).abs().max().item()
        effect = (theirs - base).abs().max().item()
        worst = max(worst, diff)
        print(f"{case.name}: adapter {name!r}, adapters vs ours {diff:.2e} (the adapter itself moves the logits by {effect:.2e})")
    print(f"worst: {worst:.2e} (tolerance 1e-4); names {'kept' if names_ok else 'NOT kept'}")
    return 0 if worst <= 1e-4 and names_ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
