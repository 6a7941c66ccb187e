// What `train` refuses, frees, keeps and saves when things go wrong (issue 23): error paths free what
// they made; options and examples are checked before any compute; non-finite weights are never saved;
// a finished run resumed does nothing; one writer per checkpoint folder; checkpoints are pruned; Ctrl-C
// stops after the current optimizer step however many times the signal arrives.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import {
  AdamW,
  fullFineTuning,
  LATEST_CHECKPOINT_FILE,
  Sgd,
  learningRateAt,
  TRAINING_LOCK_FILE,
  memoryStore,
  train,
  type Dataset,
  type Example,
  type FileStore,
  type ForwardContext,
  type Optimizer,
  type TrainOptions,
  type TrainResult,
  type TrainableModel,
} from '@peft/core';
import { nodeDirectory } from '@peft/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { loadPretrained, type TransformerHost } from '../src/index.js';
import { loadFixtures } from './fixtures.js';

const fixtures = loadFixtures();
const GPT2 = fixtures.find((f) => f.name === 'gpt2-tied')!.directory;
const BERT = fixtures.find((f) => f.name === 'bert-sequence-classification')!.directory;

/** A trainable bias on one projection's output; `fail` throws inside the forward pass when it says so. */
function biasAdapter(
  host: TransformerHost,
  module = 'transformer.h.0.attn.c_attn',
  fail: (context: ForwardContext) => boolean = () => false,
): TrainableModel & { bias: tf.Variable } {
  const linear = host.linears.get(module)!;
  const bias = tf.variable(tf.zeros([linear.outFeatures]), true);
  linear.addDelta('bias-adapter', (x, context) => {
    if (fail(context)) throw new Error('injected failure in the forward pass');
    return tf.tile(tf.expandDims(bias, 0), [x.shape[0], 1]) as tf.Tensor2D;
  });
  return { host, bias, trainableVariables: () => new Map([['bias', bias]]) };
}

/** A repeating pattern a tiny LM can learn: 2 3 4 5 2 3 4 5 ... (gpt2-tied: 97 tokens, 32 positions). */
function patternExamples(count: number, length = 12): Example[] {
  return Array.from({ length: count }, (_, i) => {
    const ids = Array.from({ length }, (_, t) => 2 + ((t + i) % 4));
    return { inputIds: ids, labels: ids };
  });
}

/** The examples as a stream of unknown size (read one by one, never held whole). */
function stream(examples: readonly Example[]): Dataset<Example> {
  return {
    async *[Symbol.asyncIterator]() {
      yield* examples;
    },
  };
}

const lmOptions = (overrides: Partial<TrainOptions> = {}): TrainOptions => ({
  data: patternExamples(16),
  task: 'causal-lm',
  padTokenId: 0,
  batchSize: 4,
  epochs: 1,
  learningRate: 1e-2,
  seed: 7,
  onNotice: () => undefined,
  ...overrides,
});

const readJsonFile = (store: ReturnType<typeof memoryStore>, name: string): unknown =>
  JSON.parse(new TextDecoder().decode(store.files.get(name)));

const checkpointsIn = (store: ReturnType<typeof memoryStore>): string[] =>
  [...new Set([...store.files.keys()].filter((n) => n.startsWith('checkpoint-')).map((n) => n.split('/')[0]!))].sort(
    (a, b) => Number(a.split('-')[1]) - Number(b.split('-')[1]),
  );

const leakHost = await loadPretrained(GPT2);
const optionsHost = await loadPretrained(GPT2);

