// Property-based tests of the tokenizer wrapper (issue 23) on the three fixture tokenizers
// (byte-level BPE, byte-fallback BPE, WordPiece): any text, pair, option and id list gives ids,
// rows or text of a size bounded by the input, or an Error naming what was wrong; never another
// throw, never a hang, never an allocation sized by a number alone (padding to maxLength 1e9
// exhausted the heap and ended the process before).
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { memoryStore } from '@peft/core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { HfTokenizer, loadTokenizer } from '../src/index.js';
import { FIXTURES } from './fixtures.js';

const root = path.join(FIXTURES, 'tokenizers');
const kinds = readdirSync(root);

const count = { cases: 0 };
const started = performance.now();
afterAll(() => {
  console.log(
    `[tokenizer fuzz] ${count.cases} generated cases in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
});

/** Texts a tokenizer trips on: any code point, lone surrogates, control characters, special tokens, runs. */
const text = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 24 }),
  fc.string({ unit: 'grapheme', maxLength: 12 }),
  fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => `a${String.fromCharCode(c)} b`),
  fc.constantFrom('<|endoftext|>', '<s>', '</s>', '[CLS]', '[SEP]', '[PAD]', '<unk>', '\u0000', '\r\n', ' ', ''),
  fc.tuple(fc.constantFrom('a', ' ', 'é', '😀', '\t'), fc.nat(300)).map(([c, n]) => c.repeat(n)),
);
const length = fc.oneof(
  fc.integer({ min: -2, max: 12 }),
  fc.constantFrom(0.5, Number.NaN, Infinity, 2 ** 24 + 1, 1e9, 2 ** 53),
);
const side = fc.constantFrom('left', 'right', 'middle', undefined, '' as const);

/** The result, or the Error's message after checking that it is a plain Error that says something. */
function attempt<T>(run: () => T): T | string {
  try {
    return run();
  } catch (error) {
    expect((error as Error).constructor, String(error)).toBe(Error);
    expect((error as Error).message.length).toBeGreaterThan(10);
    return (error as Error).message;
  }
}

describe.each(kinds)('%s (fast-check)', (kind) => {
  let tokenizer: HfTokenizer;
  /** The longest token: an id the vocabulary lacks may decode as the unknown one. */
  let longest = 0;
  beforeAll(async () => {
    tokenizer = await loadTokenizer(path.join(root, kind));
    for (let i = 0; i < tokenizer.vocabSize; i++) longest = Math.max(longest, tokenizer.idToToken(i)?.length ?? 0);
  });

  it('encode: ids of the vocabulary, as many as the text has bytes (and specials), or an Error', () => {
    fc.assert(
      fc.property(
        text,
        fc.record(
          {
            textPair: fc.oneof(text, fc.constantFrom(5, null)),
            addSpecialTokens: fc.boolean(),
            truncation: fc.boolean(),
            maxLength: length,
            truncationSide: side,
          },
          { requiredKeys: [] },
        ),
        (input, options) => {
          count.cases++;
          const encoded = attempt(() => tokenizer.encode(input, options as never));
          if (typeof encoded === 'string') return;
          const bytes = new TextEncoder().encode(input + ((options.textPair as string) ?? '')).length;
          expect(encoded.ids.length).toBeLessThanOrEqual(bytes + 8);
          expect(encoded.tokenTypeIds).toHaveLength(encoded.ids.length);
          expect(encoded.attentionMask).toHaveLength(encoded.ids.length);
          for (const id of encoded.ids) expect(tokenizer.idToToken(id)).not.toBeNull();
          if (options.truncation && Number.isInteger(options.maxLength) && options.textPair === undefined)
            expect(encoded.ids.length).toBeLessThanOrEqual(options.maxLength as number);
        },
      ),
      { numRuns: 600 },
    );
  });

  it('encodeBatch: rows of one width when padded, or an Error (maxLength 1e9 is one, not a crash)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(text, fc.constantFrom(7 as unknown as string)), { maxLength: 4 }),
        fc.record(
          {
            padding: fc.constantFrom('longest', 'max_length', false, 'bogus'),
            maxLength: length,
            truncation: fc.boolean(),
            paddingSide: side,
          },
          { requiredKeys: [] },
        ),
        (texts, options) => {
          count.cases++;
          const batch = attempt(() => tokenizer.encodeBatch(texts, options as never));
          if (typeof batch === 'string') return;
          const widths = new Set(batch.inputIds.map((row) => row.length));
          if (options.padding !== false) expect(widths.size).toBe(1);
          const bytes = texts.reduce((sum, t) => sum + new TextEncoder().encode(t).length, 0);
          const width = Math.max(...widths);
          expect(width).toBeLessThanOrEqual(
            Math.max(bytes + 8, options.padding === 'max_length' ? (options.maxLength as number) : 0),
          );
        },
      ),
      { numRuns: 600 },
    );
  });

  it('decode: text no longer than its tokens, or an Error naming the bad id', () => {
    const id = fc.oneof(
      fc.nat(tokenizer ? tokenizer.vocabSize + 5 : 500),
      fc.constantFrom(-1, 0.5, Number.NaN, Infinity, 2 ** 32, 2 ** 32 - 1, 1e9),
    );
    fc.assert(
      fc.property(fc.array(id, { maxLength: 12 }), fc.boolean(), (ids, skipSpecialTokens) => {
        count.cases++;
        const decoded = attempt(() => tokenizer.decode(ids, { skipSpecialTokens }));
        if (ids.some((i) => !Number.isInteger(i) || i < 0 || i > 0xffffffff)) {
          expect(decoded).toMatch(/decode: ids\[\d+\] is .*, not a token id/);
          return;
        }
        expect(typeof decoded).toBe('string');
        expect((decoded as string).length).toBeLessThanOrEqual(ids.length * (longest + 1) + 1);
      }),
      { numRuns: 400 },
    );
  });
});

describe('HfTokenizer.load on hostile tokenizer_config.json (fast-check)', () => {
  it('a tokenizer, or an Error naming the file', async () => {
    const json = readFileSync(path.join(root, 'byte-level-bpe', 'tokenizer.json'));
    const value = fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      fc.constantFrom('<|endoftext|>', 'left', 'right', { content: 5 }, [{ name: 'x' }]),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(
          fc.constantFrom(
            'bos_token',
            'eos_token',
            'pad_token',
            'unk_token',
            'padding_side',
            'truncation_side',
            'chat_template',
            'clean_up_tokenization_spaces',
            '__proto__',
            'model_max_length',
          ),
          value,
          { maxKeys: 4 },
        ),
        async (config) => {
          count.cases++;
          const store = memoryStore({
            'tokenizer.json': json,
            'tokenizer_config.json': new TextEncoder().encode(JSON.stringify(config)),
          });
          const loaded = await HfTokenizer.load(store).catch((error: Error) => error);
          if (loaded instanceof Error) {
            expect(loaded.constructor).toBe(Error);
            expect(loaded.message).toMatch(/tokenizer(_config)?\.json: /);
            return;
          }
          expect(loaded.encode('hello world').ids.length).toBeGreaterThan(0);
        },
      ),
      { numRuns: 300 },
    );
  });
});
