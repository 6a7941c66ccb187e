// The data side of training: any source as a Dataset (streamed, not held in memory), JSONL and CSV
// parsing, seeded splits, tokenized examples, and batches with dynamic padding and length buckets.
import { describeFile, readText, type FileStore } from './files.js';
import { IGNORE_INDEX } from './losses.js';
import { SeededRandom } from './random.js';

/** Any source of items, read in order; `size` when known. Implement it to stream your own data. */
export interface Dataset<T> extends AsyncIterable<T> {
  readonly size?: number;
  /**
   * Item `index` (0 to size - 1), where the items can be read in any order (in memory). With it (and
   * `size`), `batchExamples` shuffles the whole dataset each epoch; without it, a buffer of batches.
   */
  readonly at?: (index: number) => T;
}

/** Items in memory: sized and read in any order (shuffled whole by `batchExamples`). */
export function arrayDataset<T>(items: readonly T[]): Dataset<T> {
  return {
    size: items.length,
    at: (index) => items[index]!,
    async *[Symbol.asyncIterator]() {
      yield* items;
    },
  };
}

/** Applies `transform` to each item as it is read (e.g. records -> tokenized examples). */
export function mapDataset<T, U>(dataset: Dataset<T>, transform: (item: T, index: number) => U): Dataset<U> {
  const at = dataset.at;
  return {
    ...(dataset.size !== undefined ? { size: dataset.size } : {}),
    ...(at ? { at: (index: number) => transform(at(index), index) } : {}),
    async *[Symbol.asyncIterator]() {
      let index = 0;
      for await (const item of dataset) yield transform(item, index++);
    },
  };
}

/** The records of a JSON Lines file in a FileStore, parsed as they are read. */
export function jsonlDataset(store: FileStore, name: string): Dataset<Record<string, unknown>> {
  return {
    async *[Symbol.asyncIterator]() {
      yield* parseJsonl(await readText(store, name), describeFile(store, name));
    },
  };
}

/** The rows of a CSV file (first row: column names) in a FileStore. */
export function csvDataset(store: FileStore, name: string): Dataset<Record<string, string>> {
  return {
    async *[Symbol.asyncIterator]() {
      yield* parseCsv(await readText(store, name), describeFile(store, name));
    },
  };
}

/** Reads a whole dataset into memory (for splits and shuffling of small sets). */
export async function collect<T>(dataset: AsyncIterable<T> | Iterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of dataset) items.push(item);
  return items;
}

/** JSON Lines, one object per non-empty line; an error names the source and the line. */
export function* parseJsonl(text: string, source = 'jsonl'): Generator<Record<string, unknown>> {
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      throw new Error(`${source}:${i + 1}: not valid JSON (${(error as Error).message})`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      throw new Error(`${source}:${i + 1}: expected a JSON object`);
    yield value as Record<string, unknown>;
  }
}

/** CSV (RFC 4180: quoted fields, doubled quotes, newlines inside quotes); the first row names the columns. */
export function* parseCsv(text: string, source = 'csv'): Generator<Record<string, string>> {
  let header: string[] | null = null;
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let line = 1;
  let rowLine = 1;
  const finishRow = function* (): Generator<Record<string, string>> {
    row.push(field);
    field = '';
    const current = row;
    row = [];
    if (current.length === 1 && current[0] === '') return;
    if (!header) {
      header = current;
      return;
    }
    if (current.length !== header.length) {
      throw new Error(`${source}:${rowLine}: ${current.length} fields, the header has ${header.length}`);
    }
    yield Object.fromEntries(header.map((name, i) => [name, current[i]!]));
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else {
        if (c === '\n') line++;
        field += c;
      }
    } else if (c === '"' && field === '') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      yield* finishRow();
      line++;
      rowLine = line;
    } else field += c;
  }
  if (quoted) throw new Error(`${source}:${rowLine}: a quoted field is not closed`);
  if (field !== '' || row.length > 0) yield* finishRow();
}

export interface SplitOptions {
  /** Shares of the items (0..1) for validation and test; the rest trains. */
  validation?: number;
  test?: number;
  seed?: number;
}