describe('train frees what it made when it fails: 10 failing calls leave the tensor count and RSS flat', () => {
  /** Forward passes of the current call; the one numbered `failAt` throws. */
  let forwards = 0;
  let failAt = Number.POSITIVE_INFINITY;
  const adapter = biasAdapter(leakHost, 'transformer.h.1.mlp.c_fc', () => ++forwards === failAt);

  const cases: [string, number, () => TrainOptions, string][] = [
    [
      'a causal-lm label outside the vocabulary (99,999), refused before any compute',
      Number.POSITIVE_INFINITY,
      () => lmOptions({ data: [...patternExamples(4), { inputIds: [2, 3, 4], labels: [2, 3, 99_999] }] }),
      'data[4].labels[2]: 99999 is outside the vocabulary of 97 tokens (0..96, or -100 to ignore the position)',
    ],
    [
      'the forward pass throws inside the gradient tape (step 3)',
      3,
      () => lmOptions({ batchSize: 2 }),
      'injected failure in the forward pass',
    ],
    [
      'the second micro-batch of an accumulated step throws while the first one holds its gradients',
      6,
      () => lmOptions({ batchSize: 2, gradientAccumulationSteps: 4 }),
      'injected failure in the forward pass',
    ],
    [
      'the forward pass throws under gradient checkpointing (blocks hold tensors for their recomputation)',
      3,
      () => lmOptions({ batchSize: 2, gradientCheckpointing: true }),
      'injected failure in the forward pass',
    ],
    [
      'a streamed example fails its check after steps were taken',
      Number.POSITIVE_INFINITY,
      () =>
        lmOptions({
          data: stream([...patternExamples(12), { inputIds: [], labels: [] }]),
          batchSize: 2,
          schedule: 'constant',
          bucketByLength: false,
        }),
      'data[12].inputIds: empty (an example needs at least one token)',
    ],
    [
      'evaluation throws (its second batch, after two steps)',
      4,
      () => lmOptions({ batchSize: 2, validation: patternExamples(4), evalEvery: 2 }),
      'injected failure in the forward pass',
    ],
    [
      'onStep throws',
      Number.POSITIVE_INFINITY,
      () =>
        lmOptions({
          onStep: ({ step }) => {
            if (step === 2) throw new Error('onStep failed');
          },
        }),
      'onStep failed',
    ],
    [
      'the run fails after saving checkpoints (optimizer state, lock)',
      5,
      () => lmOptions({ batchSize: 2, checkpoint: { store: memoryStore(), every: 2 } }),
      'injected failure in the forward pass',
    ],
  ];

  it.each(cases)('%s', async (_name, failing, options, message) => {
    const run = async (): Promise<void> => {
      forwards = 0;
      failAt = failing;
      await expect(train(adapter, options())).rejects.toThrow(message);
    };
    await run(); // warm-up: kernels, caches
    const tensors = tf.memory().numTensors;
    const rss = process.memoryUsage().rss;
    for (let i = 0; i < 10; i++) await run();
    expect(tf.memory().numTensors).toBe(tensors);
    expect(process.memoryUsage().rss - rss).toBeLessThan(64 * 1024 * 1024);
    expect(process.listenerCount('SIGINT')).toBe(0);
  });

  it('resume with another seed: refused before the checkpoint is loaded, no optimizer state left', async () => {
    const store = memoryStore();
    failAt = Number.POSITIVE_INFINITY;
    await train(adapter, lmOptions({ checkpoint: { store }, maxSteps: 2 }));
    const run = () => train(adapter, lmOptions({ checkpoint: { store }, resume: true, seed: 8 }));
    await expect(run()).rejects.toThrow(
      'resume: memory:/checkpoint-2/trainer_state.json was trained with seed 7, this run has seed 8 ' +
        '(the data order and dropout follow the seed: give seed 7 to continue that run)',
    );
    const tensors = tf.memory().numTensors;
    for (let i = 0; i < 10; i++) await expect(run()).rejects.toThrow('was trained with seed 7');
    expect(tf.memory().numTensors).toBe(tensors);
  });
});

