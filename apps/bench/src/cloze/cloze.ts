// `pnpm bench cloze`: the P-tuning paper's comparison on a masked LM (issue 26): the task written as a
// fill-in template whose [MASK] the model fills, with rows for a hand-written template (no training),
// P-tuning v1 (pseudo tokens in the template, made by its prompt encoder), prompt tuning (virtual
// tokens in front of the hand-written template) and full fine-tuning (the hand-written template), on
// the same splits, budget and seeds. Tasks: genre (4 genre groups read through label words) and
// nouns (a held-out sentence's noun masked, predicted over the vocabulary: probing).
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { selectBackend } from '@peft/backend';
import {
  countParameters,
  evaluate,
  fullFineTuning,
  getPeftModel,
  splitDataset,
  train,
  type Example,
  type PeftHost,
  type TrainOptions,
  type TrainableModel,
} from '@peft/core';
import { loadPretrained, loadTokenizer, type HfTokenizer } from '@peft/models';
import { PromptTuningConfig } from '@peft/prompt';
import { PTuningConfig, templateExample, type TemplatePart } from '@peft/ptuning';

import { positiveIntegerFlag, prepareOutFolder, shippedModel } from '../cli.js';
import { detokenize, readBrown, splitBrown, type BrownFile } from '../data/brown.js';
import { replaceFile } from '../files.js';
import { runSchedule } from '../run.js';
import { capped, genrePassages, GENRE_CLASSES } from '../tasks/tasks.js';

export const clozeUsage = `usage: pnpm bench cloze [options]   the P-tuning paper's comparison on a masked LM
  --model DIR|brown-bert   a BertForMaskedLM / RobertaForMaskedLM folder (default brown-bert)
  --task genre|nouns       genre: 4 genre groups through label words at [MASK]; nouns: a held-out
                           sentence's noun masked, predicted over the vocabulary (probing); default genre
  --rows a,b,...           default all: ${'manual, ptuning-v1, prompt, full'}
  --seeds N                default 3
  --budget N               optimizer steps per run (default 100)
  --batch N                examples per step (default 16)
  --limit N                examples taken before the split (default 2000)
  --out DIR                default bench-results/cloze/<model>/<task>`;

/** Pseudo tokens of P-tuning and virtual tokens of prompt tuning: the same context cost. */
export const CLOZE_PROMPT_TOKENS = 6;

/** Each genre class's label word (GENRE_CLASSES order: press, general, learned, fiction). */
export const GENRE_WORDS = [' news', ' life', ' science', ' story'] as const;

/** One example's parts: the text the template holds, and its class (genre) or masked word (nouns). */
export interface ClozeItem {
  /** genre: the passage; nouns: the sentence before the noun. */
  input: string;
  /** nouns: the sentence after the noun. */
  after?: string;
  /** genre: the class; nouns: the noun, with its leading space. */
  label: number;
  target?: string;
}

export interface ClozeTask {
  name: 'genre' | 'nouns';
  items: { train: ClozeItem[]; validation: ClozeItem[]; test: ClozeItem[] };
  /** genre: the label words' ids; nouns: none (the loss over the vocabulary). */
  verbalizer: number[][] | null;
  notes: string;
}

/** A row of the comparison: how the template reads, what trains. */
export interface ClozeRow {
  name: string;
  label: string;
  learningRate: number;
  /** Pseudo tokens in the template (P-tuning). */
  pseudo: boolean;
  frozen?: boolean;
  make(host: PeftHost, placeholder: number, seed: number): TrainableModel;
}

export const CLOZE_ROWS: readonly ClozeRow[] = [
  {
    name: 'manual',
    label: 'manual template (no training)',
    learningRate: 0,
    pseudo: false,
    frozen: true,
    make: (host) => ({ host, trainableVariables: () => new Map() }),
  },
  {
    name: 'ptuning-v1',
    label: `P-tuning v1 (${CLOZE_PROMPT_TOKENS} pseudo tokens in the template, BiLSTM + MLP encoder)`,
    learningRate: 1e-2,
    pseudo: true,
    make: (host, placeholder, seed) =>
      getPeftModel(
        host,
        new PTuningConfig({
          numVirtualTokens: CLOZE_PROMPT_TOKENS,
          encoderReparameterizationType: 'LSTM',
          placeholderTokenId: placeholder,
          initSeed: seed,
        }),
      ),
  },
  {
    name: 'prompt',
    label: `prompt tuning (${CLOZE_PROMPT_TOKENS} virtual tokens before the manual template)`,
    learningRate: 3e-2,
    pseudo: false,
    make: (host, _placeholder, seed) =>
      getPeftModel(
        host,
        new PromptTuningConfig({
          numVirtualTokens: CLOZE_PROMPT_TOKENS,
          promptTuningInit: 'SAMPLE_VOCAB',
          initSeed: seed,
        }),
      ),
  },
  {
    name: 'full',
    label: 'fine-tuning (manual template, every weight)',
    learningRate: 1e-4,
    pseudo: false,
    make: (host) => fullFineTuning(host),
  },
];

