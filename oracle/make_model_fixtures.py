"""Golden fixtures for @peft/models: tiny random models of each architecture, saved as Hugging Face
saves them, with the logits transformers computes for a few inputs (plain, right- and left-padded
batches) and its greedy generations.

run: oracle/.venv/bin/python oracle/make_model_fixtures.py   (versions: oracle/requirements.txt)
"""
import json
import pathlib
import shutil

import torch
import transformers
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "packages/models/test/fixtures"


def gpt2_cases():
    from transformers import GPT2Config, GPT2LMHeadModel

    yield "gpt2-tied", GPT2LMHeadModel(GPT2Config(
        vocab_size=97, n_positions=32, n_embd=24, n_layer=2, n_head=3, bos_token_id=0, eos_token_id=1,
    ))
    yield "gpt2-untied-odd", GPT2LMHeadModel(GPT2Config(
        vocab_size=101, n_positions=24, n_embd=20, n_layer=3, n_head=5, n_inner=36,
        tie_word_embeddings=False, scale_attn_by_inverse_layer_idx=True, bos_token_id=0, eos_token_id=1,
    ))


def gpt2_head_cases():
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2ForTokenClassification

    common = dict(vocab_size=97, n_positions=32, n_embd=24, n_layer=2, n_head=3, bos_token_id=0, eos_token_id=1)
    yield "gpt2-sequence-classification", GPT2ForSequenceClassification(GPT2Config(num_labels=3, pad_token_id=0, **common))
    yield "gpt2-token-classification", GPT2ForTokenClassification(GPT2Config(num_labels=4, **common))


def llama_cases():
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

    common = dict(bos_token_id=0, eos_token_id=1, pad_token_id=0, max_position_embeddings=64)
    yield "llama-gqa-untied", LlamaForCausalLM(LlamaConfig(
        vocab_size=89, hidden_size=32, intermediate_size=44, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=False, rms_norm_eps=1e-6, **common,
    ))
    yield "llama-mqa-tied-llama3-bias", LlamaForCausalLM(LlamaConfig(
        vocab_size=71, hidden_size=36, intermediate_size=50, num_hidden_layers=2, num_attention_heads=3,
        head_dim=10, num_key_value_heads=1, tie_word_embeddings=True, attention_bias=True, mlp_bias=True,
        rms_norm_eps=1e-5, rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16}, **common,
    ))
    yield "qwen2-tied", Qwen2ForCausalLM(Qwen2Config(
        vocab_size=67, hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 1000.0}, **common,
    ))
    yield "mistral-sliding-window", MistralForCausalLM(MistralConfig(
        vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, sliding_window=4, tie_word_embeddings=False, **common,
    ))


def qwen3_cases():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    # head_dim != hidden_size / num_attention_heads (32 / 4), grouped-query attention, q_norm/k_norm
    common = dict(vocab_size=79, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=12, bos_token_id=0, eos_token_id=1, pad_token_id=0,
                  max_position_embeddings=64)
    yield "qwen3-gqa-tied", Qwen3ForCausalLM(Qwen3Config(
        tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, **common,
    ))
    # every layer sliding (max_window_layers 0), biases on q, k, v and o
    yield "qwen3-sliding-window-bias", Qwen3ForCausalLM(Qwen3Config(
        tie_word_embeddings=False, attention_bias=True, use_sliding_window=True, sliding_window=4,
        max_window_layers=0, **common,
    ))


def phi3_cases():
    from transformers import Phi3Config, Phi3ForCausalLM

    # fused qkv_proj and gate_up_proj, grouped-query attention, rotary on half of each head
    # (partial_rotary_factor 0.5), a sliding window shorter than the inputs, untied head
    yield "phi3-gqa-partial-rotary", Phi3ForCausalLM(Phi3Config(
        vocab_size=83, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, sliding_window=4, tie_word_embeddings=False, max_position_embeddings=64,
        rope_parameters={"rope_type": "default", "rope_theta": 1000.0, "partial_rotary_factor": 0.5},
        bos_token_id=0, eos_token_id=1, pad_token_id=0,
    ))
    # LongRoPE (the 128k checkpoints) within original_max_position_embeddings: the short factors and
    # the attention factor sqrt(1 + ln 4 / ln 16) on cos and sin; 12 of 16 dimensions rotary (Phi-4-mini's
    # 0.75), one key/value head, tied head
    yield "phi3-longrope-mqa-tied", Phi3ForCausalLM(Phi3Config(
        vocab_size=71, hidden_size=32, intermediate_size=36, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, tie_word_embeddings=True, max_position_embeddings=64, original_max_position_embeddings=16,
        rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.75,
                         "short_factor": [1.0, 1.1, 1.3, 1.7, 2.5, 4.0], "long_factor": [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]},
        bos_token_id=0, eos_token_id=1, pad_token_id=0,
    ))


