// Does our engine leave masked-LM training's unigram stage as transformers does? A synthetic task
// with the answer in the context: blocks of 30 random tokens (190 words) between [CLS] and [SEP], 15%
// of the positions (at least one) replaced by [MASK], each labelled with the token before it. A BERT
// of 2 layers x 64 (2 heads, intermediate 256, dropout 0.1, BERT's start), batch 16, AdamW 1e-3
// (weight decay 0.01), cosine schedule, clipping 1.0: chance (ln 190 = 5.25) until it learns to look
// one position back. `oracle/mlm_synthetic.py` runs the same in transformers (its own random draws).
//
//   pnpm --filter @peft/bench exec tsx scripts/mlm-synthetic.ts [--steps 3000] [--warmup 0]
import { parseArgs } from 'node:util';

import { selectBackend } from '@peft/backend';
import { SeededRandom, fullFineTuning, train, type Example } from '@peft/core';
import { BertModel, ConfigReader, parseBertConfig } from '@peft/models';

import { generatedCheckpoint } from '../src/pretraining.js';

const { values } = parseArgs({
  options: { steps: { type: 'string', default: '3000' }, warmup: { type: 'string', default: '0' } },
});
const [VOCAB, POSITIONS, WIDTH, LAYERS, INTERMEDIATE] = [200, 32, 64, 2, 256];
const [CLS, SEP, MASK, FIRST_WORD] = [2, 3, 4, 10];

const backend = await selectBackend();
const config = {
  architectures: ['BertForMaskedLM'],
  attention_probs_dropout_prob: 0.1,
  hidden_act: 'gelu',
  hidden_dropout_prob: 0.1,
  hidden_size: WIDTH,
  initializer_range: 0.02,
  intermediate_size: INTERMEDIATE,
  layer_norm_eps: 1e-12,
  max_position_embeddings: POSITIONS,
  model_type: 'bert',
  num_attention_heads: 2,
  num_hidden_layers: LAYERS,
  pad_token_id: 0,
  type_vocab_size: 2,
  vocab_size: VOCAB,
};
const shapes = new Map<string, number[]>([
  ['bert.embeddings.word_embeddings.weight', [VOCAB, WIDTH]],
  ['bert.embeddings.position_embeddings.weight', [POSITIONS, WIDTH]],
  ['bert.embeddings.token_type_embeddings.weight', [2, WIDTH]],
  ['bert.embeddings.LayerNorm.weight', [WIDTH]],
  ['bert.embeddings.LayerNorm.bias', [WIDTH]],
  ['cls.predictions.transform.dense.weight', [WIDTH, WIDTH]],
  ['cls.predictions.transform.dense.bias', [WIDTH]],
  ['cls.predictions.transform.LayerNorm.weight', [WIDTH]],
  ['cls.predictions.transform.LayerNorm.bias', [WIDTH]],
  ['cls.predictions.bias', [VOCAB]],
]);
for (let i = 0; i < LAYERS; i++) {
  const p = `bert.encoder.layer.${i}`;
  for (const [name, shape] of [
    ['attention.self.query', [WIDTH, WIDTH]],
    ['attention.self.key', [WIDTH, WIDTH]],
    ['attention.self.value', [WIDTH, WIDTH]],
    ['attention.output.dense', [WIDTH, WIDTH]],
    ['intermediate.dense', [INTERMEDIATE, WIDTH]],
    ['output.dense', [WIDTH, INTERMEDIATE]],
  ] as const) {
    shapes.set(`${p}.${name}.weight`, [...shape]);
    shapes.set(`${p}.${name}.bias`, [shape[0]]);
  }
  for (const norm of ['attention.output.LayerNorm', 'output.LayerNorm']) {
    shapes.set(`${p}.${norm}.weight`, [WIDTH]);
    shapes.set(`${p}.${norm}.bias`, [WIDTH]);
  }
}
const start = generatedCheckpoint('synthetic BERT', shapes, 1, (name) =>
  name.endsWith('LayerNorm.weight') ? 'ones' : name.endsWith('.weight') ? { std: 0.02 } : 'zeros',
);
const host = new BertModel(parseBertConfig(new ConfigReader(config, 'synthetic BERT config')), start);

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
const steps = Number(values.steps);
const heldOut = Array.from({ length: 512 }, example);
const data = Array.from({ length: steps * 16 }, example);
console.log(`backend ${backend.name}; ${steps} steps of 16, warm-up ${values.warmup}`);
const started = performance.now();
await train(fullFineTuning(host), {
  data,
  validation: heldOut,
  task: 'token-classification',
  padTokenId: 0,
  batchSize: 16,
  epochs: 1,
  learningRate: 1e-3,
  weightDecay: 0.01,
  schedule: 'cosine',
  warmupSteps: Number(values.warmup),
  evalEvery: 250,
  seed: 1,
  onEval: ({ step, loss, accuracy }) =>
    console.log(
      `step ${step}: held-out loss ${loss.toFixed(3)}, accuracy ${accuracy!.toFixed(3)} (${((performance.now() - started) / 1000).toFixed(0)} s)`,
    ),
});
