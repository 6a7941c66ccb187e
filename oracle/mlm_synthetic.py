"""transformers' side of apps/bench/scripts/mlm-synthetic.ts: the same synthetic masked-LM task (fill
[MASK] with the token before it; 30 random tokens of 190 between [CLS] and [SEP], 15% masked) and
the same BERT (2 x 64, 2 heads, intermediate 256, dropout 0.1, its own default start), batch 16,
AdamW 1e-3 (weight decay 0.01), cosine schedule, clipping 1.0; its own random draws.

    oracle/.venv/bin/python oracle/mlm_synthetic.py [--steps 3000] [--warmup 0] [--lr 1e-3] [--batch 16]
        [--layers 2] [--width 64] [--heads 2]   (intermediate 4 x width)
"""
import argparse
import random
import time

import torch
from transformers import BertConfig, BertForMaskedLM, get_cosine_schedule_with_warmup

VOCAB, POSITIONS = 200, 32
CLS, SEP, MASK, FIRST_WORD = 2, 3, 4, 10


def example(rng):
    block = [CLS] + [FIRST_WORD + rng.randrange(190) for _ in range(POSITIONS - 2)] + [SEP]
    inputs, labels = list(block), [-100] * POSITIONS
    chosen = [t for t in range(2, POSITIONS - 1) if rng.random() < 0.15] or [2 + rng.randrange(POSITIONS - 3)]
    for t in chosen:
        inputs[t], labels[t] = MASK, block[t - 1]
    return inputs, labels


def tensors(examples):
    return torch.tensor([e[0] for e in examples]), torch.tensor([e[1] for e in examples])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--heads", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(1)
    torch.set_num_threads(2)
    rng = random.Random(5)
    config = BertConfig(vocab_size=VOCAB, hidden_size=args.width, num_hidden_layers=args.layers,
                        num_attention_heads=args.heads, intermediate_size=4 * args.width,
                        max_position_embeddings=POSITIONS, pad_token_id=0)
    model = BertForMaskedLM(config)
    held_inputs, held_labels = tensors([example(rng) for _ in range(512)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, eps=1e-8)
    schedule = get_cosine_schedule_with_warmup(optimizer, args.warmup, args.steps)
    print(f"torch {torch.__version__}; BERT {args.layers} x {args.width} ({args.heads} heads); "
          f"{args.steps} steps of {args.batch}, AdamW {args.lr}, warm-up {args.warmup}")
    started = time.perf_counter()
    model.train()
    for step in range(1, args.steps + 1):
        inputs, labels = tensors([example(rng) for _ in range(args.batch)])
        loss = model(input_ids=inputs, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 250 == 0:
            model.eval()
            with torch.no_grad():
                out = model(input_ids=held_inputs, labels=held_labels)
            labelled = held_labels != -100
            accuracy = (out.logits.argmax(-1)[labelled] == held_labels[labelled]).float().mean().item()
            model.train()
            print(f"step {step}: held-out loss {out.loss.item():.3f}, accuracy {accuracy:.3f} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