/** A seeded shuffle cut into train / validation / test: the same seed gives the same split. */
export function splitDataset<T>(
  items: readonly T[],
  options: SplitOptions,
): { train: T[]; validation: T[]; test: T[] } {
  const validationShare = options.validation ?? 0;
  const testShare = options.test ?? 0;
  if (validationShare < 0 || testShare < 0 || validationShare + testShare >= 1) {
    throw new Error(
      `splitDataset: validation (${validationShare}) and test (${testShare}) shares must be >= 0 and sum below 1`,
    );
  }
  const order = new SeededRandom(options.seed ?? 0).shuffle(items.map((_, i) => i));
  const validationCount = Math.round(items.length * validationShare);
  const testCount = Math.round(items.length * testShare);
  const pick = (indices: number[]): T[] => indices.map((i) => items[i]!);
  return {
    validation: pick(order.slice(0, validationCount)),
    test: pick(order.slice(validationCount, validationCount + testCount)),
    train: pick(order.slice(validationCount + testCount)),
  };
}

/** One tokenized training example. */
export interface Example {
  inputIds: number[];
  /** Causal LM and token classification: one per input id (IGNORE_INDEX where none); sequence classification: one class. */
  labels: number[] | number;
  tokenTypeIds?: number[];
  /** Multi-task prompt tuning: which task's prompt this example uses. */
  taskId?: number;
}

/** What the example builders need of a tokenizer (@peft/models' HfTokenizer provides it). */
export interface ExampleTokenizer {
  encode(
    text: string,
    options?: { addSpecialTokens?: boolean; textPair?: string },
  ): { ids: number[]; tokenTypeIds: number[] };
  readonly eosTokenId: number | null;
}

export interface CausalLmExampleOptions {
  /** Keep at most this many tokens (the end of the completion is cut). */
  maxLength?: number;
  /** Append the tokenizer's EOS token so the model learns to stop (default true when there is one). */
  addEos?: boolean;
}

/**
 * A causal LM example: prompt followed by completion; only completion tokens are labelled (all
 * tokens when there is no completion).
 */
export function causalLmExample(
  tokenizer: ExampleTokenizer,
  prompt: string,
  completion?: string,
  options: CausalLmExampleOptions = {},
): Example {
  const promptIds = tokenizer.encode(prompt).ids;
  const completionIds = completion === undefined ? [] : tokenizer.encode(completion, { addSpecialTokens: false }).ids;
  const eos = (options.addEos ?? true) && tokenizer.eosTokenId !== null ? [tokenizer.eosTokenId] : [];
  let inputIds = [...promptIds, ...completionIds, ...eos];
  let labels =
    completion === undefined ? [...inputIds] : [...promptIds.map(() => IGNORE_INDEX), ...completionIds, ...eos];
  if (options.maxLength !== undefined && inputIds.length > options.maxLength) {
    inputIds = inputIds.slice(0, options.maxLength);
    labels = labels.slice(0, options.maxLength);
  }
  return { inputIds, labels };
}

