// The core training engine on real hosts (tiny fixtures, cpu backend).
import { availableBackends, loadBackend } from '@peft/backend';
import {
  AdamW,
  IGNORE_INDEX,
  arrayDataset,
  batchExamples,
  epochBatching,
  evaluate,
  fullFineTuning,
  headOnly,
  memoryStore,
  train,
  type Example,
  type TrainOptions,
  type TrainableModel,
} from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { loadPretrained, type TransformerHost } from '../src/index.js';
import { loadFixtures } from './fixtures.js';

const fixtures = loadFixtures();
const directory = (name: string): string => fixtures.find((f) => f.name === name)!.directory;

/** A minimal adapter for the tests: a trainable bias added to one projection's output. */
function biasAdapter(host: TransformerHost, module: string, scale = 1): TrainableModel & { bias: tf.Variable } {
  const linear = host.linears.get(module)!;
  const bias = tf.variable(tf.zeros([linear.outFeatures]), true);
  linear.addDelta(
    'bias-adapter',
    (x) => tf.mul(tf.tile(tf.expandDims(bias, 0), [x.shape[0], 1]), scale) as tf.Tensor2D,
  );
  return { host, bias, trainableVariables: () => new Map([['bias', bias]]) };
}

/** A repeating pattern a tiny LM can learn: 2 3 4 5 2 3 4 5 ... */
function patternExamples(count: number, length = 12, offset = 2): Example[] {
  return Array.from({ length: count }, (_, i) => {
    const ids = Array.from({ length }, (_, t) => offset + ((t + i) % 4));
    return { inputIds: ids, labels: ids };
  });
}

const lmOptions = (overrides: Partial<TrainOptions> = {}): TrainOptions => ({
  data: patternExamples(16),
  task: 'causal-lm',
  padTokenId: 0,
  batchSize: 4,
  epochs: 3,
  learningRate: 1e-2,
  seed: 7,
  ...overrides,
});

