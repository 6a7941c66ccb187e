"""`pnpm bench compare`'s Python side (apps/bench/src/compare/compare.ts): trains one method of the
bench with Python peft, or with AdapterHub's `adapters` for the bottleneck adapters, on what the
TypeScript side exported:

  base/            the base model as our loader holds it (saved by savePretrained: the same weights,
                   the new classification head included)
  task.json        the tokenised splits and the pad token
  METHOD/plan.json the optimizer, schedule, clipping, learning rate, steps, and per seed the examples
                   of every optimizer step in order and the trainable parameter count
  METHOD/seed-N/   the run's adapter as it was before training (peft's or AdapterHub's format)

and trains as `train` does: AdamW on every trained weight, linear schedule after warm-up, global norm
clipping, the model's dropout (model.train()). Evaluates as the bench does (argmax over the test
split, batches of 16). Prints one JSON line: the library, and per seed the test metric, trainable
parameters, training seconds, tokens and losses.

run: oracle/.venv/bin/python oracle/bench_compare.py EXPORT_DIR METHOD
     (houlsby, pfeiffer: oracle/.venv-adapters/bin/python)
"""
import json
import pathlib
import sys
import time

import torch
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

IGNORE_INDEX = -100


def load_base(export, task):
    auto = AutoModelForSequenceClassification if task["task"] == "sequence-classification" else AutoModelForTokenClassification
    return auto.from_pretrained(export / "base")


def with_prefix(name, prefixes):
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def prepare(model, plan, init):
    """The model with the method attached and exactly its weights trainable; the library's name."""
    kind = plan["kind"]
    if kind == "peft":
        import peft
        from peft import PeftModel

        return PeftModel.from_pretrained(model, str(init), is_trainable=True), f"peft {peft.__version__}"
    if kind == "adapters":
        import adapters

        adapters.init(model)
        name = model.load_adapter(str(init), set_active=True, use_safetensors=True)
        model.train_adapter(name)
        # the head trains beside the adapters (modules_to_save on our side)
        heads = sorted({n.rsplit(".", 1)[0] for n in plan["trainableNames"] if "adapters" not in n})
        for n, p in model.named_parameters():
            if with_prefix(n, heads):
                p.requires_grad_(True)
        return model, f"adapters {adapters.__version__}"
    names = set(plan["trainableNames"])
    known = {n for n, _ in model.named_parameters()}
    missing = names - known
    if missing:
        raise SystemExit(f"{plan['method']}: weights ours trains that the Python model lacks: {sorted(missing)[:5]}")
    for n, p in model.named_parameters():
        p.requires_grad_(kind == "full" or n in names)
    return model, "transformers"


def collate(examples, indices, task, pad):
    rows = [examples[i] for i in indices]
    length = max(len(r["inputIds"]) for r in rows)
    ids = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    types = torch.zeros((len(rows), length), dtype=torch.long)
    for b, r in enumerate(rows):
        n = len(r["inputIds"])
        ids[b, :n] = torch.tensor(r["inputIds"])
        mask[b, :n] = 1
        if r.get("tokenTypeIds"):
            types[b, :n] = torch.tensor(r["tokenTypeIds"])
    if task["task"] == "sequence-classification":
        labels = torch.tensor([r["labels"] for r in rows])
    else:
        labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        for b, r in enumerate(rows):
            labels[b, : len(r["labels"])] = torch.tensor(r["labels"])
    return ids, mask, types, labels, sum(len(r["inputIds"]) for r in rows)


def learning_rate_factor(plan):
    warmup, total = plan["warmupSteps"], plan["steps"]

    def factor(step):
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def evaluate(model, task):
    """Accuracy (and binary F1 on class 1) or token accuracy, as the bench's testMetric."""
    model.eval()
    test = task["test"]
    predictions, labels = [], []
    with torch.no_grad():
        for start in range(0, len(test), 16):
            indices = list(range(start, min(start + 16, len(test))))
            ids, mask, _, gold, _ = collate(test, indices, task, task["padTokenId"])
            logits = model(input_ids=ids, attention_mask=mask).logits
            predicted = logits.argmax(-1)
            if task["task"] == "sequence-classification":
                predictions += predicted.tolist()
                labels += gold.tolist()
            else:
                keep = gold != IGNORE_INDEX
                predictions += predicted[keep].tolist()
                labels += gold[keep].tolist()
    correct = sum(p == y for p, y in zip(predictions, labels))
    result = {"metric": correct / max(1, len(labels))}
    if task["task"] == "sequence-classification" and len(task["labels"]) == 2:
        tp = sum(p == 1 and y == 1 for p, y in zip(predictions, labels))
        fp = sum(p == 1 and y != 1 for p, y in zip(predictions, labels))
        fn = sum(p != 1 and y == 1 for p, y in zip(predictions, labels))
        result["f1"] = 0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)
    return result


def run_seed(export, task, plan, run):
    torch.manual_seed(run["seed"])  # dropout's random numbers (ours draw their own)
    model, library = prepare(load_base(export, task), plan, export / plan["method"] / f"seed-{run['seed']}")
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params) if plan["kind"] != "frozen" else 0
    losses, tokens, seconds = [], 0, 0.0
    if plan["kind"] != "frozen":
        optimizer = torch.optim.AdamW(
            params, lr=plan["learningRate"], betas=tuple(plan["betas"]), eps=plan["epsilon"], weight_decay=plan["weightDecay"]
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor(plan))
        model.train()
        started = time.perf_counter()
        for indices in run["batches"]:
            ids, mask, types, labels, count = collate(task["train"], indices, task, task["padTokenId"])
            loss = model(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, plan["maxGradNorm"])
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            tokens += count
        seconds = time.perf_counter() - started
    result = evaluate(model, task)
    return library, {
        "seed": run["seed"],
        **result,
        "trainable": trainable,
        "seconds": seconds,
        "tokens": tokens,
        "tokensPerSecond": tokens / seconds if seconds else None,
        "losses": losses,
    }


def main(export, method):
    export = pathlib.Path(export)
    task = json.loads((export / "task.json").read_text())
    plan = json.loads((export / method / "plan.json").read_text())
    torch.set_num_threads(plan["threads"])
    runs, library = [], ""
    for run in plan["runs"]:
        library, result = run_seed(export, task, plan, run)
        runs.append(result)
        print(f"{method} seed {run['seed']}: {result['metric']:.4f}", file=sys.stderr)
    print(json.dumps({"library": f"{library}, torch {torch.__version__}", "runs": runs}))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