describe('options are checked before any compute: each error names the option and what it expects', () => {
  const adapter = biasAdapter(optionsHost);

  it.each<[string, Partial<TrainOptions>, string]>([
    ['learningRate Infinity', { learningRate: Infinity }, 'learningRate: expected a finite number > 0, got Infinity'],
    ['learningRate NaN', { learningRate: Number.NaN }, 'learningRate: expected a finite number > 0, got NaN'],
    [
      'maxGradNorm -1 (gradient ascent)',
      { maxGradNorm: -1 },
      'maxGradNorm: expected a finite number > 0 (or null for no clipping), got -1',
    ],
    [
      'maxGradNorm 0 (frozen)',
      { maxGradNorm: 0 },
      'maxGradNorm: expected a finite number > 0 (or null for no clipping), got 0',
    ],
    [
      'maxGradNorm NaN (no clipping)',
      { maxGradNorm: Number.NaN },
      'maxGradNorm: expected a finite number > 0 (or null for no clipping), got NaN',
    ],
    ['weightDecay NaN', { weightDecay: Number.NaN }, 'weightDecay: expected a finite number >= 0, got NaN'],
    ['weightDecay -0.1', { weightDecay: -0.1 }, 'weightDecay: expected a finite number >= 0, got -0.1'],
    [
      'schedule "bogus"',
      { schedule: 'bogus' as 'linear' },
      'schedule: expected "constant", "linear" or "cosine", got "bogus"',
    ],
    [
      'optimizer "bogus"',
      { optimizer: 'bogus' as 'sgd' },
      'optimizer: expected "adamw", "sgd" or an Optimizer (name, apply, getState, setState, dispose), got "bogus"',
    ],
    ['a NaN warm-up ratio', { warmupRatio: Number.NaN }, 'warmupRatio: expected a number from 0 to 1, got NaN'],
    ['a NaN warm-up', { warmupSteps: Number.NaN }, 'warmupSteps: expected an integer >= 0, got NaN'],
    [
      'momentum with AdamW',
      { momentum: 0.9 },
      'momentum: only for optimizer "sgd" (AdamW has beta1), got 0.9 with optimizer "adamw"',
    ],
    ['momentum NaN', { optimizer: 'sgd', momentum: Number.NaN }, 'momentum: expected a finite number >= 0, got NaN'],
    [
      'task "bogus"',
      { task: 'bogus' as 'causal-lm' },
      'task: expected "causal-lm", "sequence-classification" or "token-classification", got "bogus"',
    ],
    ['padTokenId -1', { padTokenId: -1 }, 'padTokenId: expected an integer >= 0, got -1'],
    [
      'padTokenId beyond the vocabulary',
      { padTokenId: 97 },
      "padTokenId: 97 is outside the model's vocabulary of 97 tokens (0..96)",
    ],
    [
      'paddingSide "middle"',
      { paddingSide: 'middle' as 'left' },
      'paddingSide: expected "left" or "right", got "middle"',
    ],
    ['nonFinite "ignore"', { nonFinite: 'ignore' as 'skip' }, 'nonFinite: expected "stop" or "skip", got "ignore"'],
    ['seed 1.5', { seed: 1.5 }, 'seed: expected an integer, got 1.5'],
    ['evalEvery without validation', { evalEvery: 2 }, 'evalEvery: needs validation data'],
    [
      'checkpoint.every 0',
      { checkpoint: { store: memoryStore(), every: 0 } },
      'checkpoint.every: expected a positive integer, got 0',
    ],
    [
      'checkpoint.keepLast 0',
      { checkpoint: { store: memoryStore(), keepLast: 0 } },
      'checkpoint.keepLast: expected a positive integer (or Infinity to keep every checkpoint), got 0',
    ],
    [
      'earlyStopping patience 0',
      { validation: patternExamples(2), earlyStopping: { metric: 'loss', patience: 0 } },
      'earlyStopping.patience: expected a positive integer, got 0',
    ],
    [
      'earlyStopping metric "bleu"',
      { validation: patternExamples(2), earlyStopping: { metric: 'bleu' as 'loss', patience: 2 } },
      'earlyStopping.metric: expected "loss", "accuracy" or "perplexity", got "bleu"',
    ],
  ])('%s', async (_name, overrides, message) => {
    const before = adapter.bias.dataSync().slice();
    const tensors = tf.memory().numTensors;
    await expect(train(adapter, lmOptions(overrides))).rejects.toThrow(message);
    expect(adapter.bias.dataSync()).toEqual(before);
    expect(tf.memory().numTensors).toBe(tensors);
  });
});

describe('the optimizers and schedules check their own options', () => {
  it.each<[string, () => unknown, string]>([
    [
      'AdamW weightDecay NaN',
      () => new AdamW({ weightDecay: Number.NaN }),
      'AdamW: weightDecay: expected a finite number >= 0, got NaN',
    ],
    [
      'AdamW beta1 1',
      () => new AdamW({ beta1: 1 }),
      'AdamW: beta1: expected a number from 0 up to (not including) 1, got 1',
    ],
    ['AdamW epsilon 0', () => new AdamW({ epsilon: 0 }), 'AdamW: epsilon: expected a finite number > 0, got 0'],
    ['SGD momentum -1', () => new Sgd({ momentum: -1 }), 'SGD: momentum: expected a finite number >= 0, got -1'],
    [
      'an AdamW step at an infinite learning rate',
      () => new AdamW().apply(new Map(), new Map(), Number.POSITIVE_INFINITY),
      'AdamW: learning rate: expected a finite number >= 0, got Infinity',
    ],
    [
      'schedule "bogus"',
      () => learningRateAt(0, { schedule: 'bogus' as 'linear', learningRate: 1, totalSteps: 10 }),
      'schedule: expected "constant", "linear" or "cosine", got "bogus"',
    ],
    [
      'a NaN warm-up',
      () => learningRateAt(0, { schedule: 'linear', learningRate: 1, warmupSteps: Number.NaN, totalSteps: 10 }),
      'warmupSteps: expected an integer >= 0, got NaN',
    ],
  ])('%s', (_name, make, message) => {
    expect(make).toThrow(message);
  });
});

