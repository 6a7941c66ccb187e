"""The Python side of `pnpm bench perf` (apps/bench/src/perf): the same workload as our worker, in
peft + torch (bottleneck adapters: AdapterHub's `adapters`, run from oracle/.venv-adapters). One
workload per process, so the peak RSS it reports is its own. Prints one JSON line.

  --mode train    training steps (AdamW, clip 1.0) on --batch x --sequence random tokens: median step
                  seconds -> tokens/s
  --mode infer    forward ms (1 x --sequence) and decoding ms/token after a --sequence-token prompt,
                  base (adapter disabled) and adapted (LoRA: also merged) timed in alternating rounds
  --mode ceiling  matmul seconds at the workload's shapes (--shapes m,k,n;...)

run: oracle/.venv/bin/python oracle/bench_perf.py --config '{"model_type":"gpt2",...}' --method lora --mode train
"""
import argparse
import json
import resource
import statistics
import time

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM


def build(config_json, method, virtual, lora_targets, checkpointing=False):
    raw = dict(config_json)
    config = AutoConfig.for_model(raw.pop("model_type"), **raw)
    model = AutoModelForCausalLM.from_config(config)
    if checkpointing:
        # each decoder layer recomputed in the backward pass (non-reentrant: gradients reach adapters
        # inside the layers without requiring grads on the inputs), as ours with gradientCheckpointing
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if method in ("base", "full"):
        return model
    if method == "pfeiffer":
        import adapters
        from adapters import SeqBnConfig

        adapters.init(model)
        hidden = config.hidden_size if hasattr(config, "hidden_size") else config.n_embd
        model.add_adapter("bottleneck", config=SeqBnConfig(reduction_factor=hidden / 64))
        model.train_adapter("bottleneck")
        return model
    from peft import LoraConfig, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, get_peft_model

    configs = {
        "lora": lambda: LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, target_modules=lora_targets),
        "prefix": lambda: PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=virtual),
        "prompt": lambda: PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=virtual),
        "ptuning": lambda: PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=virtual, encoder_reparameterization_type="MLP"),
    }
    return get_peft_model(model, configs[method]())


class Disabled:
    """The base model under the adapter: peft's disable_adapter, or no active bottleneck adapter."""

    def __init__(self, model, method):
        self.model, self.method = model, method

    def __enter__(self):
        if self.method == "pfeiffer":
            self.model.set_active_adapters(None)
        else:
            self.context = self.model.disable_adapter()
            self.context.__enter__()

    def __exit__(self, *exc):
        if self.method == "pfeiffer":
            self.model.set_active_adapters("bottleneck")
        else:
            self.context.__exit__(*exc)


def train(model, args, vocab):
    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-4, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)
    times = []
    for step in range(args.warmup + args.steps):
        ids = torch.randint(0, vocab, (args.batch, args.sequence), generator=generator)
        start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    return {
        "trainable": sum(p.numel() for p in parameters),
        "step_seconds": statistics.median(times),
        "tokens_per_second": args.batch * args.sequence / statistics.median(times),
    }


def infer(model, args, vocab):
    model.eval()
    ids = torch.randint(0, vocab, (1, args.sequence), generator=torch.Generator().manual_seed(0))

    def forward():
        start = time.perf_counter()
        with torch.inference_mode():
            model(input_ids=ids)
        return (time.perf_counter() - start) * 1000

    def generate(tokens):
        start = time.perf_counter()
        with torch.inference_mode():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=0)
        return (time.perf_counter() - start) * 1000

    def decode():
        # ms per new token after the prompt: (prefill + 1 + N tokens) - (prefill + 1 token), over N
        return (generate(args.new_tokens + 1) - generate(1)) / args.new_tokens

    variants = {"base": None, "adapted": None}
    if args.method == "lora":
        variants["merged"] = None
    rows = {name: {"forward": [], "decode": []} for name in variants}
    names = list(variants)
    for round_ in range(args.rounds + 1):
        # each variant in every position in turn, as the @peft worker does
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            if name == "base":
                with Disabled(model, args.method):
                    f, d = forward(), decode()
            elif name == "merged":
                model.merge_adapter()
                f, d = forward(), decode()
                model.unmerge_adapter()
            else:
                f, d = forward(), decode()
            if round_ > 0:
                rows[name]["forward"].append(f)
                rows[name]["decode"].append(d)
    result = {}
    for name, row in rows.items():
        result[f"{name}_forward_ms"] = statistics.median(row["forward"])
        result[f"{name}_decode_ms"] = statistics.median(row["decode"])
    return result


def ceiling(args):
    # the first products of a process run slow: half a second first
    started, x = time.perf_counter(), torch.randn(512, 768)
    while time.perf_counter() - started < 0.5:
        torch.matmul(x, x.T)
    seconds = []
    for shape in args.shapes.split(";"):
        m, k, n = (int(x) for x in shape.split(","))
        a, b, out = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
        times = []
        for i in range(args.warmup + args.steps):
            start = time.perf_counter()
            torch.matmul(a, b, out=out)
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
        # the ceiling: the fastest repetition, into a preallocated output
        seconds.append(min(times))
    return {"matmul_seconds": seconds}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True, help="config.json fields, as JSON")
    parser.add_argument("--method", default="base", choices=["base", "lora", "prefix", "prompt", "ptuning", "pfeiffer", "full"])
    parser.add_argument("--mode", required=True, choices=["train", "infer", "ceiling"])
    parser.add_argument("--lora-targets", default="c_attn")
    parser.add_argument("--virtual", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--sequence", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--shapes", default="")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    result = {"runtime": f"torch {torch.__version__}, transformers {transformers.__version__}", "threads": torch.get_num_threads()}
    if args.mode == "ceiling":
        result.update(ceiling(args))
    else:
        config = json.loads(args.config)
        model = build(config, args.method, args.virtual, args.lora_targets.split(","), args.gradient_checkpointing)
        vocab = config["vocab_size"]
        result.update(train(model, args, vocab) if args.mode == "train" else infer(model, args, vocab))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()
