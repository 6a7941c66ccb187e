import path from 'node:path';

import {
  PeftModel,
  evaluate,
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

  describe('on a masked LM: the target at [MASK] tokens (the paper\'s "The capital of [X] is [MASK].")', () => {
    // one id per character for the fixture's 83 ids; 5 the placeholder, 3 [MASK], 2/4 [CLS]/[SEP] (0 pads
    // BERT, 1 RoBERTa, which counts positions over the ids that are not its pad)
    const tokenizer: ExampleTokenizer = {
      encode: (text) => ({ ids: [...text].map((c) => 10 + (c.charCodeAt(0) % 70)), tokenTypeIds: [] }),
      eosTokenId: null,
    };
    const [PLACEHOLDER, MASK, CLS, SEP] = [5, 3, 2, 4];
    const wrap = { maskTokenId: MASK, prefix: [CLS], suffix: [SEP] };
    const ids = (text: string): number[] => tokenizer.encode(text).ids;
    const template: TemplatePart[] = [
      { pseudo: 2 },
      { slot: 'input' },
      { pseudo: 1 },
      { text: ' is' }, // an anchor word, kept
      { slot: 'target', masks: 2 },
    ];

    it('writes [MASK] tokens where the target goes, labelled with its tokens (probing) or the class (verbalizer)', () => {
      const probing = templateExample(tokenizer, template, { input: 'ab', target: 'xy' }, PLACEHOLDER, wrap);
      expect(probing).toEqual({
        inputIds: [CLS, 5, 5, ...ids('ab'), 5, ...ids(' is'), MASK, MASK, SEP],
        labels: [...new Array(9).fill(-100), ...ids('xy'), -100],
      });
      const classified = templateExample(tokenizer, template, { input: 'ab', label: 1 }, PLACEHOLDER, wrap);
      expect(classified).toEqual({ inputIds: probing.inputIds, labels: 1 });
      // a long input cut to fit
      const cut = templateExample(tokenizer, template, { input: 'abcdef', label: 1 }, PLACEHOLDER, {
        ...wrap,
        inputMaxTokens: 2,
      });
      expect(cut.inputIds).toEqual(probing.inputIds);
      const refusals: [Parameters<typeof templateExample>[2], TemplatePart[], object, string][] = [
        [
          { input: 'ab', target: 'xyz' },
          template,
          wrap,
          'the target "xyz" is 3 tokens, the template\'s target 2 masks',
        ],
        [{ input: 'ab', label: 1 }, template, {}, 'a label (a class read by a verbalizer) needs maskTokenId'],
        [{ input: 'ab', target: 'x', label: 1 }, template, wrap, 'give a target (labelled tokens) or a label'],
        [{ input: 'ab' }, [{ slot: 'target', masks: 2 }], {}, 'a target of [MASK] tokens (masks) needs maskTokenId'],
        [{ input: 'ab' }, [{ slot: 'target', masks: 0 }], wrap, 'masks: expected a positive integer, got 0'],
        [{ input: 'ab' }, template, { inputMaxTokens: 0 }, 'inputMaxTokens: expected a positive integer, got 0'],
        [
          { input: String.fromCharCode(MASK + 70 - 10 + 70) },
          [{ slot: 'input' }],
          { maskTokenId: 10 + ((MASK + 130) % 70) },
          'only the target slot holds masks',
        ],
      ];
      for (const [values, parts, options, message] of refusals)
        expect(() => templateExample(tokenizer, parts, values, PLACEHOLDER, options), message).toThrow(message);
    });

    const examples = (label: boolean) =>
      [
        ['ab', 0],
        ['cd', 1],
        ['ef', 0],
        ['gh', 1],
        ['ij', 0],
        ['kl', 1],
      ].map(([input, c]) =>
        templateExample(
          tokenizer,
          template,
          label ? { input: input as string, label: c as number } : { input: input as string, target: c ? 'yz' : 'xw' },
          PLACEHOLDER,
          wrap,
        ),
      );

    // (RoBERTa's random fixture does not learn through 3 pseudo tokens at these rates; every method trains
    // on it in the conformance suite)
    it.each(['bert-masked-lm-tied', 'bert-masked-lm-untied'])(
      '%s: the prompt encoder fills the pseudo tokens; probing over the vocabulary and a verbalizer of two-token words train',
      async (fixture) => {
        for (const mode of ['probing', 'verbalizer'] as const) {
          // without the model's dropout: 6 examples, the curve is what the prompt encoder learns
          const base = await host(fixture, { dropout: false });
          const model = getPeftModel(
            base,
            new PTuningConfig({ numVirtualTokens: 3, encoderHiddenSize: 8, placeholderTokenId: PLACEHOLDER }),
          );
          const data = examples(mode === 'verbalizer');
          const options = {
            data,
            padTokenId: base.config.modelType === 'roberta' ? 1 : 0,
            batchSize: 3,
            epochs: 40,
            learningRate: 5e-2,
            ...(mode === 'probing'
              ? { task: 'token-classification' as const }
              : {
                  task: 'sequence-classification' as const,
                  verbalizer: [ids('xw'), ids('yz')],
                  maskTokenId: MASK,
                }),
          };
          // the loss over all 6 examples before and after (a step's loss, over 3, is too noisy to compare;
          // over seeds 0-4 the smallest fall was 15%, untied with a verbalizer, 0.731 -> 0.622)
          const before = (await evaluate(model, data, options)).loss;
          await train(model, options);
          const after = (await evaluate(model, data, options)).loss;
          console.log(`[masked template ${fixture} ${mode}] loss ${before.toFixed(3)} -> ${after.toFixed(3)}`);
          expect(after, `${fixture} ${mode}: the loss after training`).toBeLessThan(before * 0.9);
          const { logits: out, prepended } = model.forward({ inputIds: [data[0]!.inputIds] });
          expect(prepended).toBe(0); // the pseudo tokens stand inside the template
          expect(out.shape).toEqual([1, data[0]!.inputIds.length, base.config.vocabSize]);
          out.dispose();
          model.dispose();
        }
      },
    );

    it('a verbalizer on a masked LM: rows without enough [MASK] tokens are refused before any compute', async () => {
      const base = await host('bert-masked-lm-tied');
      const data = [{ inputIds: [CLS, 20, MASK, SEP], labels: 0 }];
      const options = {
        data,
        task: 'sequence-classification' as const,
        padTokenId: 0,
        batchSize: 1,
        learningRate: 1e-2,
        verbalizer: [ids('xw'), ids('yz')],
        maskTokenId: MASK,
      };
      const full = (await import('@peft/core')).fullFineTuning(base);
      await expect(train(full, options)).rejects.toThrow(
        "data[0].inputIds: 1 [MASK] tokens (id 3), the verbalizer reads 2 (its longest label word's tokens)",
      );
      await expect(train(full, { ...options, maskTokenId: undefined })).rejects.toThrow(
        'verbalizer[0]: a label word of 2 tokens is read at [MASK] tokens: give maskTokenId (masked LMs)',
      );
      await expect(train(full, { ...options, verbalizer: [[20], []] })).rejects.toThrow(
        'verbalizer[1]: an empty label word',
      );
      await expect(train(full, { ...options, verbalizer: undefined })).rejects.toThrow(
        'maskTokenId: only with a verbalizer',
      );
    });
  });
});
