// The bench: every method (and the baselines) on one base model, task, backend and budget, over
// several seeds; per run the task metric, trainable parameters, time, memory, inference latency and
// its overhead, context consumed by virtual tokens, adapter size and the loss curve.
import { mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';

import type { BackendSelection } from '@peft/backend';
import {
  IGNORE_INDEX,
  collate,
  countParameters,
  evaluate,
  train,
  type Example,
  type TrainOptions,
  type TrainableModel,
} from '@peft/core';
import { loadPretrained, loadTokenizer, type LoadOptions, type TransformerHost } from '@peft/models';
import * as tf from '@tensorflow/tfjs-core';

import { METHODS, isPeftModel, type MethodSpec } from './methods.js';
import { bagOfWordsBaseline, majorityBaseline, score, type BaselineScore } from './tasks/baselines.js';
import { describeTask, type TaskSplits } from './tasks/tasks.js';

export const RESULTS_SCHEMA = 'peft-bench/1';

export interface BenchOptions {
  modelDirectory: string;
  task: TaskSplits;
  methods: readonly string[];
  seeds: number;
  /** Optimizer steps per run. */
  steps: number;
  /** Learning rates by method name, instead of the methods' defaults. */
  learningRates?: Readonly<Record<string, number>>;
  /** Wall-time budget per training run instead of `steps`: each method's steps are calibrated from its measured step time. */
  seconds?: number;
  batchSize: number;
  out: string;
  backend: BackendSelection;
  /** Examples timed for inference latency (batch 1). */
  latencyExamples?: number;
  signal?: AbortSignal;
  onProgress?: (event: ProgressEvent) => void;
}

export type ProgressEvent =
  | { kind: 'start'; method: string; seed: number; run: number; runs: number }
  | { kind: 'step'; method: string; seed: number; step: number; steps: number; loss: number; elapsed: number }
  | { kind: 'done'; method: string; seed: number; result: RunResult };

export interface RunResult {
  method: string;
  label: string;
  seed: number;
  status: 'ok' | 'failed' | 'interrupted';
  error?: string;
  /** Optimizer steps planned for the run (the budget, or calibrated from a time budget). */
  steps: number;
  /** accuracy, token-accuracy or perplexity on the test split. */
  metric: number | null;
  f1?: number | null;
  trainableParameters: number;
  baseParameters: number;
  trainSeconds: number;
  tokensPerSecond: number | null;
  peakRssMb: number;
  peakTensorMb: number;
  latencyMs: number | null;
  baseLatencyMs: number | null;
  /** Median over test examples of (time with the adapter) / (time of the base model), timed in pairs. */
  latencyRatio?: number | null;
  mergedLatencyMs?: number | null;
  mergedLatencyRatio?: number | null;
  /** The base model's latency, timed interleaved with the merged one. */
  mergedBaseLatencyMs?: number | null;
  virtualTokens: number;
  adapterBytes: number | null;
  adapterPath: string | null;
  losses: number[];
}

export interface MethodSummary {
  method: string;
  label: string;
  runs: number;
  /** Runs that failed, or gave no metric. */
  failed: number;
  /** Runs stopped by Ctrl-C (not measured). */
  interrupted: number;
  metricMean: number | null;
  metricStd: number | null;
  f1Mean?: number | null;
  trainableParameters: number;
  trainableShare: number;
  /** Optimizer steps per run (0: not trained). */
  steps: number;
  trainSeconds: number;
  tokensPerSecond: number | null;
  peakRssMb: number;
  peakTensorMb: number;
  latencyMs: number | null;
  latencyOverheadPct: number | null;
  mergedLatencyOverheadPct?: number | null;
  virtualTokens: number;
  adapterBytes: number | null;
}

export interface BenchResults {
  schema: typeof RESULTS_SCHEMA;
  createdAt: string;
  complete: boolean;
  machine: { backend: string; backendDetail: string; cpus: number; node: string };
  model: { directory: string; parameters: number };
  task: Record<string, unknown> & { metric: string };
  budget: { steps: number | null; seconds: number | null; batchSize: number; seeds: number };
  baselines: BaselineScore[];
  runs: RunResult[];
  summary: MethodSummary[];
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** The transformers classes the bench loads a model as, per model type and task. */
const HEADS: Record<string, Record<'sequence-classification' | 'token-classification', string>> = {
  gpt2: {
    'sequence-classification': 'GPT2ForSequenceClassification',
    'token-classification': 'GPT2ForTokenClassification',
  },
  bert: {
    'sequence-classification': 'BertForSequenceClassification',
    'token-classification': 'BertForTokenClassification',
  },
};

/** The model_type of the model folder's config.json. */
export function modelType(directory: string): string {
  const file = path.join(directory, 'config.json');
  const type = (JSON.parse(readFileSync(file, 'utf8')) as { model_type?: unknown }).model_type;
  if (typeof type !== 'string') throw new Error(`--model: ${file} has no model_type`);
  return type;
}

/**
 * How the task loads the model: a classification task as the type's classification class (a new
 * head, seeded, where the checkpoint has none), a causal LM task as it is. What the bench cannot
 * run is refused before any training: a classification task on a model type without such a class,
 * a causal LM task on an encoder.
 */
function loadOptions(task: TaskSplits, padTokenId: number, type: string): LoadOptions {
  if (task.task === 'causal-lm') {
    if (type === 'bert')
      throw new Error(`--task: a causal language-modelling task needs a causal LM; --model is ${type}`);
    return {};
  }
  const heads = Object.hasOwn(HEADS, type) ? HEADS[type] : undefined;
  if (!heads)
    throw new Error(
      `--task: ${task.task} needs a model with a classification class (${Object.keys(HEADS).join(', ')}); --model is ${type}`,
    );
  return {
    architecture: heads[task.task],
    numLabels: task.labels.length,
    newHeadSeed: 0,
    ...(task.task === 'sequence-classification' ? { padTokenId } : {}),
  };
}

/** How every run loads the model and pads its batches: worked out once per bench. */
export interface ModelSetup {
  padTokenId: number;
  load: LoadOptions;
}

/** The model folder's pad token (else its EOS, else 0) and how `task` loads the model. */
export async function modelSetup(directory: string, task: TaskSplits): Promise<ModelSetup> {
  const tokenizer = await loadTokenizer(directory);
  const padTokenId = tokenizer.padTokenId ?? tokenizer.eosTokenId ?? 0;
  return { padTokenId, load: loadOptions(task, padTokenId, modelType(directory)) };
}

/** Test-set metric: accuracy (and binary F1), token accuracy, or perplexity. */
export async function testMetric(
  model: TrainableModel,
  task: TaskSplits,
  options: TrainOptions,
): Promise<{ metric: number; f1?: number }> {
  if (task.task === 'causal-lm') return { metric: (await evaluate(model, task.test, options)).perplexity! };
  const predictions: number[] = [];
  const labels: number[] = [];
  for (let i = 0; i < task.test.length; i += options.batchSize) {
    const examples = task.test.slice(i, i + options.batchSize);
    const batch = collate(examples, { padTokenId: options.padTokenId });
    const { logits, prepended } = model.host.forward({ inputIds: batch.inputIds, attentionMask: batch.attentionMask });
    const predicted = tf.tidy(() => tf.argMax(logits, -1).arraySync()) as number[] | number[][];
    logits.dispose();
    if (task.task === 'sequence-classification') {
      predictions.push(...(predicted as number[]));
      labels.push(...(batch.labels as number[]));
    } else {
      (batch.labels as number[][]).forEach((row, b) => {
        row.forEach((label, t) => {
          if (label === IGNORE_INDEX) return;
          predictions.push((predicted as number[][])[b]![prepended + t]!);
          labels.push(label);
        });
      });
    }
  }
  const result = score(predictions, labels, task.labels.length === 2);
  return { metric: result.accuracy, ...(result.f1 !== undefined ? { f1: result.f1 } : {}) };
}

const time = (fn: () => void): number => {
  const start = performance.now();
  fn();
  return performance.now() - start;
};

function forwardOne(host: TransformerHost, example: Example): void {
  const { logits } = host.forward({ inputIds: [example.inputIds] });
  logits.dataSync();
  logits.dispose();
}

/**
 * Median forward time (batch 1) of the model as it is and of the base model (`base` runs a function
 * with the adapter disabled), and the median of their per-example ratios (the overhead, robust to
 * examples of different lengths). Timed example by example, alternating which runs first, so that
 * drift (other processes, CPU clocks) affects both alike; 3 warm-up rounds are not counted.
 */
function pairedLatency(
  host: TransformerHost,
  examples: readonly Example[],
  count: number,
  base: (fn: () => number) => number,
): { adapted: number; base: number; ratio: number } {
  const adapted: number[] = [];
  const plain: number[] = [];
  const ratios: number[] = [];
  for (let i = 0; i < count + 3; i++) {
    const example = examples[i % examples.length]!;
    // an untimed pass first (a new sequence length allocates), then alternate which arm goes first
    forwardOne(host, example);
    const first = i % 2 === 0;
    const b0 = first ? 0 : base(() => time(() => forwardOne(host, example)));
    const a = time(() => forwardOne(host, example));
    const b = first ? base(() => time(() => forwardOne(host, example))) : b0;
    if (i >= 3) {
      adapted.push(a);
      plain.push(b);
      ratios.push(a / b);
    }
  }
  return { adapted: median(adapted), base: median(plain), ratio: median(ratios) };
}

function directorySize(directory: string): number {
  let total = 0;
  for (const name of readdirSync(directory)) {
    const full = path.join(directory, name);
    const stat = statSync(full);
    total += stat.isDirectory() ? directorySize(full) : stat.size;
  }
  return total;
}

/**
 * Resolves on the next turn of the event loop. A training step is synchronous, and a signal
 * handler (Ctrl-C) runs only between turns: awaited after each step, so that an interrupt stops
 * training after the step it arrived in, not at the end of the run.
 */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** What a method's training runs share: data, batch and learning rate. */
function baseTrainOptions(
  method: MethodSpec,
  options: Pick<BenchOptions, 'task' | 'batchSize' | 'learningRates'>,
  padTokenId: number,
): TrainOptions {
  return {
    data: options.task.train,
    task: options.task.task,
    padTokenId,
    batchSize: options.batchSize,
    epochs: 1000,
    learningRate: options.learningRates?.[method.name] ?? method.learningRate,
  };
}

/**
 * The bench's schedule of a run of `steps` (`pnpm bench compare` gives the same to Python, `pnpm
 * bench cloze` trains so): AdamW with weight decay 0.01 on every trained weight, linear decay after a
 * warm-up of 6% of the steps, clipping at 1.0, the run's seed for data order and dropout.
 */
export function runSchedule(steps: number, seed: number): Partial<TrainOptions> {
  return {
    maxSteps: steps,
    schedule: 'linear',
    warmupSteps: Math.round(0.06 * steps),
    weightDecay: 0.01,
    maxGradNorm: 1.0,
    seed,
  };
}

/** The training of one run of a method: its data, task and learning rate on the bench's schedule. */
export function runTrainOptions(
  method: MethodSpec,
  options: Pick<BenchOptions, 'task' | 'batchSize' | 'learningRates' | 'signal'>,
  padTokenId: number,
  steps: number,
  seed: number,
): TrainOptions {
  return {
    ...baseTrainOptions(method, options, padTokenId),
    ...runSchedule(steps, seed),
    ...(options.signal ? { signal: options.signal } : {}),
  };
}

/**
 * Seconds per optimizer step of a method: a few steps on a throwaway model, the first (graph
 * warm-up) not counted; NaN when interrupted before the second.
 */
async function secondsPerStep(method: MethodSpec, options: BenchOptions, setup: ModelSetup): Promise<number> {
  const { padTokenId } = setup;
  const host = await loadPretrained(options.modelDirectory, setup.load);
  const model = method.make(host, options.task.task, 0);
  const stamps: number[] = [];
  try {
    await train(model, {
      ...baseTrainOptions(method, options, padTokenId),
      maxSteps: 5,
      schedule: 'constant',
      ...(options.signal ? { signal: options.signal } : {}),
      onStep: () => {
        stamps.push(performance.now());
        return nextTurn();
      },
    });
  } finally {
    if (isPeftModel(model)) model.dispose();
    host.dispose();
  }
  const gaps = stamps.slice(1).map((t, i) => (t - stamps[i]!) / 1000);
  return gaps.length ? median(gaps) : Number.NaN;
}

async function runOne(
  method: MethodSpec,
  seed: number,
  steps: number,
  options: BenchOptions,
  setup: ModelSetup,
): Promise<RunResult> {
  const { task } = options;
  const { padTokenId } = setup;
  const host = await loadPretrained(options.modelDirectory, setup.load);
  const baseParameters = countParameters(host.parameters.values());
  const latencyCount = options.latencyExamples ?? 20;
  const result: RunResult = {
    method: method.name,
    label: method.label,
    seed,
    status: 'ok',
    steps: method.frozen ? 0 : steps,
    metric: null,
    trainableParameters: 0,
    baseParameters,
    trainSeconds: 0,
    tokensPerSecond: null,
    peakRssMb: process.memoryUsage().rss / 2 ** 20,
    peakTensorMb: tf.memory().numBytes / 2 ** 20,
    latencyMs: null,
    baseLatencyMs: null,
    virtualTokens: 0,
    adapterBytes: null,
    adapterPath: null,
    losses: [],
  };
  let model: TrainableModel | null = null;
  try {
    model = method.make(host, task.task, seed);
    result.trainableParameters = method.frozen
      ? 0
      : isPeftModel(model)
        ? model.parameterCount().trainable
        : countParameters(model.trainableVariables().values());
    result.virtualTokens = host.hooks.virtualTokens;
    const trainOptions: TrainOptions = {
      ...runTrainOptions(method, options, padTokenId, steps, seed),
      onStep: ({ step, loss }) => {
        result.peakRssMb = Math.max(result.peakRssMb, process.memoryUsage().rss / 2 ** 20);
        result.peakTensorMb = Math.max(result.peakTensorMb, tf.memory().numBytes / 2 ** 20);
        options.onProgress?.({ kind: 'step', method: method.name, seed, step, steps, loss, elapsed: 0 });
        return nextTurn();
      },
    };
    if (!method.frozen && !options.signal?.aborted) {
      const trained = await train(model, trainOptions);
      result.losses = trained.losses;
      result.trainSeconds = trained.seconds;
      result.tokensPerSecond = trained.tokensPerSecond;
    }
    // interrupted: the report says how far it trained; measuring it would keep the user waiting
    if (options.signal?.aborted) {
      result.status = 'interrupted';
      return result;
    }
    const measured = await testMetric(model, task, { ...trainOptions, batchSize: 16 });
    result.metric = measured.metric;
    if (measured.f1 !== undefined) result.f1 = measured.f1;
    const peft = isPeftModel(model) ? model : null;
    // full, head-only, frozen have the base model's architecture: both timings are the base model's
    const timed = pairedLatency(host, task.test, latencyCount, (fn) => (peft ? peft.withAdapterDisabled(fn) : fn()));
    result.latencyMs = timed.adapted;
    result.baseLatencyMs = timed.base;
    result.latencyRatio = timed.ratio;
    if (isPeftModel(model)) {
      if (method.mergeable) {
        // merged, interleaved with the base model as above (unmerged for the base pass, not timed)
        model.merge();
        const peftModel = model;
        const merged = pairedLatency(host, task.test, latencyCount, (fn) => {
          peftModel.unmerge();
          const base = peftModel.withAdapterDisabled(fn);
          peftModel.merge();
          return base;
        });
        model.unmerge();
        result.mergedLatencyMs = merged.adapted;
        result.mergedBaseLatencyMs = merged.base;
        result.mergedLatencyRatio = merged.ratio;
      }
      const directory = path.join(options.out, 'adapters', method.name, `seed-${seed}`);
      mkdirSync(directory, { recursive: true });
      await model.saveAdapter(directory);
      result.adapterBytes = directorySize(directory);
      result.adapterPath = path.relative(options.out, directory);
    }
  } catch (error) {
    result.status = 'failed';
    result.error = (error as Error).message.split('\n')[0]!.slice(0, 300);
  } finally {
    if (model && isPeftModel(model)) model.dispose();
    host.dispose();
  }
  return result;
}

function meanStd(values: number[]): [number | null, number | null] {
  if (values.length === 0) return [null, null];
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const variance = values.length > 1 ? values.reduce((a, b) => a + (b - mean) ** 2, 0) / (values.length - 1) : 0;
  return [mean, Math.sqrt(variance)];
}

export function summarize(runs: readonly RunResult[]): MethodSummary[] {
  const methods = [...new Set(runs.map((r) => r.method))];
  return methods.map((method) => {
    const all = runs.filter((r) => r.method === method);
    const ok = all.filter((r) => r.status === 'ok' && r.metric !== null);
    const interrupted = all.filter((r) => r.status === 'interrupted').length;
    const [metricMean, metricStd] = meanStd(ok.map((r) => r.metric!));
    const pick = (f: (r: RunResult) => number | null | undefined): number | null => {
      const values = ok.map(f).filter((v): v is number => typeof v === 'number');
      return values.length ? meanStd(values)[0] : null;
    };
    const first = all[0]!;
    const latencyMs = pick((r) => r.latencyMs);
    const ratio = pick((r) => r.latencyRatio);
    const mergedRatio = pick((r) => r.mergedLatencyRatio);
    const f1 = pick((r) => r.f1);
    return {
      method,
      label: first.label,
      runs: all.length,
      failed: all.length - ok.length - interrupted,
      interrupted,
      metricMean,
      metricStd,
      ...(f1 !== null ? { f1Mean: f1 } : {}),
      trainableParameters: first.trainableParameters,
      trainableShare: first.baseParameters ? first.trainableParameters / first.baseParameters : 0,
      steps: first.steps,
      trainSeconds: pick((r) => r.trainSeconds) ?? 0,
      tokensPerSecond: pick((r) => r.tokensPerSecond),
      peakRssMb: Math.max(...all.map((r) => r.peakRssMb)),
      peakTensorMb: Math.max(...all.map((r) => r.peakTensorMb)),
      latencyMs,
      latencyOverheadPct: ratio !== null ? 100 * (ratio - 1) : null,
      ...(mergedRatio !== null ? { mergedLatencyOverheadPct: 100 * (mergedRatio - 1) } : {}),
      virtualTokens: first.virtualTokens,
      adapterBytes: pick((r) => r.adapterBytes),
    };
  });
}

/** Runs the bench; `onResults` sees the results after every run (partial reports on interruption). */
export async function runBench(
  options: BenchOptions,
  onResults?: (results: BenchResults) => Promise<void>,
): Promise<BenchResults> {
  const unknown = options.methods.filter((m) => !METHODS.some((spec) => spec.name === m));
  if (unknown.length)
    throw new Error(`--methods: unknown ${unknown.join(', ')} (known: ${METHODS.map((m) => m.name).join(', ')})`);
  const setup = await modelSetup(options.modelDirectory, options.task);
  // as the task loads it (a BertModel checkpoint has no head of its own), with its head's parameters
  const probe = await loadPretrained(options.modelDirectory, setup.load);
  const parameters = countParameters(probe.parameters.values());
  probe.dispose();
  const baselines: BaselineScore[] = [];
  if (options.task.task !== 'causal-lm') baselines.push(majorityBaseline(options.task));
  if (options.task.task === 'sequence-classification') baselines.push(bagOfWordsBaseline(options.task));
  const results: BenchResults = {
    schema: RESULTS_SCHEMA,
    createdAt: new Date().toISOString(),
    complete: false,
    machine: {
      backend: options.backend.name,
      backendDetail: options.backend.detail,
      cpus: availableParallelism(),
      node: process.version,
    },
    model: { directory: options.modelDirectory, parameters },
    task: { ...describeTask(options.task), metric: options.task.metric },
    budget: {
      steps: options.seconds ? null : options.steps,
      seconds: options.seconds ?? null,
      batchSize: options.batchSize,
      seeds: options.seeds,
    },
    baselines,
    runs: [],
    summary: [],
  };
  const unknownRates = Object.keys(options.learningRates ?? {}).filter((m) => !METHODS.some((spec) => spec.name === m));
  if (unknownRates.length) throw new Error(`--lr: unknown method ${unknownRates.join(', ')}`);
  const specs = METHODS.filter((m) => options.methods.includes(m.name));
  const runs = specs.reduce((n, spec) => n + (spec.frozen ? 1 : options.seeds), 0);
  let index = 0;
  for (const spec of specs) {
    let steps = options.steps;
    if (options.seconds && !spec.frozen && !options.signal?.aborted) {
      try {
        steps = Math.max(1, Math.floor(options.seconds / (await secondsPerStep(spec, options, setup))));
      } catch {
        steps = 1; // the method fails in its run too, and is reported there with its reason
      }
    }
    if (options.signal?.aborted) break;
    for (let seed = 0; seed < (spec.frozen ? 1 : options.seeds); seed++) {
      if (options.signal?.aborted) break;
      options.onProgress?.({ kind: 'start', method: spec.name, seed, run: ++index, runs });
      const run = await runOne(spec, seed, steps, options, setup);
      results.runs.push(run);
      results.summary = summarize(results.runs);
      options.onProgress?.({ kind: 'done', method: spec.name, seed, result: run });
      await onResults?.(results);
    }
  }
  results.complete = !options.signal?.aborted;
  results.summary = summarize(results.runs);
  await onResults?.(results);
  return results;
}
