"""Golden loss curves for the hosts' dropout (@peft/models): transformers' models trained in
`model.train()` mode, full fine-tuning with AdamW, a constant learning rate and clipping at 1.0, on one
fixed batch per step, for 20 seeds with the config's dropout and once without. Our runs draw other
masks (another generator), so the test compares the curves statistically: per seed, the first step's
loss and the mean loss of the run, ours against these (Welch's t), and without dropout step by step.

Writes packages/models/test/fixtures/dropout-curves.json.

run: oracle/.venv/bin/python oracle/make_dropout_fixtures.py   (versions: oracle/requirements.txt)
"""
import json
import pathlib

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "packages/models/test/fixtures"
SEEDS = 20
STEPS = 25
LEARNING_RATE = 3e-3

# name, fixture, head, config fields set for the run (None: the fixture's own rates)
CASES = [
    ("gpt2 (embd, attn, resid 0.1)", "gpt2-tied", "lm", {}),
    ("bert sequence classification (hidden, attention, classifier 0.1)", "bert-sequence-classification", "cls", {}),
    ("llama (attention_dropout 0.3)", "llama-gqa-untied", "lm", {"attention_dropout": 0.3}),
    ("phi3 (attention_dropout 0.2, resid_pdrop 0.2)", "phi3-gqa-partial-rotary", "lm",
     {"attention_dropout": 0.2, "resid_pdrop": 0.2}),
]


def batch(vocab, head):
    generator = torch.Generator().manual_seed(1234)
    ids = torch.randint(3, vocab, (8, 12), generator=generator)
    if head == "lm":
        return ids, ids.clone()
    return ids, torch.arange(8) % 3


def run(fixture, head, overrides, dropout, seed):
    torch.manual_seed(seed)
    auto = AutoModelForCausalLM if head == "lm" else AutoModelForSequenceClassification
    config = AutoConfig.from_pretrained(FIXTURES / fixture)
    for field, value in overrides.items():
        setattr(config, field, value)
    if not dropout:
        for field in ["embd_pdrop", "attn_pdrop", "resid_pdrop", "hidden_dropout_prob",
                      "attention_probs_dropout_prob", "attention_dropout", "classifier_dropout"]:
            if hasattr(config, field):
                setattr(config, field, 0.0)
    model = auto.from_pretrained(FIXTURES / fixture, config=config, attn_implementation="eager")
    model.train()
    ids, labels = batch(model.config.vocab_size, head)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    losses = []
    for _ in range(STEPS):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return ids, labels, losses


def main():
    cases = []
    for name, fixture, head, overrides in CASES:
        ids, labels, off = run(fixture, head, overrides, False, 0)
        on = [run(fixture, head, overrides, True, seed)[2] for seed in range(SEEDS)]
        cases.append({
            "name": name, "fixture": fixture, "head": head, "config": overrides,
            "input_ids": ids.tolist(), "labels": labels.tolist(),
            "losses_without_dropout": off, "losses_with_dropout": on,
        })
        first = torch.tensor([c[0] for c in on])
        mean = torch.tensor([sum(c) / len(c) for c in on])
        print(f"{name}: first step {first.mean():.4f} ± {first.std():.4f} (without {off[0]:.4f}); "
              f"run mean {mean.mean():.4f} ± {mean.std():.4f} (without {sum(off) / len(off):.4f})")
    out = FIXTURES / "dropout-curves.json"
    out.write_text(json.dumps({
        "transformers": __import__("transformers").__version__, "torch": torch.__version__,
        "seeds": SEEDS, "steps": STEPS, "learning_rate": LEARNING_RATE, "optimizer": "adamw, weight decay 0",
        "max_grad_norm": 1.0, "cases": cases,
    }) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
