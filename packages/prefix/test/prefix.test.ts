import { readFileSync } from 'node:fs';
import path from 'node:path';

import {
  PeftModel,
  getPeftModel,
  memoryStore,
  parseSafetensors,
  train,
  type Example,
  type PrefixTuner,
} from '@peft/core';
import { generate, loadPretrained, type TransformerHost } from '@peft/models';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { PrefixTuningConfig, bake } from '../src/index.js';

const MODELS = path.resolve(import.meta.dirname, '../../models/test/fixtures');
const FIXTURES = path.join(import.meta.dirname, 'fixtures');
const manifest = JSON.parse(readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8')) as {
  cases: { name: string; model: string; trainable: number }[];
};
const hosts: TransformerHost[] = [];
async function host(name: string): Promise<TransformerHost> {
  const loaded = await loadPretrained(path.join(MODELS, name));
  hosts.push(loaded);
  return loaded;
}
afterEach(() => {
  for (const h of hosts.splice(0)) h.dispose();
});
const worst = new Map<string, number>();
afterAll(() =>
  console.log(
    `[prefix parity] max |ours - peft|:\n${[...worst].map(([k, v]) => `  ${k}: ${v.toExponential(2)}`).join('\n')}`,
  ),
);

interface Case {
  input_ids: number[][];
  attention_mask: number[][] | null;
  token_type_ids?: number[][];
}
interface Greedy extends Case {
  max_new_tokens: number;
  output_ids: number[][];
}

function run(model: PeftModel, input: Case): Float32Array {
  const { logits } = model.forward({
    inputIds: input.input_ids,
    ...(input.attention_mask ? { attentionMask: input.attention_mask } : {}),
    ...(input.token_type_ids ? { tokenTypeIds: input.token_type_ids } : {}),
  });
  const values = logits.dataSync() as Float32Array;
  logits.dispose();
  return values;
}

/** Max |a - b| at real tokens (per-token logits) or everywhere ([B, labels]). */
function diffAt(a: Float32Array, b: Float32Array | Int32Array, shape: number[], mask: number[][] | null): number {
  const perToken = shape.length === 3;
  const width = perToken ? shape[2]! : shape[1]!;
  let worstDiff = 0;
  for (let i = 0; i < a.length; i++) {
    const row = Math.floor(i / width);
    if (perToken && mask && mask[Math.floor(row / shape[1]!)]![row % shape[1]!] === 0) continue;
    worstDiff = Math.max(worstDiff, Math.abs(a[i]! - b[i]!));
  }
  return worstDiff;
}

describe.each(manifest.cases)('a prefix saved by Python peft: $name', ({ name, model, trainable }) => {
  const directory = path.join(FIXTURES, name);
  const inputs = JSON.parse(readFileSync(path.join(directory, 'inputs.json'), 'utf8')) as {
    forward: Record<string, Case>;
    greedy: Greedy[];
  };
  const expected = parseSafetensors(readFileSync(path.join(directory, 'expected.safetensors')));

  it("gives peft's logits (plain and padded) and greedy tokens", async () => {
    const base = await host(model);
    const peft = await PeftModel.fromPretrained(base, path.join(directory, 'adapter'));
    for (const key of ['plain', 'right_padded']) {
      const input = inputs.forward[key]!;
      const want = expected.tensor(`${key}.logits`);
      const diff = diffAt(run(peft, input), want.values, want.shape, input.attention_mask);
      worst.set(name, Math.max(worst.get(name) ?? 0, diff));
      expect(diff).toBeLessThan(1e-4);
    }
    for (const greedy of inputs.greedy) {
      const { sequences } = generate(base, {
        inputIds: greedy.input_ids,
        ...(greedy.attention_mask ? { attentionMask: greedy.attention_mask } : {}),
        maxNewTokens: greedy.max_new_tokens,
      });
      expect(sequences).toEqual(greedy.output_ids);
    }
    // peft counted while training (MLP included); a loaded prefix is the table peft saved
    const config = JSON.parse(readFileSync(path.join(directory, 'adapter', 'adapter_config.json'), 'utf8'));
    const table = config.num_virtual_tokens * config.num_layers * 2 * config.token_dim;
    if (!config.prefix_projection) expect(peft.parameterCount().trainable).toBe(trainable);
    else expect(peft.parameterCount().trainable).toBe(table);
    peft.dispose();
  });
});

