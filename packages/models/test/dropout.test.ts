// The hosts' dropout as transformers has it (issue 24): from config.json, in training passes only,
// seeded. Without dropout a training pass is the inference pass, bit for bit; with it, the loss
// curves of 20 seeded full fine-tuning runs are held to transformers' (oracle/make_dropout_fixtures.py)
// statistically: their masks come from another generator, so equal curves cannot be asked for.
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { availableBackends, loadBackend } from '@peft/backend';
import { DROPOUT_MASK_KERNEL, fullFineTuning, train, variableGradients, type Example, type TaskName } from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadPretrained, NO_DROPOUT, type TransformerHost } from '../src/index.js';

const FIXTURES = path.resolve(import.meta.dirname, 'fixtures');

interface CurveCase {
  name: string;
  fixture: string;
  head: 'lm' | 'cls';
  config: Record<string, number>;
  input_ids: number[][];
  labels: number[][] | number[];
  losses_without_dropout: number[];
  losses_with_dropout: number[][];
}
const curves = JSON.parse(readFileSync(path.join(FIXTURES, 'dropout-curves.json'), 'utf8')) as {
  seeds: number;
  steps: number;
  learning_rate: number;
  max_grad_norm: number;
  cases: CurveCase[];
};

/** The fixture's folder, or a copy with `config` fields set in its config.json. */
function fixtureWith(name: string, config: Record<string, unknown> = {}): string {
  const source = path.join(FIXTURES, name);
  if (Object.keys(config).length === 0) return source;
  const copy = mkdtempSync(path.join(tmpdir(), `peft-dropout-${name}-`));
  cpSync(source, copy, { recursive: true });
  const json = JSON.parse(readFileSync(path.join(copy, 'config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(path.join(copy, 'config.json'), JSON.stringify({ ...json, ...config }));
  return copy;
}

const mean = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0) / values.length;
const variance = (values: readonly number[]): number => {
  const m = mean(values);
  return values.reduce((a, b) => a + (b - m) ** 2, 0) / (values.length - 1);
};
/** Welch's t of two samples' means. */
const welch = (a: readonly number[], b: readonly number[]): number =>
  (mean(a) - mean(b)) / Math.sqrt(variance(a) / a.length + variance(b) / b.length);

const logitsOf = (host: TransformerHost, training: boolean, seed = 0): Float32Array =>
  tf.tidy(() => host.forward({ inputIds: [[5, 9, 2, 7, 11, 3]], training, seed }).logits.dataSync() as Float32Array);

describe('dropout rates come from config.json, under transformers names and defaults', () => {
  it.each([
    ['gpt2-tied', {}, { embedding: 0.1, attention: 0.1, residual: 0.1, classifier: 0 }],
    [
      'gpt2-tied',
      { embd_pdrop: 0.2, attn_pdrop: 0, resid_pdrop: 0.3 },
      { embedding: 0.2, attention: 0, residual: 0.3, classifier: 0 },
    ],
    ['bert-sequence-classification', {}, { embedding: 0.1, attention: 0.1, residual: 0.1, classifier: 0.1 }],
    [
      'bert-token-classification',
      { classifier_dropout: 0.4, hidden_dropout_prob: 0.2 },
      { embedding: 0.2, attention: 0.1, residual: 0.2, classifier: 0.4 },
    ],
    ['gpt2-token-classification', {}, { embedding: 0.1, attention: 0.1, residual: 0.1, classifier: 0.1 }],
    ['gpt2-sequence-classification', {}, { embedding: 0.1, attention: 0.1, residual: 0.1, classifier: 0 }],
    ['llama-gqa-untied', { attention_dropout: 0.3 }, { ...NO_DROPOUT, attention: 0.3 }],
    ['qwen3-gqa-tied', {}, NO_DROPOUT],
    ['phi3-gqa-partial-rotary', { resid_pdrop: 0.2, embd_pdrop: 0.5 }, { ...NO_DROPOUT, residual: 0.2 }],
    ['gemma2-gqa-softcap-tied', { attention_dropout: 0.1 }, { ...NO_DROPOUT, attention: 0.1 }],
  ])('%s %j', async (name, config, rates) => {
    const host = await loadPretrained(fixtureWith(name, config));
    expect(host.dropoutRates).toEqual(rates);
    host.dispose();
    const off = await loadPretrained(fixtureWith(name, config), { dropout: false });
    expect(off.dropoutRates).toEqual(NO_DROPOUT);
    off.dispose();
  });

  it.each([
    ['gpt2-tied', { attn_pdrop: 1 }, 'field "attn_pdrop" must be a dropout rate in [0, 1), got 1'],
    [
      'bert-sequence-classification',
      { hidden_dropout_prob: -0.1 },
      'field "hidden_dropout_prob" must be a dropout rate in [0, 1), got -0.1',
    ],
    [
      'llama-gqa-untied',
      { attention_dropout: '0.1' },
      'field "attention_dropout" must be a dropout rate in [0, 1), got "0.1"',
    ],
  ])('%s %j is refused, naming the file and the field', async (name, config, message) => {
    await expect(loadPretrained(fixtureWith(name, config))).rejects.toThrow(message);
  });

  it('LoadOptions.dropout must be true or false', async () => {
    await expect(loadPretrained(fixtureWith('gpt2-tied'), { dropout: 0 as unknown as boolean })).rejects.toThrow(
      'LoadOptions.dropout: expected true or false, got 0',
    );
  });
});

describe('dropout applies to training passes only, seeded', () => {
  it.each(['gpt2-tied', 'bert-token-classification', 'phi3-gqa-partial-rotary'])(
    '%s: inference and dropout-free training are the same pass, bit for bit; training with dropout follows its seed',
    async (name) => {
      const host = await loadPretrained(fixtureWith(name, { attention_dropout: 0.2, resid_pdrop: 0.2 }));
      const inference = logitsOf(host, false);
      const rates = host.dropoutRates;
      host.dropoutRates = NO_DROPOUT;
      expect(logitsOf(host, true, 3)).toEqual(inference);
      host.dropoutRates = rates;
      expect(logitsOf(host, false)).toEqual(inference);
      const seeded = logitsOf(host, true, 3);
      expect(seeded).not.toEqual(inference);
      expect(logitsOf(host, true, 3)).toEqual(seeded);
      expect(logitsOf(host, true, 4)).not.toEqual(seeded);
      host.dispose();
    },
  );

  it('each rate acts alone, where its architecture has the site', async () => {
    const host = await loadPretrained(fixtureWith('bert-sequence-classification'));
    const inference = logitsOf(host, false);
    for (const site of ['embedding', 'attention', 'residual', 'classifier'] as const) {
      host.dropoutRates = { ...NO_DROPOUT, [site]: 0.5 };
      expect(logitsOf(host, true, 1), site).not.toEqual(inference);
    }
    host.dispose();
    // GPT2ForSequenceClassification has no dropout before its head
    const gpt2 = await loadPretrained(fixtureWith('gpt2-sequence-classification'));
    gpt2.dropoutRates = { ...NO_DROPOUT, classifier: 0.5 };
    expect(logitsOf(gpt2, true, 1)).toEqual(logitsOf(gpt2, false));
    gpt2.dispose();
  });

  it('gradient checkpointing recomputes a layer with the masks it drew: the same loss and gradients', async () => {
    const host = await loadPretrained(fixtureWith('gpt2-tied', { embd_pdrop: 0.2, attn_pdrop: 0.2, resid_pdrop: 0.2 }));
    const variables = [...host.parameters.values()];
    for (const variable of variables) variable.trainable = true;
    const pass = (checkpointLayers: boolean) => {
      const { value, grads } = variableGradients(
        () =>
          tf.tidy(() => {
            const { logits } = host.forward({
              inputIds: [[5, 9, 2, 7, 11, 3]],
              training: true,
              seed: 9,
              checkpointLayers,
            });
            return tf.mean(tf.square(logits)) as tf.Scalar;
          }),
        variables,
      );
      const result = { loss: value.dataSync()[0]!, grads: variables.map((v) => grads[v.name]!.dataSync().slice()) };
      tf.dispose([value, ...Object.values(grads)]);
      return result;
    };
    const plain = pass(false);
    const recomputed = pass(true);
    expect(recomputed.loss).toBe(plain.loss);
    for (let i = 0; i < variables.length; i++) {
      const scale = Math.max(...Array.from(plain.grads[i]!, Math.abs), 1e-30);
      const worst = Math.max(...Array.from(plain.grads[i]!, (g, j) => Math.abs(g - recomputed.grads[i]![j]!)));
      expect(worst / scale, variables[i]!.name).toBeLessThan(1e-5);
    }
    host.dispose();
  });
});

/** Ours: the first steps of the fixture's runs, over fewer seeds (a CI budget: about 10 s a case). */
const SEEDS = 10;
const STEPS = 12;

describe.runIf((await availableBackends()).includes('tensorflow'))(
  'dropout on the native backend (libtensorflow masks)',
  () => {
    beforeAll(async () => {
      await loadBackend('tensorflow');
    });
    afterAll(async () => {
      await loadBackend('cpu');
    });

    it('draws its masks natively: seeded, training only, and what a checkpointed layer recomputes is what it drew', async () => {
      expect(tf.getKernel(DROPOUT_MASK_KERNEL, 'tensorflow')).toBeDefined();
      const host = await loadPretrained(
        fixtureWith('gpt2-tied', { embd_pdrop: 0.2, attn_pdrop: 0.2, resid_pdrop: 0.2 }),
      );
      const inference = logitsOf(host, false);
      const seeded = logitsOf(host, true, 3);
      expect(seeded).not.toEqual(inference);
      expect(logitsOf(host, true, 3)).toEqual(seeded);
      expect(logitsOf(host, true, 4)).not.toEqual(seeded);
      const variables = [...host.parameters.values()];
      for (const variable of variables) variable.trainable = true;
      const loss = (checkpointLayers: boolean): number =>
        tf.tidy(() => {
          // the backward pass runs too: the checkpointed layers are computed again in it
          const { value } = variableGradients(
            () =>
              tf.mean(
                tf.square(
                  host.forward({ inputIds: [[5, 9, 2, 7, 11, 3]], training: true, seed: 9, checkpointLayers }).logits,
                ),
              ) as tf.Scalar,
            variables,
          );
          return value.dataSync()[0]!;
        });
      expect(loss(true)).toBe(loss(false));
      host.dispose();
    });
  },
);

describe(`training loss curves with dropout match transformers' (${SEEDS} seeds here, ${curves.seeds} there; ${STEPS} steps)`, () => {
  beforeAll(async () => {
    // the native backend where there is one: a step of these tiny models costs 150 ms on cpu, 65 ms there
    if ((await availableBackends()).includes('tensorflow')) await loadBackend('tensorflow');
  });
  afterAll(async () => {
    await loadBackend('cpu');
  });

  it.each(curves.cases)(
    '$name',
    async (c) => {
      const folder = fixtureWith(c.fixture, c.config);
      const task: TaskName = c.head === 'lm' ? 'causal-lm' : 'sequence-classification';
      const data: Example[] = c.input_ids.map((ids, i) => ({
        inputIds: ids,
        labels: c.head === 'lm' ? (c.labels as number[][])[i]! : (c.labels as number[])[i]!,
      }));
      const run = async (seed: number, dropout: boolean): Promise<number[]> => {
        const host = await loadPretrained(folder, { dropout });
        const result = await train(fullFineTuning(host), {
          data,
          task,
          padTokenId: 0,
          batchSize: data.length,
          epochs: STEPS,
          learningRate: curves.learning_rate,
          schedule: 'constant',
          maxGradNorm: curves.max_grad_norm,
          bucketByLength: false,
          seed,
          handleInterrupt: false,
        });
        host.dispose();
        return result.losses;
      };
      // without dropout: the same curve, step by step
      const without = await run(0, false);
      const drift = Math.max(...without.map((loss, i) => Math.abs(loss - c.losses_without_dropout[i]!)));
      const theirs = c.losses_with_dropout.map((losses) => losses.slice(0, STEPS));
      expect(drift, 'without dropout, |ours - transformers| over the curve').toBeLessThan(2e-3);
      const ours: number[][] = [];
      for (let seed = 0; seed < SEEDS; seed++) ours.push(await run(seed, true));
      const first = [ours.map((l) => l[0]!), theirs.map((l) => l[0]!)] as const;
      const runMean = [ours.map(mean), theirs.map(mean)] as const;
      const t = { first: welch(...first), runMean: welch(...runMean) };
      // the runs without dropout are one curve (no randomness): its mean against the spread of theirs with it
      const against = (mean(runMean[1]) - mean(without)) / Math.sqrt(variance(runMean[1]) / runMean[1].length);
      console.log(
        `[dropout] ${c.name}: first step ${mean(first[0]).toFixed(4)} vs ${mean(first[1]).toFixed(4)} (t ${t.first.toFixed(2)}); ` +
          `run mean ${mean(runMean[0]).toFixed(4)} ± ${Math.sqrt(variance(runMean[0])).toFixed(4)} vs ` +
          `${mean(runMean[1]).toFixed(4)} ± ${Math.sqrt(variance(runMean[1])).toFixed(4)} (t ${t.runMean.toFixed(2)}); ` +
          `without dropout ${mean(without).toFixed(4)}; curve drift without dropout ${drift.toExponential(1)}`,
      );
      // |t| < 4: p ~ 0.001 two-sided at ~20 degrees of freedom, for 8 comparisons in all
      expect(Math.abs(t.first), 'first-step loss, Welch t').toBeLessThan(4);
      expect(Math.abs(t.runMean), 'mean loss of the run, Welch t').toBeLessThan(4);
      // and the test can tell dropout from none: the runs without sit far from transformers' with it
      expect(Math.abs(against)).toBeGreaterThan(20);
    },
    60_000,
  );
});
