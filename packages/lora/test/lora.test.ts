import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { BASE_ADAPTER, PeftModel, getPeftModel, memoryStore, parseSafetensors, train, type Example } from '@peft/core';
import type { TransformerHost } from '@peft/models';
import {
  fixtureHosts,
  forwardInput,
  logits,
  maxDiff,
  maxDiffAtRealTokens,
  parityReport,
  patternExamples,
  readJsonFixture,
  readSafetensorsFixture,
  type OracleInput,
} from '@peft/test-helpers';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { LoraConfig, resolveTargets } from '../src/index.js';

const FIXTURES = path.join(import.meta.dirname, 'fixtures');
const TOLERANCE = 1e-4;

const manifest = readJsonFixture<{ cases: { name: string; trainable: number; all: number }[] }>(
  path.join(FIXTURES, 'manifest.json'),
);
const host = fixtureHosts();
const record = parityReport('[lora parity] max |ours - peft| per case');

describe.each(manifest.cases)('an adapter saved by Python peft: $name', ({ name, trainable, all }) => {
  const directory = path.join(FIXTURES, name);
  const inputs = readJsonFixture<Record<string, OracleInput>>(path.join(directory, 'inputs.json'));
  const expected = readSafetensorsFixture(path.join(directory, 'expected.safetensors'));

  it("gives peft's logits, unmerged (plain and padded), with the adapter disabled, and merged", async () => {
    const base = await host(name);
    const model = await PeftModel.fromPretrained(base, path.join(directory, 'adapter'));
    for (const key of ['plain', 'right_padded']) {
      const input = inputs[key]!;
      const want = expected.tensor(`${key}.logits`);
      const wantBase = expected.tensor(`${key}.base_logits`);
      expect(
        record(
          `${name} unmerged`,
          maxDiffAtRealTokens(logits(model, forwardInput(input)), want.values, want.shape, input.attention_mask),
        ),
      ).toBeLessThan(TOLERANCE);
      const disabled = model.withAdapterDisabled(() => logits(model, forwardInput(input)));
      expect(
        record(
          `${name} disabled`,
          maxDiffAtRealTokens(disabled, wantBase.values, wantBase.shape, input.attention_mask),
        ),
      ).toBeLessThan(TOLERANCE);
    }
    model.merge();
    expect(
      record(
        `${name} merged`,
        maxDiff(logits(model, forwardInput(inputs.plain!)), expected.tensor('plain.merged_logits').values),
      ),
    ).toBeLessThan(TOLERANCE);
    model.unmerge();
    expect(model.parameterCount()).toEqual({ trainable, all });
    model.dispose();
  });

  it('saves what it loaded: same keys and shapes, equal values, a config peft reads', async () => {
    const base = await host(name);
    const model = await PeftModel.fromPretrained(base, path.join(directory, 'adapter'));
    const store = memoryStore();
    await model.saveAdapter(store);
    const ours = parseSafetensors(store.files.get('adapter_model.safetensors')!);
    const theirs = readSafetensorsFixture(path.join(directory, 'adapter', 'adapter_model.safetensors'));
    expect([...ours.entries.keys()].sort()).toEqual([...theirs.entries.keys()].sort());
    for (const key of theirs.entries.keys()) {
      expect(ours.entries.get(key)!.shape).toEqual(theirs.entries.get(key)!.shape);
      expect(maxDiff(ours.tensor(key).values as Float32Array, theirs.tensor(key).values)).toBe(0);
    }
    const config = JSON.parse(new TextDecoder().decode(store.files.get('adapter_config.json')));
    const python = readJsonFixture<Record<string, unknown>>(path.join(directory, 'adapter', 'adapter_config.json'));
    expect(Object.keys(config)).toEqual(Object.keys(python).sort());
    for (const field of [
      'r',
      'lora_alpha',
      'use_rslora',
      'fan_in_fan_out',
      'task_type',
      'rank_pattern',
      'alpha_pattern',
      'peft_type',
    ]) {
      expect(config[field], field).toEqual(python[field]);
    }
    expect([...(config.target_modules as string[] | string)].sort()).toEqual(
      [...(python.target_modules as string[] | string)].sort(),
    );
    model.dispose();
  });
});

