"""Golden fixtures for @peft/prompt and @peft/ptuning (v1): PROMPT_TUNING, P_TUNING and
MULTITASK_PROMPT_TUNING adapters made by Python peft on the tiny models of
packages/models/test/fixtures, with peft's logits (plain and padded) and greedy generations.

run: oracle/.venv/bin/python oracle/make_prompt_fixtures.py [OUT]
(OUT defaults to the packages' test/fixtures, which it replaces; with OUT it writes OUT/prompt and OUT/ptuning:
write new cases there and copy only them, so that the committed ones keep their bytes)
"""
import json
import pathlib
import shutil
import sys

import torch
from peft import MultitaskPromptTuningConfig, PromptEncoderConfig, PromptTuningConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "packages/models/test/fixtures"
OUTS = (
    {package: pathlib.Path(sys.argv[1]).resolve() / package for package in ("prompt", "ptuning")}
    if len(sys.argv) > 1
    else {"prompt": ROOT / "packages/prompt/test/fixtures", "ptuning": ROOT / "packages/ptuning/test/fixtures"}
)

CASES = [
    ("gpt2-prompt", "gpt2-tied", AutoModelForCausalLM, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3)),
    ("llama-gqa-prompt-vocab", "llama-gqa-untied", AutoModelForCausalLM,
     PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, prompt_tuning_init="SAMPLE_VOCAB")),
    ("bert-seq-cls-prompt", "bert-sequence-classification", AutoModelForSequenceClassification, PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=2)),
    ("gpt2-ptuning-lstm", "gpt2-tied", AutoModelForCausalLM,
     PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=3, encoder_reparameterization_type="LSTM", encoder_hidden_size=8)),
    ("llama-gqa-ptuning-mlp", "llama-gqa-untied", AutoModelForCausalLM,
     PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=2, encoder_reparameterization_type="MLP", encoder_hidden_size=12)),
    ("gpt2-multitask", "gpt2-tied", AutoModelForCausalLM, MultitaskPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3, num_tasks=2, num_ranks=2)),
    ("qwen3-prompt", "qwen3-gqa-tied", AutoModelForCausalLM, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3)),
    # Gemma scales the token embeddings by sqrt(hidden_size) inside embed_tokens; peft prepends its virtual tokens
    # to embed_tokens' output, unscaled, and SAMPLE_VOCAB takes embed_tokens' (scaled) rows
    ("gemma2-softcap-prompt-vocab", "gemma2-gqa-softcap-tied", AutoModelForCausalLM,
     PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, prompt_tuning_init="SAMPLE_VOCAB")),
    ("gemma3-local-global-prompt", "gemma3-gqa-local-global-tied", AutoModelForCausalLM, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3)),
    # longrope with its short factors: 4 virtual + 9 real positions stay within original_max_position_embeddings 16
    # (past it the host refuses: the long factors are not implemented)
    ("phi3-longrope-prompt", "phi3-longrope-mqa-tied", AutoModelForCausalLM, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)),
    ("qwen3-ptuning-lstm", "qwen3-gqa-tied", AutoModelForCausalLM,
     PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=3, encoder_reparameterization_type="LSTM", encoder_hidden_size=8)),
    ("gemma2-mqa-ptuning-mlp", "gemma2-mqa-bias-untied", AutoModelForCausalLM,
     PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=2, encoder_reparameterization_type="MLP", encoder_hidden_size=10)),
    ("gemma3-local-global-ptuning-lstm", "gemma3-gqa-local-global-tied", AutoModelForCausalLM,
     PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=3, encoder_reparameterization_type="LSTM", encoder_hidden_size=6, encoder_num_layers=2)),
    ("phi3-partial-rotary-ptuning-mlp", "phi3-gqa-partial-rotary", AutoModelForCausalLM,
     PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=3, encoder_reparameterization_type="MLP", encoder_hidden_size=12)),
]


def main():
    for out in OUTS.values():
        shutil.rmtree(out, ignore_errors=True)
    torch.manual_seed(0)
    manifests = {key: {"cases": []} for key in OUTS}
    for name, base, auto, config in CASES:
        package = "ptuning" if isinstance(config, PromptEncoderConfig) else "prompt"
        OUT = OUTS[package]
        model = auto.from_pretrained(MODELS / base, attn_implementation="eager").eval()
        peft_model = get_peft_model(model, config)
        multitask = isinstance(config, MultitaskPromptTuningConfig)
        with torch.no_grad():
            for parameter_name, parameter in peft_model.named_parameters():
                if "modules_to_save" in parameter_name:
                    parameter.add_(0.5 * torch.randn_like(parameter))
                if "prefix_task" in parameter_name:  # task modulations far enough from zero to matter
                    parameter.copy_(torch.randn_like(parameter))
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
            extra = {"task_ids": torch.tensor([0, 1])} if multitask else {}
            if "token_type_ids" in case:
                extra["token_type_ids"] = torch.tensor(case["token_type_ids"])
            with torch.no_grad():
                expected[f"{key}.logits"] = peft_model(input_ids=ids, attention_mask=mask, **extra).logits.contiguous()
        generations = []
        if auto is AutoModelForCausalLM and not multitask:
            for greedy in inputs["greedy"]:
                ids = torch.tensor(greedy["input_ids"])
                mask = torch.ones_like(ids) if greedy["attention_mask"] is None else torch.tensor(greedy["attention_mask"])
                with torch.no_grad():
                    out = peft_model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False, pad_token_id=0, eos_token_id=None)
                generations.append({"input_ids": greedy["input_ids"], "attention_mask": greedy["attention_mask"], "max_new_tokens": 5, "output_ids": out.tolist()})
        if isinstance(config, PromptEncoderConfig):  # the encoder itself (peft drops it on save), to check ours computes the same
            encoder = peft_model.prompt_encoder["default"]
            weights = {k: v.detach().clone().contiguous() for k, v in encoder.state_dict().items()}
            with torch.no_grad():
                weights["output"] = encoder(torch.arange(config.num_virtual_tokens).unsqueeze(0))[0].contiguous()
            save_file(weights, directory / "encoder.safetensors")
        save_file(expected, directory / "expected.safetensors")
        forward = {k: inputs["forward"][k] for k in ("plain", "right_padded")}
        (directory / "inputs.json").write_text(json.dumps({"model": base, "task_ids": [0, 1] if multitask else None, "forward": forward, "greedy": generations}, indent=1) + "\n")
        manifests[package]["cases"].append({"name": name, "model": base, "peft_type": str(config.peft_type.value)})
    for package, out in OUTS.items():
        (out / "manifest.json").write_text(json.dumps(manifests[package], indent=2) + "\n")


if __name__ == "__main__":
    main()
