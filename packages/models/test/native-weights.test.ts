// Weights decoded by libtensorflow (tfjs-node) from a checkpoint's stored bytes equal, bit for bit,
// the JavaScript decoding, for every stored float type, transposed (GPT-2's Conv1D) or not; and the weights do not
// share memory with the buffers the loader reuses (one weight read after every other was loaded).
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { availableBackends, loadBackend } from '@peft/backend';
import {
  bfloat16ToFloat32,
  float16ToFloat32,
  parseSafetensors,
  serializeSafetensors,
  type TensorToWrite,
} from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';

import { loadPretrained } from '../src/index.js';
import { decodesNatively } from '../src/native-weights.js';
import { transpose } from '../src/weights.js';

const backends = await availableBackends();
/** nn.Linear projections (held as stored) and GPT-2's Conv1D ones (stored [in, out], held [out, in]). */
const FIXTURES = ['qwen3-gqa-tied', 'gpt2-tied'] as const;
const CONV1D = /\.(c_attn|c_proj|c_fc)\.weight$/;

/** The fixture re-saved with every tensor in `dtype`, and the values each weight must hold. */
function resaved(
  fixture: string,
  dtype: 'F32' | 'F16' | 'BF16',
): { folder: string; expected: Map<string, Float32Array> } {
  const source = path.join(import.meta.dirname, 'fixtures', fixture);
  const file = parseSafetensors(readFileSync(path.join(source, 'model.safetensors')));
  const tensors: Record<string, TensorToWrite> = {};
  for (const name of file.entries.keys()) {
    const { shape, values } = file.tensor(name);
    tensors[name] = { shape, values: values as Float32Array, dtype };
  }
  const bytes = serializeSafetensors(tensors);
  const folder = mkdtempSync(path.join(tmpdir(), `peft-native-${dtype}-`));
  writeFileSync(path.join(folder, 'model.safetensors'), bytes);
  copyFileSync(path.join(source, 'config.json'), path.join(folder, 'config.json'));
  const stored = parseSafetensors(bytes);
  const expected = new Map<string, Float32Array>();
  for (const name of stored.entries.keys()) {
    const { shape, bytes: raw } = stored.bytes(name);
    const halves = new Uint16Array(raw.slice().buffer);
    const values =
      dtype === 'F32'
        ? new Float32Array(raw.slice().buffer)
        : dtype === 'BF16'
          ? bfloat16ToFloat32(halves)
          : float16ToFloat32(halves);
    const conv1d = shape.length === 2 && CONV1D.test(name);
    expected.set(name, conv1d ? transpose(values, shape[0]!, shape[1]!) : values);
  }
  return { folder, expected };
}

describe.runIf(backends.includes('tensorflow'))('weights decoded natively (tensorflow backend)', () => {
  const previous = tf.getBackend();
  afterAll(async () => {
    await tf.setBackend(previous);
  });

  const cases = FIXTURES.flatMap((fixture) =>
    (['BF16', 'F16', 'F32'] as const).map((dtype) => [fixture, dtype] as const),
  );
  it.each(cases)('%s %s: every weight bit for bit as the JavaScript decoding', async (fixture, dtype) => {
    await loadBackend('tensorflow');
    expect(decodesNatively()).toBe(true);
    const { folder, expected } = resaved(fixture, dtype);
    const host = await loadPretrained(folder);
    try {
      let checked = 0;
      for (const [name, variable] of host.parameters) {
        const want = expected.get(name);
        if (!want) continue; // tied: the embedding is checked under its own name
        const got = variable.dataSync() as Float32Array;
        expect(new Uint32Array(got.buffer, got.byteOffset, got.length)).toEqual(new Uint32Array(want.buffer));
        checked++;
      }
      expect(checked).toBe(expected.size);
    } finally {
      host.dispose();
    }
  });
});
