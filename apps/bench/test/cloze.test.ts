// `pnpm bench cloze`: the P-tuning paper's comparison on a masked LM: how each row writes an item,
// the probing task's items, and what is refused before any training.
import path from 'node:path';

import { IGNORE_INDEX } from '@peft/core';
import { loadTokenizer } from '@peft/models';
import { describe, expect, it } from 'vitest';

import {
  CLOZE_PROMPT_TOKENS,
  clozeExamples,
  clozeMajority,
  clozeTemplate,
  nounItems,
  runCloze,
  type ClozeTask,
} from '../src/cloze/cloze.js';
import type { BrownFile } from '../src/data/brown.js';

const WORDPIECE = path.resolve(import.meta.dirname, '../../../packages/models/test/fixtures/tokenizers/wordpiece');
const BROWN_GPT = path.resolve(import.meta.dirname, '../models/brown-gpt');

const words = (text: string, tags: string): BrownFile['sentences'][number] => {
  const tagList = tags.split(' ');
  return text.split(' ').map((word, i) => ({ word, tag: tagList[i]! }));
};

describe('cloze rows write an item as their template says', () => {
  it('genre: the manual words or pseudo tokens around [MASK]es for the longest label word, the class as label', async () => {
    const tokenizer = await loadTokenizer(WORDPIECE);
    const [mask, cls, sep, unk] = [
      tokenizer.maskTokenId!,
      tokenizer.clsTokenId!,
      tokenizer.sepTokenId!,
      tokenizer.unkTokenId!,
    ];
    const task: ClozeTask = {
      name: 'genre',
      items: { train: [], validation: [], test: [] },
      verbalizer: [[7], [8, 9]],
      notes: '',
    };
    const item = { input: 'the jury said', label: 1 };
    const input = tokenizer.encode(item.input, { addSpecialTokens: false }).ids;
    const [manual] = clozeExamples(task, [item], false, tokenizer, 128, unk);
    const words = tokenizer.encode(' In short, this text is about', { addSpecialTokens: false }).ids;
    const dot = tokenizer.encode('.', { addSpecialTokens: false }).ids;
    expect(manual).toEqual({ inputIds: [cls, ...input, ...words, mask, mask, ...dot, sep], labels: 1 });
    const [pseudo] = clozeExamples(task, [item], true, tokenizer, 128, unk);
    const half = new Array(CLOZE_PROMPT_TOKENS / 2).fill(unk);
    expect(pseudo).toEqual({ inputIds: [cls, ...input, ...half, mask, mask, ...half, ...dot, sep], labels: 1 });
    // a long passage is cut so that the template, the masks and prompt tuning's virtual tokens fit
    const long = { input: Array.from({ length: 200 }, () => 'jury').join(' '), label: 0 };
    for (const pseudoTokens of [false, true]) {
      const [example] = clozeExamples(task, [long], pseudoTokens, tokenizer, 64, unk);
      expect(example!.inputIds.length + CLOZE_PROMPT_TOKENS).toBeLessThanOrEqual(64);
    }
  });

  it('nouns: the sentence around one [MASK] labelled with the noun; P-tuning adds pseudo tokens at both ends', async () => {
    const tokenizer = await loadTokenizer(WORDPIECE);
    const task: ClozeTask = {
      name: 'nouns',
      items: { train: [], validation: [], test: [] },
      verbalizer: null,
      notes: '',
    };
    const item = { input: 'The', after: ' said.', label: 0, target: ' jury' };
    expect(clozeTemplate(task, item, false)).toEqual([{ text: 'The' }, { slot: 'target' }, { text: ' said.' }]);
    const [example] = clozeExamples(task, [item], true, tokenizer, 128, tokenizer.unkTokenId!);
    const jury = tokenizer.encode(' jury', { addSpecialTokens: false }).ids;
    expect(jury).toHaveLength(1);
    const labelled = (example!.labels as number[]).flatMap((label, t) => (label === IGNORE_INDEX ? [] : [t]));
    expect(labelled).toHaveLength(1);
    expect(example!.inputIds[labelled[0]!]).toBe(tokenizer.maskTokenId);
    expect((example!.labels as number[])[labelled[0]!]).toBe(jury[0]);
    expect(example!.inputIds.filter((id) => id === tokenizer.unkTokenId)).toHaveLength(CLOZE_PROMPT_TOKENS);
  });
});

describe('nounItems', () => {
  it("masks each sentence's first frequent one-token noun after its first word; punctuation glues to it", async () => {
    const tokenizer = await loadTokenizer(BROWN_GPT);
    const files: BrownFile[] = [
      {
        id: 'x01',
        genre: 'news',
        sentences: [
          words('The man said the time was fair .', 'at nn vbd at nn bedz jj .'),
          words('Jury members met in the city today .', 'nn nns vbd in at nn nr .'),
          words('A short one .', 'at jj cd .'), // too short, no noun
          words('The city of the man , they said .', 'at nn in at nn , ppss vbd .'),
        ],
      },
    ];
    // man 2, city 2, time 1, members 1 (Jury, capitalised, is not counted): the 4 most frequent
    const items = nounItems(files, tokenizer, 4);
    expect(items.map((item) => `${item.input}[${item.target}]${item.after}`)).toEqual([
      'The[ man] said the time was fair.',
      'Jury[ members] met in the city today.',
      'The[ city] of the man, they said.',
    ]);
  });
});

describe('clozeMajority', () => {
  it("gives every test item the training items' most frequent answer (the first of a tie)", () => {
    const noun = (target: string) => ({ input: 'The', after: '.', label: 0, target });
    const nouns: ClozeTask = {
      name: 'nouns',
      items: {
        train: [noun(' man'), noun(' city'), noun(' city'), noun(' man'), noun(' time')],
        validation: [],
        test: [noun(' man'), noun(' city'), noun(' man'), noun(' time')],
      },
      verbalizer: null,
      notes: '',
    };
    expect(clozeMajority(nouns)).toEqual({ answer: 'man', accuracy: 0.5 });
    const genre = (label: number) => ({ input: 'text', label });
    const genres: ClozeTask = {
      name: 'genre',
      items: { train: [genre(2), genre(0), genre(2)], validation: [], test: [genre(2), genre(1), genre(3)] },
      verbalizer: [[1], [2], [3], [4]],
      notes: '',
    };
    expect(clozeMajority(genres)).toEqual({ answer: 'science', accuracy: 1 / 3 });
  });
});

describe('runCloze refuses before any training', () => {
  it.each([
    [['--task', 'sentiment', '--model', BROWN_GPT], '--task: unknown cloze task "sentiment" (genre, nouns)'],
    [['--rows', 'manual,lora'], '--rows: unknown "lora" (manual, ptuning-v1, prompt, full)'],
    [['--seeds', '0'], '--seeds: expected a positive integer'],
    [['--model', '/nonexistent'], '--model: expected a masked LM folder with config.json, found none in /nonexistent'],
    [['--model', BROWN_GPT, '--out', path.join(import.meta.dirname, '.cloze-out')], 'is not a masked LM'],
  ])('%j', async (args, message) => {
    await expect(runCloze(args)).rejects.toThrow(message);
  });
});
