"""Golden fixture for @peft/core's safetensors reader: a file written by Python `safetensors` with
every float dtype and int64, plus the values torch holds for each (as float64 JSON).

run: oracle/.venv/bin/python oracle/make_safetensors_fixture.py
"""
import json
import pathlib

import torch
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "packages/core/test/fixtures"


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(3, 5, generator=generator) * 10
    base[0, 0] = 1e-6  # subnormal in half precision
    base[0, 1] = 70000.0  # overflows half precision
    tensors = {
        "f32": base.clone(),
        "f16": base.to(torch.float16),
        "bf16": base.to(torch.bfloat16),
        "f64": base.to(torch.float64),
        "i64": torch.arange(-6, 6, dtype=torch.int64).reshape(4, 3),
        "scalar": torch.tensor(2.5),
    }
    save_file(tensors, OUT / "python.safetensors", metadata={"format": "pt", "written_by": "python"})
    expected = {
        name: {"shape": list(t.shape), "values": t.to(torch.float64).flatten().tolist()}
        for name, t in tensors.items()
    }
    # JSON has no Infinity: float16 overflow is written as a string
    for entry in expected.values():
        entry["values"] = [v if abs(v) != float("inf") else ("Infinity" if v > 0 else "-Infinity") for v in entry["values"]]
    (OUT / "python.expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    # the same as F16 shards, for the sharded-checkpoint reader
    shard_dir = OUT / "sharded"
    shard_dir.mkdir(exist_ok=True)
    save_file({"a": tensors["f32"]}, shard_dir / "model-00001-of-00002.safetensors", metadata={"format": "pt"})
    save_file({"b": tensors["i64"], "c": tensors["scalar"]}, shard_dir / "model-00002-of-00002.safetensors", metadata={"format": "pt"})
    index = {
        "metadata": {"total_size": 60 + 96 + 4},
        "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"},
    }
    (shard_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


if __name__ == "__main__":
    main()
