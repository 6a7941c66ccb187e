// A long training run that must hold its memory flat: brown-gpt (the bench's model) with one method
// for N steps (default 1,000) on random tokens, RSS and tfjs's tensor count and bytes printed every
// 100 steps; fails (exit 1) when RSS after the first 100 steps grows by more than 5%, or when the
// tensor count moves at all (a leak).
//
//   pnpm --filter @peft/bench long-run [steps=1000] [method=lora] [backend=tensorflow]
// (the script runs node with --expose-gc: garbage is collected before each reading)
import path from 'node:path';

import { parseBackendRequest, selectBackend } from '@peft/backend';
import { train, type Example } from '@peft/core';
import { loadPretrained } from '@peft/models';
import * as tf from '@tensorflow/tfjs-core';

import { PERF_METHODS, PERF_MODELS } from '../src/perf/workloads.js';

const [stepsArg = '1000', methodName = 'lora', backendName = 'tensorflow'] = process.argv.slice(2);
const steps = Number(stepsArg);
if (!Number.isInteger(steps) || steps < 200)
  throw new Error(`steps: expected an integer of at least 200, got "${stepsArg}"`);
const method = PERF_METHODS.find((m) => m.name === methodName);
if (!method) throw new Error(`method: one of ${PERF_METHODS.map((m) => m.name).join(', ')}`);
const backend = await selectBackend({ backend: parseBackendRequest(backendName, 'backend'), warnIfSlow: false });
const host = await loadPretrained(path.resolve(import.meta.dirname, '../models/brown-gpt'));
// the perf workloads' method settings; LoRA's targets are GPT-2's
const model = method.make(host, PERF_MODELS[0]!);
const vocab = host.config.vocabSize;
const batch = 8;
const length = 96;
let state = 7;
const data: Example[] = Array.from({ length: 64 }, () => {
  const ids = Array.from({ length }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state % vocab;
  });
  return { inputIds: ids, labels: ids };
});
const megabytes = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(0)} MB`;
const samples: { step: number; rss: number; tensors: number; bytes: number }[] = [];
console.log(`${method.label} on brown-gpt, ${backend.name}: ${steps} steps of ${batch} x ${length} tokens`);
const started = performance.now();
await train(model, {
  data,
  task: 'causal-lm',
  padTokenId: 0,
  batchSize: batch,
  maxSteps: steps,
  epochs: Math.ceil((steps * batch) / data.length),
  learningRate: 1e-4,
  onStep: ({ step, loss }) => {
    if (step % 100 !== 0) return;
    // with --expose-gc, garbage is collected first: what remains is held
    (globalThis as { gc?: () => void }).gc?.();
    const memory = tf.memory();
    const usage = process.memoryUsage();
    const sample = { step, rss: usage.rss, tensors: memory.numTensors, bytes: memory.numBytes };
    samples.push(sample);
    console.log(
      `  step ${String(step).padStart(5)}  loss ${loss.toFixed(3)}  RSS ${megabytes(sample.rss)}  JS heap ${megabytes(usage.heapUsed)}  ` +
        `external ${megabytes(usage.external)}  tensors ${sample.tensors} (${megabytes(sample.bytes)})  ` +
        `${((performance.now() - started) / 1000).toFixed(0)} s`,
    );
  },
});
const first = samples[0]!;
const last = samples.at(-1)!;
const growth = (100 * (last.rss - first.rss)) / first.rss;
const maximum = Math.max(...samples.map((s) => s.rss));
console.log(
  `RSS step ${first.step} -> ${last.step}: ${megabytes(first.rss)} -> ${megabytes(last.rss)} (${growth >= 0 ? '+' : ''}${growth.toFixed(1)}%, ` +
    `highest ${megabytes(maximum)}); tensors ${first.tensors} -> ${last.tensors}`,
);
if (growth > 5 || last.tensors !== first.tensors) {
  console.log('NOT FLAT');
  process.exit(1);
}
console.log('flat');
