import path from 'node:path';

import {
  PeftModel,
  getPeftModel,
  memoryStore,
  parseSafetensors,
  train,
  type ExampleTokenizer,
  type PromptTuner,
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
  readLogits,
  readSafetensorsFixture,
  type OracleGreedy,
  type OracleInput,
} from '@peft/test-helpers';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { PTuningConfig, templateExample, type TemplatePart } from '../src/index.js';

const FIXTURES = path.join(import.meta.dirname, 'fixtures');
const manifest = readJsonFixture<{ cases: { name: string; model: string }[] }>(path.join(FIXTURES, 'manifest.json'));
const host = fixtureHosts();
const record = parityReport('[p-tuning parity] max |ours - peft|');

describe.each(manifest.cases)('a P-tuning adapter saved by Python peft: $name', ({ name, model }) => {
  const directory = path.join(FIXTURES, name);
  const inputs = readJsonFixture<{
    forward: Record<string, OracleInput>;
    greedy: OracleGreedy[];
  }>(path.join(directory, 'inputs.json'));
  const expected = readSafetensorsFixture(path.join(directory, 'expected.safetensors'));

  it("gives peft's logits (plain and padded) and greedy tokens", async () => {
    const base = await host(model);
    const peft = await PeftModel.fromPretrained(base, path.join(directory, 'adapter'));
    const virtual = (peft.tuner() as PromptTuner).virtualTokens;
    for (const key of ['plain', 'right_padded']) {
      const input = inputs.forward[key]!;
      const { values, shape } = readLogits(peft, forwardInput(input));
      const want = expected.tensor(`${key}.logits`);
      expect(shape).toEqual(want.shape);
      const diff = maxDiffAtRealTokens(values, want.values, shape, input.attention_mask, virtual);
      record(name, diff);
      expect(diff).toBeLessThan(1e-4);
    }
    for (const greedy of inputs.greedy) {
      const { sequences } = generate(base, greedyOptions(greedy));
      expect(sequences).toEqual(greedy.output_ids);
    }
    peft.dispose();
  });
});

describe.each(manifest.cases)("our prompt encoder with the weights of peft's: $name", ({ name, model }) => {
  it('computes the embeddings peft computed (BiLSTM gate order, MLP layout)', async () => {
    const directory = path.join(FIXTURES, name);
    const encoder = readSafetensorsFixture(path.join(directory, 'encoder.safetensors'));
    const config = readJsonFixture<{
      num_virtual_tokens: number;
      encoder_reparameterization_type: 'MLP' | 'LSTM';
      encoder_hidden_size: number;
      encoder_num_layers: number;
    }>(path.join(directory, 'adapter', 'adapter_config.json'));
    const base = await host(model);
    const peft = getPeftModel(
      base,
      new PTuningConfig({
        numVirtualTokens: config.num_virtual_tokens,
        encoderReparameterizationType: config.encoder_reparameterization_type,
        encoderHiddenSize: config.encoder_hidden_size,
        encoderNumLayers: config.encoder_num_layers,
      }),
    );
    const variables = peft.trainableVariables();
    expect(variables.size).toBe(encoder.entries.size - 1); // every tensor of peft's encoder but its output
    for (const [key, variable] of variables) {
      const torchName = key.replace('prompt_encoder.', '');
      const data = encoder.tensor(torchName);
      const value = tf.tensor(data.values, data.shape);
      variable.assign(data.shape.length === 2 && torchName !== 'embedding.weight' ? tf.transpose(value) : value);
    }
    const { logits, prepended } = peft.forward({ inputIds: [[3]] });
    logits.dispose();
    expect(prepended).toBe(config.num_virtual_tokens);
    const store = memoryStore();
    await peft.saveAdapter(store);
    const ours = parseSafetensors(store.files.get('adapter_model.safetensors')!).tensor('prompt_embeddings').values;
    const want = encoder.tensor('output').values;
    const diff = record(`${name} encoder`, maxDiff(ours, want));
    expect(diff).toBeLessThan(1e-5);
    peft.dispose();
  });
});

