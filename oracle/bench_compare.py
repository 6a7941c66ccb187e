"""`pnpm bench compare`'s Python side (apps/bench/src/compare/compare.ts): trains one method of the
bench with Python peft, or with AdapterHub's `adapters` for the bottleneck adapters, on what the
TypeScript side exported:

  base/            the base model as our loader holds it (saved by savePretrained: the same weights,
                   the new classification head included)
  task.json        the tokenised splits and the pad token
  METHOD/plan.json the optimizer, schedule, clipping, learning rate, steps, and per seed the examples
                   of every optimizer step in order and the trainable parameter count
  METHOD/seed-N/   the run's method config (peft's or AdapterHub's format) and init.safetensors, every
                   trainable weight as ours starts (copied in: both sides start alike)

and trains as `train` does: AdamW on every trained weight, linear schedule after warm-up, global norm
clipping, the model's dropout (model.train()). Evaluates as the bench does (argmax over the test
split, batches of 16). Prints one JSON line: the library, and per seed the test metric, trainable
parameters, training seconds, tokens and losses.

run: oracle/.venv/bin/python oracle/bench_compare.py EXPORT_DIR METHOD
     (houlsby, pfeiffer: oracle/.venv-adapters/bin/python)
"""
import json
import os
import pathlib
import sys
import time

import torch
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

IGNORE_INDEX = -100


def load_base(export, task):
    auto = AutoModelForSequenceClassification if task["task"] == "sequence-classification" else AutoModelForTokenClassification
    return auto.from_pretrained(export / "base")


def normalised(name):
    """A trainable weight's name with the wrappers' parts taken out (peft's base_model.model., the adapter
    name `default`, modules_to_save), so that ours and theirs meet."""
    parts = [p for p in name.split(".") if p not in ("default", "modules_to_save")]
    while parts[:1] in (["base_model"], ["model"]):
        parts = parts[1:]
    return ".".join(parts)


def copy_start(model, start, method):
    """Our trainable weights as they start, into the trainable parameters they name (one to one, or
    an error listing what does not meet). Ours hold projections [in, out]: an nn.Linear's is [out, in]."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    theirs = {normalised(n): n for n in params}
    ours = {normalised(n): n for n in start}
    if len(theirs) != len(params) or set(theirs) != set(ours):
        raise SystemExit(
            f"{method}: trainable weights do not meet: ours only {sorted(set(ours) - set(theirs))[:4]}, "
            f"theirs only {sorted(set(theirs) - set(ours))[:4]}"
        )
    with torch.no_grad():
        for key, their_name in theirs.items():
            value = start[ours[key]]
            module = model.get_submodule(their_name.rsplit(".", 1)[0])
            if isinstance(module, torch.nn.Linear) and their_name.endswith("weight"):
                value = value.T
            params[their_name].copy_(value.reshape(params[their_name].shape))


def prepare(model, plan, init):
    """The model with the method attached, exactly its weights trainable, each as ours starts; the
    library's name."""
    from safetensors.torch import load_file

    kind = plan["kind"]
    start = load_file(str(init / "init.safetensors")) if (init / "init.safetensors").exists() else {}
    if kind == "peft":
        # made from the config we saved; PeftModel.from_pretrained cannot (it refuses prompt learning
        # adapters as trainable, and prefix tuning's file holds the reparameterisation's output only)
        import peft
        from peft import PeftConfig, get_peft_model

        config = PeftConfig.from_pretrained(str(init))
        config.inference_mode = False
        model, library = get_peft_model(model, config), f"peft {peft.__version__}"
    elif kind == "adapters":
        import adapters

        adapters.init(model)
        name = model.load_adapter(str(init), set_active=True, use_safetensors=True)
        model.train_adapter(name)
        # the head trains beside the adapters (modules_to_save on our side)
        heads = {normalised(n).rsplit(".", 1)[0] for n in start if "adapters" not in n}
        for n, p in model.named_parameters():
            if n.rsplit(".", 1)[0] in heads:
                p.requires_grad_(True)
        library = f"adapters {adapters.__version__}"
    else:
        names = {normalised(n) for n in start}
        for n, p in model.named_parameters():
            p.requires_grad_(kind == "full" or n in names)
        library = "transformers"
    if kind != "frozen":
        copy_start(model, start, plan["method"])
    return model, library


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


def token_logits(logits, labels, task):
    """A token classifier's logits of the input's own positions: peft's prompt tuning and P-tuning
    return the virtual tokens' too, in front."""
    return logits if task["task"] == "sequence-classification" else logits[:, -labels.shape[1] :]


def task_loss(logits, labels, task):
    """transformers' classification loss (mean cross-entropy over the labelled positions), computed
    here: peft passes the labels of a token classification with prompt tuning or P-tuning unchanged
    beside logits that have the virtual tokens' positions too, and cross_entropy refuses the shapes."""
    logits = token_logits(logits, labels, task)
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX
    )


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
            predicted = token_logits(model(input_ids=ids, attention_mask=mask).logits, gold, task).argmax(-1)
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
        # the model's dropout, or none on both sides (compare --no-dropout)
        model.train(plan.get("dropout", True))
        started = time.perf_counter()
        for indices in run["batches"]:
            ids, mask, types, labels, count = collate(task["train"], indices, task, task["padTokenId"])
            loss = task_loss(model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits, labels, task)
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
        # each seed's result as it finishes (a stopped comparison keeps it): written whole or not at all
        finished = export / method / f"seed-{run['seed']}" / "theirs.json"
        partial = finished.with_name(f".theirs.json.{os.getpid()}.tmp")
        partial.write_text(
            json.dumps(
                {
                    "fingerprint": plan.get("fingerprint"),
                    "library": f"{library}, torch {torch.__version__}",
                    "run": result,
                }
            )
        )
        os.replace(partial, finished)
        print(f"{method} seed {run['seed']}: {result['metric']:.4f}", file=sys.stderr)
    print(json.dumps({"library": f"{library}, torch {torch.__version__}", "runs": runs}))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
