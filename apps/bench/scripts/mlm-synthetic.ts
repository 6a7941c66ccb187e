// Does our engine leave masked-LM training's unigram stage as transformers does? A synthetic task
// with the answer in the context: blocks of 30 random tokens (190 words) between [CLS] and [SEP], 15%
// of the positions (at least one) replaced by [MASK], each labelled with the token before it. A BERT
// of 2 layers x 64 (2 heads, intermediate 256, dropout 0.1, BERT's start), batch 16, AdamW 1e-3
// (weight decay 0.01), cosine schedule, clipping 1.0: chance (ln 190 = 5.25) until it learns to look
// one position back. `oracle/mlm_synthetic.py` runs the same in transformers (its own random draws).
//
//   pnpm --filter @peft/bench exec tsx scripts/mlm-synthetic.ts [--steps 3000] [--warmup 0] [--lr 1e-3]
//     [--batch 16] [--layers 2] [--width 64] [--heads 2]   (intermediate 4 x width)
import { parseArgs } from 'node:util';

import { selectBackend } from '@peft/backend';
import { SeededRandom, fullFineTuning, train, type Example } from '@peft/core';
import { BertModel, ConfigReader, parseBertConfig } from '@peft/models';

import { bertMaskedLmConfig, bertMaskedLmStart, bertShape } from '../src/pretraining.js';

const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '3000' },
    warmup: { type: 'string', default: '0' },
    layers: { type: 'string', default: '2' },
    width: { type: 'string', default: '64' },
    heads: { type: 'string', default: '2' },
    lr: { type: 'string', default: '1e-3' },
    batch: { type: 'string', default: '16' },
  },
});
const number = (flag: keyof typeof values, min: number): number => {
  const value = Number(values[flag]);
  if (!Number.isFinite(value) || value < min)
    throw new Error(`--${flag}: expected a number of at least ${min}, got "${values[flag]}"`);
  return value;
};
const [steps, warmup, batch, learningRate] = [
  number('steps', 1),
  number('warmup', 0),
  number('batch', 1),
  number('lr', 0),
];
const shape = bertShape(
  { vocab: 200, positions: 32 },
  Number(values.layers),
  Number(values.width),
  Number(values.heads),
);
const POSITIONS = shape.positions;
const [CLS, SEP, MASK, FIRST_WORD] = [2, 3, 4, 10];

const backend = await selectBackend();
const config = bertMaskedLmConfig(shape, 0);
const host = new BertModel(
  parseBertConfig(new ConfigReader(config, 'synthetic BERT config')),
  bertMaskedLmStart('synthetic BERT', shape, 1),
);

const random = new SeededRandom(5);
const example = (): Example => {
  const block = [
    CLS,
    ...Array.from({ length: POSITIONS - 2 }, () => FIRST_WORD + Math.floor(random.next() * 190)),
    SEP,
  ];
  const inputIds = [...block];
  const labels = block.map(() => -100);
  const chosen: number[] = [];
  for (let t = 2; t < POSITIONS - 1; t++) if (random.next() < 0.15) chosen.push(t);
  if (chosen.length === 0) chosen.push(2 + Math.floor(random.next() * (POSITIONS - 3)));
  for (const t of chosen) {
    inputIds[t] = MASK;
    labels[t] = block[t - 1]!;
  }
  return { inputIds, labels };
};
const heldOut = Array.from({ length: 512 }, example);
const data = Array.from({ length: steps * batch }, example);
console.log(
  `backend ${backend.name}; BERT ${shape.layers} x ${shape.hidden} (${shape.heads} heads); ${steps} steps of ${batch}, AdamW ${learningRate}, warm-up ${warmup}`,
);
const started = performance.now();
await train(fullFineTuning(host), {
  data,
  validation: heldOut,
  task: 'token-classification',
  padTokenId: 0,
  batchSize: batch,
  epochs: 1,
  learningRate,
  weightDecay: 0.01,
  schedule: 'cosine',
  warmupSteps: warmup,
  evalEvery: 250,
  seed: 1,
  onEval: ({ step, loss, accuracy }) =>
    console.log(
      `step ${step}: held-out loss ${loss.toFixed(3)}, accuracy ${accuracy!.toFixed(3)} (${((performance.now() - started) / 1000).toFixed(0)} s)`,
    ),
});
