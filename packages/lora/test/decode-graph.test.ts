// LoRA in a decoding step run as one graph (the native backend's GRAPH_KERNEL): an unmerged adapter
// is written into the graph, a disabled or merged one leaves it plain; every case gives what the
// op-by-op step gives.
import { availableBackends, loadBackend } from '@peft/backend';
import { GRAPH_KERNEL, getPeftModel } from '@peft/core';
import { generate, randomModel } from '@peft/models';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { LoraConfig } from '../src/index.js';

const native = (await availableBackends()).includes('tensorflow');

let graphRuns = 0;
let graphKernel: tf.KernelConfig | undefined;

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

/** `run` op by op (the graph kernel taken away), and how many graph runs `run` made with it. */
function bothWays<T>(run: () => T): { graph: T; plain: T; runs: number } {
  const before = graphRuns;
  const graph = run();
  const runs = graphRuns - before;
  tf.unregisterKernel(GRAPH_KERNEL, 'tensorflow');
  try {
    return { graph, plain: run(), runs };
  } finally {
    tf.registerKernel(counting());
  }
}

const CONFIGS: [string, Record<string, unknown>, string[]][] = [
  [
    'GPT-2',
    { model_type: 'gpt2', vocab_size: 61, n_positions: 40, n_embd: 24, n_layer: 2, n_head: 3 },
    ['c_attn', 'c_fc'],
  ],
  [
    'Llama',
    {
      model_type: 'llama',
      vocab_size: 53,
      hidden_size: 32,
      intermediate_size: 40,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
    },
    ['q_proj', 'v_proj', 'down_proj'],
  ],
];

/** The logits of every step of a greedy run from the host's current state. */
function stepLogits(model: Parameters<typeof generate>[0], steps: number): number[][] {
  const options = { inputIds: [[3, 1, 4, 1, 5]], maxNewTokens: steps };
  const logits: number[][] = [];
  const { sequences } = generate(model, options);
  // the same tokens again, one step at a time, keeping each step's logits
  const host = 'host' in model ? model.host : model;
  let output = host.forward({ inputIds: options.inputIds, useCache: true });
  for (const token of sequences[0]!.slice(5, 5 + steps)) {
    const next = host.forward({ inputIds: [[token]], cache: output.cache!, useCache: true });
    tf.dispose([output.logits, ...output.cache!.layers.flatMap((l) => [l.key, l.value])]);
    logits.push([...(next.logits.dataSync() as Float32Array)]);
    output = next;
  }
  tf.dispose([output.logits, ...output.cache!.layers.flatMap((l) => [l.key, l.value])]);
  return logits;
}

function maxDiff(a: number[][], b: number[][]): number {
  expect(a.length).toBe(b.length);
  return Math.max(...a.flatMap((row, i) => row.map((v, j) => Math.abs(v - b[i]![j]!))));
}

describe.runIf(native)('LoRA in a decoding graph (tensorflow backend)', () => {
  beforeAll(async () => {
    await loadBackend('tensorflow');
    graphKernel = tf.getKernel(GRAPH_KERNEL, 'tensorflow');
    tf.unregisterKernel(GRAPH_KERNEL, 'tensorflow');
    tf.registerKernel(counting());
  });
  afterAll(() => {
    tf.unregisterKernel(GRAPH_KERNEL, 'tensorflow');
    tf.registerKernel(graphKernel!);
  });

  it.each(CONFIGS)('%s: adapted, disabled, merged and a second adapter step as op by op', (_, config, targets) => {
    const host = randomModel(config);
    const base = stepLogits(host, 3);
    // initLoraWeights false: B is random too, so the adapter changes the outputs
    const lora = (seed: number) =>
      new LoraConfig({ r: 4, loraAlpha: 16, targetModules: targets, initLoraWeights: false, initSeed: seed });
    const model = getPeftModel(host, lora(3));
    const adapted = bothWays(() => stepLogits(model, 3));
    expect(adapted.runs).toBeGreaterThan(0);
    expect(maxDiff(adapted.graph, adapted.plain)).toBeLessThan(1e-5);
    expect(maxDiff(adapted.graph, base)).toBeGreaterThan(1e-3); // the adapter is in the graph

    const disabled = bothWays(() => model.withAdapterDisabled(() => stepLogits(model, 3)));
    expect(disabled.runs).toBeGreaterThan(0);
    expect(maxDiff(disabled.graph, base)).toBeLessThan(1e-5);

    model.merge();
    const merged = bothWays(() => stepLogits(model, 3));
    model.unmerge();
    expect(merged.runs).toBeGreaterThan(0);
    expect(maxDiff(merged.graph, adapted.graph)).toBeLessThan(1e-4);

    model.addAdapter('second', lora(11));
    model.setAdapter('second');
    const second = bothWays(() => stepLogits(model, 3));
    expect(second.runs).toBeGreaterThan(0);
    expect(maxDiff(second.graph, second.plain)).toBeLessThan(1e-5);
    expect(maxDiff(second.graph, adapted.graph)).toBeGreaterThan(1e-3);
    model.setAdapter('default');
    expect(maxDiff(stepLogits(model, 3), adapted.graph)).toBeLessThan(1e-6);
    model.dispose();
  });
});
