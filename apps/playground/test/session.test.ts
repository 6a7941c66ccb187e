import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { selectBackend } from '@peft/backend';
import { PeftModel, memoryStore, readJson } from '@peft/core';
import { loadPretrained, loadTokenizer, type ChatMessage } from '@peft/models';
import { beforeAll, describe, expect, it } from 'vitest';

import {
  CHATML_TEMPLATE,
  PLAYGROUND_METHODS,
  chatTemplateChoices,
  continueText,
  findMethod,
  parseTrainingData,
  probeLogits,
  trainSteps,
} from '../src/session.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BROWN_GPT = path.resolve(HERE, '../../bench/models/brown-gpt');
/** A tokenizer with a chat template of its own (Qwen2.5's, with generation markers) and transformers' masks. */
const CHAT_FIXTURE = path.resolve(HERE, '../../../packages/models/test/fixtures/chat');

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
    expect(() => parseTrainingData('{"text": "a"}\n\n{"text": "b"', tokenizer, 64)).toThrow(
      'JSONL line 3: not valid JSON', // the line in the input, blank lines counted
    );
    expect(() => parseTrainingData(' \n\n', tokenizer, 64)).toThrow('no training data');
    expect(() => findMethod('dora')).toThrow(
      'unknown method "dora" (expected one of lora, prompt, prefix, ptuning, houlsby, pfeiffer)',
    );
  });
});