describe('examples are checked before any compute: errors name the example and the field', () => {
  it.each<[string, Example[], string]>([
    [
      'labels all -100',
      [...patternExamples(3), { inputIds: [2, 3, 4], labels: [-100, -100, -100] }],
      'data[3].labels: no labelled token (every label after the first, which is never predicted, is -100): the example would train nothing',
    ],
    [
      'only the first label set (the first token is never predicted)',
      [{ inputIds: [2, 3, 4], labels: [2, -100, -100] }, ...patternExamples(3)],
      'data[0].labels: no labelled token (every label after the first, which is never predicted, is -100)',
    ],
    [
      'empty inputIds',
      [...patternExamples(2), { inputIds: [], labels: [] }],
      'data[2].inputIds: empty (an example needs at least one token)',
    ],
    [
      'labels shorter than the inputs',
      [...patternExamples(5), { inputIds: [2, 3, 4, 5], labels: [2, 3] }],
      'data[5].labels: 2 entries for 4 input ids (causal-lm takes one label per input id, -100 where none)',
    ],
    [
      'float labels',
      [{ inputIds: [2, 3, 4], labels: [2, 3.5, 4] }],
      'data[0].labels[1]: 3.5 is not an integer (a token id, or -100 to ignore the position)',
    ],
    [
      'a float input id',
      [{ inputIds: [2, 0.5], labels: [2, 3] }],
      "data[0].inputIds[1]: 0.5 is not a token id (an integer from 0 to 96, the model's vocabulary)",
    ],
    [
      'an input id outside the vocabulary',
      [{ inputIds: [2, 97], labels: [2, 3] }],
      "data[0].inputIds[1]: 97 is not a token id (an integer from 0 to 96, the model's vocabulary)",
    ],
    [
      'inputIds that are not an array',
      [{ inputIds: 'hello' as unknown as number[], labels: [1] }],
      'data[0].inputIds: expected an array of token ids, got "hello"',
    ],
  ])('%s', async (_name, data, message) => {
    const host = await loadPretrained(GPT2);
    const adapter = biasAdapter(host);
    let steps = 0;
    await expect(train(adapter, lmOptions({ data, batchSize: 1, onStep: () => steps++ }))).rejects.toThrow(message);
    expect(steps).toBe(0);
    expect(Array.from(adapter.bias.dataSync()).every((v) => v === 0)).toBe(true);
    host.dispose();
  });

  it('an over-long example at index 50: refused before the first step (in memory), at its read (streamed)', async () => {
    const host = await loadPretrained(GPT2);
    const adapter = biasAdapter(host);
    const data = patternExamples(80);
    data[50] = patternExamples(1, 40)[0]!;
    let steps = 0;
    const message = "data[50].inputIds: 40 tokens, more than the model's 32 positions; truncate the examples";
    await expect(train(adapter, lmOptions({ data, onStep: () => steps++ }))).rejects.toThrow(message);
    expect(steps).toBe(0);
    // a stream is checked as it is read, naming the same example
    await expect(
      train(adapter, lmOptions({ data: stream(data), schedule: 'constant', bucketByLength: false, batchSize: 4 })),
    ).rejects.toThrow(message);
    host.dispose();
  });

  it('the validation data too, and labels of a classification head', async () => {
    const host = await loadPretrained(GPT2);
    await expect(
      train(biasAdapter(host), lmOptions({ validation: [{ inputIds: [2, 3], labels: [2] }] })),
    ).rejects.toThrow('validation[0].labels: 1 entries for 2 input ids');
    host.dispose();
    const bert = await loadPretrained(BERT);
    const base = { task: 'sequence-classification' as const, padTokenId: 0, batchSize: 1, learningRate: 1e-3 };
    const trainable = { host: bert, trainableVariables: () => new Map([...bert.parameters].slice(-2)) };
    await expect(train(trainable, { ...base, data: [{ inputIds: [2, 5, 3], labels: 5 }] })).rejects.toThrow(
      'data[0].labels: 5 is outside the 3 classes of the head (0..2)',
    );
    await expect(train(trainable, { ...base, data: [{ inputIds: [2, 5, 3], labels: [1, 2, 0] }] })).rejects.toThrow(
      'data[0].labels: expected one class (an integer) for task "sequence-classification", got an array',
    );
    await expect(train(trainable, { ...base, data: [{ inputIds: [2, 5, 3], labels: -100 }] })).rejects.toThrow(
      'data[0].labels: -100 is outside the 3 classes of the head (0..2)',
    );
    bert.dispose();
  });
});