describe('train', () => {
  it('lowers the loss of a seeded run, and a second run gives the same losses', async () => {
    const run = async (): Promise<number[]> => {
      // the fixture's config has GPT-2's dropout 0.1, too much for 12 steps of a 17k-parameter model
      const host = await loadPretrained(directory('gpt2-tied'), { dropout: false });
      const result = await train(fullFineTuning(host), lmOptions({ learningRate: 3e-3 }));
      host.dispose();
      return result.losses;
    };
    const losses = await run();
    expect(losses).toHaveLength(12);
    expect(losses.at(-1)!).toBeLessThan(losses[0]! * 0.5);
    expect(await run()).toEqual(losses);
  });

  it('steps through the batches epochBatching names (what `pnpm bench compare` gives Python)', async () => {
    const host = await loadPretrained(directory('gpt2-tied'), { dropout: false });
    // lengths 3..12, so that bucketing by length reorders; 10 examples in batches of 3, 3 epochs
    const data: Example[] = Array.from({ length: 10 }, (_, i) => {
      const ids = Array.from({ length: 3 + ((i * 7) % 10) }, (_, t) => 2 + ((t + i) % 9));
      return { inputIds: ids, labels: ids };
    });
    const seen: number[][][] = [];
    const forward = host.forward.bind(host);
    host.forward = (input) => {
      seen.push((input.inputIds as number[][]).map((row) => [...row]));
      return forward(input);
    };
    for (const bucketByLength of [true, false]) {
      seen.length = 0;
      await train(biasAdapter(host, 'transformer.h.0.attn.c_attn'), {
        ...lmOptions({ data, batchSize: 3, epochs: 3, maxSteps: 11, seed: 5 }),
        bucketByLength,
      });
      host.linears.get('transformer.h.0.attn.c_attn')!.removeDelta('bias-adapter');
      const expected: number[][] = [];
      for (let epoch = 0; expected.length < 11; epoch++) {
        const batching = epochBatching({ batchSize: 3, seed: 5, bucketByLength }, epoch);
        for await (const batch of batchExamples(arrayDataset(data), batching))
          expected.push(batch.map((e) => data.indexOf(e)));
      }
      // each step's rows, unpadded, are the examples named (padding is 0, which no example holds)
      const steps = seen.map((rows) =>
        rows.map((row) => data.findIndex((e) => e.inputIds.join() === row.filter((id) => id !== 0).join())),
      );
      expect(steps).toEqual(expected.slice(0, 11));
      expect(new Set(steps.slice(0, 4).flat()).size).toBe(10); // one epoch covers every example once
    }
    host.dispose();
  });

  it('updates only the trainable variables: frozen weights are unchanged', async () => {
    const host = await loadPretrained(directory('llama-gqa-untied'));
    const before = new Map([...host.parameters].map(([name, v]) => [name, v.dataSync().slice()]));
    const adapter = biasAdapter(host, 'model.layers.1.mlp.down_proj');
    const result = await train(adapter, lmOptions({ epochs: 1 }));
    expect(result.steps).toBe(4);
    expect(Math.max(...Array.from(adapter.bias.dataSync(), Math.abs))).toBeGreaterThan(0);
    for (const [name, variable] of host.parameters)
      expect(Array.from(variable.dataSync()), name).toEqual(Array.from(before.get(name)!));
    host.dispose();
  });

  it('keeps the tensor count flat: after 50 steps as after 1', async () => {
    const host = await loadPretrained(directory('gpt2-tied'));
    const adapter = biasAdapter(host, 'transformer.h.0.attn.c_attn');
    const counts: number[] = [];
    await train(
      adapter,
      lmOptions({
        data: patternExamples(50),
        batchSize: 1,
        epochs: 1,
        gradientAccumulationSteps: 1,
        onStep: ({ tensors }) => counts.push(tensors),
      }),
    );
    expect(counts).toHaveLength(50);
    expect(counts[49]).toBe(counts[0]);
    host.dispose();
  });

  it('awaits an onStep that returns a promise before the next step starts', async () => {
    const host = await loadPretrained(directory('gpt2-tied'));
    const adapter = biasAdapter(host, 'transformer.h.0.attn.c_attn');
    const events: string[] = [];
    await train(
      adapter,
      lmOptions({
        data: patternExamples(3),
        batchSize: 1,
        epochs: 1,
        onStep: async ({ step }) => {
          events.push(`step ${step}`);
          await new Promise((resolve) => setTimeout(resolve, 5));
          events.push(`yielded ${step}`);
        },
      }),
    );
    expect(events).toEqual(['step 1', 'yielded 1', 'step 2', 'yielded 2', 'step 3', 'yielded 3']);
    host.dispose();
  });

  it('resumes from a checkpoint with bit-identical losses (interrupted by a signal)', async () => {
    const options = (store: ReturnType<typeof memoryStore>, extra: Partial<TrainOptions> = {}): TrainOptions =>
      lmOptions({
        checkpoint: { store },
        schedule: 'cosine',
        warmupSteps: 2,
        gradientAccumulationSteps: 2,
        batchSize: 2,
        ...extra,
      });
    const host = await loadPretrained(directory('gpt2-tied'));
    const full = await train(biasAdapter(host, 'transformer.h.1.mlp.c_fc'), options(memoryStore()));
    host.dispose();

    const store = memoryStore();
    const controller = new AbortController();
    const first = await loadPretrained(directory('gpt2-tied'));
    const interrupted = await train(
      biasAdapter(first, 'transformer.h.1.mlp.c_fc'),
      options(store, { signal: controller.signal, onStep: ({ step }) => step === 5 && controller.abort() }),
    );
    first.dispose();
    expect(interrupted.stoppedBy).toBe('interrupted');
    expect(interrupted.steps).toBe(5);
    expect(store.files.has('checkpoint-5/trainer_state.json')).toBe(true);

    const second = await loadPretrained(directory('gpt2-tied'));
    const resumed = await train(biasAdapter(second, 'transformer.h.1.mlp.c_fc'), options(store, { resume: true }));
    second.dispose();
    expect(resumed.resumedFrom).toBe(5);
    expect(resumed.losses).toEqual(full.losses);
    expect(resumed.steps).toBe(full.steps);
  });

  it('Ctrl-C (SIGINT) saves a checkpoint and stops', async () => {
    const host = await loadPretrained(directory('gpt2-tied'));
    const store = memoryStore();
    const result = await train(
      biasAdapter(host, 'transformer.h.0.attn.c_proj'),
      lmOptions({ checkpoint: { store }, onStep: ({ step }) => step === 2 && process.emit('SIGINT') }),
    );
    host.dispose();
    expect(result.stoppedBy).toBe('interrupted');
    expect(JSON.parse(new TextDecoder().decode(store.files.get('latest.json')))).toEqual({
      checkpoint: 'checkpoint-2',
      step: 2,
    });
    expect(process.listenerCount('SIGINT')).toBe(0);
  });

  it('gradient accumulation of 2 x 2 equals one batch of 4 (equal lengths)', async () => {
    const after = async (batchSize: number, gradientAccumulationSteps: number): Promise<Float32Array> => {
      // without dropout: each micro-batch draws its own masks, as in transformers
      const host = await loadPretrained(directory('gpt2-tied'), { dropout: false });
      const adapter = biasAdapter(host, 'transformer.h.0.mlp.c_proj');
      await train(
        adapter,
        lmOptions({
          batchSize,
          gradientAccumulationSteps,
          maxSteps: 1,
          bucketByLength: false,
          optimizer: 'sgd',
          schedule: 'constant',
          maxGradNorm: null,
        }),
      );
      const values = adapter.bias.dataSync() as Float32Array;
      host.dispose();
      return values;
    };
    const single = await after(4, 1);
    const accumulated = await after(2, 2);
    for (const [i, v] of single.entries()) expect(accumulated[i]).toBeCloseTo(v, 6);
  });

  it('trains a classification head (BERT) and a verbaliser (GPT-2), evaluating accuracy and stopping early', async () => {
    const bert = await loadPretrained(directory('bert-sequence-classification'));
    const examples = Array.from(
      { length: 24 },
      (_, i): Example => ({ inputIds: [2, 10 + (i % 3), 20 + (i % 5), 3], labels: i % 3 }),
    );
    const evaluations: number[] = [];
    const result = await train(headOnly(bert), {
      data: examples,
      validation: examples.slice(0, 12),
      task: 'sequence-classification',
      padTokenId: 0,
      batchSize: 6,
      epochs: 30,
      learningRate: 5e-2,
      evalEvery: 4,
      earlyStopping: { metric: 'accuracy', patience: 5 },
      onEval: ({ accuracy }) => evaluations.push(accuracy!),
    });
    bert.dispose();
    expect(result.stoppedBy).toBe('early-stopping');
    expect(Math.max(...evaluations)).toBeGreaterThan(0.6);

    const gpt2 = await loadPretrained(directory('gpt2-tied'));
    const verbalized = await train(fullFineTuning(gpt2), {
      data: examples.map((e) => ({ ...e, inputIds: e.inputIds.slice(0, 3) })),
      validation: examples.slice(0, 6).map((e) => ({ ...e, inputIds: e.inputIds.slice(0, 3) })),
      task: 'sequence-classification',
      verbalizer: [40, 41, 42],
      padTokenId: 0,
      batchSize: 6,
      epochs: 4,
      learningRate: 3e-3,
    });
    gpt2.dispose();
    expect(verbalized.losses.at(-1)!).toBeLessThan(verbalized.losses[0]!);
    expect(verbalized.evaluations.at(-1)!.accuracy).toBeGreaterThan(0.5);
  });

  it('token classification (BERT) with ignored positions', async () => {
    const bert = await loadPretrained(directory('bert-token-classification'));
    const examples = Array.from(
      { length: 12 },
      (_, i): Example => ({
        inputIds: [2, 10 + (i % 4), 11, 12 + (i % 2), 3],
        labels: [IGNORE_INDEX, i % 5, 1, 2, IGNORE_INDEX],
      }),
    );
    const result = await train(fullFineTuning(bert), {
      data: examples,
      validation: examples,
      task: 'token-classification',
      padTokenId: 0,
      batchSize: 4,
      epochs: 5,
      learningRate: 1e-2,
    });
    bert.dispose();
    expect(result.losses.at(-1)!).toBeLessThan(result.losses[0]!);
    expect(result.evaluations.at(-1)!.accuracy).toBeGreaterThan(0.5);
  });

  /**
   * Full fine-tuning of fixture `name` with `options` (dropout off), twice: as train asks (headRows)
   * and through a host that computes every position (as one that ignores headRows); the losses, the
   * evaluation on the training data, and the rows each pass asked for.
   */
  const withAndWithoutHeadRows = async (
    name: string,
    options: Omit<TrainOptions, 'padTokenId' | 'batchSize' | 'learningRate'>,
  ) => {
    const run = async (whole: boolean) => {
      const host = await loadPretrained(directory(name), { dropout: false });
      const seen: (number[] | undefined)[] = [];
      const forward = host.forward.bind(host);
      host.forward = (input) => {
        seen.push(input.headRows ? [...input.headRows] : undefined);
        return forward(whole ? { ...input, headRows: undefined } : input);
      };
      const full = { ...options, padTokenId: 0, batchSize: 4, epochs: 2, learningRate: 1e-2, seed: 3 };
      const result = await train(fullFineTuning(host), full);
      const evaluation = await evaluate(fullFineTuning(host), options.data, full);
      host.dispose();
      return { losses: result.losses, evaluation, seen };
    };
    const [fast, whole] = [await run(false), await run(true)];
    expect(fast.losses).toHaveLength(whole.losses.length);
    for (const [i, loss] of fast.losses.entries()) expect(loss).toBeCloseTo(whole.losses[i]!, 4);
    expect(fast.evaluation.loss).toBeCloseTo(whole.evaluation.loss, 4);
    expect(fast.evaluation.accuracy).toBe(whole.evaluation.accuracy);
    return fast.seen;
  };

  it.each(['bert-masked-lm-tied', 'gpt2-token-classification'])(
    '%s: token classification computes its head at the labelled positions only, with the losses of the whole head',
    async (name) => {
      const examples = Array.from(
        { length: 8 },
        (_, i): Example => ({
          inputIds: [5, 10 + (i % 3), 4, 30 + (i % 4), 6, 7 + i],
          labels: [IGNORE_INDEX, IGNORE_INDEX, 1 + (i % 3), IGNORE_INDEX, i % 2 ? 0 : IGNORE_INDEX, IGNORE_INDEX],
        }),
      );
      const seen = await withAndWithoutHeadRows(name, { data: examples, task: 'token-classification' });
      // each batch asks for its labelled rows: 4 examples, 1 or 2 labels each
      expect(seen[0]!.length).toBeGreaterThanOrEqual(4);
    },
  );

  it("a masked LM's verbalizer computes its head at the masks it reads only, with the losses of the whole head", async () => {
    // two masks per row (the longest label word), a third one left unread
    const examples = Array.from(
      { length: 8 },
      (_, i): Example => ({ inputIds: [2, 10 + (i % 3), 3, 3, 30 + (i % 4), 3, 4], labels: i % 3 }),
    );
    const seen = await withAndWithoutHeadRows('bert-masked-lm-tied', {
      data: examples,
      task: 'sequence-classification',
      verbalizer: [[20, 21], 22, [23, 24]],
      maskTokenId: 3,
    });
    expect(seen[0]).toEqual([2, 3, 9, 10, 16, 17, 23, 24]); // rows b·7 + t of each row's first two masks
  });

  it.each(['bert-masked-lm-tied', 'bert-masked-lm-untied', 'roberta-masked-lm'])(
    '%s: masked positions learnt as per-token classes over the vocabulary (full fine-tuning)',
    async (name) => {
      const host = await loadPretrained(directory(name), { dropout: false });
      // the token at the masked position 2 follows from the one before it
      const examples = Array.from(
        { length: 12 },
        (_, i): Example => ({
          inputIds: [5, 10 + (i % 3), 4, 30 + (i % 4), 6],
          labels: [IGNORE_INDEX, IGNORE_INDEX, 20 + (i % 3), IGNORE_INDEX, IGNORE_INDEX],
        }),
      );
      const unused = host.parameters.get('cls.predictions.bias');
      const before = name === 'bert-masked-lm-untied' ? unused!.dataSync().slice() : null;
      const result = await train(fullFineTuning(host), {
        data: examples,
        validation: examples,
        task: 'token-classification',
        padTokenId: 0,
        batchSize: 4,
        epochs: 20,
        learningRate: 3e-3,
      });
      // untied, the head's own bias takes no part (as in transformers): no gradient, kept as loaded
      if (before) expect([...unused!.dataSync()]).toEqual([...before]);
      host.dispose();
      expect(result.losses.at(-1)!).toBeLessThan(result.losses[0]! / 2);
      expect(result.evaluations.at(-1)!.accuracy).toBeGreaterThan(0.5);
    },
  );
});