describe('P-tuning v1', () => {
  it('counts parameters as peft (nvt 5, d 24, hidden 16): MLP and BiLSTM', async () => {
    const base = await host('gpt2-tied');
    const d = 24;
    const h = 16;
    const mlp = getPeftModel(base, new PTuningConfig({ numVirtualTokens: 5, encoderHiddenSize: h }));
    expect(mlp.parameterCount().trainable).toBe(5 * d + (d * h + h) + (h * h + h) + (h * d + d));
    mlp.dispose();
    const lstm = getPeftModel(
      base,
      new PTuningConfig({ numVirtualTokens: 5, encoderHiddenSize: h, encoderReparameterizationType: 'LSTM' }),
    );
    const layer = (inputs: number) => 2 * (inputs * 4 * h + h * 4 * h + 2 * 4 * h);
    expect(lstm.parameterCount().trainable).toBe(
      5 * d + layer(d) + layer(2 * h) + (2 * h * 2 * h + 2 * h) + (2 * h * d + d),
    );
    lstm.dispose();
  });

  it.each(['MLP', 'LSTM'] as const)(
    '%s encoder: trains (loss falls), saves only the computed embeddings, reloads to the same logits',
    async (encoder) => {
      const base = await host('gpt2-tied');
      const model = getPeftModel(
        base,
        new PTuningConfig({
          numVirtualTokens: 4,
          encoderHiddenSize: 12,
          encoderReparameterizationType: encoder,
          encoderDropout: 0.1,
        }),
      );
      const result = await train(model, {
        data: patternExamples(12),
        task: 'causal-lm',
        padTokenId: 0,
        batchSize: 4,
        epochs: 5,
        learningRate: 2e-2,
      });
      expect(result.losses.at(-1)!).toBeLessThan(result.losses[0]!);
      const input = { inputIds: [[3, 6, 9, 12]] };
      const trained = logits(model, input);
      const store = memoryStore();
      await model.saveAdapter(store);
      const file = parseSafetensors(store.files.get('adapter_model.safetensors')!);
      expect([...file.entries.keys()]).toEqual(['prompt_embeddings']);
      expect(file.entries.get('prompt_embeddings')!.shape).toEqual([4, 24]);
      const config = JSON.parse(new TextDecoder().decode(store.files.get('adapter_config.json')));
      expect(config).toMatchObject({
        peft_type: 'P_TUNING',
        encoder_reparameterization_type: encoder,
        encoder_hidden_size: 12,
        num_virtual_tokens: 4,
      });
      model.dispose();
      const reloaded = await PeftModel.fromPretrained(base, store);
      const again = logits(reloaded, input);
      expect(maxDiff(again, trained)).toBeLessThan(1e-5);
      reloaded.dispose();
    },
  );

  it("templates: pseudo tokens anywhere, the template's words kept, only the target labelled; trains", async () => {
    const base = await host('gpt2-tied');
    // a tokenizer for the fixture model's 97 ids: one id per character
    const tokenizer: ExampleTokenizer = {
      encode: (text) => ({ ids: [...text].map((c) => 5 + (c.charCodeAt(0) % 90)), tokenTypeIds: [] }),
      eosTokenId: null,
    };
    const PLACEHOLDER = 1;
    const template: TemplatePart[] = [
      { pseudo: 2 },
      { slot: 'input' },
      { pseudo: 1 },
      { text: ' is' },
      { slot: 'target' },
    ];
    const pairs = [
      ['ab', 'x'],
      ['cd', 'y'],
      ['ef', 'x'],
      ['gh', 'y'],
      ['ij', 'x'],
      ['kl', 'y'],
    ] as const;
    const data = pairs.map(([input, target]) => templateExample(tokenizer, template, { input, target }, PLACEHOLDER));
    expect(data[0]).toEqual({
      inputIds: [1, 1, ...tokenizer.encode('ab').ids, 1, ...tokenizer.encode(' is').ids, ...tokenizer.encode('x').ids],
      labels: [...new Array(8).fill(-100), ...tokenizer.encode('x').ids],
    });
    const model = getPeftModel(
      base,
      new PTuningConfig({
        numVirtualTokens: 3,
        encoderReparameterizationType: 'LSTM',
        encoderHiddenSize: 8,
        placeholderTokenId: PLACEHOLDER,
      }),
    );
    expect(base.hooks.virtualTokens).toBe(0); // template slots take positions inside the input, nothing in front
    const result = await train(model, {
      data,
      task: 'causal-lm',
      padTokenId: 0,
      batchSize: 3,
      epochs: 15,
      learningRate: 3e-2,
    });
    console.log(
      `[template run] loss ${result.losses[0]!.toFixed(3)} -> ${result.losses.at(-1)!.toFixed(3)} over ${result.steps} steps`,
    );
    expect(result.losses.at(-1)!).toBeLessThan(result.losses[0]! * 0.8);
    const { logits: out, prepended } = model.forward({ inputIds: [data[0]!.inputIds] });
    expect(prepended).toBe(0);
    expect(out.shape[1]).toBe(data[0]!.inputIds.length);
    out.dispose();
    expect(() => model.forward({ inputIds: [[1, 7, 8]] })).toThrow(
      'template: row 0 has 1 placeholder tokens (id 1), the prompt 3',
    );
    const store = memoryStore();
    await model.saveAdapter(store);
    expect(JSON.parse(new TextDecoder().decode(store.files.get('adapter_config.json'))).placeholder_token_id).toBe(
      PLACEHOLDER,
    );
    model.dispose();
  });
});
