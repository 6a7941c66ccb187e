import { memoryStore } from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';

import { applyLora } from '../src/layers.js';

function model(): tfl.Sequential {
  const m = tfl.sequential();
  m.add(tfl.layers.dense({ units: 16, inputShape: [4], activation: 'relu', name: 'hidden', kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }) }));
  m.add(tfl.layers.dense({ units: 2, name: 'out', kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) }));
  return m;
}

const xs = tf.tensor2d(Array.from({ length: 64 }, (_, i) => [Math.sin(i), Math.cos(i), (i % 7) / 7, (i % 3) - 1]));
const ys = tf.tensor2d(Array.from({ length: 64 }, (_, i) => [Math.sin(2 * i) + (i % 3), Math.cos(i) * 2]));
const values = (t: tf.Tensor | tf.Tensor[]): Float32Array => (Array.isArray(t) ? t[0]! : t).dataSync() as Float32Array;
const maxDiff = (a: Float32Array, b: Float32Array): number => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

describe('LoRA on a tf.LayersModel', () => {
  it('starts at the base model, model.fit trains A and B only, the loss falls, merge keeps the outputs', async () => {
    const m = model();
    const base = values(m.predict(xs));
    const frozenWeights = (): Float32Array[] =>
      m.layers.flatMap((layer) => layer.weights.filter((w) => /\/(kernel|bias)$/.test(w.originalName))).map((w) => w.read().dataSync().slice() as Float32Array);
    const frozen = frozenWeights();
    const lora = applyLora(m, { r: 2, loraAlpha: 4 });
    expect(maxDiff(values(m.predict(xs)), base)).toBe(0);
    expect(m.trainableWeights.map((w) => w.originalName).sort()).toEqual(['hidden/lora_A', 'hidden/lora_B', 'out/lora_A', 'out/lora_B']);
    m.compile({ optimizer: 'adam', loss: 'meanSquaredError' });
    const history = await m.fit(xs, ys, { epochs: 30, batchSize: 16, verbose: 0 });
    const losses = history.history.loss as number[];
    expect(losses.at(-1)!).toBeLessThan(losses[0]! * 0.8);
    // the original kernels and biases are untouched
    const after = frozenWeights();
    expect(after).toHaveLength(4);
    after.forEach((w, i) => expect(Array.from(w)).toEqual(Array.from(frozen[i]!)));
    const trained = values(m.predict(xs));
    expect(maxDiff(trained, base)).toBeGreaterThan(1e-2);
    expect(maxDiff(lora.withAdapterDisabled(() => values(m.predict(xs))), base)).toBe(0);
    lora.merge();
    expect(maxDiff(values(m.predict(xs)), trained)).toBeLessThan(1e-5);
    lora.unmerge();
    expect(maxDiff(values(m.predict(xs)), trained)).toBeLessThan(1e-5);

    const store = memoryStore();
    await lora.saveAdapter(store);
    const fresh = model();
    const reloaded = applyLora(fresh, { r: 2, loraAlpha: 4 });
    await reloaded.loadAdapter(store);
    expect(maxDiff(values(fresh.predict(xs)), trained)).toBeLessThan(1e-6);
    const plain = reloaded.mergeAndUnload();
    expect(maxDiff(values(plain.predict(xs)), trained)).toBeLessThan(1e-5);
  });

  it('targets layers by name and explains a miss', () => {
    const m = model();
    expect(applyLora(m, { targetLayers: ['out'] }).layers.map((l) => l.dense.name)).toEqual(['out']);
    expect(() => applyLora(model(), { targetLayers: ['nope'] })).toThrow('applyLora: targetLayers nope matches no Dense layer; Dense layers: hidden, out');
  });
});
