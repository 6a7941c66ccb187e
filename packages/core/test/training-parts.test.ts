// The engine's parts against torch and transformers (oracle/make_training_fixtures.py).
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { availableBackends, loadBackend, type BackendName } from '@peft/backend';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  ADAMW_KERNEL,
  AdamW,
  IGNORE_INDEX,
  SeededRandom,
  Sgd,
  arrayDataset,
  batchExamples,
  causalLmLoss,
  collate,
  collect,
  csvDataset,
  jsonlDataset,
  learningRateAt,
  mapDataset,
  maskedCrossEntropy,
  memoryStore,
  parseCsv,
  parseJsonl,
  sequenceClassificationLoss,
  splitDataset,
  tokenClassificationLoss,
  maskedVerbalizerLogits,
  verbalizerLogits,
  type Example,
  type Optimizer,
} from '../src/index.js';

const fixture = JSON.parse(readFileSync(path.join(import.meta.dirname, 'fixtures', 'training.json'), 'utf8'));

const backends = await availableBackends();

describe.each(backends)('optimizers match torch.optim on the %s backend', (backend: BackendName) => {
  beforeAll(async () => {
    await loadBackend(backend);
  });
  afterAll(async () => {
    await loadBackend('cpu');
  });

  it(`AdamW ${backend === 'tensorflow' ? 'runs as the fused kernel' : 'is composed of elementwise ops'} there`, () => {
    expect(tf.getKernel(ADAMW_KERNEL, backend) !== undefined).toBe(backend === 'tensorflow');
  });

  it.each([
    ['adamw', 'composed', () => new AdamW({ weightDecay: 0.1, fusedMinElements: Infinity })],
    ['adamw', 'fused where the backend has it', () => new AdamW({ weightDecay: 0.1, fusedMinElements: 0 })],
    [
      'adamw_no_decay',
      'composed',
      () => new AdamW({ weightDecay: 0, beta1: 0.8, beta2: 0.99, epsilon: 1e-6, fusedMinElements: Infinity }),
    ],
    [
      'adamw_no_decay',
      'fused where the backend has it',
      () => new AdamW({ weightDecay: 0, beta1: 0.8, beta2: 0.99, epsilon: 1e-6, fusedMinElements: 0 }),
    ],
    ['sgd_momentum', '', () => new Sgd({ momentum: 0.9, weightDecay: 0.01 })],
  ] as [string, string, () => Optimizer][])('%s %s', (name, _, make) => {
    const run = fixture[name];
    const variable = tf.variable(tf.tensor(run.initial, run.shape));
    const variables = new Map([['w', variable]]);
    const optimizer = make();
    run.gradients.forEach((gradient: number[], i: number) => {
      const g = tf.tensor(gradient, run.shape);
      optimizer.apply(variables, new Map([['w', g]]), run.learning_rates[i]);
      g.dispose();
    });
    const final = variable.dataSync();
    for (const [i, value] of (run.final as number[]).entries()) expect(final[i]).toBeCloseTo(value, 5);
    optimizer.dispose();
    variable.dispose();
  });

  it.each([
    ['adamw', 'composed', () => new AdamW({ weightDecay: 0.1, fusedMinElements: Infinity })],
    ['adamw', 'fused where the backend has it', () => new AdamW({ weightDecay: 0.1, fusedMinElements: 0 })],
    ['sgd_momentum', '', () => new Sgd({ momentum: 0.9, weightDecay: 0.01 })],
  ] as [string, string, () => Optimizer][])(
    '%s %s: a gradient scale counts as scaled gradients (clipping without a pass)',
    (name, _, make) => {
      const run = fixture[name];
      const scaled = tf.variable(tf.tensor(run.initial, run.shape));
      const multiplied = tf.variable(tf.tensor(run.initial, run.shape));
      const [a, b] = [make(), make()];
      run.gradients.forEach((gradient: number[], i: number) => {
        const scale = 0.3 + 0.2 * i;
        a.apply(
          new Map([['w', scaled]]),
          new Map([['w', tf.tensor(gradient, run.shape)]]),
          run.learning_rates[i],
          scale,
        );
        b.apply(
          new Map([['w', multiplied]]),
          new Map([['w', tf.mul(tf.tensor(gradient, run.shape), scale)]]),
          run.learning_rates[i],
        );
      });
      const [x, y] = [scaled.dataSync(), multiplied.dataSync()];
      expect(x.some((value, i) => value !== run.initial.flat(Infinity)[i])).toBe(true);
      for (const [i, value] of x.entries()) expect(value).toBeCloseTo(y[i]!, 6);
    },
  );

  it.each([
    ['composed', Infinity],
    ['fused where the backend has it', 0],
  ])('exports and restores its state, continuing identically (%s)', (_, fusedMinElements) => {
    const run = fixture.adamw;
    const step = (optimizer: Optimizer, variable: tf.Variable, i: number): void => {
      const g = tf.tensor(run.gradients[i], run.shape);
      optimizer.apply(new Map([['w', variable]]), new Map([['w', g]]), run.learning_rates[i]);
      g.dispose();
    };
    const before = tf.memory().numTensors;
    const a = tf.tidy(() => tf.variable(tf.tensor(run.initial, run.shape)));
    const first = new AdamW({ weightDecay: 0.1, fusedMinElements });
    for (let i = 0; i < 5; i++) step(first, a, i);
    const b = tf.tidy(() => tf.variable(tf.tensor(run.initial, run.shape)));
    const second = new AdamW({ weightDecay: 0.1, fusedMinElements });
    for (let i = 0; i < 2; i++) step(second, b, i);
    const state = second.getState();
    expect(Object.keys(state.slots).sort()).toEqual(['w/exp_avg', 'w/exp_avg_sq']);
    const saved = Object.fromEntries(Object.entries(state.slots).map(([name, t]) => [name, Array.from(t.dataSync())]));
    const third = new AdamW({ weightDecay: 0.1, fusedMinElements });
    third.setState(state);
    for (let i = 2; i < 5; i++) step(third, b, i);
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    // the exported slots kept their values while the third optimizer stepped from them
    for (const [name, t] of Object.entries(state.slots)) expect(Array.from(t.dataSync())).toEqual(saved[name]);
    // restoring into an optimizer that already stepped replaces its moments
    third.setState(state);
    expect(Object.values(third.getState().slots).map((t) => Array.from(t.dataSync()))).toEqual([
      saved['w/exp_avg'],
      saved['w/exp_avg_sq'],
    ]);
    for (const o of [first, second, third]) o.dispose();
    tf.dispose([a, b]);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe.runIf(backends.includes('tensorflow'))('AdamW with its moments in the tensorflow backend', () => {
  it('refuses to go on without them on another backend, and carries them over by its state', async () => {
    await loadBackend('tensorflow');
    const w = tf.tidy(() => tf.variable(tf.ones([4, 4])));
    const step = (optimizer: AdamW): void =>
      tf.tidy(() => optimizer.apply(new Map([['w', w]]), new Map([['w', tf.fill([4, 4], 0.5)]]), 0.1));
    const optimizer = new AdamW({ fusedMinElements: 0 });
    step(optimizer);
    const state = optimizer.getState();
    const carried = Object.fromEntries(
      Object.entries(state.slots).map(([name, t]) => [name, tf.tensor(t.dataSync(), t.shape)]),
    );
    await loadBackend('cpu');
    try {
      expect(() => step(optimizer)).toThrow(
        'AdamW: the moments of "w" are held by the fused kernel of the backend they were made on, which the cpu backend lacks',
      );
      const next = new AdamW({ fusedMinElements: 0 });
      next.setState({ step: state.step, slots: carried });
      step(next);
      expect(Array.from(next.getState().slots['w/exp_avg']!.dataSync())).toEqual(
        new Array(16).fill(expect.closeTo(0.5 * 0.1 + 0.9 * 0.05, 6)),
      );
      next.dispose();
    } finally {
      optimizer.dispose();
      tf.dispose([w, ...Object.values(carried)]);
    }
  });
});

describe('learning-rate schedules match transformers', () => {
  it.each(['constant', 'linear', 'cosine'] as const)('%s with warm-up', (schedule) => {
    const { learning_rate: learningRate, warmup_steps: warmupSteps, total_steps: totalSteps } = fixture.schedules;
    fixture.schedules[schedule].forEach((expected: number, step: number) => {
      expect(learningRateAt(step, { schedule, learningRate, warmupSteps, totalSteps })).toBeCloseTo(expected, 10);
    });
  });
});

describe.each(backends)('losses match transformers on the %s backend', (backend: BackendName) => {
  const { losses } = fixture;
  const logits = (): tf.Tensor3D => tf.tensor3d(losses.logits, losses.logits_shape);
  beforeAll(async () => {
    await loadBackend(backend);
  });
  afterAll(async () => {
    await loadBackend('cpu');
  });

  it('the gradient is (softmax - onehot) / count on labelled rows, zero on ignored ones', () => {
    const values = [
      [1, 2, 0.5, -1],
      [0.3, 0.3, 2, 1],
      [-2, 0, 1, 4],
    ];
    const labels = Int32Array.from([2, IGNORE_INDEX, 3]);
    const x = tf.variable(tf.tensor2d(values));
    const { value, grads } = tf.variableGrads(() => maskedCrossEntropy(x as unknown as tf.Tensor2D, labels).loss, [x]);
    const got = Object.values(grads)[0]!.arraySync() as number[][];
    let loss = 0;
    values.forEach((row, i) => {
      const total = row.reduce((sum, v) => sum + Math.exp(v), 0);
      const label = labels[i]!;
      row.forEach((v, j) => {
        const expected = label === IGNORE_INDEX ? 0 : (Math.exp(v) / total - (j === label ? 1 : 0)) / 2;
        expect(got[i]![j]).toBeCloseTo(expected, 6);
      });
      if (label !== IGNORE_INDEX) loss += (Math.log(total) - row[label]!) / 2;
    });
    expect(value.dataSync()[0]).toBeCloseTo(loss, 5);
    tf.dispose([x, value, ...Object.values(grads)]);
  });

  it('causal LM: shifted, -100 ignored', () => {
    const { loss, count } = causalLmLoss(logits(), losses.labels);
    expect(loss.dataSync()[0]).toBeCloseTo(losses.causal_lm, 5);
    expect(count).toBe(6); // 4 shifted labels in row 0, 2 in row 1
  });

  it('causal LM with prepended virtual tokens: the last virtual position predicts the first real token (as peft)', () => {
    const labels = (losses.labels as number[][]).map((row) => [IGNORE_INDEX, ...row.slice(1)]);
    const virtual = tf.concat([tf.zeros([2, 3, 7]), logits()], 1) as tf.Tensor3D;
    const plain = causalLmLoss(logits(), labels);
    const prompted = causalLmLoss(virtual, labels, 3);
    expect(prompted.loss.dataSync()[0]).toBeCloseTo(plain.loss.dataSync()[0]!, 6);
    expect(prompted.count).toBe(plain.count);
    // a labelled first token is predicted from the (here all-zero) last virtual position: ln 7 more
    const first = causalLmLoss(
      virtual,
      (losses.labels as number[][]).map((row) => [2, ...row.slice(1)]),
      3,
    );
    expect(first.count).toBe(plain.count + 2);
  });

  it('token classification and sequence classification', () => {
    expect(tokenClassificationLoss(logits(), losses.labels).loss.dataSync()[0]).toBeCloseTo(
      losses.token_classification,
      5,
    );
    const sequence = sequenceClassificationLoss(tf.tensor2d(losses.sequence_logits, [3, 4]), losses.sequence_labels);
    expect(sequence.loss.dataSync()[0]).toBeCloseTo(losses.sequence_classification, 5);
  });

  it('verbaliser logits pick the last real position and the class tokens', () => {
    const lm = logits();
    const picked = verbalizerLogits(lm, [4, 2], [6, 1]).arraySync();
    const values = lm.arraySync();
    expect(picked[0]).toEqual([values[0]![4]![6], values[0]![4]![1]].map((v) => expect.closeTo(v!, 5)));
    expect(picked[1]).toEqual([values[1]![2]![6], values[1]![2]![1]].map((v) => expect.closeTo(v!, 5)));
  });

  it("a masked LM's verbalizer: the mean log-probability of each label word's tokens, the k-th at the k-th mask", () => {
    const lm = tf.randomNormal([2, 6, 9], 0, 2, 'float32', 3) as tf.Tensor3D;
    const masks = [
      [2, 3],
      [4, 5],
    ];
    const words = [[6], [1, 8], [7, 7]];
    const scores = maskedVerbalizerLogits(lm, masks, words).arraySync();
    const logp = tf.logSoftmax(lm).arraySync();
    masks.forEach(([m0, m1], b) => {
      const expected = [
        logp[b]![m0!]![6]!,
        (logp[b]![m0!]![1]! + logp[b]![m1!]![8]!) / 2,
        (logp[b]![m0!]![7]! + logp[b]![m1!]![7]!) / 2,
      ];
      expect(scores[b]).toEqual(expected.map((v) => expect.closeTo(v, 5)));
    });
    // one-token words at one mask: the softmax over classes is that over the label words' logits
    const single = tf.softmax(maskedVerbalizerLogits(lm, [[4], [2]], [[6], [1]])).arraySync();
    const plain = tf.softmax(verbalizerLogits(lm, [4, 2], [6, 1])).arraySync();
    for (const [b, row] of single.entries()) expect(row).toEqual(plain[b]!.map((v) => expect.closeTo(v, 6)));
  });

  it('the losses differentiate (every op has a gradient)', () => {
    const x = tf.variable(logits());
    const { grads } = tf.variableGrads(() => causalLmLoss(x as unknown as tf.Tensor3D, losses.labels).loss, [x]);
    expect(Object.values(grads)[0]!.shape).toEqual(losses.logits_shape);
  });
});

describe('data', () => {
  it('parses JSON Lines and names the bad line', () => {
    expect([...parseJsonl('{"a":1}\n\n{"a":2}\r\n')]).toEqual([{ a: 1 }, { a: 2 }]);
    expect(() => [...parseJsonl('{"a":1}\n{oops', 'train.jsonl')]).toThrow(/^train\.jsonl:2: not valid JSON/);
    expect(() => [...parseJsonl('[1]', 'x.jsonl')]).toThrow('x.jsonl:1: expected a JSON object');
  });

  it('parses CSV with quotes, doubled quotes and newlines in fields', () => {
    const text = 'text,label\n"hello, world",1\n"say ""hi""\nthere",0\r\nplain,1\n';
    expect([...parseCsv(text)]).toEqual([
      { text: 'hello, world', label: '1' },
      { text: 'say "hi"\nthere', label: '0' },
      { text: 'plain', label: '1' },
    ]);
    expect(() => [...parseCsv('a,b\n1,2,3\n', 'd.csv')]).toThrow('d.csv:2: 3 fields, the header has 2');
    expect(() => [...parseCsv('a\n"open\n', 'd.csv')]).toThrow('d.csv:2: a quoted field is not closed');
  });

  it('streams JSONL and CSV files from a store, mapped lazily', async () => {
    const store = memoryStore({
      'train.jsonl': new TextEncoder().encode('{"text":"a","label":1}\n{"text":"b","label":0}\n'),
      'train.csv': new TextEncoder().encode('text,label\nc,1\n'),
    });
    const mapped = mapDataset(jsonlDataset(store, 'train.jsonl'), (record, i) => `${i}:${record.text}`);
    expect(await collect(mapped)).toEqual(['0:a', '1:b']);
    expect(await collect(csvDataset(store, 'train.csv'))).toEqual([{ text: 'c', label: '1' }]);
    await expect(
      collect(jsonlDataset(memoryStore({ 'x.jsonl': new TextEncoder().encode('{') }, 'mem:'), 'x.jsonl')),
    ).rejects.toThrow('mem:/x.jsonl:1: not valid JSON');
  });

  it('splits by seed: disjoint, complete, reproducible', () => {
    const items = Array.from({ length: 100 }, (_, i) => i);
    const split = splitDataset(items, { validation: 0.1, test: 0.2, seed: 3 });
    expect([split.train.length, split.validation.length, split.test.length]).toEqual([70, 10, 20]);
    expect([...split.train, ...split.validation, ...split.test].sort((a, b) => a - b)).toEqual(items);
    expect(splitDataset(items, { validation: 0.1, test: 0.2, seed: 3 })).toEqual(split);
    expect(splitDataset(items, { validation: 0.1, test: 0.2, seed: 4 }).test).not.toEqual(split.test);
  });

  it('pads each batch to its own longest row, labels with -100', () => {
    const examples: Example[] = [
      { inputIds: [5, 6, 7], labels: [5, 6, 7] },
      { inputIds: [8], labels: [IGNORE_INDEX] },
    ];
    expect(collate(examples, { padTokenId: 0 })).toEqual({
      inputIds: [
        [5, 6, 7],
        [8, 0, 0],
      ],
      attentionMask: [
        [1, 1, 1],
        [1, 0, 0],
      ],
      tokenTypeIds: [
        [0, 0, 0],
        [0, 0, 0],
      ],
      labels: [
        [5, 6, 7],
        [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX],
      ],
      tokens: 4,
    });
    expect(collate(examples, { padTokenId: 0, paddingSide: 'left' }).inputIds).toEqual([
      [5, 6, 7],
      [0, 0, 8],
    ]);
  });

  it('batches every example once; buckets by length; the same seed gives the same order', async () => {
    const examples = Array.from(
      { length: 103 },
      (_, i): Example => ({ inputIds: new Array(((i * 37) % 50) + 1).fill(1), labels: i }),
    );
    const run = async (seed: number) =>
      collect(batchExamples(arrayDataset(examples), { batchSize: 8, random: new SeededRandom(seed), bucketPool: 4 }));
    const batches = await run(1);
    expect(
      batches
        .flat()
        .map((e) => e.labels)
        .sort((a, b) => (a as number) - (b as number)),
    ).toEqual(examples.map((e) => e.labels));
    expect((await run(1)).map((b) => b.map((e) => e.labels))).toEqual(batches.map((b) => b.map((e) => e.labels)));
    const spread = (b: Example[]) =>
      Math.max(...b.map((e) => e.inputIds.length)) - Math.min(...b.map((e) => e.inputIds.length));
    const unbucketed = await collect(
      batchExamples(arrayDataset(examples), { batchSize: 8, random: new SeededRandom(1) }),
    );
    const mean = (list: Example[][]) => list.reduce((s, b) => s + spread(b), 0) / list.length;
    expect(mean(batches)).toBeLessThan(mean(unbucketed) / 2);
  });

  it('shuffles a dataset in memory whole (an ordered corpus is not read in order); a stream in its buffer', async () => {
    // 2,000 examples in order (a corpus file by file); the buffer holds 64 batches of 10 = 640
    const examples = Array.from({ length: 2000 }, (_, i): Example => ({ inputIds: [1, 2, 3], labels: i }));
    const firstLabels = (batches: Example[][]) =>
      batches
        .flat()
        .slice(0, 500)
        .map((e) => e.labels as number);
    const lateShare = (labels: number[]) => labels.filter((label) => label >= 1000).length / labels.length;
    for (const bucketPool of [undefined, 64]) {
      const options = { batchSize: 10, random: new SeededRandom(3), ...(bucketPool ? { bucketPool } : {}) };
      // in memory (and mapped: still in memory): the first 500 read come from the whole range
      for (const dataset of [arrayDataset(examples), mapDataset(arrayDataset(examples), (e) => e)]) {
        const batches = await collect(batchExamples(dataset, options));
        expect(lateShare(firstLabels(batches))).toBeGreaterThan(0.35);
        expect(lateShare(firstLabels(batches))).toBeLessThan(0.65);
        expect(
          batches
            .flat()
            .map((e) => e.labels as number)
            .sort((a, b) => a - b),
        ).toEqual(examples.map((e) => e.labels));
      }
      // a stream (no `at`): shuffled within its buffer only, so the first 500 come from the first 640
      const stream = {
        size: examples.length,
        async *[Symbol.asyncIterator]() {
          yield* examples;
        },
      };
      const batches = await collect(batchExamples(stream, options));
      expect(Math.max(...firstLabels(batches))).toBeLessThan(640);
      expect(batches.flat()).toHaveLength(2000);
    }
  });
});

describe('seededNormal', () => {
  it('is reproducible for every seed, 0 included (tf.randomNormal treats 0 as no seed)', async () => {
    const { seededNormal } = await import('../src/index.js');
    for (const seed of [0, 1, 12345]) {
      expect(Array.from(seededNormal([4], 0, 1, seed).dataSync())).toEqual(
        Array.from(seededNormal([4], 0, 1, seed).dataSync()),
      );
      expect(Array.from(seededNormal([4], 0, 1, seed, true).dataSync())).toEqual(
        Array.from(seededNormal([4], 0, 1, seed, true).dataSync()),
      );
    }
    expect(Array.from(seededNormal([4], 0, 1, 0).dataSync())).not.toEqual(
      Array.from(seededNormal([4], 0, 1, 1).dataSync()),
    );
  });
});