describe('training data from chat JSON Lines', async () => {
  const brownGpt = await loadTokenizer(BROWN_GPT);
  const chatTokenizer = await loadTokenizer(CHAT_FIXTURE);
  const conversations: ChatMessage[][] = [
    [
      { role: 'system', content: 'You answer briefly.' },
      { role: 'user', content: 'Where did the cat sit?' },
      { role: 'assistant', content: 'On the mat.' },
      { role: 'user', content: 'And the dog?' },
      { role: 'assistant', content: 'On the rug.' },
    ],
    [
      { role: 'user', content: 'What did the jury say?' },
      { role: 'assistant', content: 'The election was conducted well.' },
    ],
  ];
  const chatJsonl = conversations.map((messages) => JSON.stringify({ messages })).join('\n\n');

  it("offers the model's own template, and ChatML (so labelled) only for a model without one", () => {
    expect(chatTemplateChoices(brownGpt)).toEqual([
      { name: 'chatml', label: 'ChatML (the model has no chat template of its own)', template: CHATML_TEMPLATE },
    ]);
    expect(chatTemplateChoices(chatTokenizer)).toEqual([
      { name: 'model', label: "the model's chat template", template: chatTokenizer.chatTemplate },
    ]);
  });

  it('brown-gpt with ChatML: one example per row, labels -100 outside the assistant turns', () => {
    const data = parseTrainingData(chatJsonl, brownGpt, 128, { chatTemplate: CHATML_TEMPLATE });
    expect(data.format).toBe('chat');
    expect(data.examples).toHaveLength(2);
    expect(data.skipped).toBe(0);
    const text = (ids: readonly number[]): string => brownGpt.decode([...ids]);
    const [first, second] = data.examples;
    expect(text(first!.inputIds as number[])).toBe(
      '<|im_start|>system\nYou answer briefly.<|im_end|>\n<|im_start|>user\nWhere did the cat sit?<|im_end|>\n' +
        '<|im_start|>assistant\nOn the mat.<|im_end|>\n<|im_start|>user\nAnd the dog?<|im_end|>\n' +
        '<|im_start|>assistant\nOn the rug.<|im_end|>\n',
    );
    // the labelled tokens are the assistant turns (and the <|im_end|> that closes each), in two runs
    const labels = first!.labels as number[];
    const runs: string[] = [];
    labels.forEach((label, i) => {
      if (label === -100) return;
      expect(label).toBe((first!.inputIds as number[])[i]);
      if (i > 0 && labels[i - 1] !== -100) runs[runs.length - 1] += text([label]);
      else runs.push(text([label]));
    });
    expect(runs).toEqual(['On the mat.<|im_end|>', 'On the rug.<|im_end|>']);
    expect(text((second!.labels as number[]).filter((l) => l !== -100))).toBe(
      'The election was conducted well.<|im_end|>',
    );
    expect(data.lossTokens).toBe(data.examples.flatMap((e) => e.labels as number[]).filter((l) => l !== -100).length);
    expect(data.lossTokens).toBeGreaterThan(0);
    expect(data.tokens).toBe(data.examples.reduce((sum, e) => sum + e.inputIds.length, 0));
  });

  it("a model's own template is used unasked; the labels are transformers' assistant_masks", () => {
    const expected = JSON.parse(readFileSync(path.join(CHAT_FIXTURE, 'expected.json'), 'utf8')) as {
      conversations: ChatMessage[][];
      cases: { template: string; conversation: number; input_ids: number[]; assistant_masks: number[] | null }[];
    };
    const jsonl = expected.conversations.map((messages) => JSON.stringify({ messages })).join('\n');
    const data = parseTrainingData(jsonl, chatTokenizer, 4096);
    expect(data.examples).toHaveLength(expected.conversations.length);
    data.examples.forEach((example, i) => {
      const reference = expected.cases.find((c) => c.template === 'qwen2.5-marked' && c.conversation === i)!;
      expect(example.inputIds).toEqual(reference.input_ids);
      expect(example.labels).toEqual(reference.input_ids.map((id, t) => (reference.assistant_masks![t] ? id : -100)));
    });
  });

  it('a row whose assistant turns fall past the block is left out and counted', () => {
    const long = {
      messages: [
        { role: 'user', content: 'the cat sat on the mat . '.repeat(20) },
        { role: 'assistant', content: 'yes' },
      ],
    };
    const data = parseTrainingData(`${chatJsonl}\n${JSON.stringify(long)}`, brownGpt, 100, {
      chatTemplate: CHATML_TEMPLATE,
    });
    expect(data.examples).toHaveLength(2);
    expect(data.examples.every((e) => e.inputIds.length <= 100)).toBe(true);
    expect(data.skipped).toBe(1);
    expect(() => parseTrainingData(JSON.stringify(long), brownGpt, 100, { chatTemplate: CHATML_TEMPLATE })).toThrow(
      'no conversation has an assistant token within the first 100 tokens',
    );
  });

  it('names the line of a malformed row', () => {
    const parse = (input: string) => () => parseTrainingData(input, brownGpt, 128, { chatTemplate: CHATML_TEMPLATE });
    const good = JSON.stringify({ messages: conversations[1] });
    expect(parse(`${good}\n\n{"messages": [{"role": "user"}]}`)).toThrow(
      'JSONL line 3: messages[0]: expected {"role": string, "content": string}',
    );
    expect(parse(`${good}\n{"messages": []}`)).toThrow(
      'JSONL line 2: expected "messages" to be a non-empty array of {"role", "content"}',
    );
    expect(parse(`${good}\n{"messages": [{"role": "user", "content": "a"}`)).toThrow('JSONL line 2: not valid JSON');
    expect(parse(`${good}\n{"prompt": "a", "completion": "b"}`)).toThrow(
      'JSONL line 2: expected a chat row {"messages": [...]} like JSONL line 1; found prompt, completion (one shape per input)',
    );
    expect(parse(`{"text": "a"}\n${good}`)).toThrow(
      'JSONL line 2: found "messages", but JSONL line 1 is not a chat row (one shape per input)',
    );
    // a template that cannot render the row: the line, then the template's own message
    expect(() =>
      parseTrainingData(`${good}\n${good}`, brownGpt, 128, {
        chatTemplate: "{{ raise_exception('roles must alternate') }}",
      }),
    ).toThrow(/^JSONL line 1: chatTemplate: rendering failed \(.*roles must alternate/);
  });

  it('refuses chat rows when the model has no template and none is chosen', () => {
    expect(() => parseTrainingData(`\n${chatJsonl}`, brownGpt, 128)).toThrow(
      `JSONL line 2: chat rows ({"messages"}) are rendered with a chat template, and ${brownGpt.source} has none ` +
        "(chat_template.jinja or tokenizer_config.json's chat_template); choose one (ChatML) or load a model that has one",
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
