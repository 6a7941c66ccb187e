import { type HfTokenizer, loadTokenizer } from '@peft/models';
import { memoryStore } from '@peft/core';
import { describe, expect, it } from 'vitest';

import {
  detokenize,
  emailText,
  readBrown,
  splitBrown,
  tokenizerJson,
  trainByteLevelBpe,
  universalTag,
} from '../src/index.js';

describe('Brown corpus', () => {
  const files = readBrown();

  it('reads 500 files in 15 genres, and holds out one file in five per genre, seeded', () => {
    expect(files).toHaveLength(500);
    expect(new Set(files.map((f) => f.genre)).size).toBe(15);
    const split = splitBrown(files);
    expect(split.heldOut).toHaveLength(100);
    expect(split.pretrain.length + split.heldOut.length).toBe(500);
    expect(new Set(split.heldOut.map((f) => f.genre)).size).toBe(15);
    expect(splitBrown(files).heldOut.map((f) => f.id)).toEqual(split.heldOut.map((f) => f.id));
    expect(files[0]!.sentences[0]!.slice(0, 3)).toEqual([
      { word: 'The', tag: 'at' },
      { word: 'Fulton', tag: 'np' },
      { word: 'County', tag: 'nn' },
    ]);
  });

  it('detokenizes as running text', () => {
    expect(detokenize(['He', 'said', ',', '``', 'no', "''", '(', 'he', "didn't", ')', '.'])).toBe(
      'He said, "no" (he didn\'t).',
    );
  });

  it.each([
    ['nn', 'NOUN'],
    ['nps$', 'NOUN'],
    ['vbd', 'VERB'],
    ['md', 'VERB'],
    ['ppss+bem', 'PRON'],
    ['jjt', 'ADJ'],
    ['ql', 'ADV'],
    ['at', 'DET'],
    ['in', 'ADP'],
    ['cd', 'NUM'],
    ['cs', 'CONJ'],
    ['to', 'PRT'],
    [',', '.'],
    ['uh', 'X'],
  ])('maps the Brown tag %s to %s', (brown, universal) => {
    expect(universalTag(brown)).toBe(universal);
  });
});

describe('email text', () => {
  it('keeps the subject and the decoded body, drops headers', () => {
    const raw =
      'From: a@b\nSubject: Cheap =?x?= offer\nContent-Transfer-Encoding: quoted-printable\n\nHello=20world=\n again &amp; =3D\n';
    expect(emailText(raw)).toBe('Cheap =?x?= offer\nHello world again &amp; =');
  });

  it('takes the text part of a multipart message, reduces HTML, decodes base64', () => {
    const raw = [
      'Subject: hi',
      'Content-Type: multipart/alternative; boundary="XX"',
      '',
      '--XX',
      'Content-Type: text/html',
      'Content-Transfer-Encoding: base64',
      '',
      Buffer.from('<p>Buy <b>now</b>&nbsp;!</p><script>x()</script>').toString('base64'),
      '--XX--',
    ].join('\n');
    expect(emailText(raw)).toBe('hi\nBuy now !');
  });
});

describe('byte-level BPE training', () => {
  const corpus = ['the cat sat on the mat.', 'the dog sat on the log!', 'cats and dogs, the end'];

  it('is deterministic and gives a tokenizer.json that round-trips any text', async () => {
    const a = trainByteLevelBpe(corpus, { vocabSize: 280, specialTokens: ['<|endoftext|>'] });
    const b = trainByteLevelBpe(corpus, { vocabSize: 280, specialTokens: ['<|endoftext|>'] });
    expect(a.merges).toEqual(b.merges);
    expect(a.merges[0]).toEqual(['a', 't']); // cat, sat, mat, sat, cats: the most frequent pair
    expect(a.vocab.size).toBeLessThanOrEqual(280);
    const json = tokenizerJson(a.vocab, a.merges, ['<|endoftext|>']);
    const store = memoryStore({
      'tokenizer.json': new TextEncoder().encode(JSON.stringify(json)),
      'tokenizer_config.json': new TextEncoder().encode(
        JSON.stringify({ eos_token: '<|endoftext|>', pad_token: '<|endoftext|>' }),
      ),
    });
    const tokenizer: HfTokenizer = await loadTokenizer(store);
    for (const text of ['the cat sat', 'unseen wörds, 123 ✓', ' leading space']) {
      const ids = tokenizer.encode(text).ids;
      expect(tokenizer.decode(ids)).toBe(text);
    }
    expect(tokenizer.encode('the cat').ids.length).toBeLessThan('the cat'.length);
    expect(tokenizer.eosTokenId).toBe(0);
  });
});
