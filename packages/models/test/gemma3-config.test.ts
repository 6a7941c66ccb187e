// Gemma 3's text config.json as Gemma3TextConfig reads it: its own defaults (every 6th layer global,
// two RoPE bases, no soft-capping), rope_parameters nested by layer type or the flat legacy fields,
// and what the host cannot run refused by name.
import { describe, expect, it } from 'vitest';

import { ConfigReader } from '../src/config.js';
import { parseGemma3TextConfig } from '../src/gemma2.js';

const base = {
  model_type: 'gemma3_text',
  vocab_size: 91,
  hidden_size: 32,
  intermediate_size: 40,
  num_hidden_layers: 7,
  num_attention_heads: 4,
  num_key_value_heads: 2,
};

const parse = (fields: Record<string, unknown>) =>
  parseGemma3TextConfig(new ConfigReader({ ...base, ...fields }, 'gemma3/config.json'));

describe('a gemma3_text config', () => {
  it("takes Gemma3TextConfig's defaults where a field is absent", () => {
    const config = parse({});
    expect(config).toMatchObject({
      modelType: 'gemma3_text',
      headDim: 256,
      queryPreAttentionScalar: 256,
      attentionSoftCap: null,
      finalSoftCap: null,
      queryKeyNorm: true,
      architecture: 'Gemma3ForCausalLM',
    });
    expect(config.layerTypes.map((type) => type === 'full_attention')).toEqual([
      false,
      false,
      false,
      false,
      false,
      true,
      false,
    ]);
    expect(config.rope).toMatchObject({ theta: 1_000_000, type: 'default' });
    expect(config.localRope).toMatchObject({ theta: 10_000, type: 'default' });
  });

  it('reads the flat legacy fields: rope_theta, rope_scaling (global) and rope_local_base_freq (local)', () => {
    const config = parse({
      rope_theta: 500,
      rope_local_base_freq: 20,
      rope_scaling: { rope_type: 'linear', factor: 8 },
      sliding_window_pattern: 2,
    });
    expect(config.rope).toMatchObject({ theta: 500, type: 'linear', factor: 8 });
    expect(config.localRope).toMatchObject({ theta: 20, type: 'default', factor: 1 });
    expect(config.layerTypes[1]).toBe('full_attention');
  });

  it('refuses a RoPE scaling it cannot run, naming the field', () => {
    expect(() => parse({ rope_scaling: { rope_type: 'yarn', factor: 8 } })).toThrow(
      'gemma3/config.json: field "rope_scaling" has rope_type "yarn", not supported for gemma3_text',
    );
    expect(() =>
      parse({ rope_parameters: { full_attention: { rope_type: 'dynamic', factor: 2, rope_theta: 1e6 } } }),
    ).toThrow('field "rope_parameters.full_attention" has rope_type "dynamic"');
    expect(() => parse({ use_bidirectional_attention: true })).toThrow('field "use_bidirectional_attention" is true');
  });
});
