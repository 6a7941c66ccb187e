// brown-bert's masked-LM objective: BERT's 15% of the tokens, 80% [MASK], 10% random, 10% kept.
import { IGNORE_INDEX, SeededRandom } from '@peft/core';
import { describe, expect, it } from 'vitest';

import { labelsAtMasks, maskBlock } from '../src/data/mlm-masking.js';
import {
  bertMaskedLmStart,
  BROWN_BERT,
  bertShape,
  parsePhases,
  unigramLogPrior,
  withOutputBias,
} from '../src/pretraining.js';

const VOCAB = { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4, firstWord: 5, vocab: 1000 };

describe('maskBlock', () => {
  it('chooses 15% of the tokens between [CLS] and [SEP]; of those 80% [MASK], 10% random words, 10% kept; labels the chosen', () => {
    const random = new SeededRandom(3);
    const counts = { tokens: 0, chosen: 0, masked: 0, replaced: 0, kept: 0 };
    for (let i = 0; i < 400; i++) {
      const block = [VOCAB.cls, ...Array.from({ length: 100 }, (_, t) => 500 + ((t * 7 + i) % 400)), VOCAB.sep];
      const { inputIds, labels } = maskBlock(block, random, VOCAB);
      const labelled = labels as number[];
      expect(inputIds).toHaveLength(block.length);
      expect([inputIds[0], inputIds.at(-1)]).toEqual([VOCAB.cls, VOCAB.sep]); // never chosen
      expect([labelled[0], labelled.at(-1)]).toEqual([IGNORE_INDEX, IGNORE_INDEX]);
      for (let t = 1; t < block.length - 1; t++) {
        counts.tokens += 1;
        if (labelled[t] === IGNORE_INDEX) {
          expect(inputIds[t]).toBe(block[t]); // not chosen: untouched
          continue;
        }
        counts.chosen += 1;
        expect(labelled[t]).toBe(block[t]); // the label is the original token
        if (inputIds[t] === VOCAB.mask) counts.masked += 1;
        else if (inputIds[t] === block[t]) counts.kept += 1;
        else {
          counts.replaced += 1;
          expect(inputIds[t]).toBeGreaterThanOrEqual(VOCAB.firstWord); // a word, never a special token
          expect(inputIds[t]).toBeLessThan(VOCAB.vocab);
        }
      }
    }
    // 40,000 tokens: shares within 5 binomial standard deviations of BERT's
    const within = (count: number, n: number, p: number) =>
      expect(Math.abs(count - n * p)).toBeLessThan(5 * Math.sqrt(n * p * (1 - p)));
    within(counts.chosen, counts.tokens, 0.15);
    within(counts.masked, counts.chosen, 0.8);
    // a random draw can hit the token itself (1 in 995): kept takes those
    within(counts.replaced, counts.chosen, 0.1 * (1 - 1 / 995));
    within(counts.kept, counts.chosen, 0.1 * (1 + 1 / 995));
  });

  it('chooses at least one token of a short block; a block without tokens is refused', () => {
    for (let seed = 0; seed < 50; seed++) {
      const { labels } = maskBlock([VOCAB.cls, 700, VOCAB.sep], new SeededRandom(seed), VOCAB);
      expect(labels).toEqual([IGNORE_INDEX, 700, IGNORE_INDEX]);
    }
    expect(() => maskBlock([VOCAB.cls, VOCAB.sep], new SeededRandom(1), VOCAB)).toThrow(
      'maskBlock: a block of 2 tokens has none between [CLS] and [SEP]',
    );
  });

  it('labelsAtMasks keeps the labels of the [MASK] inputs only, and leaves out an example left without one', () => {
    const random = new SeededRandom(11);
    const examples = Array.from({ length: 50 }, (_, i) =>
      maskBlock(
        [VOCAB.cls, ...Array.from({ length: 60 }, (_, t) => 600 + ((t * 13 + i) % 300)), VOCAB.sep],
        random,
        VOCAB,
      ),
    );
    // a block whose one chosen token is kept as itself: no [MASK], no label left
    const unmasked = { inputIds: [VOCAB.cls, 700, VOCAB.sep], labels: [IGNORE_INDEX, 700, IGNORE_INDEX] };
    const atMasks = labelsAtMasks([...examples, unmasked], VOCAB.mask);
    expect(atMasks).toHaveLength(examples.length);
    let kept = 0;
    let dropped = 0;
    atMasks.forEach((example, i) => {
      const original = examples[i]!;
      expect(example.inputIds).toEqual(original.inputIds);
      (example.labels as number[]).forEach((label, t) => {
        const before = (original.labels as number[])[t];
        if (original.inputIds[t] === VOCAB.mask) {
          expect(label).toBe(before);
          kept += 1;
        } else {
          expect(label).toBe(IGNORE_INDEX);
          if (before !== IGNORE_INDEX) dropped += 1;
        }
      });
    });
    // both kinds occur: the [MASK] labels stay, the random and kept ones go
    expect(kept).toBeGreaterThan(0);
    expect(dropped).toBeGreaterThan(0);
  });
});

