// A training run for train-reliability.test.ts to send real SIGINTs to: `tsx interrupt-child.ts <folder>[#slow|#race]`.
// Prints `step N` after each step (with #slow, from step 2 on, each step then waits 3 s) and the result as JSON.
// With #race (two of these train into one folder at once): 12 steps of 150 ms, a checkpoint after each.
import path from 'node:path';

import { selectBackend } from '@peft/backend';
import { train, type Example } from '@peft/core';
import { nodeDirectory } from '@peft/core/node';
import * as tf from '@tensorflow/tfjs-core';

import { loadPretrained } from '../src/index.js';

const [folder, mode] = process.argv[2]!.split('#');
await selectBackend({ backend: 'cpu', warnIfSlow: false });
const host = await loadPretrained(path.join(import.meta.dirname, 'fixtures', 'gpt2-tied'));
const linear = host.linears.get('transformer.h.0.attn.c_attn')!;
const bias = tf.variable(tf.zeros([linear.outFeatures]), true);
linear.addDelta('bias', (x) => tf.tile(tf.expandDims(bias, 0), [x.shape[0], 1]) as tf.Tensor2D);
const data: Example[] = Array.from({ length: 16 }, (_, i) => {
  const ids = Array.from({ length: 12 }, (_, t) => 2 + ((t + i) % 4));
  return { inputIds: ids, labels: ids };
});
const result = await train(
  { host, trainableVariables: () => new Map([['bias', bias]]) },
  {
    data,
    task: 'causal-lm',
    padTokenId: 0,
    batchSize: 4,
    epochs: mode === 'race' ? 3 : 50,
    learningRate: 1e-2,
    checkpoint: { store: nodeDirectory(folder!), every: mode === 'race' ? 1 : 1000 },
    handleInterrupt: true,
    onStep: async ({ step }) => {
      console.log(`step ${step}`);
      if (mode === 'slow' && step >= 2) await new Promise((resolve) => setTimeout(resolve, 3000));
      if (mode === 'race') await new Promise((resolve) => setTimeout(resolve, 150));
    },
  },
);
console.log(JSON.stringify(result));
