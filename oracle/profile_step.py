"""Where a torch training step's time goes, beside ours (`pnpm --filter @peft/bench profile-step`): the
same perf workload (random weights of the harness's config, dropout off, peft's LoRA or full fine-tuning,
AdamW, clipping 1.0), torch.profiler over a few steps after warm-up, self CPU time per op, top rows.

run: oracle/.venv/bin/python oracle/profile_step.py --config '{"model_type":"gpt2",...}' --method lora [--shapes]
     (the config as apps/bench/src/perf/workloads.ts perfConfig(model, 0) gives it)
"""
import argparse
import json
import time

import torch
from torch.profiler import ProfilerActivity, profile

from bench_perf import build


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--method", default="lora")
    parser.add_argument("--lora-targets", default="c_attn")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--sequence", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--shapes", action="store_true", help="rows per op and input shapes (as profile-step's second table)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = json.loads(args.config)
    model = build(config, args.method, 20, args.lora_targets.split(","))
    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-4, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)

    def step():
        ids = torch.randint(0, config["vocab_size"], (args.batch, args.sequence), generator=generator)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
        for _ in range(args.steps):
            step()
    wall = (time.perf_counter() - start) / args.steps
    print(f"torch {torch.__version__}, {args.threads} threads: {wall * 1000:.0f} ms a step (profiled, {args.steps} steps)")
    averages = prof.key_averages(group_by_input_shape=args.shapes)
    print(averages.table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=40, max_shapes_column_width=60))


if __name__ == "__main__":
    main()
