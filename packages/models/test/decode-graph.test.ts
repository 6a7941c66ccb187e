// A decoding step run as one TensorFlow graph (the native backend's GRAPH_KERNEL) computes what the
// op-by-op pass computes: the same logits and caches within float32 rounding, the tokens transformers
// gives on the fixtures, and it stands aside wherever the graph would leave something out.
import { availableBackends, loadBackend } from '@peft/backend';
import { GRAPH_KERNEL, type HostForwardInput, type HostForwardOutput, type KeyValueCache } from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { generate, loadPretrained, randomModel, type TransformerHost } from '../src/index.js';
import { loadFixtures } from './fixtures.js';

const native = (await availableBackends()).includes('tensorflow');

/** Graph runs since the counter was installed. */
let graphRuns = 0;
let graphKernel: tf.KernelConfig | undefined;

/** `run` with the graph kernel taken away: the host decodes op by op. */
function opByOp<T>(run: () => T): T {
  tf.unregisterKernel(GRAPH_KERNEL, 'tensorflow');
  try {
    return run();
  } finally {
    tf.registerKernel(counting());
  }
}

function counting(): tf.KernelConfig {
  const kernel = graphKernel!;
  return {
    ...kernel,
    kernelFunc: (args) => {
      graphRuns += 1;
      return kernel.kernelFunc(args);
    },
  };
}

function disposeOutput(output: HostForwardOutput): void {
  tf.dispose([output.logits, ...(output.cache?.layers.flatMap((l) => [l.key, l.value]) ?? [])]);
}

function maxDiff(a: tf.Tensor, b: tf.Tensor): number {
  expect(a.shape).toEqual(b.shape);
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
}

/**
 * The first pass over `prompt` with a cache, then one step of `next` both ways: the graph's logits
 * and caches against the op-by-op pass's. Returns the largest difference, and whether the graph ran.
 */
function compareStep(
  host: TransformerHost,
  prompt: HostForwardInput,
  step: (cache: KeyValueCache) => HostForwardInput,
): { logits: number; cache: number; ran: boolean } {
  const first = host.forward({ ...prompt, useCache: true });
  const cache = first.cache!;
  const before = graphRuns;
  const graph = host.forward(step(cache));
  const ran = graphRuns > before;
  const plain = opByOp(() => host.forward(step(cache)));
  // a headless op-by-op pass returns the head's input and the head; the graph, the logits
  const plainLogits = plain.lmHead
    ? tf.tidy(() => tf.einsum('btd,vd->btv', plain.logits, plain.lmHead!.weight))
    : plain.logits.clone();
  const result = {
    logits: maxDiff(graph.logits, plainLogits),
    cache: Math.max(
      ...graph.cache!.layers.flatMap((layer, i) => [
        maxDiff(layer.key, plain.cache!.layers[i]!.key),
        maxDiff(layer.value, plain.cache!.layers[i]!.value),
      ]),
    ),
    ran,
  };
  expect(graph.cache!.length).toBe(plain.cache!.length);
  expect(graph.cache!.virtual).toBe(plain.cache!.virtual);
  for (const output of [first, graph, plain]) disposeOutput(output);
  plainLogits.dispose();
  return result;
}

const LLAMA = {
  model_type: 'llama',
  vocab_size: 53,
  hidden_size: 32,
  intermediate_size: 40,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-5,
};

const GPT2 = { model_type: 'gpt2', vocab_size: 61, n_positions: 40, n_embd: 24, n_layer: 2, n_head: 3 };

