"""Golden fixtures for @peft/prefix and @peft/ptuning (v2): PREFIX_TUNING adapters made by Python
peft on the tiny models of packages/models/test/fixtures, with peft's logits (plain and padded)
and greedy generations.

run: oracle/.venv/bin/python oracle/make_prefix_fixtures.py [OUT]
(OUT defaults to packages/prefix/test/fixtures, which it replaces; write new cases to a temporary OUT and copy
only them, so that the committed ones keep their bytes)
"""
import json
import pathlib
import shutil
import sys

import torch
from peft import PrefixTuningConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoModelForTokenClassification

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "packages/models/test/fixtures"
OUT = pathlib.Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT / "packages/prefix/test/fixtures"

CASES = [
    ("gpt2-prefix", "gpt2-tied", AutoModelForCausalLM, dict(task_type="CAUSAL_LM", num_virtual_tokens=3)),
    ("llama-gqa-prefix-projection", "llama-gqa-untied", AutoModelForCausalLM,
     dict(task_type="CAUSAL_LM", num_virtual_tokens=4, prefix_projection=True, encoder_hidden_size=12)),
    ("mistral-prefix", "mistral-sliding-window", AutoModelForCausalLM, dict(task_type="CAUSAL_LM", num_virtual_tokens=2)),
    ("bert-seq-cls-prefix", "bert-sequence-classification", AutoModelForSequenceClassification, dict(task_type="SEQ_CLS", num_virtual_tokens=4)),
    ("bert-token-cls-prefix", "bert-token-classification", AutoModelForTokenClassification, dict(task_type="TOKEN_CLS", num_virtual_tokens=2)),
    # GQA with head_dim 12 != hidden_size / heads: the prefix is [P, layers * 2 * kv_heads * head_dim]
    ("qwen3-prefix", "qwen3-gqa-tied", AutoModelForCausalLM, dict(task_type="CAUSAL_LM", num_virtual_tokens=3)),
    # attention soft-capping over prefix and real keys; sliding layers (window 4) where the prefix falls out of the window
    ("gemma2-softcap-prefix-projection", "gemma2-gqa-softcap-tied", AutoModelForCausalLM,
     dict(task_type="CAUSAL_LM", num_virtual_tokens=3, prefix_projection=True, encoder_hidden_size=10)),
    ("gemma2-mqa-prefix", "gemma2-mqa-bias-untied", AutoModelForCausalLM, dict(task_type="CAUSAL_LM", num_virtual_tokens=2)),
    # local layers (own RoPE base, window 4) and global ones; per-head q/k norms on the real keys only
    ("gemma3-local-global-prefix", "gemma3-gqa-local-global-tied", AutoModelForCausalLM, dict(task_type="CAUSAL_LM", num_virtual_tokens=3)),
    ("phi3-partial-rotary-prefix", "phi3-gqa-partial-rotary", AutoModelForCausalLM, dict(task_type="CAUSAL_LM", num_virtual_tokens=2)),
    # longrope with its short factors: the prefix counts as positions, 4 + 9 stay within original_max_position_embeddings 16
    # (past it the host refuses: the long factors are not implemented)
    ("phi3-longrope-prefix-projection", "phi3-longrope-mqa-tied", AutoModelForCausalLM,
     dict(task_type="CAUSAL_LM", num_virtual_tokens=4, prefix_projection=True, encoder_hidden_size=8)),
]


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    torch.manual_seed(0)
    manifest = {"cases": []}
    for name, base, auto, options in CASES:
        model = auto.from_pretrained(MODELS / base, attn_implementation="eager").eval()
        peft_model = get_peft_model(model, PrefixTuningConfig(**options))
        with torch.no_grad():
            for parameter_name, parameter in peft_model.named_parameters():
                if "modules_to_save" in parameter_name:  # a head that differs from the base one
                    parameter.add_(0.5 * torch.randn_like(parameter))
        peft_model.eval()
        directory = OUT / name
        peft_model.save_pretrained(directory / "adapter")
        config_path = directory / "adapter" / "adapter_config.json"  # no path of this machine in the fixture
        config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "base_model_name_or_path": base}, indent=2, sort_keys=True) + "\n")
        inputs = json.loads((MODELS / base / "inputs.json").read_text())
        expected = {}
        for key in ("plain", "right_padded"):
            case = inputs["forward"][key]
            ids = torch.tensor(case["input_ids"])
            mask = torch.ones_like(ids) if case["attention_mask"] is None else torch.tensor(case["attention_mask"])
            types = None if "token_type_ids" not in case else torch.tensor(case["token_type_ids"])
            with torch.no_grad():
                expected[f"{key}.logits"] = peft_model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits.contiguous()
        generations = []
        if auto is AutoModelForCausalLM:
            for greedy in inputs["greedy"]:
                ids = torch.tensor(greedy["input_ids"])
                mask = torch.ones_like(ids) if greedy["attention_mask"] is None else torch.tensor(greedy["attention_mask"])
                with torch.no_grad():
                    out = peft_model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False, pad_token_id=0, eos_token_id=None)
                generations.append({"input_ids": greedy["input_ids"], "attention_mask": greedy["attention_mask"], "max_new_tokens": 5, "output_ids": out.tolist()})
        save_file(expected, directory / "expected.safetensors")
        (directory / "inputs.json").write_text(json.dumps({"model": base, "forward": {k: inputs["forward"][k] for k in ("plain", "right_padded")}, "greedy": generations}, indent=1) + "\n")
        manifest["cases"].append({"name": name, "model": base, "trainable": peft_model.get_nb_trainable_parameters()[0]})
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