describe('parsePhases', () => {
  it('reads BLOCKxBATCHxMASKINGS stages, the last over all positions', () => {
    expect(parsePhases('32x64x4, 128x16x14', 128)).toEqual([
      { block: 32, batch: 64, maskings: 4 },
      { block: 128, batch: 16, maskings: 14 },
    ]);
    expect(parsePhases('128x16x6', 128)).toEqual([{ block: 128, batch: 16, maskings: 6 }]);
  });

  it.each([
    [
      '32x64',
      '--phases: expected BLOCKxBATCHxMASKINGS (block 8 to 128 tokens, batch and maskings at least 1), got "32x64"',
    ],
    ['4x64x2,128x16x1', 'got "4x64x2"'],
    ['256x16x1', 'got "256x16x1"'],
    ['32x0x2,128x16x1', 'got "32x0x2"'],
    ['128x16x6,32x64x4', '--phases: the last phase trains all 128 positions of the model, not 32'],
  ])('refuses %s', (text, message) => {
    expect(() => parsePhases(text, 128)).toThrow(message);
  });
});

describe('unigramLogPrior and withOutputBias', () => {
  it("gives each id its add-one-smoothed log frequency, special ids not counted, and puts it in the start's output bias", () => {
    const prior = unigramLogPrior(
      [
        [2, 7, 7, 7, 5, 3],
        [2, 5, 3],
      ],
      10,
      [2, 3],
    );
    // 5 counted tokens + 10 for smoothing: id 7 seen 3 times, id 5 twice, the rest never
    expect(prior[7]).toBeCloseTo(Math.log(4 / 15), 6);
    expect(prior[5]).toBeCloseTo(Math.log(3 / 15), 6);
    expect(prior[2]).toBeCloseTo(Math.log(1 / 15), 6); // [CLS] skipped
    expect(prior.reduce((sum, p) => sum + Math.exp(p), 0)).toBeCloseTo(1, 5);

    const start = bertMaskedLmStart(
      'test',
      { vocab: 10, positions: 8, hidden: 4, layers: 1, heads: 1, intermediate: 8 },
      1,
    );
    const started = withOutputBias(start, prior);
    expect(Array.from(started.tensor('cls.predictions.bias').values as Float32Array)).toEqual(Array.from(prior));
    expect(Array.from(start.tensor('cls.predictions.bias').values as Float32Array)).toEqual(new Array(10).fill(0));
    expect(started.tensor('bert.embeddings.word_embeddings.weight').values).toEqual(
      start.tensor('bert.embeddings.word_embeddings.weight').values,
    );
    expect(started.names()).toEqual(start.names());
  });
});

describe('bertShape', () => {
  it('builds the shape from the flags, the feed-forward 4 x the width', () => {
    expect(bertShape(BROWN_BERT, 4, 128, 4)).toEqual({
      vocab: 4096,
      positions: 128,
      hidden: 128,
      layers: 4,
      heads: 4,
      intermediate: 512,
    });
  });

  it('refuses a width the heads do not divide and flags that are not positive integers', () => {
    expect(() => bertShape(BROWN_BERT, 4, 130, 4)).toThrow('--width 130 is not a multiple of --heads 4');
    expect(() => bertShape(BROWN_BERT, 0, 128, 4)).toThrow('--layers: a positive integer, got 0');
    expect(() => bertShape(BROWN_BERT, 4, Number('x'), 4)).toThrow('--width: a positive integer, got NaN');
  });
});