describe('prefix tuning', () => {
  it('stores P x L x 2 x kvDim values: GPT-2 small with 5 virtual tokens holds 92,160', () => {
    // 5 x 12 layers x 2 x 768 (no GQA)
    expect(5 * 12 * 2 * 768).toBe(92_160);
  });

  it('fills the derived fields from the host (GQA: key/value heads), as peft writes them', async () => {
    const base = await host('llama-gqa-untied');
    const json = new PrefixTuningConfig({ numVirtualTokens: 5, prefixProjection: true }).toJson(base);
    expect(json).toMatchObject({
      num_layers: 2,
      token_dim: 16,
      num_attention_heads: 2,
      encoder_hidden_size: 16,
      num_virtual_tokens: 5,
      peft_type: 'PREFIX_TUNING',
    });
    const model = getPeftModel(base, new PrefixTuningConfig({ numVirtualTokens: 5 }));
    expect(model.parameterCount().trainable).toBe(5 * 2 * 2 * 16);
    model.dispose();
  });

  it('bake() replaces the MLP by its output: same logits (1e-6), same file, table-sized', async () => {
    const base = await host('gpt2-tied');
    const model = getPeftModel(
      base,
      new PrefixTuningConfig({ numVirtualTokens: 4, prefixProjection: true, encoderHiddenSize: 10 }),
    );
    const input: Case = { input_ids: [[3, 5, 7, 9, 11]], attention_mask: null };
    const before = run(model, input);
    const storeBefore = memoryStore();
    await model.saveAdapter(storeBefore);
    const withMlp = model.parameterCount().trainable;
    bake(model);
    expect(diffAt(run(model, input), before, [1, 5, 97], null)).toBeLessThan(1e-6);
    expect(model.parameterCount().trainable).toBe(4 * 2 * 2 * 24);
    expect(withMlp).toBe(4 * 24 + 24 * 10 + 10 + 10 * 96 + 96);
    const storeAfter = memoryStore();
    await model.saveAdapter(storeAfter);
    const a = parseSafetensors(storeBefore.files.get('adapter_model.safetensors')!).tensor('prompt_embeddings');
    const b = parseSafetensors(storeAfter.files.get('adapter_model.safetensors')!).tensor('prompt_embeddings');
    expect(b.shape).toEqual([4, 96]);
    expect(diffAt(a.values as Float32Array, b.values, [4, 96], null)).toBeLessThan(1e-6);
    model.dispose();
    const reloaded = await PeftModel.fromPretrained(base, storeAfter);
    expect(diffAt(run(reloaded, input), before, [1, 5, 97], null)).toBeLessThan(1e-6);
    reloaded.dispose();
  });

  it('says how much context the prefix takes, and refuses an input that no longer fits, naming both lengths', async () => {
    const base = await host('gpt2-tied');
    const model = getPeftModel(base, new PrefixTuningConfig({ numVirtualTokens: 5 }));
    expect((model.tuner() as PrefixTuner).virtualTokens).toBe(5);
    expect(base.hooks.virtualTokens).toBe(5);
    expect(() => model.forward({ inputIds: [new Array(28).fill(3)] })).toThrow(
      "sequence of 33 positions (5 virtual + 28 real) is longer than the model's position table (max_position_embeddings 32)",
    );
    const data: Example[] = [{ inputIds: new Array(30).fill(3), labels: new Array(30).fill(3) }];
    await expect(
      train(model, { data, task: 'causal-lm', padTokenId: 0, batchSize: 1, learningRate: 1e-2 }),
    ).rejects.toThrow(
      "a batch of 30 tokens plus the adapter's 5 virtual tokens needs 35 positions, more than the model's 32; truncate the examples to 27 tokens",
    );
    model.dispose();
  });

  it('trains end to end: the loss falls, only the prefix changes (with and without projection)', async () => {
    for (const prefixProjection of [false, true]) {
      const base = await host('llama-gqa-untied');
      const frozen = new Map([...base.parameters].map(([n, v]) => [n, v.dataSync().slice()]));
      const model = getPeftModel(base, new PrefixTuningConfig({ numVirtualTokens: 4, prefixProjection }));
      const data: Example[] = Array.from({ length: 12 }, (_, i) => {
        const ids = Array.from({ length: 8 }, (_, t) => 2 + ((t * 3 + i) % 7));
        return { inputIds: ids, labels: ids };
      });
      const result = await train(model, {
        data,
        task: 'causal-lm',
        padTokenId: 0,
        batchSize: 4,
        epochs: 4,
        learningRate: 3e-2,
      });
      expect(result.losses.at(-1)!, `projection ${prefixProjection}`).toBeLessThan(result.losses[0]!);
      for (const [n, v] of base.parameters) expect(Array.from(v.dataSync()), n).toEqual(Array.from(frozen.get(n)!));
      expect(tf.memory().numTensors).toBeGreaterThan(0);
      model.dispose();
    }
  });
});
