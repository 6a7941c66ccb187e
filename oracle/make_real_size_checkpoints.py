"""Real-size checkpoints for `pnpm bench load`: random weights at the published configs of
Qwen2.5-0.5B and Qwen3-0.6B, saved by transformers in bf16 and sharded (as the Hub's larger models
are), with no tokenizer (the load benchmark and the training-memory probe use random ids).

Nothing is downloaded: the configs are written out below (from the models' config.json on the Hub).

run: oracle/.venv/bin/python oracle/make_real_size_checkpoints.py [OUT_DIR] [--shard-size 400MB]
     (default OUT_DIR: ~/.cache/peft/real-size; one folder per model, skipped when complete)
"""
import argparse
import json
import pathlib
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM

CONFIGS = {
    "qwen2.5-0.5b": {
        "model_type": "qwen2",
        "architectures": ["Qwen2ForCausalLM"],
        "vocab_size": 151936,
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
        "max_window_layers": 24,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "use_sliding_window": False,
        "tie_word_embeddings": True,
        "hidden_act": "silu",
        "bos_token_id": 151643,
        "eos_token_id": 151643,
    },
    "qwen3-0.6b": {
        "model_type": "qwen3",
        "architectures": ["Qwen3ForCausalLM"],
        "vocab_size": 151936,
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "attention_bias": False,
        "max_position_embeddings": 40960,
        "max_window_layers": 28,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "sliding_window": None,
        "use_sliding_window": False,
        "tie_word_embeddings": True,
        "hidden_act": "silu",
        "bos_token_id": 151643,
        "eos_token_id": 151645,
    },
}


def complete(folder):
    index = folder / "model.safetensors.index.json"
    if not (folder / "config.json").exists() or not index.exists():
        return False
    shards = set(json.loads(index.read_text())["weight_map"].values())
    return all((folder / shard).exists() for shard in shards)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out", nargs="?", default=str(pathlib.Path.home() / ".cache" / "peft" / "real-size"))
    parser.add_argument("--shard-size", default="400MB")
    parser.add_argument("--models", default=",".join(CONFIGS))
    args = parser.parse_args()
    for name in args.models.split(","):
        folder = pathlib.Path(args.out) / name
        if complete(folder):
            print(f"{folder}: present")
            continue
        raw = dict(CONFIGS[name])
        config = AutoConfig.for_model(raw.pop("model_type"), **raw)
        torch.manual_seed(0)
        started = time.perf_counter()
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        # from_config's init leaves RMSNorm weights at 1 and biases at 0: perturb them, so that a
        # loader that drops or misplaces one shows in the logits.
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if p.dim() == 1:
                    p.add_(torch.randn_like(p) * 0.02)
        model.save_pretrained(folder, max_shard_size=args.shard_size)
        params = sum(p.numel() for p in model.parameters())
        print(f"{folder}: {params:,} parameters, {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