describe.runIf((await availableBackends()).includes('tensorflow'))(
  'train on the tensorflow backend, AdamW fused',
  () => {
    it('resumes from a checkpoint with bit-identical losses: the moments go out and come back whole', async () => {
      await loadBackend('tensorflow');
      try {
        // every weight of the tiny model through the fused kernel, not only those of 32,768 elements
        const options = (store: ReturnType<typeof memoryStore>, extra: Partial<TrainOptions> = {}): TrainOptions =>
          lmOptions({
            checkpoint: { store },
            optimizer: new AdamW({ weightDecay: 0.01, fusedMinElements: 0 }),
            maxGradNorm: 0.5,
            ...extra,
          });
        const host = await loadPretrained(directory('gpt2-tied'));
        const full = await train(fullFineTuning(host), options(memoryStore()));
        host.dispose();

        const store = memoryStore();
        const controller = new AbortController();
        const first = await loadPretrained(directory('gpt2-tied'));
        const interrupted = await train(
          fullFineTuning(first),
          options(store, { signal: controller.signal, onStep: ({ step }) => step === 5 && controller.abort() }),
        );
        first.dispose();
        expect(interrupted.stoppedBy).toBe('interrupted');

        const second = await loadPretrained(directory('gpt2-tied'));
        const resumed = await train(fullFineTuning(second), options(store, { resume: true }));
        second.dispose();
        expect(resumed.resumedFrom).toBe(5);
        expect(resumed.losses).toEqual(full.losses);
        expect(full.losses.at(-1)!).toBeLessThan(full.losses[0]!);
      } finally {
        await loadBackend('cpu');
      }
    });
  },
);

