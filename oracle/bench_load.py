"""The Python side of `pnpm bench load` (apps/bench/src/load): transformers' from_pretrained of a
checkpoint folder in float32 (the dtype we compute in), timed, with the peak RSS of the process, and
the same probe logits as our worker. One load per process. Prints one JSON line.

run: oracle/.venv/bin/python oracle/bench_load.py DIRECTORY [--threads 2]
"""
import argparse
import json
import resource
import time

import torch
import transformers
from transformers import AutoModelForCausalLM

PROBE_IDS = [1, 2, 3, 4, 5, 6, 7, 8]
PROBE_LOGITS = 16


def rss_mb():
    """The process's resident set now (Linux), as Node's process.memoryUsage().rss."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    before = rss_mb()
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.directory, dtype=torch.float32, attn_implementation="eager")
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor([PROBE_IDS])).logits[0, -1, :PROBE_LOGITS].tolist()
    print(json.dumps({
        "runtime": f"torch {torch.__version__}, transformers {transformers.__version__}",
        "load_seconds": seconds,
        "rss_before_mb": before,
        "peak_rss_mb": peak,
        "rss_after_forward_mb": rss_mb(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "logits": logits,
    }))


if __name__ == "__main__":
    main()
