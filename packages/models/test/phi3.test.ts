// What the Phi-3 host refuses, and the module paths LoRA and savePretrained see. Parity with
// transformers is in parity.test.ts, generate.test.ts and gradients.test.ts (fixtures phi3-*).
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ConfigReader, loadPretrained, parsePhi3Config, type TransformerHost } from '../src/index.js';
import { FIXTURES } from './fixtures.js';

const TINY = {
  model_type: 'phi3',
  vocab_size: 50,
  hidden_size: 32,
  intermediate_size: 40,
  num_hidden_layers: 1,
  num_attention_heads: 4,
};
const parse = (overrides: Record<string, unknown>) =>
  parsePhi3Config(new ConfigReader({ ...TINY, ...overrides }, 'config.json'));

describe('phi3 config', () => {
  it('reads Phi-3-mini-4k style fields: rope_theta, rope_scaling null, sliding_window, dropout ignored', () => {
    const config = parse({ rope_theta: 10000, rope_scaling: null, sliding_window: 2047, resid_pdrop: 0.1 });
    expect(config.rope).toMatchObject({ type: 'default', theta: 10000, rotaryDim: 8, attentionFactor: 1 });
    expect(config.slidingWindow).toBe(2047);
    expect(config.numKeyValueHeads).toBe(4);
  });

  it('takes partial_rotary_factor from the top level or rope_parameters', () => {
    expect(parse({ partial_rotary_factor: 0.5 }).rope.rotaryDim).toBe(4);
    expect(
      parse({ rope_parameters: { rope_type: 'default', rope_theta: 1e4, partial_rotary_factor: 0.75 } }).rope.rotaryDim,
    ).toBe(6);
  });

  it.each([
    [
      { rope_scaling: { type: 'dynamic', factor: 2 } },
      'config.json: "rope_scaling" rope_type "dynamic" is not supported (supported: default, longrope)',
    ],
    [
      { partial_rotary_factor: 0.4 },
      '"partial_rotary_factor" 0.4 gives 3 rotary dimensions of a head of 8; expected an even number',
    ],
    [
      { rope_scaling: { type: 'su', short_factor: [1, 1], long_factor: [1, 1, 1, 1] } },
      'config.json: "rope_scaling" short_factor must be 4 positive numbers (rotary dimensions / 2), got [1,1]',
    ],
  ])('refuses %o, naming the field', (overrides, message) => {
    expect(() => parse(overrides)).toThrow(message);
  });

  it('reads LongRoPE ("su", as Phi-3-mini-128k writes it): short factors, attention factor from the context ratio', () => {
    const { rope } = parse({
      max_position_embeddings: 131072,
      original_max_position_embeddings: 4096,
      rope_scaling: { type: 'su', short_factor: [1, 1.5, 2, 3], long_factor: [1, 2, 4, 8] },
    });
    expect(rope).toMatchObject({ type: 'longrope', shortFactor: [1, 1.5, 2, 3], originalMaxPositions: 4096 });
    expect(rope.attentionFactor).toBeCloseTo(Math.sqrt(1 + Math.log(32) / Math.log(4096)), 12);
  });
});

describe('phi3 host', () => {
  let longrope: TransformerHost;
  beforeAll(async () => {
    longrope = await loadPretrained(path.join(FIXTURES, 'phi3-longrope-mqa-tied'));
  });
  afterAll(() => longrope.dispose());

  it('keeps qkv_proj and gate_up_proj fused: one projection each, as the checkpoint stores them', () => {
    expect([...longrope.linears.keys()].filter((n) => n.startsWith('model.layers.0.'))).toEqual([
      'model.layers.0.self_attn.qkv_proj',
      'model.layers.0.self_attn.o_proj',
      'model.layers.0.mlp.gate_up_proj',
      'model.layers.0.mlp.down_proj',
    ]);
    // 2 query heads + 2·1 key/value heads of 16; gate and up of 36
    expect(longrope.linears.get('model.layers.0.self_attn.qkv_proj')!.outFeatures).toBe(64);
    expect(longrope.linears.get('model.layers.0.mlp.gate_up_proj')!.outFeatures).toBe(72);
  });

  it("refuses a pass past LongRoPE's original_max_position_embeddings (the long factors are not implemented)", () => {
    const ids = [Array.from({ length: 16 }, (_, i) => 2 + i)];
    longrope.forward({ inputIds: ids }).logits.dispose();
    expect(() => longrope.forward({ inputIds: [[...ids[0]!, 3]] })).toThrow(
      'phi3: a sequence of 17 positions needs LongRoPE\'s long_factor (rope_type "longrope" past original_max_position_embeddings 16)',
    );
  });
});
