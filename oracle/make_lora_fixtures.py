"""Golden fixtures for @peft/lora: LoRA adapters made by Python peft on the tiny models of
packages/models/test/fixtures (B non-zero, so they change the outputs), saved with
save_pretrained, and the logits peft computes with them, unmerged and merged.

run: oracle/.venv/bin/python oracle/make_lora_fixtures.py [OUT]
OUT defaults to packages/lora/test/fixtures (replaced whole). Regenerating a committed case changes
its files by float noise: to add a case, append it to CASES (one seed for all cases, in order), run
into a temporary OUT and copy only the new case folders and manifest entries over.
"""
import json
import pathlib
import shutil
import sys

import peft
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "packages/models/test/fixtures"
OUT = pathlib.Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT / "packages/lora/test/fixtures"

CASES = {
    "gpt2-tied": (AutoModelForCausalLM, dict(r=4, lora_alpha=8, init_lora_weights=False)),
    "llama-gqa-untied": (AutoModelForCausalLM, dict(
        r=4, lora_alpha=8, target_modules="all-linear", rank_pattern={"v_proj": 2}, alpha_pattern={"o_proj": 16},
        use_rslora=True, init_lora_weights=False)),
    "bert-sequence-classification": (AutoModelForSequenceClassification, dict(
        r=2, lora_alpha=4, task_type="SEQ_CLS", init_lora_weights=False)),
    # no target_modules: peft's default for qwen3 (q_proj, v_proj)
    "qwen3-gqa-tied": (AutoModelForCausalLM, dict(r=4, lora_alpha=8, init_lora_weights=False)),
    # no target_modules: peft's defaults for gemma2 and gemma3_text (q_proj, v_proj)
    "gemma2-gqa-softcap-tied": (AutoModelForCausalLM, dict(r=4, lora_alpha=8, init_lora_weights=False)),
    "gemma3-gqa-local-global-tied": (AutoModelForCausalLM, dict(r=4, lora_alpha=8, init_lora_weights=False)),
    # peft 0.21 has no default for phi3 (get_peft_model refuses it): the fused qkv_proj and
    # gate_up_proj, each one nn.Linear and so one LoRA pair, plus o_proj and down_proj, named here
    "phi3-gqa-partial-rotary": (AutoModelForCausalLM, dict(
        r=4, lora_alpha=8, target_modules=["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
        init_lora_weights=False)),
}


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    torch.manual_seed(0)
    manifest = {"peft": peft.__version__, "cases": []}
    for name, (auto, options) in CASES.items():
        model = auto.from_pretrained(MODELS / name, attn_implementation="eager").eval()
        peft_model = get_peft_model(model, LoraConfig(**options))
        with torch.no_grad():
            for parameter_name, parameter in peft_model.named_parameters():
                if "lora_" in parameter_name:  # larger than nn.Linear's init, so the adapter matters
                    parameter.mul_(3.0)
                if "modules_to_save" in parameter_name:  # a head that differs from the base one
                    parameter.add_(0.5 * torch.randn_like(parameter))
        peft_model.eval()
        directory = OUT / name
        peft_model.save_pretrained(directory / "adapter")
        inputs = json.loads((MODELS / name / "inputs.json").read_text())["forward"]
        expected = {}
        for key in ("plain", "right_padded"):
            case = inputs[key]
            ids = torch.tensor(case["input_ids"])
            mask = None if case["attention_mask"] is None else torch.tensor(case["attention_mask"])
            types = None if "token_type_ids" not in case else torch.tensor(case["token_type_ids"])
            with torch.no_grad():
                expected[f"{key}.logits"] = peft_model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits.contiguous()
                with peft_model.disable_adapter():
                    expected[f"{key}.base_logits"] = peft_model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits.contiguous()
        peft_model.merge_adapter()
        case = inputs["plain"]
        with torch.no_grad():
            expected["plain.merged_logits"] = peft_model(
                input_ids=torch.tensor(case["input_ids"]),
                token_type_ids=None if "token_type_ids" not in case else torch.tensor(case["token_type_ids"]),
            ).logits.contiguous()
        save_file(expected, directory / "expected.safetensors")
        (directory / "inputs.json").write_text(json.dumps({k: inputs[k] for k in ("plain", "right_padded")}, indent=1) + "\n")
        trainable, total = peft_model.get_nb_trainable_parameters()
        manifest["cases"].append({"name": name, "trainable": trainable, "all": total})
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
