"""The Python side of packages/lora/bench/lora.ts: GPT-2-small-shaped model (random weights) with
peft LoRA r=8 on c_attn, or full fine-tuning, or inference latency (base, unmerged, merged). One
configuration per process, so the peak RSS it reports is its own. Prints one JSON line.

run: oracle/.venv/bin/python oracle/bench_lora.py --mode lora|full|inference --threads 2
"""
import argparse
import json
import resource
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["lora", "full", "inference"], required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--sequence", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config())
    result = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    if args.mode == "inference":
        model.eval()
        ids = torch.randint(0, 50257, (1, args.sequence))

        def once(m):
            start = time.perf_counter()
            with torch.inference_mode():
                m(input_ids=ids)
            return (time.perf_counter() - start) * 1000

        peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn"], init_lora_weights=False)).eval()
        # interleaved rounds, so that drift of the machine falls on all three alike
        base, unmerged, merged = [], [], []
        for round_ in range(25):
            with peft_model.disable_adapter():
                b = once(peft_model)
            u = once(peft_model)
            peft_model.merge_adapter()
            m = once(peft_model)
            peft_model.unmerge_adapter()
            if round_ >= 3:
                base.append(b)
                unmerged.append(u)
                merged.append(m)
        result["base_ms"] = statistics.median(base)
        result["unmerged_ms"] = statistics.median(unmerged)
        result["merged_ms"] = statistics.median(merged)
    else:
        if args.mode == "lora":
            model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn"]))
        model.train()
        parameters = [p for p in model.parameters() if p.requires_grad]
        result["trainable"] = sum(p.numel() for p in parameters)
        optimizer = torch.optim.AdamW(parameters, lr=1e-4, weight_decay=0.0)
        ids = torch.randint(0, 50257, (args.batch, args.sequence))
        times = []
        for step in range(args.steps + 1):
            start = time.perf_counter()
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            optimizer.zero_grad()
            if step > 0:
                times.append(time.perf_counter() - start)
        result["tokens_per_second"] = args.batch * args.sequence * len(times) / sum(times)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()