describe('LoraConfig and target modules', () => {
  it('defaults per model type, as peft', async () => {
    const names = async (model: string, config = new LoraConfig()) =>
      resolveTargets(await host(model), config).map((l) => l.name);
    expect(await names('gpt2-tied')).toEqual(['transformer.h.0.attn.c_attn', 'transformer.h.1.attn.c_attn']);
    expect(await names('llama-gqa-untied')).toEqual([
      'model.layers.0.self_attn.q_proj',
      'model.layers.0.self_attn.v_proj',
      'model.layers.1.self_attn.q_proj',
      'model.layers.1.self_attn.v_proj',
    ]);
    expect(await names('qwen3-gqa-tied')).toEqual([
      'model.layers.0.self_attn.q_proj',
      'model.layers.0.self_attn.v_proj',
      'model.layers.1.self_attn.q_proj',
      'model.layers.1.self_attn.v_proj',
    ]);
    // gemma2 and gemma3_text: q_proj, v_proj too (three layers in these fixtures)
    for (const model of ['gemma2-gqa-softcap-tied', 'gemma3-gqa-local-global-tied']) {
      expect(await names(model)).toEqual(
        [0, 1, 2].flatMap((i) => [`model.layers.${i}.self_attn.q_proj`, `model.layers.${i}.self_attn.v_proj`]),
      );
    }
    expect(await names('bert-sequence-classification')).toHaveLength(4);
    expect(await names('gpt2-tied', new LoraConfig({ targetModules: 'all-linear' }))).toHaveLength(8);
    expect(await names('bert-sequence-classification', new LoraConfig({ targetModules: 'all-linear' }))).not.toContain(
      'classifier',
    );
    expect(
      await names('llama-gqa-untied', new LoraConfig({ targetModules: ['q_proj'], layersToTransform: [1] })),
    ).toEqual(['model.layers.1.self_attn.q_proj']);
    expect(
      await names('llama-gqa-untied', new LoraConfig({ targetModules: '.*layers\\.0\\.mlp\\.(up|down)_proj' })),
    ).toEqual(['model.layers.0.mlp.up_proj', 'model.layers.0.mlp.down_proj']);
  });

  it('unknown target modules list the available ones', async () => {
    const base = await host('gpt2-tied');
    expect(() => getPeftModel(base, new LoraConfig({ targetModules: ['q_proj'] }))).toThrow(
      'LoraConfig.targetModules ["q_proj"] matches no linear projection of this gpt2 model; available module names: c_attn, c_proj, c_fc',
    );
  });

  it.each([
    [{ r: 0 }, 'LoraConfig.r: expected a positive integer, got 0'],
    [{ loraDropout: 1 }, 'LoraConfig.loraDropout: expected a number in [0, 1), got 1'],
    [
      { targetModules: [] },
      "LoraConfig.targetModules: expected a non-empty list of module names, a regex or 'all-linear'",
    ],
    [{ targetModules: '(' }, 'LoraConfig.targetModules: expected a valid regular expression'],
    [{ initLoraWeights: 'pissa' as never }, "LoraConfig.initLoraWeights: expected true, false or 'gaussian'"],
    [{ bias: 'all' as never }, 'LoraConfig.bias: expected "none"'],
  ])('refuses %o', (options, message) => {
    expect(() => new LoraConfig(options)).toThrow(message);
  });

  it('counts trainable parameters by the formula: r·(in + out) per target', async () => {
    const base = await host('llama-gqa-untied');
    const model = getPeftModel(base, new LoraConfig({ r: 8 }));
    // q_proj 32 -> 32, v_proj 32 -> 16 (2 kv heads of 8), 2 layers
    expect(model.parameterCount().trainable).toBe(2 * 8 * (32 + 32 + (32 + 16)));
    model.dispose();
  });
});

