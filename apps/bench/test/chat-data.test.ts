// `--data chat.jsonl`: {"messages"} rows become causal LM examples through @peft/models' chatExample
// with the model tokenizer's chat template, labels on the assistant turns only (checked against
// transformers' assistant_masks from packages/models/test/fixtures/chat); the errors name file and line.
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { selectBackend } from '@peft/backend';
import { IGNORE_INDEX, type Example } from '@peft/core';
import { nodeDirectory } from '@peft/core/node';
import { loadTokenizer, randomGpt2, savePretrained, type ChatMessage, type HfTokenizer } from '@peft/models';
import { beforeAll, describe, expect, it } from 'vitest';

import { jsonlTask, runBench } from '../src/index.js';

const FIXTURE = path.resolve(import.meta.dirname, '../../../packages/models/test/fixtures/chat');

interface ChatFixture {
  templates: Record<string, string>;
  conversations: ChatMessage[][];
  cases: { template: string; conversation: number; input_ids: number[]; assistant_masks: number[] | null }[];
}
const expected = JSON.parse(readFileSync(path.join(FIXTURE, 'expected.json'), 'utf8')) as ChatFixture;

/** A folder with the fixture's tokenizer and `template` as its chat template (none: no template). */
function tokenizerFolder(template: string | null): string {
  const directory = mkdtempSync(path.join(tmpdir(), 'peft-bench-chat-'));
  for (const file of ['tokenizer.json', 'tokenizer_config.json'])
    copyFileSync(path.join(FIXTURE, file), path.join(directory, file));
  if (template !== null) writeFileSync(path.join(directory, 'chat_template.jinja'), template);
  return directory;
}

/** 12 lines: the fixture's 3 conversations, 4 times, with a blank line in between. */
const chatJsonl = Array.from({ length: 4 }, () =>
  expected.conversations.map((messages) => JSON.stringify({ messages })),
)
  .flat()
  .join('\n\n');

const all = (task: { train: Example[]; validation: Example[]; test: Example[] }): Example[] => [
  ...task.train,
  ...task.validation,
  ...task.test,
];

/** transformers' ids and assistant mask for the conversation with these ids, from the marked template. */
function transformersCase(inputIds: number[], template: string) {
  const found = expected.cases.find(
    (c) =>
      c.template === template &&
      c.input_ids.length === inputIds.length &&
      c.input_ids.every((id, i) => id === inputIds[i]),
  );
  expect(found, 'the example equals one of transformers renderings').toBeDefined();
  return found!;
}