describe('finite or stop: non-finite weights stop training before anything is saved', () => {
  it('names the step; the last good checkpoint stays the latest and resumes', async () => {
    const host = await loadPretrained(GPT2);
    const adapter = biasAdapter(host);
    const store = memoryStore();
    const inner = new Sgd();
    let applied = 0;
    // an update that overflows float32 at step 3 (what an Infinity learning rate did at step 1)
    const overflowing: Optimizer = {
      name: 'sgd',
      apply: (variables, gradients, learningRate, scale) =>
        inner.apply(variables, gradients, ++applied === 3 ? 1e39 : learningRate, scale),
      getState: () => inner.getState(),
      setState: (state) => inner.setState(state),
      dispose: () => inner.dispose(),
    };
    await expect(
      train(adapter, lmOptions({ optimizer: overflowing, batchSize: 2, checkpoint: { store, every: 1 } })),
    ).rejects.toThrow(
      /^step 3 \(epoch 1\): the update made the weights non-finite \("bias" holds NaN or Infinity; learning rate [\d.e+-]+, gradient norm [\d.e+-]+\); training stopped before saving: the weights in memory are not usable; the last checkpoint, memory:\/checkpoint-2, is intact: resume from it with a lower learning rate$/,
    );
    expect(readJsonFile(store, LATEST_CHECKPOINT_FILE)).toMatchObject({ checkpoint: 'checkpoint-2', step: 2 });
    expect(checkpointsIn(store)).toEqual(['checkpoint-1', 'checkpoint-2']);
    inner.dispose();
    host.dispose();

    const again = await loadPretrained(GPT2);
    const resumed = await train(
      biasAdapter(again),
      lmOptions({ optimizer: 'sgd', batchSize: 2, checkpoint: { store, every: 1 }, resume: true }),
    );
    expect(resumed.resumedFrom).toBe(2);
    expect(resumed.steps).toBe(8);
    expect(resumed.losses.every(Number.isFinite)).toBe(true);
    again.dispose();
  });

  it('without a checkpoint store, says that no checkpoint was saved', async () => {
    const host = await loadPretrained(GPT2);
    await expect(train(biasAdapter(host), lmOptions({ optimizer: 'sgd', learningRate: 1e39 }))).rejects.toThrow(
      /^step 1 \(epoch 1\): the update made the weights non-finite .*training stopped before saving: the weights in memory are not usable; no checkpoint was saved$/,
    );
    host.dispose();
  });

  it('a checkpoint holding NaN is refused at resume, naming the file and tensor', async () => {
    const host = await loadPretrained(GPT2);
    const adapter = biasAdapter(host);
    const store = memoryStore();
    await train(adapter, lmOptions({ checkpoint: { store }, maxSteps: 1, optimizer: 'sgd' }));
    const { parseSafetensors, serializeSafetensors } = await import('@peft/core');
    const file = parseSafetensors(store.files.get('checkpoint-1/trainable.safetensors')!);
    const values = Float32Array.from(file.tensor('bias').values);
    values[3] = Number.NaN;
    store.files.set(
      'checkpoint-1/trainable.safetensors',
      serializeSafetensors({ bias: { shape: file.tensor('bias').shape, values } }, { format: 'pt' }),
    );
    await expect(
      train(adapter, lmOptions({ checkpoint: { store }, maxSteps: 2, optimizer: 'sgd', resume: true })),
    ).rejects.toThrow('memory:/checkpoint-1/trainable.safetensors: tensor "bias" holds NaN at element 3');
    host.dispose();
  });

  it('a checkpoint of format 1 (projections held [in, out]): an adapter resumes, full fine-tuning is refused', async () => {
    const host = await loadPretrained(GPT2);
    const asFormat1 = (store: ReturnType<typeof memoryStore>, step: number): void => {
      const name = `checkpoint-${step}/trainer_state.json`;
      const state = readJsonFile(store, name) as { format: string };
      expect(state.format).toBe('peft-js-trainer/2');
      store.files.set(name, new TextEncoder().encode(JSON.stringify({ ...state, format: 'peft-js-trainer/1' })));
    };
    const adapter = biasAdapter(host);
    const adapterStore = memoryStore();
    await train(adapter, lmOptions({ checkpoint: { store: adapterStore }, maxSteps: 1, optimizer: 'sgd' }));
    asFormat1(adapterStore, 1);
    const resumed = await train(
      adapter,
      lmOptions({ checkpoint: { store: adapterStore }, maxSteps: 2, optimizer: 'sgd', resume: true }),
    );
    expect(resumed.resumedFrom).toBe(1);
    adapter.host.linears.get('transformer.h.0.attn.c_attn')!.removeDelta('bias-adapter');
    const full = fullFineTuning(host);
    const fullStore = memoryStore();
    await train(
      full,
      lmOptions({ checkpoint: { store: fullStore }, maxSteps: 1, optimizer: 'sgd', learningRate: 1e-4 }),
    );
    asFormat1(fullStore, 1);
    await expect(
      train(full, lmOptions({ checkpoint: { store: fullStore }, maxSteps: 2, optimizer: 'sgd', resume: true })),
    ).rejects.toThrow(
      /^memory:\/checkpoint-1\/trainer_state\.json: format "peft-js-trainer\/1" holds projection weights \[in, out\] \(transformer\.h\.0\.attn\.c_attn\.weight, .+, \.\.\.\), which are \[out, in\] since "peft-js-trainer\/2": resume it with the @peft\/core that wrote it, or start the run again$/,
    );
    host.dispose();
  });
});

