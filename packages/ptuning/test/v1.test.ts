import { readFileSync } from 'node:fs';
import path from 'node:path';

import {
  PeftModel,
  getPeftModel,
  memoryStore,
  parseSafetensors,
  train,
  type Example,
  type ExampleTokenizer,
  type PromptTuner,
} from '@peft/core';
import { generate, loadPretrained, type TransformerHost } from '@peft/models';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { PTuningConfig, templateExample, type TemplatePart } from '../src/index.js';

const MODELS = path.resolve(import.meta.dirname, '../../models/test/fixtures');
const FIXTURES = path.join(import.meta.dirname, 'fixtures');
const manifest = JSON.parse(readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8')) as {
  cases: { name: string; model: string }[];
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
    `[p-tuning parity] max |ours - peft|:\n${[...worst].map(([k, v]) => `  ${k}: ${v.toExponential(2)}`).join('\n')}`,
  ),
);

interface Case {
  input_ids: number[][];
  attention_mask: number[][] | null;
}

function logits(model: PeftModel, input: Case): { values: Float32Array; shape: number[] } {
  const { logits: out } = model.forward({
    inputIds: input.input_ids,
    ...(input.attention_mask ? { attentionMask: input.attention_mask } : {}),
  });
  const result = { values: out.dataSync() as Float32Array, shape: out.shape };
  out.dispose();
  return result;
}

describe.each(manifest.cases)('a P-tuning adapter saved by Python peft: $name', ({ name, model }) => {
  const directory = path.join(FIXTURES, name);
  const inputs = JSON.parse(readFileSync(path.join(directory, 'inputs.json'), 'utf8')) as {
    forward: Record<string, Case>;
    greedy: (Case & { max_new_tokens: number; output_ids: number[][] })[];
  };
  const expected = parseSafetensors(readFileSync(path.join(directory, 'expected.safetensors')));

  it("gives peft's logits (plain and padded) and greedy tokens", async () => {
    const base = await host(model);
    const peft = await PeftModel.fromPretrained(base, path.join(directory, 'adapter'));
    const virtual = (peft.tuner() as PromptTuner).virtualTokens;
    for (const key of ['plain', 'right_padded']) {
      const input = inputs.forward[key]!;
      const { values, shape } = logits(peft, input);
      const want = expected.tensor(`${key}.logits`);
      expect(shape).toEqual(want.shape);
      const [, length, vocabulary] = shape as [number, number, number];
      let diff = 0;
      values.forEach((v, i) => {
        const row = Math.floor(i / vocabulary);
        const t = row % length;
        if (input.attention_mask && t >= virtual && input.attention_mask[Math.floor(row / length)]![t - virtual] === 0)
          return;
        diff = Math.max(diff, Math.abs(v - want.values[i]!));
      });
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
    peft.dispose();
  });
});

describe.each(manifest.cases)("our prompt encoder with the weights of peft's: $name", ({ name, model }) => {
  it('computes the embeddings peft computed (BiLSTM gate order, MLP layout)', async () => {
    const directory = path.join(FIXTURES, name);
    const encoder = parseSafetensors(readFileSync(path.join(directory, 'encoder.safetensors')));
    const config = JSON.parse(readFileSync(path.join(directory, 'adapter', 'adapter_config.json'), 'utf8'));
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
    const diff = Array.from(ours).reduce((m, v, i) => Math.max(m, Math.abs(v - want[i]!)), 0);
    worst.set(`${name} encoder`, diff);
    expect(diff).toBeLessThan(1e-5);
    peft.dispose();
  });
});

const pattern = (count: number): Example[] =>
  Array.from({ length: count }, (_, i) => {
    const ids = Array.from({ length: 8 }, (_, t) => 2 + ((t * 3 + i) % 7));
    return { inputIds: ids, labels: ids };
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
        data: pattern(12),
        task: 'causal-lm',
        padTokenId: 0,
        batchSize: 4,
        epochs: 5,
        learningRate: 2e-2,
      });
      expect(result.losses.at(-1)!).toBeLessThan(result.losses[0]!);
      const input: Case = { input_ids: [[3, 6, 9, 12]], attention_mask: null };
      const trained = logits(model, input).values;
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
      const again = logits(reloaded, input).values;
      expect(again.reduce((m, v, i) => Math.max(m, Math.abs(v - trained[i]!)), 0)).toBeLessThan(1e-5);
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
