import path from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';

import { loadPretrained, type TransformerHost } from '../src/index.js';
import { FIXTURES } from './fixtures.js';

const hosts: TransformerHost[] = [];
afterAll(() => {
  for (const h of hosts) h.dispose();
});

describe('an LM checkpoint under a classification head', () => {
  it('gets a new N(0, 0.02) head, seeded, and pools at the last non-pad token', async () => {
    const load = async (seed: number) => {
      const host = await loadPretrained(`${FIXTURES}/gpt2-tied`, {
        architecture: 'GPT2ForSequenceClassification',
        numLabels: 2,
        padTokenId: 0,
        newHeadSeed: seed,
      });
      hosts.push(host);
      return host;
    };
    const a = await load(3);
    const b = await load(3);
    expect(a.config.numLabels).toBe(2);
    expect(a.headModules).toEqual(['score']);
    expect(Array.from(a.parameters.get('score.weight')!.dataSync())).toEqual(
      Array.from(b.parameters.get('score.weight')!.dataSync()),
    );
    const std = Math.sqrt(Array.from(a.parameters.get('score.weight')!.dataSync()).reduce((s, v) => s + v * v, 0) / 48);
    expect(std).toBeGreaterThan(0.01);
    expect(std).toBeLessThan(0.04);
    // padding after the text does not change the pooled logits
    const short = a.forward({ inputIds: [[5, 6, 7]] }).logits.dataSync();
    const padded = a.forward({ inputIds: [[5, 6, 7, 0, 0]], attentionMask: [[1, 1, 1, 0, 0]] }).logits.dataSync();
    for (const [i, v] of Array.from(short).entries()) expect(padded[i]).toBeCloseTo(v, 5);
    const token = await loadPretrained(`${FIXTURES}/gpt2-tied`, {
      architecture: 'GPT2ForTokenClassification',
      numLabels: 5,
    });
    hosts.push(token);
    expect(token.forward({ inputIds: [[5, 6, 7]] }).logits.shape).toEqual([1, 3, 5]);
  });

  it('refuses a head that is not there without a seed to create it', async () => {
    await expect(loadPretrained(`${FIXTURES}/gpt2-sequence-classification`, {})).resolves.toBeDefined();
    await expect(loadPretrained(`${FIXTURES}/gpt2-tied`, { architecture: 'GPT2ForMultipleChoice' })).rejects.toThrow(
      'config.json: "architectures" GPT2ForMultipleChoice is not a GPT-2 head we have',
    );
  });
});

describe('disposal', () => {
  it('a loaded model, with or without a new head, frees every tensor it made', async () => {
    const tf = await import('@tensorflow/tfjs-core');
    for (const directory of ['gpt2-tied', 'gpt2-untied-odd', 'llama-gqa-untied', 'bert-token-classification']) {
      const before = tf.memory().numTensors;
      const host = await loadPretrained(
        `${FIXTURES}/${directory}`,
        directory === 'gpt2-tied'
          ? { architecture: 'GPT2ForSequenceClassification', numLabels: 3, newHeadSeed: 1 }
          : {},
      );
      expect(tf.memory().numTensors, directory).toBeGreaterThan(before);
      host.dispose();
      expect(tf.memory().numTensors, directory).toBe(before);
    }
  });
});

describe('headRows: a per-token head at some positions only', () => {
  const rows = [0, 3, 6, 9, 13]; // of the 2 x 7 positions
  it.each(['bert-token-classification', 'bert-masked-lm-tied', 'gpt2-token-classification', 'llama-gqa-untied'])(
    '%s: the logits of those rows, as the whole pass computes them',
    async (name) => {
      const host = await loadPretrained(path.join(FIXTURES, name));
      const inputIds = [
        [5, 6, 7, 8, 9, 10, 11],
        [12, 13, 14, 15, 16, 0, 0],
      ];
      const attentionMask = [
        [1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 0, 0],
      ];
      const whole = host.forward({ inputIds, attentionMask }).logits;
      const picked = host.forward({ inputIds, attentionMask, headRows: rows }).logits;
      const outputs = whole.shape[2]!;
      expect(picked.shape).toEqual([rows.length, outputs]);
      const [all, some] = [whole.dataSync(), picked.dataSync()];
      let worst = 0;
      rows.forEach((row, i) => {
        for (let c = 0; c < outputs; c++)
          worst = Math.max(worst, Math.abs(all[row * outputs + c]! - some[i * outputs + c]!));
      });
      expect(worst).toBeLessThan(1e-5);
      tf.dispose([whole, picked]);
      expect(() => host.forward({ inputIds, headRows: [14] })).toThrow(
        'headRows[0]: 14 is not a row of the 2 x 7 positions',
      );
      host.dispose();
    },
  );

  it('a per-sequence head refuses it', async () => {
    const host = await loadPretrained(path.join(FIXTURES, 'bert-sequence-classification'));
    expect(() => host.forward({ inputIds: [[5, 6, 7]], headRows: [0] })).toThrow(
      'headRows: the BertForSequenceClassification head is per sequence, not per token',
    );
    host.dispose();
  });
});
