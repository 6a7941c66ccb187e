"""The Python side of apps/bench/scripts/models-forward.ts: a GPT-2 of the given shape with
random weights in transformers, timed for the same forward pass and greedy generation. Prints
one JSON line.

run: oracle/.venv/bin/python oracle/bench_forward.py --threads 2
"""
import argparse
import json
import statistics
import time

import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--positions", type=int, default=1024)
    parser.add_argument("--sequence", type=int, default=128)
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=args.vocab, n_positions=args.positions, n_embd=args.hidden, n_layer=args.layers, n_head=args.heads)
    model = GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, args.vocab, (1, args.sequence))
    times = []
    with torch.inference_mode():
        for i in range(args.repeats + 2):
            start = time.perf_counter()
            model(input_ids=ids)
            if i >= 2:
                times.append((time.perf_counter() - start) * 1000)
        prompt = ids[:, : args.prompt]
        model.generate(input_ids=prompt, max_new_tokens=4, do_sample=False, pad_token_id=0)
        start = time.perf_counter()
        out = model.generate(input_ids=prompt, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0)
        generate_ms = (time.perf_counter() - start) * 1000
    print(json.dumps({
        "torch": torch.__version__, "transformers": transformers.__version__, "threads": torch.get_num_threads(),
        "attention": model.config._attn_implementation,
        "parameters": sum(p.numel() for p in model.parameters()),
        "forward_ms": statistics.median(times),
        "generate_ms_per_token": generate_ms / (out.shape[1] - args.prompt),
    }))


if __name__ == "__main__":
    main()