/**
 * nouns: sentences of held-out files with one noun masked. The candidates are the `vocabulary` most
 * frequent lower-case nouns of the held-out text that the tokenizer writes as one token after a
 * space; each sentence (6-40 words) gives its first candidate noun after the first word.
 */
export function nounItems(files: readonly BrownFile[], tokenizer: HfTokenizer, vocabulary = 100): ClozeItem[] {
  const single = (word: string): boolean => tokenizer.encode(` ${word}`, { addSpecialTokens: false }).ids.length === 1;
  const counts = new Map<string, number>();
  for (const file of files)
    for (const sentence of file.sentences)
      for (const { word, tag } of sentence)
        if (/^nns?$/.test(tag) && /^[a-z]+$/.test(word)) counts.set(word, (counts.get(word) ?? 0) + 1);
  const nouns = new Set(
    [...counts]
      .filter(([word]) => single(word))
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
      .slice(0, vocabulary)
      .map(([word]) => word),
  );
  const items: ClozeItem[] = [];
  for (const file of files) {
    for (const sentence of file.sentences) {
      if (sentence.length < 6 || sentence.length > 40) continue;
      const at = sentence.findIndex((w, i) => i > 0 && /^nns?$/.test(w.tag) && nouns.has(w.word));
      if (at < 0) continue;
      const words = sentence.map((w) => w.word);
      const after = detokenize(words.slice(at + 1));
      items.push({
        input: detokenize(words.slice(0, at)),
        // punctuation glues to the noun, a word takes a space
        after: /^[.,;:!?')]/.test(after) ? after : ` ${after}`,
        label: 0,
        target: ` ${words[at]}`,
      });
    }
  }
  return items;
}

/** The task's items, split 70/10/20 with the bench's seed. */
export async function clozeTask(name: string, tokenizer: HfTokenizer, limit: number): Promise<ClozeTask> {
  const heldOut = splitBrown(readBrown()).heldOut;
  const seed = 1;
  const split = (items: ClozeItem[]) => splitDataset(capped(items, limit, seed), { validation: 0.1, test: 0.2, seed });
  if (name === 'genre') {
    return {
      name,
      items: split(genrePassages(heldOut).map(({ text, label }) => ({ input: text, label }))),
      verbalizer: GENRE_WORDS.map((word) => tokenizer.encode(word, { addSpecialTokens: false }).ids),
      notes: `5-sentence passages of held-out Brown files, 4 genre groups (${GENRE_CLASSES.join(', ')}) read as the words${GENRE_WORDS.join(',')} at [MASK]`,
    };
  }
  if (name === 'nouns') {
    return {
      name,
      items: split(nounItems(heldOut, tokenizer)),
      verbalizer: null,
      notes:
        "sentences of held-out Brown files with one noun masked (the 100 most frequent one-token nouns), predicted over the model's vocabulary",
    };
  }
  throw new Error(`--task: unknown cloze task "${name}" (genre, nouns)`);
}

/**
 * The reference a row must beat: the answer most frequent among the training items (genre: a class;
 * nouns: a noun), given for every test item; ties go to the first in the items' order.
 */
export function clozeMajority(task: ClozeTask): { answer: string; accuracy: number } {
  const answerOf = (item: ClozeItem): string =>
    task.name === 'genre' ? GENRE_WORDS[item.label]!.trim() : item.target!.trim();
  const counts = new Map<string, number>();
  for (const item of task.items.train) counts.set(answerOf(item), (counts.get(answerOf(item)) ?? 0) + 1);
  const answer = [...counts].reduce((best, entry) => (entry[1] > best[1] ? entry : best))[0];
  const hits = task.items.test.filter((item) => answerOf(item) === answer).length;
  return { answer, accuracy: hits / Math.max(1, task.items.test.length) };
}

/** The template of a row for an item: P-tuning's pseudo tokens around the text, or the manual words. */
export function clozeTemplate(task: ClozeTask, item: ClozeItem, pseudo: boolean): TemplatePart[] {
  const half = CLOZE_PROMPT_TOKENS / 2;
  if (task.name === 'genre') {
    const masks = Math.max(...task.verbalizer!.map((word) => word.length));
    return pseudo
      ? [{ slot: 'input' }, { pseudo: half }, { slot: 'target', masks }, { pseudo: half }, { text: '.' }]
      : [{ slot: 'input' }, { text: ' In short, this text is about' }, { slot: 'target', masks }, { text: '.' }];
  }
  // nouns: the sentence itself is the manual template (the model's own pretraining form)
  const sentence: TemplatePart[] = [{ text: item.input }, { slot: 'target' }, { text: item.after! }];
  return pseudo ? [{ pseudo: half }, ...sentence, { pseudo: half }] : sentence;
}

/** The examples of a row, every one fitting the context with room for prompt tuning's virtual tokens. */
export function clozeExamples(
  task: ClozeTask,
  items: readonly ClozeItem[],
  pseudo: boolean,
  tokenizer: HfTokenizer,
  positions: number,
  placeholder: number,
): Example[] {
  const { maskTokenId, clsTokenId, sepTokenId } = tokenizer;
  if (maskTokenId === null || clsTokenId === null || sepTokenId === null)
    throw new Error('--model: the tokenizer names no mask_token, cls_token and sep_token: not a masked LM');
  const options = { maskTokenId, prefix: [clsTokenId], suffix: [sepTokenId] };
  return items.map((item, i) => {
    const template = clozeTemplate(task, item, pseudo);
    const values =
      task.name === 'genre' ? { input: item.input, label: item.label } : { input: '', target: item.target! };
    // the input is cut to what the template, its masks and prompt tuning's virtual tokens leave
    const frame = templateExample(tokenizer, template, { ...values, input: '' }, placeholder, options).inputIds.length;
    const room = positions - CLOZE_PROMPT_TOKENS - frame;
    if (room < 1)
      throw new Error(
        `cloze item ${i}: the template takes ${frame} of the model's ${positions} positions, leaving no room for the text`,
      );
    return templateExample(tokenizer, template, values, placeholder, { ...options, inputMaxTokens: room });
  });
}

interface ClozeRun {
  seed: number;
  accuracy: number;
  trainable: number;
  seconds: number;
}

interface ClozeResults {
  schema: 'peft-bench-cloze/1';
  createdAt: string;
  complete: boolean;
  machine: { cpus: number; backend: string };
  model: string;
  task: { name: string; notes: string; train: number; validation: number; test: number };
  budget: { steps: number; batchSize: number; seeds: number };
  majority: { answer: string; accuracy: number };
  rows: { name: string; label: string; contextTokens: number; runs: ClozeRun[] }[];
}

const meanStd = (values: readonly number[]): string => {
  if (values.length === 0) return '-';
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  if (values.length === 1) return mean.toFixed(3);
  const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / (values.length - 1));
  return `${mean.toFixed(3)} ± ${std.toFixed(3)}`;
};

