"""The tiny base models of packages/models/test/fixtures as AdapterHub's environment must load them,
and `adapters.init` for each, with an interface where AdapterHub has none.

`adapters` pins transformers 4.57, which does not read transformers 5's `rope_parameters` (it takes
`rope_theta`, `rope_scaling` and, for Gemma 3, `rope_local_base_freq`, and falls back to their
defaults without a word: Qwen3's fixture would run with theta 10000 instead of 1e6). The fixtures were
written by transformers 5.18, so their RoPE settings are copied into the fields 4.57 reads; with them
4.57 gives the fixtures' logits exactly (qwen3, gemma2, gemma3_text, phi3 with partial rotary, llama:
max difference 0).
"""
import json
import pathlib

import adapters
from adapters import AdapterModelInterface
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification


def _rope_fields(rope):
    """transformers 4's rope_theta and rope_scaling for one of transformers 5's rope_parameters."""
    scaling = {key: value for key, value in rope.items() if key not in ("rope_theta", "partial_rotary_factor")}
    return rope["rope_theta"], None if scaling.get("rope_type", "default") == "default" else scaling


def load_base(directory):
    """The fixture model in `directory` (causal LM or sequence classification, as its config names)."""
    directory = pathlib.Path(directory)
    raw = json.loads((directory / "config.json").read_text())
    auto = AutoModelForSequenceClassification if "Sequence" in raw["architectures"][0] else AutoModelForCausalLM
    config = AutoConfig.from_pretrained(directory)
    rope = raw.get("rope_parameters")
    if rope is not None and "rope_theta" in rope:
        config.rope_theta, config.rope_scaling = _rope_fields(rope)
        if "partial_rotary_factor" in rope:  # Phi-3: a field of its own in transformers 4
            config.partial_rotary_factor = rope["partial_rotary_factor"]
    elif rope is not None:  # per layer type (Gemma 3): global layers, and local ones with their own base
        config.rope_theta, config.rope_scaling = _rope_fields(rope["full_attention"])
        local_theta, local_scaling = _rope_fields(rope["sliding_attention"])
        if local_scaling is not None:
            raise ValueError(f"{directory}: transformers 4.57 has no RoPE scaling for sliding layers")
        config.rope_local_base_freq = local_theta
    return auto.from_pretrained(directory, config=config, attn_implementation="eager")


# AdapterHub 1.3 has no phi3 model class and no built-in interface for it (`adapters.init` refuses:
# "Model phi3 not pre-supported by adapters. Please specify and pass `interface` explicitly."). This
# one is its qwen3 interface (adapters/wrappers/interfaces.py) with Phi-3's fused projections: the
# adapters hook the outputs of o_proj and mlp.down_proj, before each residual add, as ours do. A user
# of Phi-3 adapters saved by @peft/adapter passes it to `adapters.init` in the same way.
PHI3_INTERFACE = AdapterModelInterface(
    adapter_methods=["bottleneck"],
    model_embeddings="embed_tokens",
    model_layers="layers",
    layer_self_attn="self_attn",
    layer_cross_attn=None,
    attn_qkv_proj="qkv_proj",
    attn_o_proj="o_proj",
    layer_intermediate_proj="mlp.gate_up_proj",
    layer_output_proj="mlp.down_proj",
    layer_pre_self_attn="input_layernorm",
    layer_pre_ffn="post_attention_layernorm",
    layer_ln_1=None,
    layer_ln_2=None,
)


def init_adapters(model):
    """`adapters.init(model)`, with PHI3_INTERFACE for Phi-3."""
    adapters.init(model, interface=PHI3_INTERFACE if model.config.model_type == "phi3" else None)
