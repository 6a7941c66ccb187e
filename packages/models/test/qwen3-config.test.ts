// Qwen3's config.json as Qwen3Config reads it: head_dim's own default, and the sliding window by
// use_sliding_window, max_window_layers and layer_types. What the host cannot run is refused by name.
import { describe, expect, it } from 'vitest';

import { ConfigReader } from '../src/config.js';
import { parseLlamaConfig } from '../src/llama.js';

const base = {
  model_type: 'qwen3',
  vocab_size: 79,
  hidden_size: 32,
  intermediate_size: 40,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
};

const parse = (fields: Record<string, unknown>) =>
  parseLlamaConfig(new ConfigReader({ ...base, ...fields }, 'qwen3/config.json'));

describe('a qwen3 config', () => {
  it('has q/k norms, no attention bias and head_dim 128 unless given (not hidden_size / heads)', () => {
    const config = parse({});
    expect(config).toMatchObject({ queryKeyNorm: true, attentionBias: false, headDim: 128, slidingWindow: null });
    expect(parse({ head_dim: 12, attention_bias: true })).toMatchObject({ headDim: 12, attentionBias: true });
    expect(parse({}).architecture).toBe('Qwen3ForCausalLM');
  });

  it('has no window unless use_sliding_window is set (sliding_window alone does nothing)', () => {
    expect(parse({ sliding_window: 4, max_window_layers: 0 }).slidingWindow).toBeNull();
    expect(parse({ use_sliding_window: true, sliding_window: 4, max_window_layers: 0 }).slidingWindow).toBe(4);
    expect(parse({ use_sliding_window: true, max_window_layers: 0 }).slidingWindow).toBe(4096); // Qwen3Config's default
    expect(parse({ use_sliding_window: true, sliding_window: null, max_window_layers: 0 }).slidingWindow).toBeNull();
    // every layer below max_window_layers is full attention
    expect(parse({ use_sliding_window: true, sliding_window: 4, max_window_layers: 4 }).slidingWindow).toBeNull();
    const sliding = Array(4).fill('sliding_attention');
    expect(parse({ use_sliding_window: true, sliding_window: 4, layer_types: sliding }).slidingWindow).toBe(4);
  });

  it('refuses full and sliding layers mixed, naming the fields', () => {
    expect(() => parse({ use_sliding_window: true, sliding_window: 4, max_window_layers: 2 })).toThrow(
      'qwen3/config.json: "layer_types" mixes full_attention and sliding_attention layers (full_attention, full_attention, sliding_attention, sliding_attention; from "use_sliding_window" and "max_window_layers" when not given): not supported, only a window on every layer or on none',
    );
    const mixed = ['full_attention', 'sliding_attention', 'full_attention', 'sliding_attention'];
    expect(() => parse({ use_sliding_window: true, sliding_window: 4, layer_types: mixed })).toThrow(
      '"layer_types" mixes full_attention and sliding_attention layers',
    );
  });

  it('refuses sliding layers without a window, and layer_types of the wrong length or kind', () => {
    expect(() => parse({ layer_types: Array(4).fill('sliding_attention') })).toThrow(
      'qwen3/config.json: "layer_types" has sliding_attention layers but no window ("use_sliding_window" is false, "sliding_window" null)',
    );
    expect(() => parse({ layer_types: ['full_attention'] })).toThrow(
      'qwen3/config.json: field "layer_types" must list "full_attention" or "sliding_attention" for each of the 4 layers ("num_hidden_layers"), got ["full_attention"]',
    );
    expect(() => parse({ layer_types: Array(4).fill('chunked_attention') })).toThrow('field "layer_types" must list');
  });
});

describe('a qwen2 config resolves its window as Qwen2Config does (as Qwen3Config)', () => {
  const qwen2 = (fields: Record<string, unknown>) =>
    parseLlamaConfig(new ConfigReader({ ...base, model_type: 'qwen2', ...fields }, 'qwen2/config.json'));

  it('slides only from layer max_window_layers on (default 28), and only with use_sliding_window', () => {
    // Qwen2.5's shipped configs: use_sliding_window false, so no window whatever sliding_window says
    expect(qwen2({ sliding_window: 4, max_window_layers: 0 }).slidingWindow).toBeNull();
    // 4 layers below the default max_window_layers of 28: every layer is full attention
    expect(qwen2({ use_sliding_window: true, sliding_window: 4 }).slidingWindow).toBeNull();
    expect(qwen2({ use_sliding_window: true, sliding_window: 4, max_window_layers: 0 }).slidingWindow).toBe(4);
    expect(() => qwen2({ use_sliding_window: true, sliding_window: 4, max_window_layers: 2 })).toThrow(
      'qwen2/config.json: "layer_types" mixes full_attention and sliding_attention layers',
    );
  });
});
