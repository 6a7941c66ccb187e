import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { selectBackend } from '@peft/backend';
import { PeftModel, memoryStore, readJson } from '@peft/core';
import { loadPretrained, loadTokenizer } from '@peft/models';
import { beforeAll, describe, expect, it } from 'vitest';

import {
  PLAYGROUND_METHODS,
  continueText,
  findMethod,
  parseTrainingData,
  probeLogits,
  trainSteps,
} from '../src/session.js';

const BROWN_GPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench/models/brown-gpt');

describe('training data from pasted text', async () => {
  const tokenizer = await loadTokenizer(BROWN_GPT);

  it('cuts plain text into blocks of the given length, every token labelled', () => {
    const text = 'the cat sat on the mat . '.repeat(20);
    const data = parseTrainingData(text, tokenizer, 16);
    const ids = tokenizer.encode(text, { addSpecialTokens: false }).ids;
    expect(data.format).toBe('text');
    expect(data.tokens).toBe(ids.length);
    const flat = data.examples.flatMap((e) => e.inputIds);
    expect(flat).toEqual(ids.slice(0, flat.length)); // in order; only a last block of one token is dropped
    expect(flat.length).toBeGreaterThanOrEqual(ids.length - 1);
    for (const example of data.examples.slice(0, -1)) {
      expect(example.inputIds).toHaveLength(16);
      expect(example.labels).toEqual(example.inputIds);
    }
  });

  it('reads JSON Lines: prompt/completion labels only the completion; text labels everything', () => {
    const data = parseTrainingData(
      '{"prompt": "the cat", "completion": " sat"}\n\n{"text": "the dog ran"}\n',
      tokenizer,
      64,
    );
    expect(data.format).toBe('jsonl');
    expect(data.examples).toHaveLength(2);
    const [first, second] = data.examples;
    const promptLength = tokenizer.encode('the cat').ids.length;
    expect((first!.labels as number[]).slice(0, promptLength).every((label) => label === -100)).toBe(true);
    expect((first!.labels as number[]).slice(promptLength).some((label) => label !== -100)).toBe(true);
    expect((second!.labels as number[]).every((label) => label !== -100)).toBe(true);
  });

  it('names the JSONL line with neither shape, and refuses empty input', () => {
    expect(() => parseTrainingData('{"text": "a"}\n{"question": "b"}', tokenizer, 64)).toThrow(
      'JSONL line 2: expected string fields "prompt" and "completion", or "text"; found question',
    );
    expect(() => parseTrainingData('{"text": "a"}\n{"text": "b"', tokenizer, 64)).toThrow(
      'JSONL line 2: not valid JSON',
    );
    expect(() => parseTrainingData('{"text": "a"}\n["b"]', tokenizer, 64)).toThrow(
      'JSONL line 2: expected a JSON object',
    );
    expect(parseTrainingData('the cat {sat}\n{"text": "b"}', tokenizer, 64).format).toBe('text');
    expect(() => parseTrainingData(' \n\n', tokenizer, 64)).toThrow('no training data');
    expect(() => findMethod('dora')).toThrow(
      'unknown method "dora" (expected one of lora, prompt, prefix, ptuning, houlsby, pfeiffer)',
    );
  });
});

describe('every playground method trains brown-gpt and saves its files', () => {
  // training, not parity: the fastest backend here
  beforeAll(async () => void (await selectBackend({ warnIfSlow: false })));

  it.each(PLAYGROUND_METHODS.map((m) => [m.name]))(
    '%s: the loss falls over 8 steps; the probe and generation run',
    async (name) => {
      const host = await loadPretrained(BROWN_GPT);
      const tokenizer = await loadTokenizer(BROWN_GPT);
      const method = findMethod(name);
      const model = method.make(host, 0);
      const data = parseTrainingData('the cat sat on the mat and the dog sat on the rug .\n'.repeat(12), tokenizer, 24);
      const result = await trainSteps(model, data, {
        steps: 8,
        batchSize: 2,
        learningRate: method.learningRate,
        seed: 0,
      });
      expect(result.steps).toBe(8);
      expect(result.losses.at(-1)!).toBeLessThan(result.losses[0]!);
      expect(probeLogits(host, tokenizer, 'the cat sat')).toHaveLength(host.config.vocabSize);
      expect(continueText(host, tokenizer, 'the cat', 4).length).toBeGreaterThan(0);
      const store = memoryStore();
      await model.saveAdapter(store);
      if (method.format === 'PEFT') {
        expect([...store.files.keys()].sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
        expect((await readJson<{ peft_type: string }>(store, 'adapter_config.json')).peft_type).toBe(
          { lora: 'LORA', prompt: 'PROMPT_TUNING', prefix: 'PREFIX_TUNING', ptuning: 'P_TUNING' }[name],
        );
      } else {
        expect([...store.files.keys()].sort()).toEqual(['adapter.safetensors', 'adapter_config.json']);
      }
      // and the files load back onto a fresh host with the same outputs
      const again = await loadPretrained(BROWN_GPT);
      await PeftModel.fromPretrained(again, store);
      const [reloaded, trained] = [
        probeLogits(again, tokenizer, 'the cat sat'),
        probeLogits(host, tokenizer, 'the cat sat'),
      ];
      expect(Math.max(...reloaded.map((v, i) => Math.abs(v - trained[i]!)))).toBeLessThan(1e-4);
      again.dispose();
      host.dispose();
    },
  );
});
