"""Golden fixtures for @peft/core's training engine: torch's AdamW and SGD on fixed gradients,
transformers' learning-rate schedules, and the task losses as transformers computes them.

run: oracle/.venv/bin/python oracle/make_training_fixtures.py
"""
import json
import pathlib

import torch
import torch.nn.functional as F
from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

OUT = pathlib.Path(__file__).resolve().parent.parent / "packages/core/test/fixtures/training.json"


def optimizer_run(make, steps=5):
    generator = torch.Generator().manual_seed(0)
    parameter = torch.nn.Parameter(torch.randn(3, 4, generator=generator))
    initial = parameter.detach().clone()
    gradients = [torch.randn(3, 4, generator=generator) for _ in range(steps)]
    learning_rates = [0.1, 0.05, 0.2, 0.1, 0.01][:steps]
    optimizer = make([parameter])
    for gradient, lr in zip(gradients, learning_rates):
        for group in optimizer.param_groups:
            group["lr"] = lr
        parameter.grad = gradient.clone()
        optimizer.step()
    return {
        "initial": initial.flatten().tolist(), "shape": [3, 4],
        "gradients": [g.flatten().tolist() for g in gradients], "learning_rates": learning_rates,
        "final": parameter.detach().flatten().tolist(),
    }


def schedule(factory, **kwargs):
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.5)
    scheduler = factory(optimizer, **kwargs)
    rates = []
    for _ in range(20):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return rates


def losses():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 7, generator=generator) * 3
    labels = torch.randint(0, 7, (2, 5), generator=generator)
    labels[0, 0] = -100
    labels[1, 3:] = -100
    # transformers' causal LM loss: shift, mean over non-ignored
    shifted = F.cross_entropy(logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1), ignore_index=-100)
    token = F.cross_entropy(logits.reshape(-1, 7), labels.reshape(-1), ignore_index=-100)
    sequence_logits = torch.randn(3, 4, generator=generator)
    sequence_labels = torch.tensor([0, 3, 1])
    sequence = F.cross_entropy(sequence_logits, sequence_labels)
    return {
        "logits": logits.flatten().tolist(), "logits_shape": [2, 5, 7], "labels": labels.tolist(),
        "causal_lm": shifted.item(), "token_classification": token.item(),
        "sequence_logits": sequence_logits.flatten().tolist(), "sequence_labels": sequence_labels.tolist(),
        "sequence_classification": sequence.item(),
    }


def main():
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fixture = {
        "adamw": optimizer_run(lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=0.1)),
        "adamw_no_decay": optimizer_run(lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=0.0, betas=(0.8, 0.99), eps=1e-6)),
        "sgd_momentum": optimizer_run(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01)),
        "schedules": {
            "constant": schedule(get_constant_schedule_with_warmup, num_warmup_steps=5),
            "linear": schedule(get_linear_schedule_with_warmup, num_warmup_steps=5, num_training_steps=20),
            "cosine": schedule(get_cosine_schedule_with_warmup, num_warmup_steps=5, num_training_steps=20),
            "learning_rate": 0.5, "warmup_steps": 5, "total_steps": 20,
        },
        "losses": losses(),
    }
    OUT.write_text(json.dumps(fixture, indent=1) + "\n")


if __name__ == "__main__":
    main()
