// A BertModel checkpoint (sentence-transformers' layout: no `bert.` prefix, no classifier) loaded as
// BertForSequenceClassification, as transformers' from_pretrained does: the body from the file, a new
// classifier N(0, 0.02) from the seed. Built from the BERT fixture with its names stripped, so the
// body must give the fixture's own outputs once the fixture's classifier is put in.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { parseSafetensors, serializeSafetensors, type TensorToWrite } from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';

import { loadPretrained } from '../src/index.js';

const FIXTURE = path.join(import.meta.dirname, 'fixtures', 'bert-sequence-classification');
const scratch = mkdtempSync(path.join(tmpdir(), 'peft-bert-base-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The fixture as a BertModel folder: body tensors without `bert.`, no classifier, architectures BertModel. */
function baseModelFolder(): string {
  const file = parseSafetensors(readFileSync(path.join(FIXTURE, 'model.safetensors')), 'fixture');
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, entry] of file.entries) {
    if (name.startsWith('classifier.')) continue;
    tensors[name.replace(/^bert\./, '')] = { shape: entry.shape, values: file.tensor(name).values as Float32Array };
  }
  const config = JSON.parse(readFileSync(path.join(FIXTURE, 'config.json'), 'utf8')) as Record<string, unknown>;
  const { id2label: _labels, label2id: _ids, ...rest } = config;
  const folder = path.join(scratch, 'bert-base');
  mkdirSync(folder, { recursive: true });
  writeFileSync(path.join(folder, 'model.safetensors'), serializeSafetensors(tensors));
  writeFileSync(path.join(folder, 'config.json'), JSON.stringify({ ...rest, architectures: ['BertModel'] }));
  return folder;
}

describe('a BertModel checkpoint loaded for classification', () => {
  it('is refused without a head class; with one, has a seeded new classifier and the fixture body', async () => {
    const folder = baseModelFolder();
    await expect(loadPretrained(folder)).rejects.toThrow('"architectures" ["BertModel"] names no supported BERT head');
    const options = { architecture: 'BertForSequenceClassification', numLabels: 3, newHeadSeed: 0 };
    const base = await loadPretrained(folder, options);
    const again = await loadPretrained(folder, options);
    const fixture = await loadPretrained(FIXTURE);
    const inputIds = [[2, 7, 11, 5, 3]];
    const logits = (host: typeof base): number[] =>
      tf.tidy(() => [...(host.forward({ inputIds }).logits as tf.Tensor).dataSync()]);

    // the new classifier: N(0, 0.02) weights from the seed, zero bias, the same for the same seed
    const weight = base.parameters.get('classifier.weight')!;
    const values = [...weight.dataSync()];
    const std = Math.sqrt(values.reduce((a, v) => a + v * v, 0) / values.length);
    expect(std).toBeGreaterThan(0.01);
    expect(std).toBeLessThan(0.03);
    expect([...base.parameters.get('classifier.bias')!.dataSync()]).toEqual([0, 0, 0]);
    expect(logits(again)).toEqual(logits(base));
    // named as the class transformers loads it as: the body under `bert.` (saved so; adapters name
    // modules so, as peft does on BertForSequenceClassification), the head as it is
    expect([...base.parameters.keys()].sort()).toEqual([...fixture.parameters.keys()].sort());
    expect([...base.linears.keys()]).toContain('bert.encoder.layer.0.attention.self.query');
    expect(base.layerPaths[0]).toBe('bert.encoder.layer.0');

    // with the fixture's classifier put in, the fixture's logits: the body is the file's
    for (const name of ['classifier.weight', 'classifier.bias'])
      (base.parameters.get(name) as tf.Variable).assign(fixture.parameters.get(name)!);
    const want = logits(fixture);
    const got = logits(base);
    expect(Math.max(...got.map((v, i) => Math.abs(v - want[i]!)))).toBeLessThan(1e-6);
    for (const host of [base, again, fixture]) host.dispose();
  });
});
