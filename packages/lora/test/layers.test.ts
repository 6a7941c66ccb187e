import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { memoryStore, parseSafetensors } from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, describe, expect, it, vi } from 'vitest';

import { applyLora, type LayersLoraOptions } from '../src/tfjs-layers.js';

// Layers named explicitly: tfjs's default names (dense_Dense1, ...) count up per process, so a
// rebuilt model would not have the names an adapter was saved under.
function model(seed = 1): tfl.Sequential {
  const m = tfl.sequential();
  m.add(
    tfl.layers.dense({
      units: 16,
      inputShape: [4],
      activation: 'relu',
      name: 'hidden',
      kernelInitializer: tfl.initializers.glorotUniform({ seed }),
    }),
  );
  m.add(tfl.layers.batchNormalization({ name: 'norm' }));
  m.add(
    tfl.layers.dense({ units: 2, name: 'out', kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + 1 }) }),
  );
  return m;
}

const xs = tf.tensor2d(Array.from({ length: 64 }, (_, i) => [Math.sin(i), Math.cos(i), (i % 7) / 7, (i % 3) - 1]));
const ys = tf.tensor2d(Array.from({ length: 64 }, (_, i) => [Math.sin(2 * i) + (i % 3), Math.cos(i) * 2]));
const values = (t: tf.Tensor | tf.Tensor[]): Float32Array => (Array.isArray(t) ? t[0]! : t).dataSync() as Float32Array;
const maxDiff = (a: Float32Array, b: Float32Array): number =>
  a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
const names = (weights: tfl.LayerVariable[]): string[] => weights.map((w) => w.originalName);
const snapshot = (m: tfl.LayersModel): Map<string, Float32Array> =>
  new Map(m.weights.map((w) => [w.originalName, w.read().dataSync().slice() as Float32Array]));

async function train(m: tfl.LayersModel, epochs = 30): Promise<number[]> {
  m.compile({ optimizer: 'adam', loss: 'meanSquaredError' });
  const history = await m.fit(xs, ys, { epochs, batchSize: 16, verbose: 0 });
  return history.history.loss as number[];
}

const temporaryFolders: string[] = [];
afterAll(() => Promise.all(temporaryFolders.map((folder) => rm(folder, { recursive: true, force: true }))));

