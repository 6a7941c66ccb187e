// Chat templates against transformers' apply_chat_template (oracle/make_chat_fixtures.py): rendered
// text and ids for Qwen2.5-, Qwen3-, Llama 3- and Gemma-style templates, assistant masks for their
// versions with {% generation %} markers, and the turn-by-turn spans of the unmarked versions.
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { IGNORE_INDEX } from '@peft/core';
import { beforeAll, describe, expect, it } from 'vitest';

import {
  ChatTemplate,
  chatExample,
  loadTokenizer,
  parseChatMessages,
  type ChatMessage,
  type HfTokenizer,
} from '../src/index.js';
import { FIXTURES } from './fixtures.js';

const root = path.join(FIXTURES, 'chat');

interface Case {
  template: string;
  conversation: number;
  text: string;
  with_generation_prompt: string;
  input_ids: number[];
  assistant_masks?: number[];
  /** Unmarked templates: whether transformers renders each assistant turn as the start of the whole. */
  prefix_consistent?: boolean;
}

const expected = JSON.parse(readFileSync(path.join(root, 'expected.json'), 'utf8')) as {
  templates: Record<string, string>;
  conversations: ChatMessage[][];
  cases: Case[];
};
const named = (c: Case) => `${c.template}, conversation ${c.conversation}`;

let tokenizer: HfTokenizer;
beforeAll(async () => {
  tokenizer = await loadTokenizer(root);
});

describe.each(expected.cases.map((c) => [named(c), c] as const))('%s', (_, fixture) => {
  const messages = expected.conversations[fixture.conversation]!;
  const chatTemplate = expected.templates[fixture.template]!;

  it('renders the text transformers renders, with and without the generation prompt', () => {
    expect(tokenizer.applyChatTemplate(messages, { chatTemplate })).toBe(fixture.text);
    expect(tokenizer.applyChatTemplate(messages, { chatTemplate, addGenerationPrompt: true })).toBe(
      fixture.with_generation_prompt,
    );
  });

  it('gives the ids transformers gives', () => {
    const text = tokenizer.applyChatTemplate(messages, { chatTemplate });
    expect(tokenizer.encode(text, { addSpecialTokens: false }).ids).toEqual(fixture.input_ids);
  });

  const marked = expected.cases.find(
    (c) => c.template === fixture.template.replace(/(-marked)?$/, '-marked') && c.conversation === fixture.conversation,
  )!;
  if (fixture.prefix_consistent === false) {
    it('refuses the conversation: the template rewrites earlier turns', () => {
      expect(() => chatExample(tokenizer, messages, { chatTemplate })).toThrow(/rewrites earlier turns/);
    });
    return;
  }
  it('labels the tokens of transformers’ assistant mask (of the marked template) and only those', () => {
    const { inputIds, labels } = chatExample(tokenizer, messages, { chatTemplate });
    expect(inputIds).toEqual(fixture.input_ids);
    const mask = marked.assistant_masks!;
    expect(labels).toEqual(fixture.input_ids.map((id, i) => (mask[i] === 1 ? id : IGNORE_INDEX)));
    expect(mask).toContain(1);
  });
});

describe('chat templates', () => {
  it('reads the checkpoint’s template from chat_template.jinja', () => {
    expect(tokenizer.chatTemplate).toBe(expected.templates['qwen2.5-marked']);
    const first = expected.cases.find((c) => c.template === 'qwen2.5-marked' && c.conversation === 0)!;
    expect(tokenizer.applyChatTemplate(expected.conversations[0]!)).toBe(first.text);
  });

  it('says how to proceed when the template rewrites earlier turns (Qwen3 drops older reasoning)', () => {
    const messages = expected.conversations[2]!;
    expect(() => chatExample(tokenizer, messages, { chatTemplate: expected.templates.qwen3! })).toThrow(
      /chatTemplate: cannot find assistant turn 1 .*rewrites earlier turns.*\{% generation %\}.*option chatTemplate/s,
    );
  });

  it('names the message that is not {role, content}', () => {
    expect(() => chatExample(tokenizer, [{ role: 'user' } as ChatMessage])).toThrow(/message 0: expected \{"role"/);
    expect(() => chatExample(tokenizer, [])).toThrow(/non-empty array of messages/);
  });

  it('reads a JSONL row’s messages, naming the line and the message that is not {role, content}', () => {
    const messages = [{ role: 'user', content: 'hi', name: 'x' }];
    expect(parseChatMessages(messages, 'a.jsonl:1')).toEqual(messages);
    expect(() => parseChatMessages([], 'a.jsonl:2')).toThrow(
      'a.jsonl:2: expected "messages" to be a non-empty array of {"role", "content"}',
    );
    expect(() => parseChatMessages([{ role: 'user', content: 1 }], 'a.jsonl:3')).toThrow(
      'a.jsonl:3: messages[0]: expected {"role": string, "content": string}',
    );
  });

  it('passes the template’s own errors on', () => {
    const chatTemplate = expected.templates.gemma!;
    expect(() => tokenizer.applyChatTemplate(expected.conversations[1]!, { chatTemplate })).toThrow(
      /chatTemplate: rendering failed \(System role not supported\)/,
    );
  });

  it('strips only the given characters, as Python’s str.strip/lstrip/rstrip (Qwen3 relies on it)', () => {
    const template = new ChatTemplate(
      "{{ messages[0].content.lstrip('\\n') + '|' + messages[0].content.rstrip('\\n ') + '|' + messages[0].content.strip() }}",
      {},
    );
    expect(template.apply([{ role: 'user', content: ' \nx\n ' }])).toBe(' \nx\n | \nx|x');
  });

  it('cuts to maxLength', () => {
    const example = chatExample(tokenizer, expected.conversations[0]!, { maxLength: 10 });
    expect(example.inputIds).toHaveLength(10);
    expect(example.labels).toHaveLength(10);
  });
});