describe('bench --data chat.jsonl', () => {
  let marked: HfTokenizer;
  let unmarked: HfTokenizer;
  beforeAll(async () => {
    marked = await loadTokenizer(FIXTURE); // Qwen2.5's template with {% generation %} markers
    unmarked = await loadTokenizer(tokenizerFolder(expected.templates['qwen2.5']!));
  });

  it('chat rows: causal LM, labels only on the assistant tokens (transformers assistant_masks)', () => {
    const task = jsonlTask('chat.jsonl', chatJsonl, { tokenizer: marked, maxLength: 512 });
    expect(task).toMatchObject({ name: 'chat.jsonl', task: 'causal-lm', metric: 'perplexity', labels: [] });
    const examples = all(task);
    expect(examples).toHaveLength(12);
    for (const example of examples) {
      const labels = example.labels as number[];
      const reference = transformersCase(example.inputIds, 'qwen2.5-marked');
      expect(labels).toEqual(reference.input_ids.map((id, i) => (reference.assistant_masks![i] ? id : IGNORE_INDEX)));
      // what the loss sees: the assistant contents and their <|im_end|>, nothing of the user or system turns
      const trained = marked.decode(
        labels.filter((l) => l !== IGNORE_INDEX),
        { skipSpecialTokens: false },
      );
      const conversation = expected.conversations[reference.conversation]!;
      expect(trained).toBe(
        conversation
          .filter((m) => m.role === 'assistant')
          .map((m) => `${m.content}<|im_end|>`)
          .join(''),
      );
    }
  });

  it('a template without generation markers gives the same labels (turn-by-turn spans)', () => {
    const task = jsonlTask('chat.jsonl', chatJsonl, { tokenizer: unmarked, maxLength: 512 });
    for (const example of all(task)) {
      const reference = transformersCase(example.inputIds, 'qwen2.5-marked');
      expect(example.labels).toEqual(
        reference.input_ids.map((id, i) => (reference.assistant_masks![i] ? id : IGNORE_INDEX)),
      );
    }
  });

  it('cut to maxLength; conversations left with no assistant token are left out and counted', () => {
    const task = jsonlTask('chat.jsonl', chatJsonl, { tokenizer: marked, maxLength: 80 });
    const examples = all(task);
    // only conversation 1 (a short system prompt) has its first assistant turn within 80 tokens
    expect(examples).toHaveLength(4);
    expect(examples.every((e) => e.inputIds.length === 80)).toBe(true);
    expect(examples.every((e) => (e.labels as number[]).some((l) => l !== IGNORE_INDEX))).toBe(true);
    expect(task.notes).toMatch(/conversation\(s\) with no assistant token within 80 tokens left out/);
    expect(task.notes).toContain('8 conversation(s)');
  });

  it('errors name the file and line: no chat template, mixed rows, malformed messages', async () => {
    const plain = await loadTokenizer(tokenizerFolder(null));
    expect(() => jsonlTask('chat.jsonl', chatJsonl, { tokenizer: plain, maxLength: 64 })).toThrow(
      /^chat\.jsonl:1: chat rows \(\{"messages"\}\) are rendered with the model's chat template, and .* has none/,
    );
    const mixed = `${JSON.stringify({ messages: expected.conversations[0] })}\n\n{"text": "hi", "label": "x"}\n`;
    expect(() => jsonlTask('mixed.jsonl', mixed, { tokenizer: marked, maxLength: 64 })).toThrow(
      'mixed.jsonl:3: expected a {"messages"} row like line 1, got a {"text", "label"} row (a file holds one format)',
    );
    const reversed = `{"text": "hi", "label": "x"}\n${JSON.stringify({ messages: expected.conversations[0] })}\n`;
    expect(() => jsonlTask('mixed.jsonl', reversed, { tokenizer: marked, maxLength: 64 })).toThrow(
      'mixed.jsonl:2: expected a {"text", "label"} row like line 1, got a {"messages"} row',
    );
    expect(() =>
      jsonlTask('bad.jsonl', '{"messages": [{"role": "user"}]}\n', { tokenizer: marked, maxLength: 64 }),
    ).toThrow('bad.jsonl:1: messages[0]: expected {"role": string, "content": string}');
    expect(() => jsonlTask('bad.jsonl', '{"messages": []}\n', { tokenizer: marked, maxLength: 64 })).toThrow(
      'bad.jsonl:1: expected "messages" to be a non-empty array',
    );
  });

  it('trains: LoRA on a tiny GPT-2 with the chat tokenizer, test perplexity finite', async () => {
    const directory = tokenizerFolder(expected.templates['qwen2.5-marked']!);
    const vocab = marked.vocabSize;
    const host = randomGpt2({ layers: 1, hidden: 16, heads: 2, vocab, positions: 256 });
    const config = { model_type: 'gpt2', vocab_size: vocab, n_positions: 256, n_embd: 16, n_layer: 1, n_head: 2 };
    await savePretrained(host, nodeDirectory(directory), { config, tokenizer: false });
    host.dispose();
    const tokenizer = await loadTokenizer(directory);
    const task = jsonlTask('chat.jsonl', chatJsonl, { tokenizer, maxLength: 200 });
    const results = await runBench({
      modelDirectory: directory,
      task,
      methods: ['lora'],
      seeds: 1,
      steps: 1,
      batchSize: 4,
      latencyExamples: 1,
      out: mkdtempSync(path.join(tmpdir(), 'peft-bench-out-')),
      backend: await selectBackend({ backend: 'cpu', warnIfSlow: false }),
    });
    const lora = results.runs.find((r) => r.method === 'lora')!;
    expect(lora.status, lora.error).toBe('ok');
    expect(Number.isFinite(lora.metric)).toBe(true);
  }, 120_000);
});
