// The command lines of `pnpm bench` and `pnpm bench perf`: their usage, their flags with defaults,
// and the parsers of flag values, whose errors name the flag and what it expects.
import path from 'node:path';
import { parseArgs } from 'node:util';

import { METHODS } from './methods.js';
import { PERF_METHODS } from './perf/workloads.js';

const DEFAULT_MODEL = path.resolve(import.meta.dirname, '..', 'models', 'brown-gpt');

export const benchUsage = `usage: pnpm bench [options]      (pnpm bench perf: speed and memory beside Python peft; perf --help;
                                  pnpm bench load: loading real-size checkpoints beside transformers)
  --task spam|pos|genre|email-lm   embedded task (default spam)
  --data FILE.jsonl                your data instead: {"text","label"} or {"tokens","tags"} lines, or
                                   {"messages":[{"role","content"},...]} chats (causal LM, loss on the
                                   assistant turns, rendered with the --model tokenizer's chat template)
  --model DIR                      a Hugging Face GPT-2 directory with tokenizer.json (default brown-gpt)
  --methods a,b,...                default all: ${METHODS.map((m) => m.name).join(', ')}
  --lr method=rate,...             learning rates instead of the defaults (e.g. prefix=5e-3,lora=1e-3)
  --seeds N                        default 3
  --budget N | Ns | Nm             per training run: N optimizer steps (default 100), or a wall time in
                                   seconds or minutes (each method's steps calibrated from its step time)
  --batch N                        examples per step (default 16)
  --limit N                        examples taken from the task before splitting (default 2000)
  --backend auto|tensorflow|wasm|cpu
  --suite full                     every embedded task, one after the other
  --quick                          a few steps, one seed, small data (smoke test)
  --out DIR                        default bench-results/<task>`;

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
  --no-python                  our side only
  --quick                      1 repetition, 2 steps, 2 rounds (GPT-2 unless --models)
  --out DIR                    default bench-results/perf`;

/** `pnpm bench`'s flags as given, defaults filled in; the values are checked where they are used. */
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
      backend: { type: 'string', default: process.env.PEFT_BACKEND ?? 'auto' },
      suite: { type: 'string' },
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }).values;
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
      quick: { type: 'boolean', default: false },
      out: { type: 'string', default: path.join('bench-results', 'perf') },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }).values;
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