def gemma2_cases():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    # head_dim != hidden_size / num_attention_heads (32 / 4), query_pre_attn_scalar != head_dim, grouped-query
    # attention, layer_types by default (sliding, full, sliding) with a window shorter than the inputs, both
    # soft-cappings low enough to bite, tied head
    yield "gemma2-gqa-softcap-tied", Gemma2ForCausalLM(Gemma2Config(
        vocab_size=89, hidden_size=32, intermediate_size=40, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=12, query_pre_attn_scalar=10, sliding_window=4, attn_logit_softcapping=10.0,
        final_logit_softcapping=5.0, max_position_embeddings=64, rope_parameters={"rope_type": "default", "rope_theta": 1000.0},
        bos_token_id=2, eos_token_id=1, pad_token_id=0,
    ))
    # explicit layer_types (full, then sliding), one key/value head, biases, no soft-capping, untied head
    yield "gemma2-mqa-bias-untied", Gemma2ForCausalLM(Gemma2Config(
        vocab_size=73, hidden_size=24, intermediate_size=36, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16, sliding_window=3,
        layer_types=["full_attention", "sliding_attention"], attn_logit_softcapping=None, final_logit_softcapping=None,
        attention_bias=True, tie_word_embeddings=False, max_position_embeddings=64,
        bos_token_id=2, eos_token_id=1, pad_token_id=0,
    ))


def gemma3_cases():
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    # local (sliding) and global layers from sliding_window_pattern (sliding, full, sliding) with a window
    # shorter than the inputs; two RoPE bases, linear rope scaling on the global layers only; per-head q/k
    # norms; head_dim != hidden_size / num_attention_heads, query_pre_attn_scalar != head_dim; a final
    # soft-cap low enough to bite; attn_logit_softcapping set, which Gemma3Attention does not apply; tied head
    yield "gemma3-gqa-local-global-tied", Gemma3ForCausalLM(Gemma3TextConfig(
        vocab_size=91, hidden_size=32, intermediate_size=40, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=12, query_pre_attn_scalar=10, sliding_window=4, sliding_window_pattern=2,
        attn_logit_softcapping=3.0, final_logit_softcapping=5.0, max_position_embeddings=64,
        rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 50.0}},
        bos_token_id=2, eos_token_id=1, pad_token_id=0,
    ))


def bert_cases():
    from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification

    common = dict(vocab_size=83, hidden_size=24, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40,
                  max_position_embeddings=20, type_vocab_size=2, pad_token_id=0)
    yield "bert-sequence-classification", BertForSequenceClassification(BertConfig(num_labels=3, **common))
    yield "bert-token-classification", BertForTokenClassification(BertConfig(
        num_labels=5, **{**common, "num_attention_heads": 3, "hidden_size": 18, "hidden_act": "gelu_new"}))


def masked_lm_cases():
    from transformers import BertConfig, BertForMaskedLM, RobertaConfig, RobertaForMaskedLM

    common = dict(vocab_size=83, hidden_size=24, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40,
                  max_position_embeddings=20, type_vocab_size=2, pad_token_id=0)
    yield "bert-masked-lm-tied", BertForMaskedLM(BertConfig(**{**common, "hidden_act": "gelu_new"}))
    yield "bert-masked-lm-untied", BertForMaskedLM(BertConfig(**{**common, "tie_word_embeddings": False,
                                                                 "hidden_size": 18, "num_attention_heads": 3}))
    # positions offset by padding_idx + 1 (pad_token_id 1, as RoBERTa's), one token type
    yield "roberta-masked-lm", RobertaForMaskedLM(RobertaConfig(
        vocab_size=83, hidden_size=24, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40,
        max_position_embeddings=22, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2))


def generative_model(model):
    return type(model).__name__.endswith(("LMHeadModel", "ForCausalLM"))