export function clozeTable(results: ClozeResults): string {
  const lines = [
    '| row | accuracy | trainable | context tokens added |',
    '|---|---|---|---|',
    `| the most frequent training answer ("${results.majority.answer}") for every item | ${results.majority.accuracy.toFixed(3)} | 0 | 0 |`,
    ...results.rows.map(
      (row) =>
        `| ${row.label} | ${meanStd(row.runs.map((r) => r.accuracy))} | ${row.runs[0]?.trainable.toLocaleString('en-US') ?? '-'} | ${row.contextTokens} |`,
    ),
  ];
  return lines.join('\n');
}

function writeCloze(out: string, results: ClozeResults): void {
  replaceFile(path.join(out, 'cloze.json'), `${JSON.stringify(results, null, 2)}\n`);
  const md = [
    `# cloze ${results.task.name} on ${path.basename(results.model)}`,
    '',
    `${results.task.notes}. Train ${results.task.train}, validation ${results.task.validation}, test ${results.task.test}; ` +
      `${results.budget.steps} steps of ${results.budget.batchSize}, ${results.budget.seeds} seed(s); AdamW (weight decay 0.01), linear schedule with 6% warm-up, clipping 1.0; ${results.machine.backend}, ${results.machine.cpus} CPUs.`,
    '',
    clozeTable(results),
    '',
    results.complete ? '' : 'PARTIAL: interrupted or failed before the end.',
    '',
  ];
  replaceFile(path.join(out, 'cloze.md'), md.join('\n'));
}

