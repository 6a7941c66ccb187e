"""Golden fixtures for @peft/adapter from AdapterHub's `adapters` library (which pins transformers
4.57: it has its own virtual environment). Bottleneck adapters on the tiny GPT-2 and BERT models of
packages/models/test/fixtures, weights randomised so that every part matters, saved with
save_adapter(use_safetensors=True) under the adapter name each case gives ("a", or "my_task": the
name is kept in the tensor keys and in adapter_config.json), with the logits `adapters` computes.

run: python3 -m venv oracle/.venv-adapters
     oracle/.venv-adapters/bin/pip install torch==2.13.0 adapters safetensors numpy
     oracle/.venv-adapters/bin/python oracle/make_adapter_fixtures.py [OUT]
OUT defaults to packages/adapter/test/fixtures (replaced whole). Regenerating a committed case changes
its files by float noise: to add a case, append it to CASES (each case's seed is its index), run into
a temporary OUT and copy only the new case folders and manifest entries over.
"""
import json
import pathlib
import shutil
import sys

import adapters
import torch
from adapters import BnConfig, DoubleSeqBnConfig, ParBnConfig, SeqBnConfig
from adapterhub_base import init_adapters, load_base
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "packages/models/test/fixtures"
OUT = pathlib.Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT / "packages/adapter/test/fixtures"

# (fixture, base model, adapter name, config)
CASES = [
    ("gpt2-houlsby", "gpt2-tied", "a", DoubleSeqBnConfig(reduction_factor=4)),
    ("gpt2-pfeiffer", "gpt2-tied", "a", SeqBnConfig(reduction_factor=2)),
    ("bert-pfeiffer", "bert-sequence-classification", "a", SeqBnConfig(reduction_factor=4)),
    ("bert-houlsby-ln", "bert-sequence-classification", "a", DoubleSeqBnConfig(reduction_factor=3, ln_before=True, ln_after=True, non_linearity="gelu")),
    ("bert-parallel", "bert-sequence-classification", "a", ParBnConfig(reduction_factor=4, scaling=2.0)),
    ("gpt2-residual-after-ln", "gpt2-tied", "a", BnConfig(mh_adapter=True, output_adapter=False, reduction_factor=2, non_linearity="tanh",
                                                          original_ln_before=True, residual_before_ln=False, adapter_residual_before_ln=True, ln_after=True)),
    ("gpt2-my-task", "gpt2-tied", "my_task", DoubleSeqBnConfig(reduction_factor=6, non_linearity="relu")),
    ("llama-houlsby", "llama-gqa-untied", "a", DoubleSeqBnConfig(reduction_factor=4)),
    # qwen3: AdapterHub's built-in interface (adapters/wrappers/interfaces.py); phi3: ours,
    # adapterhub_base.PHI3_INTERFACE. Both hook the outputs of o_proj and mlp.down_proj.
    ("qwen3-houlsby", "qwen3-gqa-tied", "a", DoubleSeqBnConfig(reduction_factor=4)),
    ("qwen3-pfeiffer", "qwen3-gqa-tied", "a", SeqBnConfig(reduction_factor=2)),
    ("phi3-houlsby", "phi3-gqa-partial-rotary", "a", DoubleSeqBnConfig(reduction_factor=4)),
    ("phi3-pfeiffer", "phi3-gqa-partial-rotary", "a", SeqBnConfig(reduction_factor=2)),
    # gemma2 / gemma3_text: AdapterHub's built-in interfaces hook o_proj and mlp.down_proj before
    # Gemma's post-sublayer norms, and hand those norms to the adapter (original_ln_before takes
    # postNorm(h + x)); ours alike. Its norm getters (init_bottleneck's ln_get_fn lambdas) close over
    # the loop variable, so original_ln_before adapters there take the LAST layer's norm in every
    # layer, a bug we do not copy: those cases keep only the last layer's adapters (leave_out), where
    # the norm it takes is the right one, and test the rest of the computation.
    ("gemma2-houlsby", "gemma2-gqa-softcap-tied", "a", DoubleSeqBnConfig(reduction_factor=4)),
    ("gemma2-pfeiffer", "gemma2-gqa-softcap-tied", "a", SeqBnConfig(reduction_factor=2, leave_out=[0, 1])),
    ("gemma3-houlsby", "gemma3-gqa-local-global-tied", "a", DoubleSeqBnConfig(reduction_factor=4)),
    ("gemma3-pfeiffer", "gemma3-gqa-local-global-tied", "a", SeqBnConfig(reduction_factor=2, leave_out=[0, 1])),
    ("gemma2-residual-after-ln", "gemma2-mqa-bias-untied", "a", BnConfig(mh_adapter=True, output_adapter=True, reduction_factor=2, non_linearity="tanh",
                                                                        original_ln_before=True, residual_before_ln=False, adapter_residual_before_ln=True,
                                                                        ln_after=True, leave_out=[0])),
    ("gemma3-parallel", "gemma3-gqa-local-global-tied", "a", ParBnConfig(reduction_factor=4, scaling=2.0)),
]


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    manifest = {"adapters": adapters.__version__, "cases": []}
    for index, (name, base, adapter_name, config) in enumerate(CASES):
        model = load_base(MODELS / base)
        init_adapters(model)
        model.add_adapter(adapter_name, config=config)
        generator = torch.Generator().manual_seed(index)
        with torch.no_grad():
            for parameter_name, parameter in model.named_parameters():
                if f".adapters.{adapter_name}." in parameter_name:
                    parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator) + (1.0 if "norm" in parameter_name and parameter_name.endswith("weight") else 0.0))
        model.set_active_adapters(adapter_name)
        model.eval()
        inputs = json.loads((MODELS / base / "inputs.json").read_text())["forward"]
        expected = {}
        for key in ("plain", "right_padded"):
            case = inputs[key]
            with torch.no_grad():
                expected[f"{key}.logits"] = model(
                    input_ids=torch.tensor(case["input_ids"]),
                    attention_mask=None if case["attention_mask"] is None else torch.tensor(case["attention_mask"]),
                    token_type_ids=None if "token_type_ids" not in case else torch.tensor(case["token_type_ids"]),
                ).logits.contiguous()
        directory = OUT / name
        directory.mkdir(parents=True)
        if config.ln_before:
            # save_adapter(use_safetensors=True) refuses ln_before adapters (adapter_norm_before aliases
            # adapter_down.0): its pickle writer gives the config, the weights go to safetensors as copies
            model.save_adapter(str(directory / "adapter"), adapter_name, use_safetensors=False)
            weights = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if f".adapters.{adapter_name}." in k}
            save_file(weights, directory / "adapter" / "adapter.safetensors")
        else:
            model.save_adapter(str(directory / "adapter"), adapter_name, use_safetensors=True)
        for pickle in ("pytorch_adapter.bin", "pytorch_model_head.bin", "head_config.json", "model_head.safetensors"):  # heads are never read
            (directory / "adapter" / pickle).unlink(missing_ok=True)
        save_file(expected, directory / "expected.safetensors")
        (directory / "inputs.json").write_text(json.dumps({"model": base, **{k: inputs[k] for k in ("plain", "right_padded")}}, indent=1) + "\n")
        manifest["cases"].append({"name": name, "model": base, "adapter_name": adapter_name})
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