describe('LoRA on a tf.LayersModel', () => {
  it('starts at the base model, model.fit trains A and B only, the loss falls, merge keeps the outputs', async () => {
    const m = model();
    const base = values(m.predict(xs));
    const lora = applyLora(m, { r: 2, loraAlpha: 4 });
    expect(maxDiff(values(m.predict(xs)), base)).toBe(0);
    expect(names(m.trainableWeights).sort()).toEqual(['hidden/lora_A', 'hidden/lora_B', 'out/lora_A', 'out/lora_B']);
    const losses = await train(m);
    expect(losses.at(-1)!).toBeLessThan(losses[0]! * 0.8);
    const trained = values(m.predict(xs));
    expect(maxDiff(trained, base)).toBeGreaterThan(1e-2);
    expect(
      maxDiff(
        lora.withAdapterDisabled(() => values(m.predict(xs))),
        base,
      ),
    ).toBe(0);
    lora.merge();
    expect(maxDiff(values(m.predict(xs)), trained)).toBeLessThan(1e-5);
    lora.unmerge();
    expect(maxDiff(values(m.predict(xs)), trained)).toBeLessThan(1e-5);
  });

  it.each<{ targetLayers: LayersLoraOptions['targetLayers']; lora: string[] }>([
    { targetLayers: ['hidden'], lora: ['hidden/lora_A', 'hidden/lora_B'] },
    { targetLayers: ['out'], lora: ['out/lora_A', 'out/lora_B'] },
    { targetLayers: 'all-dense', lora: ['hidden/lora_A', 'hidden/lora_B', 'out/lora_A', 'out/lora_B'] },
  ])(
    'freezes everything but the LoRA weights ($targetLayers): after model.fit no other weight has moved',
    async ({ targetLayers, lora }) => {
      const m = model();
      applyLora(m, { r: 2, loraAlpha: 4, targetLayers });
      expect(names(m.trainableWeights).sort()).toEqual(lora);
      const before = snapshot(m);
      await train(m);
      const after = snapshot(m);
      // the other Dense layer, BatchNormalization's gamma and beta and its moving statistics included
      const frozen = [...before.keys()].filter((name) => !lora.includes(name));
      expect(frozen).toEqual(
        expect.arrayContaining([
          'hidden/kernel',
          'out/kernel',
          'out/bias',
          'norm/gamma',
          'norm/moving_mean',
          'norm/moving_variance',
        ]),
      );
      for (const name of frozen)
        expect({ name, values: Array.from(after.get(name)!) }).toEqual({ name, values: Array.from(before.get(name)!) });
      for (const name of lora.filter((n) => n.endsWith('lora_B')))
        expect(maxDiff(after.get(name)!, before.get(name)!)).toBeGreaterThan(1e-3);
    },
  );

  it.each(['mergeAndUnload', 'unload'] as const)(
    '%s gives back the trainable flags the model had, even after a compile',
    async (method) => {
      const m = model();
      // frozen by the user before applyLora: a targeted layer ('hidden') and another one ('out')
      m.getLayer('hidden').trainable = false;
      m.getLayer('out').trainable = false;
      const flags = (): [string, boolean][] => m.layers.map((layer) => [layer.name, layer.trainable]);
      const originalFlags = flags();
      const originalTrainable = names(m.trainableWeights);
      const originalWeights = names(m.weights);
      expect(originalTrainable).toEqual(['norm/gamma', 'norm/beta']);
      const base = values(m.predict(xs));

      const lora = applyLora(m, { r: 2, loraAlpha: 4, targetLayers: ['hidden'] });
      expect(names(m.trainableWeights)).toEqual(['hidden/lora_A', 'hidden/lora_B']);
      await train(m);
      const trained = values(m.predict(xs));
      expect(lora[method]()).toBe(m);

      expect(flags()).toEqual(originalFlags);
      expect(names(m.trainableWeights)).toEqual(originalTrainable);
      expect(names(m.weights)).toEqual(originalWeights);
      m.compile({ optimizer: 'adam', loss: 'meanSquaredError' });
      expect(names(m.trainableWeights)).toEqual(originalTrainable);
      if (method === 'unload') expect(maxDiff(values(m.predict(xs)), base)).toBe(0);
      else expect(maxDiff(values(m.predict(xs)), trained)).toBeLessThan(1e-5);
      expect(() => lora.merge()).toThrow('LayersLora.merge: LoRA was already removed from model');
    },
  );

  it('mergeAndUnload returns a plain tf.LayersModel that model.save and tf.loadLayersModel round-trip', async () => {
    const m = model();
    const lora = applyLora(m, { r: 2, loraAlpha: 4, targetLayers: ['hidden'] });
    await train(m, 10);
    const trained = values(m.predict(xs));
    const plain = lora.mergeAndUnload();
    expect(plain.layers.map((layer) => layer.getClassName())).toEqual(['Dense', 'BatchNormalization', 'Dense']);
    const plainWeights = [
      'hidden/kernel',
      'hidden/bias',
      'norm/gamma',
      'norm/beta',
      'out/kernel',
      'out/bias',
      'norm/moving_mean',
      'norm/moving_variance',
    ];
    expect(names(plain.weights)).toEqual(plainWeights);
    expect(maxDiff(values(plain.predict(xs)), trained)).toBeLessThan(1e-5);

    let saved: tf.io.ModelArtifacts | undefined;
    await plain.save(
      tf.io.withSaveHandler(async (artifacts) => {
        saved = artifacts;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    expect(saved!.weightSpecs!.map((spec) => spec.name)).toEqual(plainWeights);
    const loaded = await tfl.loadLayersModel(tf.io.fromMemory(saved!));
    const difference = maxDiff(values(loaded.predict(xs)), values(plain.predict(xs)));
    console.log(`merged model after model.save + tf.loadLayersModel: max |Δoutput| = ${difference}`);
    expect(difference).toBeLessThanOrEqual(1e-6);
    expect(maxDiff(values(loaded.predict(xs)), trained)).toBeLessThan(1e-5);
  });

  it('a saved adapter on a fresh model with the same base weights gives the trained outputs', async () => {
    const m = model();
    const baseWeights = m.getWeights().map((w) => w.clone());
    const base = values(m.predict(xs));
    const lora = applyLora(m, { r: 2, loraAlpha: 4, targetLayers: ['hidden'] });
    await train(m);
    const trained = values(m.predict(xs));
    expect(maxDiff(trained, base)).toBeGreaterThan(1e-2);

    const folder = await mkdtemp(path.join(tmpdir(), 'peft-layers-lora-'));
    temporaryFolders.push(folder);
    await lora.saveAdapter(folder);
    const config = JSON.parse(await readFile(path.join(folder, 'adapter_config.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(config).toMatchObject({ peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['hidden'] });
    const file = parseSafetensors(
      await readFile(path.join(folder, 'adapter_model.safetensors')),
      'adapter_model.safetensors',
    );
    expect([...file.entries].map(([key, entry]) => [key, entry.shape])).toEqual([
      ['base_model.model.hidden.lora_A.weight', [2, 4]],
      ['base_model.model.hidden.lora_B.weight', [16, 2]],
    ]);

    const fresh = model(7);
    fresh.setWeights(baseWeights);
    expect(maxDiff(values(fresh.predict(xs)), base)).toBe(0);
    await applyLora(fresh, { r: 2, loraAlpha: 4, targetLayers: ['hidden'] }).loadAdapter(folder);
    const difference = maxDiff(values(fresh.predict(xs)), trained);
    console.log(`fresh base model + reloaded adapter: max |Δoutput| = ${difference}`);
    expect(difference).toBeLessThanOrEqual(1e-6);
  });

  it.each<{ options: LayersLoraOptions; error: string }>([
    {
      options: { r: 4, loraAlpha: 4, targetLayers: ['hidden'] },
      error: 'memory:/adapter_config.json: r 2, this adapter has r 4',
    },
    {
      options: { r: 2, loraAlpha: 8, targetLayers: ['hidden'] },
      error: 'memory:/adapter_config.json: lora_alpha 4, this adapter has loraAlpha 8',
    },
    {
      options: { r: 2, loraAlpha: 4, targetLayers: 'all-dense' },
      error: 'memory:/adapter_config.json: target_modules [hidden], this adapter targets [hidden, out]',
    },
  ])('loadAdapter refuses an adapter saved with other settings: $error', async ({ options, error }) => {
    const store = memoryStore();
    await applyLora(model(), { r: 2, loraAlpha: 4, targetLayers: ['hidden'] }).saveAdapter(store);
    await expect(applyLora(model(), options).loadAdapter(store)).rejects.toThrow(error);
  });

  it('saveAdapter writes its two files as one change (a store with writeFiles), the config last otherwise', async () => {
    const lora = applyLora(model(), { r: 2, loraAlpha: 4, targetLayers: ['hidden'] });
    const together = memoryStore();
    const writeFiles = vi.fn(together.writeFiles!.bind(together));
    together.writeFiles = writeFiles;
    const write = vi.spyOn(together, 'write');
    await lora.saveAdapter(together);
    expect(writeFiles).toHaveBeenCalledTimes(1);
    expect([...writeFiles.mock.calls[0]![0].keys()]).toEqual(['adapter_model.safetensors', 'adapter_config.json']);
    expect(write).not.toHaveBeenCalled();
    const written: string[] = [];
    const oneByOne = { ...memoryStore(), writeFiles: undefined };
    oneByOne.write = async (name) => void written.push(name);
    await lora.saveAdapter(oneByOne);
    expect(written).toEqual(['adapter_model.safetensors', 'adapter_config.json']);
  });

  it('targets layers by name and explains a miss', () => {
    const m = model();
    expect(applyLora(m, { targetLayers: ['out'] }).layers.map((l) => l.dense.name)).toEqual(['out']);
    expect(() => applyLora(model(), { targetLayers: ['nope'] })).toThrow(
      'applyLora: targetLayers nope matches no Dense layer; Dense layers: hidden, out',
    );
  });
});