/** A sequence classification example (optionally a text pair). */
export function classificationExample(
  tokenizer: ExampleTokenizer,
  text: string,
  label: number,
  options: { textPair?: string; maxLength?: number } = {},
): Example {
  const encoded = tokenizer.encode(text, options.textPair === undefined ? {} : { textPair: options.textPair });
  const length = Math.min(encoded.ids.length, options.maxLength ?? Number.POSITIVE_INFINITY);
  return { inputIds: encoded.ids.slice(0, length), labels: label, tokenTypeIds: encoded.tokenTypeIds.slice(0, length) };
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

/**
 * A token classification example from words and one tag per word: the first token of each word
 * carries its tag, the other tokens and the special tokens IGNORE_INDEX (transformers' convention;
 * `labelAllSubwords` tags every token of a word). Word boundaries come from encoding growing
 * prefixes of the sentence, so no offsets are needed.
 */
export function tokenClassificationExample(
  tokenizer: ExampleTokenizer,
  words: readonly string[],
  tags: readonly number[],
  options: { maxLength?: number; labelAllSubwords?: boolean } = {},
): Example {
  if (words.length !== tags.length)
    throw new Error(`tokenClassificationExample: ${words.length} words but ${tags.length} tags`);
  const text = words.join(' ');
  const content = tokenizer.encode(text, { addSpecialTokens: false }).ids;
  const labels = content.map(() => IGNORE_INDEX);
  let start = 0;
  for (let i = 0; i < words.length; i++) {
    const end =
      i === words.length - 1
        ? content.length
        : commonPrefix(tokenizer.encode(words.slice(0, i + 1).join(' '), { addSpecialTokens: false }).ids, content);
    for (let t = start; t < end; t++) if (t === start || options.labelAllSubwords) labels[t] = tags[i]!;
    start = Math.max(start, end);
  }
  const full = tokenizer.encode(text).ids;
  const offset = full.findIndex((_, i) => content.every((id, j) => full[i + j] === id));
  const inputIds = full;
  const fullLabels = full.map((_, i) =>
    i >= offset && i < offset + content.length ? labels[i - offset]! : IGNORE_INDEX,
  );
  const length = Math.min(inputIds.length, options.maxLength ?? Number.POSITIVE_INFINITY);
  return { inputIds: inputIds.slice(0, length), labels: fullLabels.slice(0, length) };
}

/** A batch ready for a forward pass: padded to its longest row. */
export interface Batch {
  inputIds: number[][];
  attentionMask: number[][];
  tokenTypeIds: number[][];
  /** Padded like inputIds (IGNORE_INDEX at padding), or one class per row. */
  labels: number[][] | number[];
  /** Real (unpadded) tokens in the batch. */
  tokens: number;
  /** Per row, when the examples name tasks. */
  taskIds?: number[];
}

export interface CollateOptions {
  padTokenId: number;
  /** Default right; generation-style training may want left. */
  paddingSide?: 'left' | 'right';
}

/** Dynamic padding: each batch is padded to its own longest example. */
export function collate(examples: readonly Example[], options: CollateOptions): Batch {
  if (examples.length === 0) throw new Error('collate: an empty batch');
  const width = Math.max(...examples.map((e) => e.inputIds.length));
  const left = options.paddingSide === 'left';
  const pad = <T>(row: readonly T[], value: T): T[] => {
    const fill = new Array<T>(width - row.length).fill(value);
    return left ? [...fill, ...row] : [...row, ...fill];
  };
  const perToken = Array.isArray(examples[0]!.labels);
  return {
    inputIds: examples.map((e) => pad(e.inputIds, options.padTokenId)),
    attentionMask: examples.map((e) =>
      pad(
        e.inputIds.map(() => 1),
        0,
      ),
    ),
    tokenTypeIds: examples.map((e) => pad(e.tokenTypeIds ?? e.inputIds.map(() => 0), 0)),
    labels: perToken
      ? examples.map((e) => pad(e.labels as number[], IGNORE_INDEX))
      : examples.map((e) => e.labels as number),
    tokens: examples.reduce((sum, e) => sum + e.inputIds.length, 0),
    ...(examples.some((e) => e.taskId !== undefined) ? { taskIds: examples.map((e) => e.taskId ?? 0) } : {}),
  };
}

export interface BatchingOptions {
  batchSize: number;
  /** Shuffle with this generator (seeded per epoch by the trainer); none keeps the order. */
  random?: SeededRandom;
  /**
   * Group examples of similar length (less padding): a shuffled pool of `bucketPool` batches is
   * sorted by length, cut into batches, and the batches are shuffled. Needs `random`.
   */
  bucketPool?: number;
  /** Drop a last batch smaller than batchSize. */
  dropLast?: boolean;
}

/** The dataset's items in a random order where it can be read in any order; otherwise in its own. */
function readOrder<T>(dataset: Dataset<T>, random: SeededRandom | undefined): AsyncIterable<T> {
  const { at, size } = dataset;
  if (!random || !at || size === undefined) return dataset;
  const order = random.shuffle(Array.from({ length: size }, (_, i) => i));
  return (async function* () {
    for (const index of order) yield at(index);
  })();
}

/**
 * Streams batches of examples. A dataset with `at` and `size` (in memory) is shuffled whole, then
 * read as a stream; a stream is shuffled within a buffer of `batchSize · bucketPool` examples
 * (default 64 batches), so it is never read whole (an ordered stream, e.g. a corpus file by file,
 * stays ordered beyond the buffer: shuffle it before).
 */
export async function* batchExamples(dataset: Dataset<Example>, options: BatchingOptions): AsyncGenerator<Example[]> {
  const { batchSize, random } = options;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new Error(`batchSize: expected a positive integer, got ${batchSize}`);
  const poolSize = batchSize * (options.bucketPool ?? 64);
  let pool: Example[] = [];
  const drain = function* (final: boolean): Generator<Example[]> {
    if (random) random.shuffle(pool);
    if (options.bucketPool && random) pool.sort((a, b) => a.inputIds.length - b.inputIds.length);
    const batches: Example[][] = [];
    for (let i = 0; i < pool.length; i += batchSize) batches.push(pool.slice(i, i + batchSize));
    pool = [];
    if (options.bucketPool && random) random.shuffle(batches);
    for (const batch of batches) {
      if (batch.length < batchSize && (options.dropLast || !final)) {
        pool.push(...batch);
        continue;
      }
      yield batch;
    }
  };
  for await (const example of readOrder(dataset, random)) {
    pool.push(example);
    if (pool.length >= poolSize) yield* drain(false);
  }
  yield* drain(true);
}