describe('train refuses, before any compute', () => {
  it('an empty dataset', async () => {
    const host = await loadPretrained(directory('gpt2-tied'));
    await expect(train(fullFineTuning(host), lmOptions({ data: [] }))).rejects.toThrow('training data is empty');
    host.dispose();
  });

  it('gradientCheckpointing that is not a boolean', async () => {
    const host = await loadPretrained(directory('gpt2-tied'));
    await expect(
      train(fullFineTuning(host), lmOptions({ gradientCheckpointing: 'yes' as unknown as boolean })),
    ).rejects.toThrow('gradientCheckpointing: expected true or false, got "yes"');
    host.dispose();
  });

  it('a label outside the head', async () => {
    const host = await loadPretrained(directory('bert-sequence-classification'));
    const data: Example[] = [{ inputIds: [2, 5, 3], labels: 5 }];
    await expect(
      train(headOnly(host), { data, task: 'sequence-classification', padTokenId: 0, batchSize: 1, learningRate: 1e-3 }),
    ).rejects.toThrow('data[0].labels: 5 is outside the 3 classes of the head (0..2)');
    host.dispose();
  });

  it('an example longer than the model takes', async () => {
    const host = await loadPretrained(directory('gpt2-tied'));
    await expect(train(fullFineTuning(host), lmOptions({ data: patternExamples(2, 40) }))).rejects.toThrow(
      "data[0].inputIds: 40 tokens, more than the model's 32 positions; truncate the examples",
    );
    host.dispose();
  });

  it('a NaN loss stops with the step named; skipping counts the steps', async () => {
    const host = await loadPretrained(directory('gpt2-tied'));
    const adapter = biasAdapter(host, 'transformer.h.0.attn.c_proj', Number.NaN);
    await expect(train(adapter, lmOptions())).rejects.toThrow(/^step 1 \(epoch 1\): the loss is NaN/);
    const skipped = await train(adapter, lmOptions({ nonFinite: 'skip', epochs: 1 }));
    expect(skipped.skippedSteps).toBe(4);
    host.dispose();
  });
});
