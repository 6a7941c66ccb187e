import path from 'node:path';

import { PeftModel, getPeftModel, train, type Example, type PromptTuner } from '@peft/core';
import { generate, loadTokenizer } from '@peft/models';
import {
  MODEL_FIXTURES,
  fixtureHosts,
  forwardInput,
  greedyOptions,
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

import { MultitaskPromptTuningConfig, PromptTuningConfig, balanceTasks, evaluatePerTask } from '../src/index.js';

const FIXTURES = path.join(import.meta.dirname, 'fixtures');
const manifest = readJsonFixture<{ cases: { name: string; model: string }[] }>(path.join(FIXTURES, 'manifest.json'));
const host = fixtureHosts();
const record = parityReport('[prompt parity] max |ours - peft|');

describe.each(manifest.cases)('an adapter saved by Python peft: $name', ({ name, model }) => {
  const directory = path.join(FIXTURES, name);
  const inputs = readJsonFixture<{
    task_ids: number[] | null;
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
      const { values, shape, prepended } = readLogits(peft, {
        ...forwardInput(input),
        ...(inputs.task_ids ? { taskIds: inputs.task_ids } : {}),
      });
      const want = expected.tensor(`${key}.logits`);
      expect(shape).toEqual(want.shape);
      expect(prepended).toBe(virtual);
      const diff = maxDiffAtRealTokens(values, want.values, want.shape, input.attention_mask, virtual);
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

describe('prompt tuning', () => {
  it('initialises from a text (repeated to P tokens) or from vocabulary rows, as peft', async () => {
    const base = await host('gpt2-tied');
    const tokenizer = { encode: (text: string) => ({ ids: text.split(' ').map((w) => Number(w.slice(1))) }) };
    const model = getPeftModel(
      base,
      new PromptTuningConfig({
        numVirtualTokens: 5,
        promptTuningInit: 'TEXT',
        promptTuningInitText: 'w3 w7',
        tokenizer,
      }),
    );
    const prompt = [...model.trainableVariables().values()][0]!.arraySync() as number[][];
    const rows = base.wordEmbeddings.arraySync() as number[][];
    expect(prompt).toEqual([rows[3], rows[7], rows[3], rows[7], rows[3]]);
    model.dispose();
    const sampled = getPeftModel(
      base,
      new PromptTuningConfig({ numVirtualTokens: 4, promptTuningInit: 'SAMPLE_VOCAB' }),
    );
    for (const row of [...sampled.trainableVariables().values()][0]!.arraySync() as number[][]) {
      expect(rows.some((r) => r.every((v, i) => v === row[i]))).toBe(true);
    }
    sampled.dispose();
    expect(() => new PromptTuningConfig({ numVirtualTokens: 2, promptTuningInit: 'TEXT' })).toThrow(
      'TEXT needs promptTuningInitText and the tokenizer',
    );
  });

  it("on Gemma starts from the rows embed_tokens gives (scaled by √d), as peft's SAMPLE_VOCAB table holds them", async () => {
    const base = await host('gemma2-gqa-softcap-tied');
    const scale = Math.fround(Math.sqrt(base.config.hiddenSize));
    const scaled = tf.tidy(() => tf.mul(base.wordEmbeddings, scale).arraySync() as number[][]);
    const isScaledRow = (row: number[]) => scaled.some((r) => r.every((v, i) => v === row[i]));
    const saved = readSafetensorsFixture(
      path.join(FIXTURES, 'gemma2-softcap-prompt-vocab', 'adapter', 'adapter_model.safetensors'),
    ).tensor('prompt_embeddings');
    const [P, d] = saved.shape as [number, number];
    for (let t = 0; t < P; t += 1) expect(isScaledRow([...saved.values.subarray(t * d, (t + 1) * d)])).toBe(true);
    const tokenizer = { encode: (text: string) => ({ ids: text.split(' ').map((w) => Number(w.slice(1))) }) };
    for (const config of [
      new PromptTuningConfig({
        numVirtualTokens: 3,
        promptTuningInit: 'TEXT',
        promptTuningInitText: 'w3 w7',
        tokenizer,
      }),
      new PromptTuningConfig({ numVirtualTokens: 3, promptTuningInit: 'SAMPLE_VOCAB' }),
    ]) {
      const model = getPeftModel(base, config);
      const prompt = [...model.trainableVariables().values()][0]!.arraySync() as number[][];
      for (const row of prompt) expect(isScaledRow(row)).toBe(true);
      if (config.promptTuningInit === 'TEXT') expect(prompt).toEqual([scaled[3], scaled[7], scaled[3]]);
      model.dispose();
    }
  });

  it('refuses a text whose tokens the model does not have (a tokenizer of another model)', async () => {
    const base = await host('gpt2-tied');
    const tokenizer = await loadTokenizer(path.join(MODEL_FIXTURES, 'tokenizers', 'byte-level-bpe')); // 300 tokens, the model 97
    expect(() =>
      getPeftModel(
        base,
        new PromptTuningConfig({
          numVirtualTokens: 4,
          promptTuningInit: 'TEXT',
          promptTuningInitText: 'the election',
          tokenizer,
        }),
      ),
    ).toThrow(/prompt initialisation: token id \d+ is outside the vocabulary \(0\.\.96\)/);
    expect(base.hooks.virtualTokens).toBe(0);
  });

  it('trains (loss falls), counting the prompt against the context', async () => {
    const base = await host('gpt2-tied');
    const model = getPeftModel(base, new PromptTuningConfig({ numVirtualTokens: 4 }));
    const result = await train(model, {
      data: patternExamples(12),
      task: 'causal-lm',
      padTokenId: 0,
      batchSize: 4,
      epochs: 5,
      learningRate: 5e-2,
    });
    expect(result.losses.at(-1)!).toBeLessThan(result.losses[0]!);
    expect(base.hooks.virtualTokens).toBe(4);
    const long: Example[] = [{ inputIds: new Array(30).fill(3), labels: new Array(30).fill(3) }];
    await expect(
      train(model, { data: long, task: 'causal-lm', padTokenId: 0, batchSize: 1, learningRate: 1e-2 }),
    ).rejects.toThrow(
      "data[0].inputIds: 30 tokens plus the adapter's 4 virtual tokens need 34 positions, more than the model's 32; truncate the examples to 28 tokens",
    );
    expect(() => model.forward({ inputIds: [new Array(30).fill(3)] })).toThrow(
      'sequence of 34 positions (4 virtual + 30 real)',
    );
    model.dispose();
  });
});

describe('multi-task prompt tuning', () => {
  it('trains two tasks mixed in batches, balanced, and reports each task', async () => {
    // without the fixture's dropout 0.1, too much for a few steps of a 15k-parameter model
    const base = await host('bert-sequence-classification', { dropout: false });
    // task 0: label = first content token parity; task 1: label = 2 - (second token % 3)
    const task = (t: number) =>
      Array.from({ length: t === 0 ? 12 : 6 }, (_, i): Example => {
        const ids = [2, 10 + i, 20 + (i % 4), 3];
        return { inputIds: ids, labels: t === 0 ? (10 + i) % 2 : 2 - ((20 + (i % 4)) % 3) };
      });
    const mixed = balanceTasks([task(0), task(1)], 3);
    expect(mixed).toHaveLength(24);
    expect(mixed.filter((e) => e.taskId === 1)).toHaveLength(12);
    const model = getPeftModel(
      base,
      new MultitaskPromptTuningConfig({ numVirtualTokens: 3, numTasks: 2, numRanks: 2, taskType: 'SEQ_CLS' }),
    );
    const options = { task: 'sequence-classification' as const, padTokenId: 0, batchSize: 6, learningRate: 5e-2 };
    const result = await train(model, { ...options, data: mixed, epochs: 8 });
    expect(result.losses.at(-1)!).toBeLessThan(result.losses[0]!);
    const perTask = await evaluatePerTask(model, mixed, { ...options, data: mixed });
    expect([...perTask.keys()]).toEqual([0, 1]);
    for (const [, evaluation] of perTask) expect(evaluation.accuracy).toBeGreaterThan(0.5);
    console.log(
      `[multi-task] per-task accuracy: ${[...perTask].map(([t, e]) => `task ${t} ${e.accuracy!.toFixed(3)}`).join(', ')}`,
    );
    expect(() => model.forward({ inputIds: [[2, 5, 3]] })).toThrow(
      'multi-task prompt tuning needs the task of each sample',
    );
    expect(() => model.forward({ inputIds: [[2, 5, 3]], taskIds: [2] })).toThrow('taskIds: task 2 is outside 0..1');
    model.dispose();
  });
});
