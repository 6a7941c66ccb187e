// randomModel: any supported architecture from a config alone, weights generated at the shapes the
// model asks for (benchmarks of a Llama or GPT-2 shape with no download).
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { LlamaModel, randomGpt2, randomModel } from '../src/index.js';

const LLAMA = {
  model_type: 'llama',
  vocab_size: 50,
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 64,
};

describe('randomModel', () => {
  it('builds a Llama from its config, with one-valued norms and a deterministic body', () => {
    const a = randomModel(LLAMA);
    const b = randomModel(LLAMA);
    expect(a).toBeInstanceOf(LlamaModel);
    const parameters = a.parameters;
    const norm = parameters.get('model.layers.0.input_layernorm.weight')!;
    expect([...norm.dataSync()]).toEqual(new Array(16).fill(1));
    const query = parameters.get('model.layers.0.self_attn.q_proj.weight')!;
    expect(query.shape).toEqual([16, 16]);
    const values = query.dataSync();
    expect(Math.max(...values.map(Math.abs))).toBeLessThanOrEqual(0.02);
    expect(new Set(values).size).toBeGreaterThan(200);
    // another tensor of the same shape draws another stream
    expect([...parameters.get('model.layers.0.self_attn.o_proj.weight')!.dataSync()]).not.toEqual([...values]);
    const ids = [[1, 2, 3, 4]];
    const la = a.forward({ inputIds: ids }).logits;
    const lb = b.forward({ inputIds: ids }).logits;
    expect(la.shape).toEqual([1, 4, 50]);
    expect(tf.max(tf.abs(tf.sub(la, lb))).dataSync()[0]).toBe(0);
    a.dispose();
    b.dispose();
  });

  it('rejects an unsupported architecture by name', () => {
    expect(() => randomModel({ model_type: 't5' })).toThrow(/unsupported model_type "t5"/);
  });

  it('makes GPT-2 shapes', () => {
    const model = randomGpt2({ layers: 1, hidden: 8, heads: 2, vocab: 20, positions: 16 });
    expect(model.parameters.get('transformer.h.0.attn.c_attn.weight')!.shape).toEqual([24, 8]); // held [out, in]
    model.dispose();
  });
});