describe('resume: true on a finished run', () => {
  it.each<[string, Partial<TrainOptions>, number, TrainResult['stoppedBy']]>([
    ['stopped by maxSteps', { maxSteps: 10, batchSize: 1 }, 10, 'max-steps'],
    ['completed its epochs', { epochs: 2 }, 8, 'completed'],
  ])('%s: does nothing, three times, and says so in the result', async (_name, overrides, steps, stoppedBy) => {
    const host = await loadPretrained(GPT2);
    const adapter = biasAdapter(host);
    const store = memoryStore();
    const options = lmOptions({ checkpoint: { store }, resume: true, ...overrides });
    const first = await train(adapter, options);
    expect(first).toMatchObject({ steps, stoppedBy, alreadyFinished: false });
    const weights = adapter.bias.dataSync().slice();
    const files = new Map(store.files);
    for (let i = 0; i < 3; i++) {
      const notices: string[] = [];
      const again = await train(adapter, { ...options, onNotice: (line) => notices.push(line) });
      expect(again).toMatchObject({ steps, stoppedBy, alreadyFinished: true, resumedFrom: steps, tokens: 0 });
      expect(again.losses).toEqual(first.losses);
      expect(notices).toEqual([
        `resume: checkpoint-${steps} ends a finished run (${stoppedBy} at step ${steps}); nothing to train (raise epochs or maxSteps to train further)`,
      ]);
      expect(adapter.bias.dataSync()).toEqual(weights);
      expect(store.files).toEqual(files);
    }
    // a larger budget continues it
    const longer = await train(adapter, {
      ...options,
      maxSteps: steps + 2,
      epochs: 3,
      batchSize: overrides.batchSize ?? 4,
    });
    expect(longer).toMatchObject({ steps: steps + 2, alreadyFinished: false, resumedFrom: steps });
    host.dispose();
  });
});

describe('one writer per checkpoint folder', () => {
  it('a second run into the folder is refused, naming the holder; the first run ends unharmed', async () => {
    const host = await loadPretrained(GPT2);
    const store = memoryStore();
    let release: () => void = () => undefined;
    const paused = new Promise<void>((resolve) => (release = resolve));
    let started: () => void = () => undefined;
    const running = new Promise<void>((resolve) => (started = resolve));
    const first = train(
      biasAdapter(host),
      lmOptions({
        checkpoint: { store },
        onStep: async ({ step }) => {
          if (step !== 1) return;
          started();
          await paused;
        },
      }),
    );
    await running;
    const other = await loadPretrained(GPT2);
    const otherAdapter = biasAdapter(other);
    await expect(train(otherAdapter, lmOptions({ checkpoint: { store } }))).rejects.toThrow(
      new RegExp(
        `^memory:/train\\.lock: the checkpoint folder is in use by another training run \\(process ${process.pid}, since .+\\); ` +
          'two runs writing one folder would mix their checkpoints: wait for it to end, or use another folder$',
      ),
    );
    release();
    expect((await first).steps).toBe(4);
    expect(store.files.has(TRAINING_LOCK_FILE)).toBe(false);
    // free again
    expect((await train(otherAdapter, lmOptions({ checkpoint: { store }, maxSteps: 1 }))).steps).toBe(1);
    other.dispose();
    host.dispose();
  });

  it('a lock held by another live process is refused, naming it; the lock stays', async () => {
    const store = memoryStore();
    const lock = JSON.stringify({ pid: process.ppid, token: 'theirs', since: '2026-01-01T00:00:00.000Z' });
    store.files.set(TRAINING_LOCK_FILE, new TextEncoder().encode(lock));
    const host = await loadPretrained(GPT2);
    await expect(train(biasAdapter(host), lmOptions({ checkpoint: { store } }))).rejects.toThrow(
      `memory:/train.lock: the checkpoint folder is in use by another training run (process ${process.ppid}, since 2026-01-01T00:00:00.000Z)`,
    );
    expect(new TextDecoder().decode(store.files.get(TRAINING_LOCK_FILE))).toBe(lock);
    expect(checkpointsIn(store)).toEqual([]);
    host.dispose();
  });

  it('a stale lock of a dead process is taken over, and said so', async () => {
    const dead = await new Promise<number>((resolve) => {
      const child = spawn(process.execPath, ['-e', '']);
      child.on('exit', () => resolve(child.pid!));
    });
    const store = memoryStore();
    store.files.set(
      TRAINING_LOCK_FILE,
      new TextEncoder().encode(JSON.stringify({ pid: dead, token: 'x', since: '2026-01-01T00:00:00.000Z' })),
    );
    const host = await loadPretrained(GPT2);
    const notices: string[] = [];
    const result = await train(
      biasAdapter(host),
      lmOptions({ checkpoint: { store }, onNotice: (n) => notices.push(n) }),
    );
    expect(result.steps).toBe(4);
    expect(notices).toContain(
      `memory:/train.lock: took over the lock of process ${dead} (since 2026-01-01T00:00:00.000Z), which is no longer running`,
    );
    host.dispose();
  });

  it('a run whose lock was taken from it stops before writing latest.json', async () => {
    const host = await loadPretrained(GPT2);
    const store = memoryStore();
    await expect(
      train(
        biasAdapter(host),
        lmOptions({
          checkpoint: { store, every: 1 },
          onStep: ({ step }) => {
            if (step === 2)
              store.files.set(
                TRAINING_LOCK_FILE,
                new TextEncoder().encode(JSON.stringify({ pid: process.ppid, token: 'other', since: 'now' })),
              );
          },
        }),
      ),
    ).rejects.toThrow(
      `memory:/train.lock: the lock of this run was taken by process ${process.ppid} (since now); stopped without saving step 2`,
    );
    expect(readJsonFile(store, LATEST_CHECKPOINT_FILE)).toMatchObject({ checkpoint: 'checkpoint-1' });
    host.dispose();
  });
});

