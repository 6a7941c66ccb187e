// Each bad input gets an error that names the file, tensor or field, before any compute.
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { parseSafetensors, serializeSafetensors } from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadPretrained, type TransformerHost } from '../src/index.js';
import { FIXTURES } from './fixtures.js';

const source = path.join(FIXTURES, 'gpt2-tied');

/** A copy of the fixture model with config.json edited and/or one tensor replaced or removed. */
function brokenCopy(edit: { config?: Record<string, unknown>; tensor?: [string, number[] | null] }): string {
  const directory = mkdtempSync(path.join(tmpdir(), 'peft-broken-'));
  cpSync(source, directory, { recursive: true });
  if (edit.config) {
    const config = JSON.parse(readFileSync(path.join(source, 'config.json'), 'utf8'));
    writeFileSync(path.join(directory, 'config.json'), JSON.stringify({ ...config, ...edit.config }));
  }
  if (edit.tensor) {
    const [name, shape] = edit.tensor;
    const file = parseSafetensors(readFileSync(path.join(source, 'model.safetensors')));
    const tensors: Record<string, { shape: number[]; values: Float32Array }> = {};
    for (const entry of file.entries.keys()) {
      if (entry === name && shape === null) continue;
      const data = file.tensor(entry);
      tensors[entry] =
        entry === name
          ? { shape: shape!, values: new Float32Array(shape!.reduce((a, b) => a * b, 1)) }
          : { shape: data.shape, values: data.values as Float32Array };
    }
    writeFileSync(path.join(directory, 'model.safetensors'), serializeSafetensors(tensors, { format: 'pt' }));
  }
  return directory;
}

describe('loadPretrained refuses', () => {
  it('an unsupported model_type, listing the supported ones', async () => {
    await expect(loadPretrained(brokenCopy({ config: { model_type: 't5' } }))).rejects.toThrow(
      /config\.json: unsupported model_type "t5" \(supported: gpt2/,
    );
  });

  it('a config field of the wrong kind', async () => {
    await expect(loadPretrained(brokenCopy({ config: { n_embd: 'wide' } }))).rejects.toThrow(
      /config\.json: field "n_embd" must be a positive integer, got "wide"/,
    );
  });

  it('head counts that do not divide the width', async () => {
    await expect(loadPretrained(brokenCopy({ config: { n_head: 5 } }))).rejects.toThrow(
      /config\.json: "n_embd" \(24\) must be divisible by "n_head" \(5\)/,
    );
  });

  it('a missing tensor', async () => {
    await expect(loadPretrained(brokenCopy({ tensor: ['transformer.h.1.mlp.c_fc.bias', null] }))).rejects.toThrow(
      /model\.safetensors: the checkpoint has no tensor "transformer\.h\.1\.mlp\.c_fc\.bias"/,
    );
  });

  it('a mis-shaped tensor', async () => {
    await expect(
      loadPretrained(brokenCopy({ tensor: ['transformer.h.0.attn.c_attn.weight', [72, 24]] })),
    ).rejects.toThrow(
      /model\.safetensors: tensor "transformer\.h\.0\.attn\.c_attn\.weight" has shape \[72, 24\], expected \[24, 72\]/,
    );
  });

  it('a directory without config.json', async () => {
    await expect(loadPretrained(mkdtempSync(path.join(tmpdir(), 'peft-empty-')))).rejects.toThrow(
      /config\.json: no such file/,
    );
  });
});

describe('forward refuses', () => {
  let model: TransformerHost;
  beforeAll(async () => {
    model = await loadPretrained(source);
  });
  afterAll(() => model.dispose());

  it('token ids outside the vocabulary', () => {
    expect(() => model.forward({ inputIds: [[1, 97]] })).toThrow(
      'inputIds: token id 97 is outside the vocabulary (0..96)',
    );
    expect(() => model.forward({ inputIds: [[-1, 2]] })).toThrow('inputIds: token id -1 is outside the vocabulary');
    expect(() => model.forward({ inputIds: [[1, 2.5]] })).toThrow('inputIds: token id 2.5 is not an integer');
    expect(() => model.forward({ inputIds: tf.tensor2d([[1, 97]], [1, 2], 'int32') })).toThrow(
      'inputIds: token id 97 is outside the vocabulary',
    );
  });

  it('a sequence longer than the position table', () => {
    expect(() => model.forward({ inputIds: [new Array(33).fill(2)] })).toThrow(
      "sequence of 33 positions (0 virtual + 33 real) is longer than the model's position table (max_position_embeddings 32)",
    );
  });

  it('ragged rows and a mask of the wrong shape', () => {
    expect(() =>
      model.forward({
        inputIds: [
          [1, 2, 3],
          [1, 2],
        ],
      }),
    ).toThrow('inputIds: rows have different lengths (3, 2); pad them');
    expect(() => model.forward({ inputIds: [[1, 2, 3]], attentionMask: [[1, 1]] })).toThrow(
      'attentionMask: expected shape [1, 3] (one per real token), got [1,2]',
    );
  });
});
