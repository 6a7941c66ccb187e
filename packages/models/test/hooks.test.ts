// The host contract's hook points against transformers: the key/value prefix must act as
// past_key_values does (mask, positions), the input-embedding hook as inputs_embeds does.
import type { KeyValuePrefixProvider } from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadPretrained, type TransformerHost } from '../src/index.js';
import { loadFixtures, maxAbsDiffAtRealTokens } from './fixtures.js';

const TOLERANCE = 1e-4;
const VIRTUAL = 3;
const fixtures = loadFixtures().filter((f) => f.expected.entries.has('virtual.embeddings'));

describe.each(fixtures)('$name', (fixture) => {
  let model: TransformerHost;
  beforeAll(async () => {
    model = await loadPretrained(fixture.directory);
  });
  afterAll(() => model.dispose());

  const tensor = (name: string): tf.Tensor => {
    const data = fixture.expected.tensor(name);
    return tf.tensor(data.values, data.shape);
  };

  it.each(['plain', 'right_padded'])('a key/value prefix acts as past_key_values (%s batch)', (batch) => {
    const input = fixture.forward[batch]!;
    const layers = Array.from({ length: model.config.numLayers }, (_, l) => ({
      key: tensor(`prefix.key.${l}`) as tf.Tensor4D,
      value: tensor(`prefix.value.${l}`) as tf.Tensor4D,
    }));
    const provider: KeyValuePrefixProvider = { length: VIRTUAL, prefix: (layer) => layers[layer]! };
    const installed = model.hooks.setKeyValuePrefix(provider);
    try {
      const { logits, prepended } = model.forward({
        inputIds: input.input_ids,
        ...(input.attention_mask ? { attentionMask: input.attention_mask } : {}),
        ...(input.token_type_ids ? { tokenTypeIds: input.token_type_ids } : {}),
      });
      const expected = fixture.expected.tensor(`${batch}.prefixed.logits`);
      expect(prepended).toBe(0);
      expect(logits.shape).toEqual(expected.shape);
      expect(
        maxAbsDiffAtRealTokens(logits.dataSync(), expected.values, expected.shape, input.attention_mask),
      ).toBeLessThan(TOLERANCE);
      // and the prefix matters: without it the logits differ
      const plain = fixture.expected.tensor(`${batch}.logits`);
      expect(
        maxAbsDiffAtRealTokens(logits.dataSync(), plain.values, plain.shape, input.attention_mask),
      ).toBeGreaterThan(1e-2);
      logits.dispose();
    } finally {
      installed.remove();
      for (const layer of layers) tf.dispose([layer.key, layer.value]);
    }
  });

  it.each(['plain', 'right_padded'])('prepended virtual tokens act as inputs_embeds (%s batch)', (batch) => {
    const input = fixture.forward[batch]!;
    const virtual = tensor('virtual.embeddings') as tf.Tensor2D;
    const installed = model.hooks.setInputEmbeddingHook((embeddings) => {
      const [size] = embeddings.shape;
      const prompt = tf.tile(tf.expandDims(virtual, 0), [size, 1, 1]) as tf.Tensor3D;
      return { embeddings: tf.concat([prompt, embeddings], 1), prepended: VIRTUAL };
    });
    try {
      const { logits, prepended } = model.forward({
        inputIds: input.input_ids,
        ...(input.attention_mask ? { attentionMask: input.attention_mask } : {}),
        ...(input.token_type_ids ? { tokenTypeIds: input.token_type_ids } : {}),
      });
      const expected = fixture.expected.tensor(`${batch}.prompted.logits`);
      expect(prepended).toBe(VIRTUAL);
      expect(logits.shape).toEqual(expected.shape);
      const mask = (input.attention_mask ?? input.input_ids.map((row) => row.map(() => 1))).map((row) => [
        1,
        1,
        1,
        ...row,
      ]);
      expect(maxAbsDiffAtRealTokens(logits.dataSync(), expected.values, expected.shape, mask)).toBeLessThan(TOLERANCE);
      logits.dispose();
    } finally {
      installed.remove();
      virtual.dispose();
    }
  });
});

describe('delta paths, merge and sublayer hooks', () => {
  let model: TransformerHost;
  const input = { inputIds: [[3, 5, 7, 11, 13]] };
  const logitsOf = (): Float32Array => {
    const { logits } = model.forward(input);
    const values = logits.dataSync() as Float32Array;
    logits.dispose();
    return values;
  };
  const maxDiff = (a: Float32Array, b: Float32Array): number =>
    a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

  beforeAll(async () => {
    model = await loadPretrained(fixtures.find((f) => f.modelType === 'llama')!.directory);
  });
  afterAll(() => model.dispose());

  it('a delta path x·ΔWᵀ gives the logits of ΔW merged into the weight, and unmerge restores them', () => {
    const base = logitsOf();
    const linear = model.linears.get('model.layers.1.self_attn.v_proj')!;
    const deltaWeight = tf.randomNormal([linear.outFeatures, linear.inFeatures], 0, 0.1, 'float32', 3) as tf.Tensor2D;
    linear.addDelta('test', (x) => tf.matMul(x, deltaWeight, false, true) as tf.Tensor2D);
    const withDelta = logitsOf();
    linear.removeDelta('test');
    expect(maxDiff(withDelta, base)).toBeGreaterThan(1e-3);
    linear.merge(deltaWeight);
    expect(maxDiff(logitsOf(), withDelta)).toBeLessThan(1e-5);
    linear.merge(deltaWeight, -1);
    expect(maxDiff(logitsOf(), base)).toBeLessThan(1e-5);
    deltaWeight.dispose();
  });

  it('merge refuses a ΔW with NaN or of the wrong shape, and leaves the weight alone', () => {
    const linear = model.linears.get('model.layers.0.self_attn.q_proj')!;
    const before = linear.weight.dataSync().slice();
    const bad = tf.fill([linear.outFeatures, linear.inFeatures], Number.NaN) as tf.Tensor2D;
    expect(() => linear.merge(bad)).toThrow('model.layers.0.self_attn.q_proj: ΔW holds NaN or Inf; refusing to merge');
    expect(() => linear.merge(tf.zeros([2, 2]))).toThrow(/ΔW has shape \[2,2\]/);
    expect(Array.from(linear.weight.dataSync())).toEqual(Array.from(before));
    bad.dispose();
  });

  it('sublayer hooks see [B, T, d] before the residual add, in every layer, and can be removed', () => {
    const base = logitsOf();
    const seen: string[] = [];
    const handles = [0, 1].flatMap((layer) => [
      model.hooks.addSublayerHook('afterAttention', layer, (h, l) => {
        seen.push(`attention ${l} [${h.shape}]`);
        return h;
      }),
      model.hooks.addSublayerHook('afterFfn', layer, (h, l) => {
        seen.push(`ffn ${l}`);
        return tf.mul(h, 0) as tf.Tensor3D;
      }),
    ]);
    const hooked = logitsOf();
    expect(seen).toEqual(['attention 0 [1,5,32]', 'ffn 0', 'attention 1 [1,5,32]', 'ffn 1']);
    expect(maxDiff(hooked, base)).toBeGreaterThan(1e-3);
    for (const handle of handles) handle.remove();
    expect(maxDiff(logitsOf(), base)).toBe(0);
    expect(() => model.hooks.addSublayerHook('afterFfn', 2, (h) => h)).toThrow(
      'afterFfn hook: layer 2 is outside 0..1',
    );
  });
});