describe('checkpoints are pruned (keepLast) and orphans of interrupted saves cleaned', () => {
  it('keeps the last 3 by default', async () => {
    const host = await loadPretrained(GPT2);
    const store = memoryStore();
    await train(biasAdapter(host), lmOptions({ checkpoint: { store, every: 1 }, batchSize: 2 }));
    expect(checkpointsIn(store)).toEqual(['checkpoint-6', 'checkpoint-7', 'checkpoint-8']);
    host.dispose();
  });

  it('keeps the best one too when evaluating, and every one with keepLast: Infinity', async () => {
    const host = await loadPretrained(GPT2);
    const adapter = biasAdapter(host);
    const store = memoryStore();
    // descends for 4 steps, then climbs: the best evaluation is an early one
    const inner = new Sgd();
    let applied = 0;
    const climbing: Optimizer = {
      name: 'sgd',
      apply: (variables, gradients, learningRate, scale) => {
        const sign = ++applied <= 4 ? 1 : -1;
        const signed = new Map([...gradients].map(([name, g]) => [name, tf.mul(g, sign)]));
        inner.apply(variables, signed, learningRate, scale);
        tf.dispose([...signed.values()]);
      },
      getState: () => inner.getState(),
      setState: (state) => inner.setState(state),
      dispose: () => inner.dispose(),
    };
    const evaluations: { step: number; loss: number }[] = [];
    await train(
      adapter,
      lmOptions({
        checkpoint: { store, every: 1, keepLast: 2 },
        batchSize: 2,
        epochs: 2,
        validation: patternExamples(4),
        evalEvery: 1,
        optimizer: climbing,
        learningRate: 1,
        schedule: 'constant',
        onEval: (e) => evaluations.push(e),
      }),
    );
    inner.dispose();
    const best = evaluations.reduce((a, b) => (b.loss < a.loss ? b : a));
    expect(best.step).toBeLessThan(15);
    expect(checkpointsIn(store)).toEqual([`checkpoint-${best.step}`, 'checkpoint-15', 'checkpoint-16']);
    const all = memoryStore();
    await train(adapter, lmOptions({ checkpoint: { store: all, every: 1, keepLast: Infinity }, batchSize: 2 }));
    expect(checkpointsIn(all)).toHaveLength(8);
    host.dispose();
  });

  it('removes orphan temporary files of an interrupted save on disk, at the next save', async () => {
    const folder = mkdtempSync(path.join(tmpdir(), 'peft-train-'));
    const store: FileStore = nodeDirectory(folder);
    const host = await loadPretrained(GPT2);
    const adapter = biasAdapter(host);
    await train(adapter, lmOptions({ checkpoint: { store, every: 1 }, batchSize: 2, maxSteps: 2 }));
    // what a kill -9 between write and rename leaves
    writeFileSync(path.join(folder, 'checkpoint-2', 'optimizer.safetensors.tmp-4242-1767225600000'), 'partial');
    writeFileSync(path.join(folder, 'latest.json.tmp-4242-1767225600001'), '{');
    writeFileSync(path.join(folder, 'notes.txt'), 'the user’s own file');
    const notices: string[] = [];
    await train(
      adapter,
      lmOptions({
        checkpoint: { store, every: 1 },
        batchSize: 2,
        maxSteps: 6,
        resume: true,
        onNotice: (n) => notices.push(n),
      }),
    );
    expect(readdirSync(folder).sort()).toEqual([
      'checkpoint-4',
      'checkpoint-5',
      'checkpoint-6',
      'latest.json',
      'notes.txt',
    ]);
    expect(readdirSync(path.join(folder, 'checkpoint-6')).sort()).toEqual([
      'optimizer.safetensors',
      'trainable.safetensors',
      'trainer_state.json',
    ]);
    expect(notices).toContain(
      `${folder}: removed 2 temporary files left by an interrupted save (checkpoint-2/optimizer.safetensors.tmp-4242-1767225600000, latest.json.tmp-4242-1767225600001)`,
    );
    host.dispose();
  });
});