def randomize(model, seed):
    """Weights large enough that every op matters (HF's init std 0.02 makes logits nearly flat)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if name.endswith("norm.weight") or ".ln_" in name and name.endswith("weight") or "LayerNorm.weight" in name:
                parameter.copy_(1 + 0.2 * noise)
            else:
                parameter.copy_(0.3 * noise)


def inputs(vocab, seed):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (2, 7), generator=generator)
    right = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0]])
    left = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1]])
    return {"plain": (ids, None), "right_padded": (ids, right), "left_padded": (ids, left)}


# Models on which the hook points are checked against what transformers does with past_key_values
# (the key/value prefix) and inputs_embeds (the input-embedding hook).
HOOK_CASES = {"gpt2-tied", "llama-gqa-untied", "mistral-sliding-window", "bert-token-classification", "qwen3-gqa-tied",
              "phi3-gqa-partial-rotary", "gemma2-gqa-softcap-tied",
              "gemma3-gqa-local-global-tied", "bert-masked-lm-tied", "roberta-masked-lm"}
VIRTUAL = 3


def hook_cases(model, expected, batches, is_bert, seed):
    generator = torch.Generator().manual_seed(1000 + seed)
    config = model.config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    layers = config.num_hidden_layers
    prefix = [(torch.randn(2, kv_heads, VIRTUAL, head_dim, generator=generator),
               torch.randn(2, kv_heads, VIRTUAL, head_dim, generator=generator)) for _ in range(layers)]
    for layer, (key, value) in enumerate(prefix):
        expected[f"prefix.key.{layer}"] = key
        expected[f"prefix.value.{layer}"] = value
    virtual = torch.randn(VIRTUAL, config.hidden_size, generator=generator)
    expected["virtual.embeddings"] = virtual
    for batch in ("plain", "right_padded"):
        ids, mask = batches[batch]
        mask = torch.ones_like(ids) if mask is None else mask
        ones = torch.ones(2, VIRTUAL, dtype=mask.dtype)
        types = torch.tensor([[0, 0, 0, 0, 1, 1, 1]] * 2) if is_bert else None
        with torch.no_grad():
            cache = transformers.DynamicCache([(k.clone(), v.clone()) for k, v in prefix])
            expected[f"{batch}.prefixed.logits"] = model(
                input_ids=ids, attention_mask=torch.cat([ones, mask], 1), past_key_values=cache, token_type_ids=types,
            ).logits.contiguous()
            embeds = torch.cat([virtual.expand(2, -1, -1), model.get_input_embeddings()(ids)], 1)
            prompt_types = None if types is None else torch.cat([torch.zeros(2, VIRTUAL, dtype=types.dtype), types], 1)
            expected[f"{batch}.prompted.logits"] = model(
                inputs_embeds=embeds, attention_mask=torch.cat([ones, mask], 1), token_type_ids=prompt_types,
            ).logits.contiguous()


def main():
    torch.manual_seed(0)
    manifest = {"transformers": transformers.__version__, "torch": torch.__version__, "cases": []}
    # new cases go last: a case's seed is its position
    cases = [*gpt2_cases(), *llama_cases(), *bert_cases(), *gpt2_head_cases(), *qwen3_cases(), *phi3_cases(),
             *gemma2_cases(), *gemma3_cases(), *masked_lm_cases()]
    for seed, (name, model) in enumerate(cases):
        randomize(model, seed)
        model.eval()
        model.config._attn_implementation = "eager"
        directory = OUT / name
        shutil.rmtree(directory, ignore_errors=True)
        model.save_pretrained(directory, safe_serialization=True)
        expected, cases = {}, {}
        is_bert = model.config.model_type == "bert"
        for key, (ids, mask) in inputs(model.config.vocab_size, 100 + seed).items():
            if mask is not None and model.config.pad_token_id is not None and not generative_model(model):
                ids = ids.masked_fill(mask == 0, model.config.pad_token_id)  # padding as a tokenizer writes it
            # BERT: a second segment in the last three tokens
            types = torch.tensor([[0, 0, 0, 0, 1, 1, 1]] * 2) if is_bert else None
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
            expected[f"{key}.logits"] = logits.contiguous()
            if key == "plain":
                with torch.no_grad():
                    hidden = model(input_ids=ids, token_type_ids=types, output_hidden_states=True).hidden_states
                for layer, state in enumerate(hidden):
                    expected[f"plain.hidden.{layer}"] = state.contiguous()
            cases[key] = {"input_ids": ids.tolist(), "attention_mask": None if mask is None else mask.tolist()}
            if is_bert:
                cases[key]["token_type_ids"] = types.tolist()
        # greedy generation, unpadded and left-padded (the padding side generation uses)
        ids, _ = inputs(model.config.vocab_size, 100 + seed)["plain"]
        left = inputs(model.config.vocab_size, 100 + seed)["left_padded"][1]
        generations = []
        generative = type(model).__name__.endswith(("LMHeadModel", "ForCausalLM"))
        for mask in (None, left) if generative else ():
            with torch.no_grad():
                out = model.generate(
                    input_ids=ids[:, :5], attention_mask=None if mask is None else mask[:, :5],
                    max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None,
                )
            generations.append({
                "input_ids": ids[:, :5].tolist(),
                "attention_mask": None if mask is None else mask[:, :5].tolist(),
                "max_new_tokens": 6,
                "output_ids": out.tolist(),
            })
        if name in HOOK_CASES:
            hook_cases(model, expected, inputs(model.config.vocab_size, 100 + seed), is_bert, seed)
        save_file(expected, directory / "expected.safetensors")
        (directory / "inputs.json").write_text(json.dumps({"forward": cases, "greedy": generations}, indent=1) + "\n")
        manifest["cases"].append({"name": name, "model_type": model.config.model_type,
                                  "parameters": sum(p.numel() for p in model.parameters())})
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