export async function runCloze(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: 'string', default: 'brown-bert' },
      task: { type: 'string', default: 'genre' },
      rows: { type: 'string', default: CLOZE_ROWS.map((row) => row.name).join(',') },
      seeds: { type: 'string', default: '3' },
      budget: { type: 'string', default: '100' },
      batch: { type: 'string', default: '16' },
      limit: { type: 'string', default: '2000' },
      out: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(clozeUsage);
    return 0;
  }
  const seeds = positiveIntegerFlag('seeds', values.seeds!);
  const steps = positiveIntegerFlag('budget', values.budget!);
  const batchSize = positiveIntegerFlag('batch', values.batch!);
  const limit = positiveIntegerFlag('limit', values.limit!);
  const rows = values.rows!.split(',').map((name) => {
    const row = CLOZE_ROWS.find((r) => r.name === name.trim());
    if (!row) throw new Error(`--rows: unknown "${name}" (${CLOZE_ROWS.map((r) => r.name).join(', ')})`);
    return row;
  });
  const model = shippedModel(values.model!) ?? path.resolve(values.model!);
  if (!existsSync(path.join(model, 'config.json')))
    throw new Error(`--model: expected a masked LM folder with config.json, found none in ${model}`);
  const tokenizer = await loadTokenizer(model);
  const task = await clozeTask(values.task!, tokenizer, limit);
  const out = path.resolve(values.out ?? path.join('bench-results', 'cloze', path.basename(model), task.name));
  prepareOutFolder('--out', out);
  const backend = await selectBackend();
  const probe = await loadPretrained(model, { dropout: false });
  const positions = probe.config.maxPositions;
  const masked = probe.config.architecture?.endsWith('ForMaskedLM') ?? false;
  probe.dispose();
  if (!masked) throw new Error(`--model: ${model} is not a masked LM (BertForMaskedLM, RobertaForMaskedLM)`);
  // P-tuning's placeholder: an id no text encodes to (a byte-level BPE never writes its [UNK])
  const placeholder = tokenizer.unkTokenId;
  if (placeholder === null)
    throw new Error('--model: the tokenizer has no unk_token for the pseudo tokens to stand as');
  const results: ClozeResults = {
    schema: 'peft-bench-cloze/1',
    createdAt: new Date().toISOString(),
    complete: false,
    machine: { cpus: cpus().length, backend: backend.detail },
    model,
    task: {
      name: task.name,
      notes: task.notes,
      train: task.items.train.length,
      validation: task.items.validation.length,
      test: task.items.test.length,
    },
    budget: { steps, batchSize, seeds },
    majority: clozeMajority(task),
    rows: [],
  };
  for (const row of rows) {
    const entry = {
      name: row.name,
      label: row.label,
      contextTokens: row.frozen || row.name === 'full' ? 0 : CLOZE_PROMPT_TOKENS,
      runs: [] as ClozeRun[],
    };
    results.rows.push(entry);
    const [trainSet, testSet] = [task.items.train, task.items.test].map((items) =>
      clozeExamples(task, items, row.pseudo, tokenizer, positions, placeholder),
    );
    for (let seed = 0; seed < (row.frozen ? 1 : seeds); seed++) {
      const host = await loadPretrained(model);
      const trainable = row.make(host, placeholder, seed);
      const options: TrainOptions = {
        data: trainSet!,
        padTokenId: tokenizer.padTokenId ?? 0,
        batchSize,
        learningRate: row.learningRate || 1e-3,
        ...runSchedule(steps, seed),
        ...(task.verbalizer
          ? {
              task: 'sequence-classification' as const,
              verbalizer: task.verbalizer,
              maskTokenId: tokenizer.maskTokenId!,
            }
          : { task: 'token-classification' as const }),
      };
      const started = performance.now();
      if (!row.frozen) await train(trainable, options);
      const seconds = (performance.now() - started) / 1000;
      const { accuracy } = await evaluate(trainable, testSet!, { ...options, batchSize: 32 });
      entry.runs.push({
        seed,
        accuracy: accuracy!,
        trainable: countParameters(trainable.trainableVariables().values()),
        seconds,
      });
      console.log(`${row.name} seed ${seed}: accuracy ${accuracy!.toFixed(4)} (${seconds.toFixed(0)} s)`);
      if ('dispose' in trainable && typeof trainable.dispose === 'function') trainable.dispose();
      host.dispose();
      writeCloze(out, results);
    }
  }
  results.complete = true;
  writeCloze(out, results);
  console.log(`\n${clozeTable(results)}\n\nreport: ${path.join(out, 'cloze.md')}`);
  return 0;
}
