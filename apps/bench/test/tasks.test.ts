import { IGNORE_INDEX, memoryStore } from '@peft/core';
import { loadTokenizer, type HfTokenizer } from '@peft/models';
import { beforeAll, describe, expect, it } from 'vitest';

import {
  GENRE_CLASSES,
  UNIVERSAL_TAGS,
  bagOfWordsBaseline,
  describeTask,
  detokenize,
  emailLmTask,
  genreTask,
  jsonlTask,
  majorityBaseline,
  posTask,
  readBrown,
  readEmails,
  spamTask,
  splitBrown,
  tokenizerJson,
  trainByteLevelBpe,
} from '../src/index.js';
import { EMBEDDED_MODELS } from '../src/cli.js';
import { METHODS } from '../src/methods.js';
import { taskFor } from '../src/tasks/task-for.js';

let tokenizer: HfTokenizer;
const brown = splitBrown(readBrown());
const emails = readEmails();

beforeAll(async () => {
  const texts = brown.pretrain.slice(0, 40).flatMap((f) => f.sentences.map((s) => detokenize(s.map((w) => w.word))));
  const { vocab, merges } = trainByteLevelBpe(texts, { vocabSize: 600, specialTokens: ['<|endoftext|>'] });
  tokenizer = await loadTokenizer(
    memoryStore({
      'tokenizer.json': new TextEncoder().encode(JSON.stringify(tokenizerJson(vocab, merges, ['<|endoftext|>']))),
      'tokenizer_config.json': new TextEncoder().encode(
        JSON.stringify({ eos_token: '<|endoftext|>', pad_token: '<|endoftext|>' }),
      ),
    }),
  );
});

describe('embedded tasks', () => {
  it('reads all 6,046 SpamAssassin emails (1,896 spam)', () => {
    expect(emails).toHaveLength(6046);
    expect(emails.filter((e) => e.spam)).toHaveLength(1896);
    expect(emails.every((e) => e.text.length > 0)).toBe(true);
    // headers are dropped; 6 spams carry a forwarded header block inside their body
    expect(emails.filter((e) => /^Received:/m.test(e.text)).length).toBeLessThan(10);
  });

  it('spam: fixed seeded splits of 70/10/20, labels 0/1, within the context', () => {
    const task = spamTask(emails, { tokenizer, maxLength: 64, limit: 500 });
    expect([task.train.length, task.validation.length, task.test.length]).toEqual([350, 50, 100]);
    expect(task.train.every((e) => e.inputIds.length <= 64 && (e.labels === 0 || e.labels === 1))).toBe(true);
    expect(spamTask(emails, { tokenizer, maxLength: 64, limit: 500 }).test).toEqual(task.test);
    const majority = majorityBaseline(task);
    expect(majority.accuracy).toBeGreaterThan(0.5);
    expect(majority.f1).toBe(0);
    expect(bagOfWordsBaseline(task, 60).accuracy).toBeGreaterThan(majority.accuracy);
  });

  it("pos: one universal tag on each word's first token, the rest ignored", () => {
    const task = posTask(brown.heldOut, { tokenizer, maxLength: 96, limit: 200 });
    expect(task.labels).toEqual(UNIVERSAL_TAGS);
    const example = task.train[0]!;
    const labels = example.labels as number[];
    expect(labels).toHaveLength(example.inputIds.length);
    expect(labels.some((l) => l === IGNORE_INDEX)).toBe(true);
    expect(labels.filter((l) => l !== IGNORE_INDEX).every((l) => l >= 0 && l < 12)).toBe(true);
    expect(majorityBaseline(task).accuracy).toBeGreaterThan(0.1);
  });

  it('genre: 4 groups, passages from held-out files only', () => {
    const task = genreTask(brown.heldOut, { tokenizer, maxLength: 128, limit: 300 });
    expect(task.labels).toEqual(GENRE_CLASSES);
    const described = describeTask(task) as { labels: Record<string, number>; sizes: Record<string, number> };
    expect(Object.keys(described.labels).sort()).toEqual([...GENRE_CLASSES].sort());
    expect(described.sizes).toEqual({ train: 210, validation: 30, test: 60 });
  });

  it('email-lm: ham emails only, ending with EOS when they fit', () => {
    const task = emailLmTask(emails, { tokenizer, maxLength: 4096, limit: 50 });
    expect(task.task).toBe('causal-lm');
    const short = task.train.filter((e) => e.inputIds.length < 4096);
    expect(short.length).toBeGreaterThan(20);
    expect(short.every((e) => e.inputIds.at(-1) === tokenizer.eosTokenId)).toBe(true);
  });

  it('user data: JSONL text/label and tokens/tags', () => {
    const text = ['{"text": "free money now", "label": "spam"}', '{"text": "meeting at noon", "label": "ham"}']
      .join('\n')
      .repeat(1)
      .concat('\n');
    const task = jsonlTask('mine.jsonl', Array.from({ length: 10 }, () => text).join(''), { tokenizer, maxLength: 32 });
    expect(task.labels).toEqual(['ham', 'spam']);
    expect(task.train.length + task.validation.length + task.test.length).toBe(20);
    const tagged = jsonlTask('ner.jsonl', '{"tokens": ["Paris", "is", "big"], "tags": ["LOC", "O", "O"]}\n', {
      tokenizer,
      maxLength: 32,
    });
    expect(tagged.task).toBe('token-classification');
    expect(tagged.labels).toEqual(['LOC', 'O']);
    expect(() => jsonlTask('bad.jsonl', '{"title": "x"}\n', { tokenizer, maxLength: 8 })).toThrow(
      'bad.jsonl:1: expected "text" and "label" fields',
    );
  });
});

describe('taskFor', () => {
  const model = EMBEDDED_MODELS['brown-gpt']!;

  it('cuts every example at --max-length and says so; by default at the positions less the prompt methods', async () => {
    const cut = await taskFor('genre', undefined, model, 100, 40);
    expect(cut.maxLength).toBe(40);
    const lengths = [...cut.train, ...cut.validation, ...cut.test].map((e) => e.inputIds.length);
    expect(Math.max(...lengths)).toBe(40);
    expect(cut.notes).toMatch(/; examples cut at 40 tokens$/);
    const whole = await taskFor('genre', undefined, model, 100);
    const room = 128 - Math.max(...METHODS.map((m) => m.virtualTokens));
    expect(whole.maxLength).toBe(room);
    expect(Math.max(...whole.train.map((e) => e.inputIds.length))).toBeGreaterThan(40);
  });

  it('refuses a --max-length past the room the model leaves', async () => {
    const most = Math.max(...METHODS.map((m) => m.virtualTokens));
    await expect(taskFor('genre', undefined, model, 100, 200)).rejects.toThrow(
      `--max-length 200: the model has 128 positions, of which the prompt methods take up to ${most}; at most ${128 - most}`,
    );
  });
});
