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
import { generate } from '@peft/models';
import {
  fixtureHosts,
  forwardInput,
  greedyOptions,
  logits,
  maxDiff,
  maxDiffAtRealTokens,
  parityReport,
  patternExamples,
  readJsonFixture,
  readSafetensorsFixture,
  type OracleGreedy,
  type OracleInput,
} from '@peft/test-helpers';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { PrefixTuningConfig, bake } from '../src/index.js';

const FIXTURES = path.join(import.meta.dirname, 'fixtures');
const manifest = readJsonFixture<{ cases: { name: string; model: string; trainable: number }[] }>(
  path.join(FIXTURES, 'manifest.json'),
);
const host = fixtureHosts();
const record = parityReport('[prefix parity] max |ours - peft|');

describe.each(manifest.cases)('a prefix saved by Python peft: $name', ({ name, model, trainable }) => {
  const directory = path.join(FIXTURES, name);
  const inputs = readJsonFixture<{ forward: Record<string, OracleInput>; greedy: OracleGreedy[] }>(
    path.join(directory, 'inputs.json'),
  );
  const expected = readSafetensorsFixture(path.join(directory, 'expected.safetensors'));

  it("gives peft's logits (plain and padded) and greedy tokens", async () => {
    const base = await host(model);
    const peft = await PeftModel.fromPretrained(base, path.join(directory, 'adapter'));
    for (const key of ['plain', 'right_padded']) {
      const input = inputs.forward[key]!;
      const want = expected.tensor(`${key}.logits`);
      const diff = maxDiffAtRealTokens(
        logits(peft, forwardInput(input)),
        want.values,
        want.shape,
        input.attention_mask,
      );
      record(name, diff);
      expect(diff).toBeLessThan(1e-4);
    }
    for (const greedy of inputs.greedy) {
      const { sequences } = generate(base, greedyOptions(greedy));
      expect(sequences).toEqual(greedy.output_ids);
    }
    // peft counted while training (MLP included); a loaded prefix is the table peft saved
    const config = readJsonFixture<{
      num_virtual_tokens: number;
      num_layers: number;
      token_dim: number;
      prefix_projection: boolean;
    }>(path.join(directory, 'adapter', 'adapter_config.json'));
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
    const input = { inputIds: [[3, 5, 7, 9, 11]] };
    const before = logits(model, input);
    const storeBefore = memoryStore();
    await model.saveAdapter(storeBefore);
    const withMlp = model.parameterCount().trainable;
    bake(model);
    expect(maxDiff(logits(model, input), before)).toBeLessThan(1e-6);
    expect(model.parameterCount().trainable).toBe(4 * 2 * 2 * 24);
    expect(withMlp).toBe(4 * 24 + 24 * 10 + 10 + 10 * 96 + 96);
    const storeAfter = memoryStore();
    await model.saveAdapter(storeAfter);
    const a = parseSafetensors(storeBefore.files.get('adapter_model.safetensors')!).tensor('prompt_embeddings');
    const b = parseSafetensors(storeAfter.files.get('adapter_model.safetensors')!).tensor('prompt_embeddings');
    expect(b.shape).toEqual([4, 96]);
    expect(maxDiff(a.values, b.values)).toBeLessThan(1e-6);
    model.dispose();
    const reloaded = await PeftModel.fromPretrained(base, storeAfter);
    expect(maxDiff(logits(reloaded, input), before)).toBeLessThan(1e-6);
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
      "data[0].inputIds: 30 tokens plus the adapter's 5 virtual tokens need 35 positions, more than the model's 32; truncate the examples to 27 tokens",
    );
    model.dispose();
  });

  it('trains end to end: the loss falls, only the prefix changes (with and without projection)', async () => {
    for (const prefixProjection of [false, true]) {
      const base = await host('llama-gqa-untied');
      const frozen = new Map([...base.parameters].map(([n, v]) => [n, v.dataSync().slice()]));
      const model = getPeftModel(base, new PrefixTuningConfig({ numVirtualTokens: 4, prefixProjection }));
      const data = patternExamples(12);
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
