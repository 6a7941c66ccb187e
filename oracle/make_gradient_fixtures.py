"""Golden gradients for @peft/models: for each causal-LM fixture of make_model_fixtures.py (loaded as
saved, nothing regenerated), the causal-LM loss of its right-padded batch (labels = input ids, -100
at padding, so padding takes no loss) and the gradient of that loss for every parameter, as torch
computes them. Our written-out gradients (cross-entropy, norms, GELU, SwiGLU, rotary) are held to it.

Writes <fixture>/gradients.safetensors: one tensor per parameter, named and shaped as in
model.safetensors (a tied head's gradient is in the embedding's), and the loss in the metadata.

run: oracle/.venv/bin/python oracle/make_gradient_fixtures.py   (versions: oracle/requirements.txt)
"""
import json
import pathlib

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "packages/models/test/fixtures"
CAUSAL_LM = ["gpt2-tied", "gpt2-untied-odd", "llama-gqa-untied", "llama-mqa-tied-llama3-bias", "qwen2-tied", "mistral-sliding-window",
             "qwen3-gqa-tied", "qwen3-sliding-window-bias", "phi3-gqa-partial-rotary",
             "phi3-longrope-mqa-tied", "gemma2-gqa-softcap-tied", "gemma2-mqa-bias-untied",
             "gemma3-gqa-local-global-tied"]


def main():
    torch.manual_seed(0)
    for name in CAUSAL_LM:
        folder = FIXTURES / name
        model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager")
        model.eval()  # no dropout; gradients are still taken
        case = json.loads((folder / "inputs.json").read_text())["forward"]["right_padded"]
        ids = torch.tensor(case["input_ids"])
        mask = torch.tensor(case["attention_mask"])
        labels = ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        gradients = {n: p.grad.detach().contiguous() for n, p in model.named_parameters()}
        save_file(gradients, str(folder / "gradients.safetensors"), metadata={"loss": repr(loss.item())})
        print(f"{name}: loss {loss.item():.6f}, {len(gradients)} gradients")


if __name__ == "__main__":
    main()
