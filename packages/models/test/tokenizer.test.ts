// Our tokenizer against transformers' (oracle/make_tokenizer_fixtures.py): byte-level BPE,
// byte-fallback BPE (Llama) and WordPiece (BERT), single texts, pairs, padded and truncated batches.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

import { memoryStore } from '@peft/core';
import { beforeAll, describe, expect, it } from 'vitest';

import { loadTokenizer, type HfTokenizer } from '../src/index.js';
import { FIXTURES } from './fixtures.js';

const root = path.join(FIXTURES, 'tokenizers');

interface Expected {
  encode: { text: string; ids: number[]; ids_no_special: number[] }[];
  pairs: { text: string; pair: string; input_ids: number[]; token_type_ids?: number[] }[];
  decode: { ids: number[]; text: string; skip_special: string }[];
  batch: {
    padding_side: 'left' | 'right';
    texts: string[];
    padded: { input_ids: number[][]; attention_mask: number[][] };
    truncated_max_length_6: { input_ids: number[][]; attention_mask: number[][] };
  }[];
}

describe.each(readdirSync(root))('%s', (kind) => {
  const expected = JSON.parse(readFileSync(path.join(root, kind, 'expected.json'), 'utf8')) as Expected;
  let tokenizer: HfTokenizer;
  beforeAll(async () => {
    tokenizer = await loadTokenizer(path.join(root, kind));
  });

  it('encodes every text as transformers does, with and without special tokens', () => {
    for (const { text, ids, ids_no_special } of expected.encode) {
      expect(tokenizer.encode(text).ids, JSON.stringify(text)).toEqual(ids);
      expect(tokenizer.encode(text, { addSpecialTokens: false }).ids, JSON.stringify(text)).toEqual(ids_no_special);
    }
  });

  it('encodes pairs with their token types', () => {
    for (const pair of expected.pairs) {
      const encoded = tokenizer.encode(pair.text, { textPair: pair.pair });
      expect(encoded.ids).toEqual(pair.input_ids);
      if (pair.token_type_ids) expect(encoded.tokenTypeIds).toEqual(pair.token_type_ids);
    }
  });

  it('decodes as transformers does', () => {
    for (const { ids, text, skip_special } of expected.decode) {
      expect(tokenizer.decode(ids)).toBe(text);
      expect(tokenizer.decode(ids, { skipSpecialTokens: true })).toBe(skip_special);
    }
    expect(tokenizer.decode([])).toBe('');
  });

  it.each(['right', 'left'] as const)('pads and truncates batches on the %s', (side) => {
    const batch = expected.batch.find((b) => b.padding_side === side)!;
    const padded = tokenizer.encodeBatch(batch.texts, { paddingSide: side });
    expect(padded.inputIds).toEqual(batch.padded.input_ids);
    expect(padded.attentionMask).toEqual(batch.padded.attention_mask);
    const truncated = tokenizer.encodeBatch(batch.texts, {
      padding: 'max_length',
      truncation: true,
      maxLength: 6,
      paddingSide: side,
      truncationSide: side,
    });
    expect(truncated.inputIds).toEqual(batch.truncated_max_length_6.input_ids);
    expect(truncated.attentionMask).toEqual(batch.truncated_max_length_6.attention_mask);
  });
});

describe('tokenizer errors', () => {
  it('a tokenizer.json that is not JSON names the file', async () => {
    await expect(
      loadTokenizer(memoryStore({ 'tokenizer.json': new TextEncoder().encode('{') }, 'mem:/m')),
    ).rejects.toThrow(/mem:\/m\/tokenizer\.json: not valid JSON/);
  });

  it('padding without a pad token is refused', async () => {
    const json = readFileSync(path.join(root, 'byte-level-bpe', 'tokenizer.json'));
    const tokenizer = await loadTokenizer(memoryStore({ 'tokenizer.json': json }, 'mem:/m'));
    expect(() => tokenizer.encodeBatch(['a', 'bb'])).toThrow('mem:/m/tokenizer.json: the tokenizer has no pad_token');
  });
});

describe("masked LMs' special tokens", () => {
  it.each([
    ['wordpiece', '[MASK]', '[CLS]', '[SEP]'],
    ['roberta-bpe', '<mask>', '<s>', '</s>'],
  ])(
    '%s: maskTokenId, clsTokenId and sepTokenId from tokenizer_config.json; a sequence framed by them',
    async (kind, mask, cls, sep) => {
      const tokenizer = await loadTokenizer(path.join(root, kind));
      expect([tokenizer.maskTokenId, tokenizer.clsTokenId, tokenizer.sepTokenId]).toEqual(
        [mask, cls, sep].map((token) => tokenizer.tokenToId(token)),
      );
      expect(tokenizer.maskTokenId).not.toBeNull();
      const { ids } = tokenizer.encode('The jury said');
      expect([ids[0], ids.at(-1)]).toEqual([tokenizer.clsTokenId, tokenizer.sepTokenId]);
    },
  );

  it('a causal tokenizer has none', async () => {
    const tokenizer = await loadTokenizer(path.join(root, 'byte-level-bpe'));
    expect([tokenizer.maskTokenId, tokenizer.clsTokenId, tokenizer.sepTokenId]).toEqual([null, null, null]);
  });
});
