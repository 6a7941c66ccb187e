// Gemma 2's config.json as Gemma2Config reads it: its own defaults (head_dim 256, both soft-cappings,
// alternating layer_types, tied head), null as "none", and what the host cannot run refused by name.
import { describe, expect, it } from 'vitest';

import { ConfigReader } from '../src/config.js';
import { parseGemma2Config } from '../src/gemma2.js';

const base = {
  model_type: 'gemma2',
  vocab_size: 89,
  hidden_size: 32,
  intermediate_size: 40,
  num_hidden_layers: 3,
  num_attention_heads: 4,
  num_key_value_heads: 2,
};

const parse = (fields: Record<string, unknown>) =>
  parseGemma2Config(new ConfigReader({ ...base, ...fields }, 'gemma2/config.json'));

describe('a gemma2 config', () => {
  it("takes Gemma2Config's defaults where a field is absent (head_dim 256, not hidden_size / heads)", () => {
    expect(parse({})).toMatchObject({
      headDim: 256,
      queryPreAttentionScalar: 256,
      activation: 'gelu_pytorch_tanh',
      attentionSoftCap: 50,
      finalSoftCap: 30,
      slidingWindow: 4096,
      layerTypes: ['sliding_attention', 'full_attention', 'sliding_attention'],
      tieWordEmbeddings: true,
      attentionBias: false,
      architecture: 'Gemma2ForCausalLM',
    });
  });

  it('reads null soft-capping as none', () => {
    const config = parse({ attn_logit_softcapping: null, final_logit_softcapping: null });
    expect(config).toMatchObject({ attentionSoftCap: null, finalSoftCap: null });
  });

  it('refuses what the host cannot run, naming the field', () => {
    expect(() => parse({ use_bidirectional_attention: true })).toThrow(
      'gemma2/config.json: field "use_bidirectional_attention" is true',
    );
    expect(() => parse({ layer_types: ['sliding_attention', 'full_attention'] })).toThrow(
      'field "layer_types" must list "full_attention" or "sliding_attention" for each of the 3 layers',
    );
    expect(() => parse({ sliding_window: null })).toThrow('field "sliding_window" is null');
    expect(parse({ sliding_window: null, layer_types: Array(3).fill('full_attention') }).slidingWindow).toBeNull();
    expect(() => parse({ rope_parameters: { rope_type: 'yarn', rope_theta: 10000 } })).toThrow(
      '"rope_parameters" rope_type "yarn" is not supported',
    );
  });
});