describe('LoRA behaviour', () => {
  const input = { inputIds: [[3, 5, 7, 11, 13, 17]] };

  it('starts from the base model exactly (B = 0)', async () => {
    const base = await host('llama-gqa-untied');
    const before = logits(base, input);
    const model = getPeftModel(base, new LoraConfig({ targetModules: 'all-linear' }));
    expect(maxDiff(logits(model, input), before)).toBe(0);
    model.dispose();
  });

  it('merge and unmerge round-trip within 1e-6; mergeAndUnload leaves a plain host with the merged outputs', async () => {
    const base = await host('gpt2-tied');
    const original = new Map([...base.parameters].map(([n, v]) => [n, v.dataSync().slice() as Float32Array]));
    const model = getPeftModel(base, new LoraConfig({ initLoraWeights: false, targetModules: 'all-linear' }));
    const unmerged = logits(model, input);
    model.merge();
    expect(maxDiff(logits(model, input), unmerged)).toBeLessThan(1e-5);
    model.unmerge();
    let worst = 0;
    for (const [name, variable] of base.parameters)
      worst = Math.max(worst, maxDiff(variable.dataSync() as Float32Array, original.get(name)!));
    expect(worst).toBeLessThan(1e-6);
    const plain = model.mergeAndUnload() as TransformerHost;
    expect([...plain.linears.values()].every((l) => l.deltaKeys().length === 0)).toBe(true);
    expect(maxDiff(logits(plain, input), unmerged)).toBeLessThan(1e-5);
  });

  it('refuses to merge NaN, leaving the weights as they were', async () => {
    const base = await host('gpt2-tied');
    const model = getPeftModel(base, new LoraConfig({ initLoraWeights: false }));
    const tuner = model.trainableVariables();
    const before = base.linears.get('transformer.h.0.attn.c_attn')!.weight.dataSync().slice();
    // the second layer's Bᵀ [r, out]: a NaN there must not reach the first layer's weight either
    [...tuner.values()][3]!.assign(tf.fill([8, 72], Number.NaN) as tf.Tensor2D);
    expect(() => model.merge()).toThrow('transformer.h.1.attn.c_attn: ΔW holds NaN or Inf; refusing to merge');
    expect(Array.from(base.linears.get('transformer.h.0.attn.c_attn')!.weight.dataSync())).toEqual(Array.from(before));
    model.dispose();
  });

  it('serves a mixed batch: each sample equals running it on its own adapter', async () => {
    const base = await host('llama-gqa-untied');
    const model = getPeftModel(base, new LoraConfig({ initLoraWeights: false, initSeed: 1 }), 'a');
    model.addAdapter('b', new LoraConfig({ initLoraWeights: false, initSeed: 2, targetModules: ['k_proj', 'o_proj'] }));
    const batch = {
      inputIds: [
        [3, 5, 7, 9],
        [4, 6, 8, 10],
        [11, 12, 13, 14],
      ],
    };
    const mixed = logits(model, { ...batch, adapterNames: ['b', BASE_ADAPTER, 'a'] });
    const row = (i: number) => ({ inputIds: [batch.inputIds[i]!] });
    model.setAdapter('b');
    const b = logits(model, row(0));
    const none = model.withAdapterDisabled(() => logits(model, row(1)));
    model.setAdapter('a');
    const a = logits(model, row(2));
    const width = a.length;
    expect(maxDiff(mixed.subarray(0, width), b)).toBeLessThan(1e-5);
    expect(maxDiff(mixed.subarray(width, 2 * width), none)).toBeLessThan(1e-5);
    expect(maxDiff(mixed.subarray(2 * width), a)).toBeLessThan(1e-5);
    expect(maxDiff(a, b)).toBeGreaterThan(1e-3);
    expect(() => logits(model, { ...batch, adapterNames: ['a', 'zzz', 'a'] })).toThrow('no adapter "zzz"');
    model.dispose();
  });

  it('add, set and delete adapters; a weighted combination equals the weighted sum of updates', async () => {
    const base = await host('gpt2-tied');
    const model = getPeftModel(base, new LoraConfig({ initLoraWeights: false, initSeed: 1, r: 4 }), 'a');
    model.addAdapter('b', new LoraConfig({ initLoraWeights: false, initSeed: 2, r: 4, loraAlpha: 16 }));
    expect(model.adapterNames).toEqual(['a', 'b']);
    expect(model.activeAdapter).toBe('a');
    const deltaOf = (name: string): Float32Array => {
      model.setAdapter(name);
      const linear = base.linears.get('transformer.h.0.attn.c_attn')!;
      const before = linear.weight.dataSync().slice() as Float32Array;
      model.merge();
      const after = linear.weight.dataSync().slice() as Float32Array;
      model.unmerge();
      return after.map((v, i) => v - before[i]!);
    };
    const a = deltaOf('a');
    const b = deltaOf('b');
    model.addWeightedAdapter(['a', 'b'], [0.5, -2], 'linear', 'linear');
    model.addWeightedAdapter(['a', 'b'], [0.5, -2], 'cat', 'cat');
    const linear = deltaOf('linear');
    const cat = deltaOf('cat');
    // linear combines A and B separately (not the product); cat is exactly the weighted sum
    expect(
      maxDiff(
        cat,
        a.map((v, i) => 0.5 * v - 2 * b[i]!),
      ),
    ).toBeLessThan(1e-5);
    expect(maxDiff(linear, cat)).toBeGreaterThan(1e-4);
    expect(model.config('cat').toJson(base, 'cat').r).toBe(8);
    model.deleteAdapter('a');
    expect(model.adapterNames).toEqual(['b', 'linear', 'cat']);
    expect(model.activeAdapter).toBe('cat');
    expect(() => model.addWeightedAdapter(['b'], [1, 2], 'x')).toThrow('1 adapters and 2 weights');
    model.dispose();
  });

  it('trains: only the LoRA weights change, the loss falls, and the saved adapter reloads to the same outputs', async () => {
    const base = await host('gpt2-tied');
    const frozen = new Map([...base.parameters].map(([n, v]) => [n, v.dataSync().slice()]));
    const model = getPeftModel(
      base,
      new LoraConfig({ r: 4, loraAlpha: 16, loraDropout: 0.1, targetModules: ['c_attn', 'c_proj'] }),
    );
    const data: Example[] = Array.from({ length: 16 }, (_, i) => {
      const ids = Array.from({ length: 10 }, (_, t) => 2 + ((t + i) % 5));
      return { inputIds: ids, labels: ids };
    });
    const result = await train(model, {
      data,
      task: 'causal-lm',
      padTokenId: 0,
      batchSize: 4,
      epochs: 4,
      learningRate: 1e-2,
      seed: 3,
    });
    expect(result.losses.at(-1)!).toBeLessThan(result.losses[0]! * 0.8);
    for (const [name, variable] of base.parameters)
      expect(Array.from(variable.dataSync()), name).toEqual(Array.from(frozen.get(name)!));
    const trained = logits(model, input);
    const directory = mkdtempSync(path.join(tmpdir(), 'peft-lora-'));
    await model.saveAdapter(directory);
    model.dispose();
    const reloaded = await PeftModel.fromPretrained(base, directory);
    expect(maxDiff(logits(reloaded, input), trained)).toBeLessThan(1e-6);
    expect([...reloaded.trainableVariables().values()].every((v) => !v.trainable)).toBe(true);
    reloaded.dispose();
  });

  it('trains through grouped-query attention (Llama, 2 kv heads for 4 query heads)', async () => {
    const base = await host('llama-gqa-untied');
    const model = getPeftModel(base, new LoraConfig({ r: 4, targetModules: ['q_proj', 'k_proj'] }));
    const result = await train(model, {
      data: patternExamples(8),
      task: 'causal-lm',
      padTokenId: 0,
      batchSize: 4,
      epochs: 3,
      learningRate: 2e-2,
    });
    expect(result.losses.at(-1)!).toBeLessThan(result.losses[0]!);
    model.dispose();
  });

  it('loading refuses tensors that do not match the config, naming the file and the tensor', async () => {
    const base = await host('gpt2-tied');
    const model = getPeftModel(base, new LoraConfig({ r: 4 }));
    const store = memoryStore({}, 'mem:/adapter');
    await model.saveAdapter(store);
    model.dispose();
    const config = JSON.parse(new TextDecoder().decode(store.files.get('adapter_config.json')));
    store.files.set('adapter_config.json', new TextEncoder().encode(JSON.stringify({ ...config, r: 2 })));
    await expect(PeftModel.fromPretrained(base, store)).rejects.toThrow(
      'mem:/adapter/adapter_model.safetensors: tensor "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight" has shape [4,24], ' +
        'expected [2,24] from mem:/adapter/adapter_config.json (r 2 for transformer.h.0.attn.c_attn)',
    );
    store.files.set('adapter_config.json', new TextEncoder().encode(JSON.stringify({ ...config, peft_type: 'IA3' })));
    await expect(PeftModel.fromPretrained(base, store)).rejects.toThrow(
      /peft_type "IA3" has no method loaded \(loaded: [A-Z_, ]*LORA/,
    );
    store.files.set('adapter_config.json', new TextEncoder().encode(JSON.stringify({ ...config, use_dora: true })));
    await expect(PeftModel.fromPretrained(base, store)).rejects.toThrow(
      '"use_dora": true is not supported by @peft/lora',
    );
    expect([...base.linears.values()].every((l) => l.deltaKeys().length === 0)).toBe(true);
  });
});
