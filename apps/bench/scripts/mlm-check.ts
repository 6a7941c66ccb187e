// What a brown-bert checkpoint predicts from the context alone: held-out blocks masked as in
// pretraining, the accuracy at the [MASK] inputs (a kept token can be copied, a [MASK] cannot) and the
// share of its most frequent predictions there. A model in the unigram stage of masked-LM training
// predicts " the" at most masks whatever the context; one that reads its context spreads them.
//
//   pnpm --filter @peft/bench mlm-check [--model models/brown-bert] [--checkpoint .cache/brown-bert-run/checkpoint-N] [--blocks 400]
//
// --checkpoint: a pretraining checkpoint (trainable.safetensors) read into --model's architecture.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { selectBackend } from '@peft/backend';
import { evaluate, fullFineTuning, parseSafetensors, SeededRandom } from '@peft/core';
import { loadPretrained, loadTokenizer } from '@peft/models';
import * as tf from '@tensorflow/tfjs-core';

import { detokenize, readBrown, splitBrown } from '../src/data/brown.js';
import { labelsAtMasks, maskBlock } from '../src/data/mlm-masking.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: path.join(import.meta.dirname, '..', 'models', 'brown-bert') },
    checkpoint: { type: 'string' },
    blocks: { type: 'string', default: '400' },
  },
});
await selectBackend();
const tokenizer = await loadTokenizer(values.model!);
const host = await loadPretrained(values.model!, { dropout: false });
const trainable = fullFineTuning(host);
if (values.checkpoint) {
  const file = path.join(values.checkpoint, 'trainable.safetensors');
  const weights = parseSafetensors(readFileSync(file), file);
  for (const [name, variable] of trainable.trainableVariables()) {
    const { shape, values: data } = weights.tensor(name);
    if (shape.join() !== variable.shape.join())
      throw new Error(`${file}: "${name}" has shape [${shape}], the model [${variable.shape}]`);
    variable.assign(tf.tensor(data, variable.shape));
  }
}
const { maskTokenId: mask, padTokenId: pad, clsTokenId, sepTokenId, unkTokenId } = tokenizer;
if (mask === null || pad === null || clsTokenId === null || sepTokenId === null || unkTokenId === null)
  throw new Error(`${values.model}: not a masked LM's tokenizer ([MASK], [PAD], [CLS], [SEP], [UNK])`);
const vocabulary = {
  pad,
  unk: unkTokenId,
  cls: clsTokenId,
  sep: sepTokenId,
  mask,
  // random replacements after the special tokens, which take the first ids (as the pretraining made them)
  firstWord: Math.max(pad, unkTokenId, clsTokenId, sepTokenId, mask) + 1,
  vocab: host.config.vocabSize,
};
// one sentence a block (at most the model's positions), the held-out files in order
const random = new SeededRandom(5);
const examples = labelsAtMasks(
  splitBrown(readBrown())
    .heldOut.flatMap((file) => file.sentences)
    .map((sentence) => tokenizer.encode(detokenize(sentence.map((w) => w.word))).ids)
    .filter((ids) => ids.length >= 5 && ids.length <= host.config.maxPositions)
    .slice(0, Number(values.blocks))
    .map((ids) => maskBlock(ids, random, vocabulary)),
  mask,
);
const options = { data: [], learningRate: 0, task: 'token-classification' as const, padTokenId: pad, batchSize: 32 };
const result = await evaluate(trainable, examples, options);
// the most frequent predictions at the masks
const counts = new Map<number, number>();
let total = 0;
for (const example of examples) {
  const output = host.forward({
    inputIds: [example.inputIds as number[]],
    attentionMask: [example.inputIds.map(() => 1)],
  });
  const best = tf.tidy(() => tf.argMax(output.logits.reshape([example.inputIds.length, -1]), -1).dataSync());
  output.logits.dispose();
  (example.labels as number[]).forEach((label, t) => {
    if (label < 0) return;
    counts.set(best[t]!, (counts.get(best[t]!) ?? 0) + 1);
    total += 1;
  });
}
const top = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 8);
console.log(
  `${values.checkpoint ?? values.model}: ${total} [MASK] inputs in ${examples.length} held-out sentences: ` +
    `accuracy ${result.accuracy!.toFixed(4)}, loss ${result.loss.toFixed(4)}; ${counts.size} distinct predictions, most frequent ` +
    top.map(([id, n]) => `${JSON.stringify(tokenizer.decode([id]))} ${((100 * n) / total).toFixed(1)}%`).join(', '),
);