describe.runIf(native)('decoding step as one graph (tensorflow backend)', () => {
  beforeAll(async () => {
    await loadBackend('tensorflow');
    graphKernel = tf.getKernel(GRAPH_KERNEL, 'tensorflow');
    expect(graphKernel).toBeDefined();
    tf.unregisterKernel(GRAPH_KERNEL, 'tensorflow');
    tf.registerKernel(counting());
  });
  afterAll(() => {
    tf.unregisterKernel(GRAPH_KERNEL, 'tensorflow');
    tf.registerKernel(graphKernel!);
  });

  const llama3Rope = {
    rope_type: 'llama3',
    factor: 8,
    low_freq_factor: 1,
    high_freq_factor: 4,
    original_max_position_embeddings: 16,
  };
  const llama3 = { ...LLAMA, max_position_embeddings: 64, rope_scaling: llama3Rope };
  const variants: [string, Record<string, unknown>][] = [
    ['GPT-2, gelu_new, tied head', GPT2],
    [
      'GPT-2, exact gelu, untied head, inverse-layer scaling',
      { ...GPT2, activation_function: 'gelu', tie_word_embeddings: false, scale_attn_by_inverse_layer_idx: true },
    ],
    ['GPT-2, relu, unscaled attention', { ...GPT2, activation_function: 'relu', scale_attn_weights: false }],
    ['Llama, grouped queries, llama3 rope', llama3],
    [
      'Llama, one key/value head, biases, tied head',
      { ...LLAMA, num_key_value_heads: 1, attention_bias: true, mlp_bias: true, tie_word_embeddings: true },
    ],
    ['Qwen2 (q, k, v biases)', { ...LLAMA, model_type: 'qwen2' }],
    ['Qwen3 (q and k norms, head_dim 16)', { ...LLAMA, model_type: 'qwen3', head_dim: 16 }],
    ['Mistral, a window of 3 keys', { ...LLAMA, model_type: 'mistral', sliding_window: 3 }],
    ['Phi-3, partial rotary, grouped queries', { ...LLAMA, model_type: 'phi3', partial_rotary_factor: 0.5 }],
    [
      'Phi-3, LongRoPE (short factors, attention factor)',
      {
        ...LLAMA,
        model_type: 'phi3',
        num_key_value_heads: 1,
        max_position_embeddings: 256,
        original_max_position_embeddings: 16,
        rope_scaling: { type: 'longrope', short_factor: [1, 1.5, 2, 3], long_factor: [1, 2, 4, 8] },
      },
    ],
  ];
  it.each(variants)('%s: logits and cache equal the op-by-op step', (_, config) => {
    const host = randomModel(config);
    const before = tf.memory().numTensors;
    const result = compareStep(host, { inputIds: [[3, 14, 15, 9, 2]] }, (cache) => ({
      inputIds: [[26]],
      cache,
      useCache: true,
    }));
    expect(result.ran).toBe(true);
    expect(result.logits).toBeLessThan(1e-5);
    expect(result.cache).toBeLessThan(1e-6);
    expect(tf.memory().numTensors).toBe(before);
    host.dispose();
  });

  it('a left-padded batch with its mask and positions, and virtual positions in the cache', () => {
    const host = randomModel(GPT2);
    const d = 24;
    const prefixLength = 3;
    const prefix = tf.randomNormal([2, 3, prefixLength, d / 3], 0, 1, 'float32', 5) as tf.Tensor4D;
    const removal = host.hooks.setKeyValuePrefix({
      length: prefixLength,
      prefix: () => ({ key: prefix, value: prefix }),
    });
    const mask = [
      [0, 0, 1, 1],
      [1, 1, 1, 1],
    ];
    const result = compareStep(
      host,
      {
        inputIds: [
          [0, 0, 7, 8],
          [5, 6, 7, 8],
        ],
        attentionMask: mask,
        positionIds: [
          [1, 1, 3, 4],
          [3, 4, 5, 6],
        ],
      },
      (cache) => ({
        inputIds: [[9], [10]],
        attentionMask: mask.map((row) => [...row, 1]),
        positionIds: [[5], [7]],
        cache,
        useCache: true,
        headless: true,
      }),
    );
    expect(result.ran).toBe(true);
    expect(result.logits).toBeLessThan(1e-5);
    expect(result.cache).toBeLessThan(1e-6);
    removal.remove();
    prefix.dispose();
    host.dispose();
  });

  it('stands aside for a sublayer hook and a delta path, and runs again on a merged weight', () => {
    const host = randomModel(GPT2);
    const step = (cache: KeyValueCache): HostForwardInput => ({ inputIds: [[4]], cache, useCache: true });
    const hook = host.hooks.addSublayerHook('afterFfn', 1, (h) => tf.mul(h, 0.5));
    expect(compareStep(host, { inputIds: [[1, 2]] }, step).ran).toBe(false);
    hook.remove();
    const linear = host.linears.get('transformer.h.0.attn.c_attn')!;
    const delta = tf.randomNormal([linear.outFeatures, linear.inFeatures], 0, 0.5, 'float32', 9) as tf.Tensor2D;
    linear.addDelta('test', (x) => tf.matMul(x, delta, false, true) as tf.Tensor2D);
    const withDelta = host.forward({ inputIds: [[1, 2, 4]] });
    expect(compareStep(host, { inputIds: [[1, 2]] }, step).ran).toBe(false);
    linear.removeDelta('test');
    linear.merge(delta);
    const merged = compareStep(host, { inputIds: [[1, 2]] }, step);
    expect(merged.ran).toBe(true);
    expect(merged.logits).toBeLessThan(1e-5);
    // the merged weight is what the graph read: its step gives the delta path's logits
    const first = host.forward({ inputIds: [[1, 2]], useCache: true });
    const stepped = host.forward(step(first.cache!));
    const last = tf.slice(withDelta.logits, [0, 2, 0], [1, 1, -1]);
    expect(maxDiff(stepped.logits, last)).toBeLessThan(1e-4);
    for (const output of [first, stepped]) disposeOutput(output);
    tf.dispose([withDelta.logits, last, delta]);
    host.dispose();
  });

  it('a graph libtensorflow refuses is said once and dropped: the host decodes op by op; PEFT_DECODE_GRAPH=0 skips it', () => {
    const host = randomModel(GPT2);
    const step = (cache: KeyValueCache): HostForwardInput => ({ inputIds: [[4]], cache, useCache: true });
    tf.unregisterKernel(GRAPH_KERNEL, 'tensorflow');
    tf.registerKernel({
      ...graphKernel!,
      kernelFunc: () => {
        graphRuns += 1;
        throw new Error('PeftGraph: libtensorflow refused the graph (test)');
      },
    });
    const warnings: string[] = [];
    const warn = console.warn;
    console.warn = (message: string) => warnings.push(message);
    try {
      const before = graphRuns;
      for (let i = 0; i < 2; i++) {
        const result = compareStep(host, { inputIds: [[1, 2]] }, step);
        expect(result.logits).toBe(0); // both steps ran op by op
      }
      expect(graphRuns - before).toBe(1); // tried once, not again
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(
        /decoding gpt2 as one graph failed, decoding op by op instead .*refused the graph \(test\)/,
      );
    } finally {
      console.warn = warn;
      tf.unregisterKernel(GRAPH_KERNEL, 'tensorflow');
      tf.registerKernel(counting());
    }
    const fresh = randomModel(GPT2);
    process.env.PEFT_DECODE_GRAPH = '0';
    try {
      expect(compareStep(fresh, { inputIds: [[1, 2]] }, step).ran).toBe(false);
    } finally {
      delete process.env.PEFT_DECODE_GRAPH;
    }
    expect(compareStep(fresh, { inputIds: [[1, 2]] }, step).ran).toBe(true);
    host.dispose();
    fresh.dispose();
  });

  it("refuses a Phi-3 step past LongRoPE's short range as the op-by-op step does", () => {
    const host = randomModel({
      ...LLAMA,
      model_type: 'phi3',
      max_position_embeddings: 256,
      original_max_position_embeddings: 4,
      rope_scaling: { type: 'longrope', short_factor: [1, 1.5, 2, 3], long_factor: [1, 2, 4, 8] },
    });
    const first = host.forward({ inputIds: [[1, 2, 3, 4]], useCache: true });
    const before = graphRuns;
    expect(() => host.forward({ inputIds: [[5]], cache: first.cache!, useCache: true })).toThrow(
      "phi3: a sequence of 5 positions needs LongRoPE's long_factor",
    );
    expect(graphRuns).toBe(before);
    disposeOutput(first);
    host.dispose();
  });

  it('is not used when training or when a gradient is recorded', () => {
    const host = randomModel(GPT2);
    const first = host.forward({ inputIds: [[1, 2]], useCache: true });
    const before = graphRuns;
    const training = host.forward({ inputIds: [[3]], cache: first.cache!, useCache: true, training: true, seed: 1 });
    const { value } = tf.valueAndGrad((x: tf.Tensor) => {
      const out = host.forward({ inputIds: [[3]], cache: first.cache!, useCache: true });
      const sum = tf.sum(tf.mul(out.logits, x));
      disposeOutput(out);
      return sum;
    })(tf.scalar(1));
    expect(graphRuns).toBe(before);
    for (const output of [first, training]) disposeOutput(output);
    value.dispose();
    host.dispose();
  });

  const fixtures = loadFixtures().filter((f) => f.greedy.length > 0);
  it.each(fixtures.map((f) => [f.name, f] as const))(
    '%s: generate gives the tokens transformers gives',
    async (_, fixture) => {
      const model = await loadPretrained(fixture.directory);
      const before = graphRuns;
      for (const greedy of fixture.greedy) {
        const { sequences } = generate(model, {
          inputIds: greedy.input_ids,
          ...(greedy.attention_mask ? { attentionMask: greedy.attention_mask } : {}),
          maxNewTokens: greedy.max_new_tokens,
        });
        expect(sequences).toEqual(greedy.output_ids);
      }
      // the architectures that write their step as a graph ran it
      if (['gpt2', 'llama', 'qwen2', 'qwen3', 'mistral', 'phi3'].includes(fixture.modelType))
        expect(graphRuns).toBeGreaterThan(before);
      model.dispose();
    },
  );
});