/**
 * Runs test/interrupt-child.ts in a process group of its own, as a terminal runs a command; `signal`
 * sends SIGINT to the whole group, as Ctrl-C does. (Node with tsx's loader, not the tsx command: that
 * one relays a signal to its child and SIGKILLs it when it does not answer within 30 ms, which a
 * process inside a synchronous training step cannot.)
 */
function child(
  argument: string,
  onLine: (line: string, signal: () => void) => void,
): Promise<{ code: number | null; output: string }> {
  const script = path.join(import.meta.dirname, 'interrupt-child.ts');
  const running = spawn(process.execPath, ['--import', 'tsx', script, argument], {
    cwd: path.join(import.meta.dirname, '..'),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const signal = (): void => {
    process.kill(-running.pid!, 'SIGINT');
  };
  let output = '';
  let pending = '';
  const take = (chunk: Buffer): void => {
    output += chunk.toString();
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) onLine(line, signal);
  };
  running.stdout.on('data', take);
  running.stderr.on('data', take);
  return new Promise((resolve) => running.on('exit', (code) => resolve({ code, output })));
}

describe('two processes training into one folder on disk at once', () => {
  it('one goes on, the other is refused or stopped naming it; latest.json names a whole checkpoint of one run', async () => {
    for (let trial = 0; trial < 3; trial++) {
      const folder = mkdtempSync(path.join(tmpdir(), 'peft-two-writers-'));
      const pids: number[] = [];
      const runs = [0, 1].map(() =>
        child(`${folder}#race`, (line) => {
          if (line.startsWith('pid ')) pids.push(Number(line.slice(4)));
        }),
      );
      const results = await Promise.all(runs);
      const finished = results.filter((r) => r.code === 0);
      const stopped = results.filter((r) => r.code !== 0);
      // both can finish only one after the other (the second found the folder free); never both at once
      for (const { output } of stopped)
        expect(output).toMatch(
          /train\.lock: (the checkpoint folder is in use by another training run \(process \d+|the lock of this run was taken by process \d+)/,
        );
      expect(finished.length).toBeGreaterThanOrEqual(1);
      const latest = JSON.parse(readFileSync(path.join(folder, 'latest.json'), 'utf8')) as { checkpoint: string };
      const state = JSON.parse(readFileSync(path.join(folder, latest.checkpoint, 'trainer_state.json'), 'utf8')) as {
        step: number;
      };
      expect(latest.checkpoint).toBe(`checkpoint-${state.step}`);
      expect(state.step).toBe(12);
      expect(readdirSync(folder)).not.toContain(TRAINING_LOCK_FILE);
    }
  }, 180_000);
});

describe('Ctrl-C (real SIGINTs to a child process running train)', () => {
  it('three SIGINTs at once (a terminal and its relays): stops after the current step, saves, exits cleanly', async () => {
    const folder = mkdtempSync(path.join(tmpdir(), 'peft-interrupt-'));
    let sent = false;
    const { code, output } = await child(folder, (line, signal) => {
      if (line === 'step 2' && !sent) {
        sent = true;
        signal();
        signal();
        signal();
      }
    });
    expect(output).toContain(
      'Ctrl-C: stopping after the current optimizer step and saving a checkpoint (Ctrl-C again to exit at once)',
    );
    const result = JSON.parse(output.split('\n').find((line) => line.startsWith('{'))!) as TrainResult;
    expect(code).toBe(0);
    expect(result.stoppedBy).toBe('interrupted');
    expect(result.steps).toBeGreaterThanOrEqual(2);
    expect(result.steps).toBeLessThan(40);
    expect(readdirSync(folder)).toContain(`checkpoint-${result.steps}`);
  }, 120_000);

  it('a second Ctrl-C a moment later exits at once, and says so', async () => {
    const folder = mkdtempSync(path.join(tmpdir(), 'peft-interrupt-'));
    let phase = 0;
    const { code, output } = await child(`${folder}#slow`, (line, signal) => {
      if (line === 'step 2' && phase === 0) {
        phase = 1;
        signal();
      } else if (line.startsWith('Ctrl-C: stopping') && phase === 1) {
        phase = 2;
        setTimeout(signal, 1500);
      }
    });
    expect(output).toContain('Ctrl-C again: exiting at once without saving');
    expect(code).toBe(130);
    expect(output).not.toContain('"stoppedBy"');
  }, 120_000);
});
