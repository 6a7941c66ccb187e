// The core's example builders with real tokenizers.
import path from 'node:path';

import { IGNORE_INDEX, causalLmExample, classificationExample, tokenClassificationExample } from '@peft/core';
import { describe, expect, it } from 'vitest';

import { loadTokenizer } from '../src/index.js';
import { FIXTURES } from './fixtures.js';

const tokenizer = (kind: string) => loadTokenizer(path.join(FIXTURES, 'tokenizers', kind));

describe('tokenClassificationExample', () => {
  it.each([
    ['wordpiece', (w: string) => w.toLowerCase()],
    ['byte-level-bpe', (w: string) => w],
  ])('%s: the first token of each word carries its tag', async (kind, normalise) => {
    const tok = await tokenizer(kind);
    const words = ['The', 'jury', 'said', 'xylophone', 'quixotic!'];
    const tags = [1, 2, 3, 4, 5];
    const example = tokenClassificationExample(tok, words, tags);
    const labels = example.labels as number[];
    expect(labels).toHaveLength(example.inputIds.length);
    const starts = labels.flatMap((label, i) => (label === IGNORE_INDEX ? [] : [i]));
    expect(starts.map((i) => labels[i])).toEqual(tags);
    // each word's tokens, from its first token to the next word's, decode to the word
    starts.forEach((start, w) => {
      const end = starts[w + 1] ?? labels.length - (kind === 'wordpiece' ? 1 : 0);
      expect(tok.decode(example.inputIds.slice(start, end)).trim()).toBe(normalise(words[w]!));
    });
    const all = tokenClassificationExample(tok, words, tags, { labelAllSubwords: true }).labels as number[];
    expect(all.filter((l) => l !== IGNORE_INDEX).length).toBeGreaterThan(starts.length);
  });

  it('refuses words and tags of different lengths', async () => {
    expect(() => tokenClassificationExample(awaitSync(), ['a'], [1, 2])).toThrow('1 words but 2 tags');
  });
});

let cached: Awaited<ReturnType<typeof tokenizer>>;
const awaitSync = () => cached;

describe('causalLmExample and classificationExample', () => {
  it('labels only the completion, ends with EOS, truncates', async () => {
    cached = await tokenizer('byte-level-bpe');
    const tok = cached;
    const example = causalLmExample(tok, 'The jury said', ' the election was fair.');
    const promptLength = tok.encode('The jury said').ids.length;
    const labels = example.labels as number[];
    expect(labels.slice(0, promptLength).every((l) => l === IGNORE_INDEX)).toBe(true);
    expect(labels.slice(promptLength)).toEqual(example.inputIds.slice(promptLength));
    expect(example.inputIds.at(-1)).toBe(tok.eosTokenId);
    expect(causalLmExample(tok, 'The jury said', ' the election', { maxLength: 4 }).inputIds).toHaveLength(4);
  });

  it('classification examples carry segment ids for pairs', async () => {
    const tok = await tokenizer('wordpiece');
    const example = classificationExample(tok, 'The jury said', 2, { textPair: 'the election was fair.' });
    expect(example.labels).toBe(2);
    expect(example.tokenTypeIds).toContain(1);
    expect(example.tokenTypeIds![0]).toBe(0);
  });
});
