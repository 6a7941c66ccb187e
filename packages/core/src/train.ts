// One engine trains every method: it sees a host, the adapter's trainable variables and a task
// loss. Gradients flow to the trainable variables only; frozen weights get none.
import * as tf from '@tensorflow/tfjs-core';

import { batchExamples, collate, type Batch, type BatchingOptions, type Dataset, type Example } from './data.js';
import { checkedData, type ExampleRules } from './example-checks.js';
import { describeFile, type FileStore } from './files.js';
import { variableGradients } from './gradients.js';
import type { PeftHost } from './host.js';
import {
  IGNORE_INDEX,
  causalLmLoss,
  fusedCausalLmLoss,
  sequenceClassificationLoss,
  tokenClassificationLoss,
  maskedVerbalizerLogits,
  verbalizerLogits,
} from './losses.js';
import { AdamW, Sgd, type Optimizer } from './optimizers.js';
import { SeededRandom, deriveSeed } from './random.js';
import { SCHEDULE_NAMES, learningRateAt, type ScheduleName } from './schedules.js';
import {
  lockCheckpointFolder,
  loadTrainingCheckpoint,
  saveTrainingCheckpoint,
  type TrainerState,
  type TrainingLock,
} from './training-checkpoint.js';

/** What the engine trains: a host and the variables an adapter (or a baseline) makes trainable. */
export interface TrainableModel {
  readonly host: PeftHost;
  /** By stable names: they key the checkpoint and the optimizer state. */
  trainableVariables(): ReadonlyMap<string, tf.Variable>;
}

export type TaskName = 'causal-lm' | 'sequence-classification' | 'token-classification';

export interface StepInfo {
  /** Optimizer steps done (1-based). */
  step: number;
  totalSteps: number | null;
  epoch: number;
  loss: number;
  learningRate: number;
  /** Global gradient norm before clipping. */
  gradientNorm: number;
  /** This step's tokens (its micro-batches' non-padding tokens). */
  tokens: number;
  /** This step's seconds (since the step before was reported). */
  seconds: number;
  /** tf.memory().numTensors after the step: flat over a healthy run. */
  tensors: number;
}

export interface EvalResult {
  step: number;
  loss: number;
  /** Classification tasks. */
  accuracy?: number;
  /** Causal LM: exp(loss). */
  perplexity?: number;
}

export interface TrainOptions {
  /**
   * The training examples, shuffled by `seed` every epoch: whole when in memory (an array, or a
   * Dataset with `at`), a stream within a buffer of 64 batches (see `batchExamples`).
   */
  data: Dataset<Example> | readonly Example[];
  validation?: Dataset<Example> | readonly Example[];
  task: TaskName;
  /**
   * Sequence classification through an LM: each class's label word, a token id or the ids of a word
   * of several tokens (masked LMs). A causal LM is read at the last real position (one-token words);
   * with `maskTokenId`, a masked LM at the row's [MASK] tokens, the k-th token of a label word at the
   * k-th mask, a class scoring the mean log-probability of its tokens.
   */
  verbalizer?: readonly (number | readonly number[])[];
  /** Masked LMs with a verbalizer: the [MASK] token; each row holds as many as the longest label word has tokens. */
  maskTokenId?: number;
  padTokenId: number;
  paddingSide?: 'left' | 'right';
  batchSize: number;
  /** Default 1. */
  epochs?: number;
  /** Stop after this many optimizer steps. */
  maxSteps?: number;
  /** Per method: prompt methods want 1e-2..3e-1, LoRA 1e-4..1e-3. */
  learningRate: number;
  /** Default adamw. */
  optimizer?: 'adamw' | 'sgd' | Optimizer;
  /** Default 0, as transformers' Trainer (decoupled for AdamW, L2 for SGD). */
  weightDecay?: number;
  momentum?: number;
  /** Default linear, as transformers' Trainer. */
  schedule?: ScheduleName;
  warmupSteps?: number;
  /** Warm-up as a share of the total steps (used when warmupSteps is not given). */
  warmupRatio?: number;
  /** Clip the global gradient norm to this (default 1.0; null: no clipping). */
  maxGradNorm?: number | null;
  /** Micro-batches per optimizer step (default 1). */
  gradientAccumulationSteps?: number;
  /**
   * Gradient checkpointing (default false): each transformer layer's activations are recomputed in
   * the backward pass instead of kept from the forward pass. Less memory for a second forward pass of
   * every layer (see `pnpm bench perf` for what it costs here).
   */
  gradientCheckpointing?: boolean;
  /** Batch examples of similar length together (less padding). Default true. */
  bucketByLength?: boolean;
  /** Evaluate on `validation` every this many optimizer steps (and at the end). */
  evalEvery?: number;
  /** Stop when the metric has not improved for `patience` evaluations. */
  earlyStopping?: { metric: 'loss' | 'accuracy' | 'perplexity'; patience: number };
  /** Data order and dropout: the same seed gives the same run. Default 0. */
  seed?: number;
  /** A NaN or Inf loss: stop with an error (default), or skip the step and count it. */
  nonFinite?: 'stop' | 'skip';
  /**
   * Save a resumable checkpoint here every `every` steps (and at the end, and on Ctrl-C). The run
   * holds `train.lock` in the store meanwhile: a second run into it is refused. After each save the
   * newest `keepLast` checkpoints stay (default 3; Infinity keeps all), and the best evaluation's.
   */
  checkpoint?: { store: FileStore; every?: number; keepLast?: number };
  /**
   * Continue from the latest checkpoint in `checkpoint.store`, if there is one. A run that had
   * finished (by these options' epochs, maxSteps, early stopping) trains nothing: `alreadyFinished`.
   */
  resume?: boolean;
  /**
   * Ctrl-C (SIGINT, under Node) stops after the current optimizer step, with a checkpoint when
   * checkpointing, however many times the signal arrives at once (a terminal sends it to pnpm, tsx
   * and node alike); Ctrl-C again a second or more later exits at once (code 130). Default true
   * when checkpointing.
   */
  handleInterrupt?: boolean;
  /** Aborting stops after the current step (with a checkpoint when configured). */
  signal?: AbortSignal;
  /**
   * After every optimizer step. A returned promise is awaited before the next step: a web page
   * yields to its renderer there. (Typed `unknown` so that callbacks returning anything still fit.)
   */
  onStep?: (info: StepInfo) => unknown;
  onEval?: (result: EvalResult) => void;
  onEpoch?: (info: { epoch: number; step: number; meanLoss: number }) => void;
  /** What the run says besides its steps: a lock taken over, files cleaned, Ctrl-C. Default console.warn. */
  onNotice?: (message: string) => void;
}

export interface TrainResult {
  steps: number;
  epochs: number;
  stoppedBy: 'completed' | 'max-steps' | 'early-stopping' | 'interrupted';
  /** Loss of every optimizer step, in order (resumed runs include the earlier steps). */
  losses: number[];
  evaluations: EvalResult[];
  /** Steps skipped for a NaN or Inf loss (nonFinite: 'skip'). */
  skippedSteps: number;
  tokens: number;
  seconds: number;
  tokensPerSecond: number;
  resumedFrom: number | null;
  /** `resume` found a run that had finished: nothing was trained (the model holds its weights). */
  alreadyFinished: boolean;
}

/** tfjs-core registers no gradients by itself; the union bundles (tfjs, tfjs-node) do. */
function assertGradientsRegistered(): void {
  if (!tf.getGradient('Mean') || !tf.getGradient('BatchMatMul')) {
    throw new Error(
      "TensorFlow.js gradients are not registered: import '@tensorflow/tfjs' or '@tensorflow/tfjs-node' " +
        '(or call selectBackend() from @peft/backend, which does) before training',
    );
  }
}

const TASKS: readonly TaskName[] = ['causal-lm', 'sequence-classification', 'token-classification'];

/** `"a", "b" or "c"` */
function choices(names: readonly string[]): string {
  const quoted = names.map((name) => JSON.stringify(name));
  return `${quoted.slice(0, -1).join(', ')} or ${quoted.at(-1)}`;
}

const show = (value: unknown): string => (typeof value === 'string' ? JSON.stringify(value) : String(value));

/** Every option checked before anything is made: each error names the option and what it expects. */
function validateOptions(options: TrainOptions, host: PeftHost): void {
  const positive = (value: number | undefined, name: string, required = false): void => {
    if ((value !== undefined || required) && !(Number.isInteger(value) && value! > 0))
      throw new Error(`${name}: expected a positive integer, got ${show(value)}`);
  };
  const atLeast = (value: number | undefined, name: string, min: number, strictly = false, required = false): void => {
    if (value === undefined && !required) return;
    const ok = typeof value === 'number' && Number.isFinite(value) && (strictly ? value > min : value >= min);
    if (!ok) throw new Error(`${name}: expected a finite number ${strictly ? '>' : '>='} ${min}, got ${show(value)}`);
  };
  const oneOf = (value: unknown, name: string, allowed: readonly string[]): void => {
    if (value !== undefined && !allowed.includes(value as string))
      throw new Error(`${name}: expected ${choices(allowed)}, got ${show(value)}`);
  };
  const boolean = (value: unknown, name: string): void => {
    if (value !== undefined && typeof value !== 'boolean')
      throw new Error(`${name}: expected true or false, got ${JSON.stringify(value)}`);
  };
  if (!TASKS.includes(options.task)) throw new Error(`task: expected ${choices(TASKS)}, got ${show(options.task)}`);
  positive(options.batchSize, 'batchSize', true);
  positive(options.epochs, 'epochs');
  positive(options.maxSteps, 'maxSteps');
  positive(options.gradientAccumulationSteps, 'gradientAccumulationSteps');
  positive(options.evalEvery, 'evalEvery');
  atLeast(options.learningRate, 'learningRate', 0, true, true);
  if (options.maxGradNorm !== null) {
    const norm = options.maxGradNorm;
    if (norm !== undefined && !(typeof norm === 'number' && Number.isFinite(norm) && norm > 0))
      throw new Error(`maxGradNorm: expected a finite number > 0 (or null for no clipping), got ${show(norm)}`);
  }
  atLeast(options.weightDecay, 'weightDecay', 0);
  const optimizer = options.optimizer as unknown;
  if (typeof optimizer === 'object' && optimizer !== null) {
    const custom = optimizer as Record<string, unknown>;
    const lacks = [
      ...(typeof custom.name === 'string' ? [] : ['a name']),
      ...['apply', 'getState', 'setState', 'dispose'].filter((method) => typeof custom[method] !== 'function'),
    ];
    if (lacks.length > 0) throw new Error(`optimizer: the Optimizer object lacks ${lacks.join(', ')}`);
    if (options.weightDecay !== undefined) {
      throw new Error(
        'weightDecay: not used with an Optimizer object; give it to the optimizer (new AdamW({ weightDecay }))',
      );
    }
  } else if (optimizer !== undefined && optimizer !== 'adamw' && optimizer !== 'sgd') {
    throw new Error(
      `optimizer: expected "adamw", "sgd" or an Optimizer (name, apply, getState, setState, dispose), got ${show(optimizer)}`,
    );
  }
  if (options.momentum !== undefined) {
    if (options.optimizer !== 'sgd') {
      throw new Error(
        typeof options.optimizer === 'object'
          ? 'momentum: not used with an Optimizer object; give it to the optimizer (new Sgd({ momentum }))'
          : `momentum: only for optimizer "sgd" (AdamW has beta1), got ${show(options.momentum)} with optimizer "adamw"`,
      );
    }
    atLeast(options.momentum, 'momentum', 0);
  }
  if (options.schedule !== undefined && !SCHEDULE_NAMES.includes(options.schedule))
    throw new Error(`schedule: expected ${choices(SCHEDULE_NAMES)}, got ${show(options.schedule)}`);
  if (options.warmupSteps !== undefined && !(Number.isInteger(options.warmupSteps) && options.warmupSteps >= 0))
    throw new Error(`warmupSteps: expected an integer >= 0, got ${show(options.warmupSteps)}`);
  const ratio = options.warmupRatio;
  if (ratio !== undefined && !(typeof ratio === 'number' && ratio >= 0 && ratio <= 1))
    throw new Error(`warmupRatio: expected a number from 0 to 1, got ${show(ratio)}`);
  if (!(Number.isInteger(options.padTokenId) && options.padTokenId >= 0))
    throw new Error(`padTokenId: expected an integer >= 0, got ${show(options.padTokenId)}`);
  const vocabulary = host.config.vocabSize;
  if (options.padTokenId >= vocabulary) {
    throw new Error(
      `padTokenId: ${options.padTokenId} is outside the model's vocabulary of ${vocabulary} tokens (0..${vocabulary - 1})`,
    );
  }
  oneOf(options.paddingSide, 'paddingSide', ['left', 'right']);
  oneOf(options.nonFinite, 'nonFinite', ['stop', 'skip']);
  if (options.seed !== undefined && !Number.isInteger(options.seed))
    throw new Error(`seed: expected an integer, got ${show(options.seed)}`);
  boolean(options.gradientCheckpointing, 'gradientCheckpointing');
  boolean(options.bucketByLength, 'bucketByLength');
  boolean(options.handleInterrupt, 'handleInterrupt');
  boolean(options.resume, 'resume');
  const tokenId = (id: unknown): boolean => Number.isInteger(id) && (id as number) >= 0 && (id as number) < vocabulary;
  if (options.verbalizer) {
    if (options.task !== 'sequence-classification')
      throw new Error('verbalizer: only for task "sequence-classification"');
    if (!Array.isArray(options.verbalizer) || options.verbalizer.length === 0)
      throw new Error(`verbalizer: expected a label word for each class, got ${show(options.verbalizer)}`);
    for (const [c, word] of options.verbalizer.entries()) {
      const ids = Array.isArray(word) ? word : [word];
      const bad = ids.findIndex((id) => !tokenId(id));
      if (ids.length === 0 || bad >= 0) {
        throw new Error(
          `verbalizer[${c}]${Array.isArray(word) && ids.length > 0 ? `[${bad}]` : ''}: ${ids.length === 0 ? 'an empty label word' : `${show(ids[bad])} is not a token id`} (a token id is an integer from 0 to ${vocabulary - 1})`,
        );
      }
      if (ids.length > 1 && options.maskTokenId === undefined)
        throw new Error(
          `verbalizer[${c}]: a label word of ${ids.length} tokens is read at [MASK] tokens: give maskTokenId (masked LMs)`,
        );
    }
  }
  if (options.maskTokenId !== undefined) {
    if (!options.verbalizer) throw new Error('maskTokenId: only with a verbalizer (the [MASK] positions it reads)');
    if (!tokenId(options.maskTokenId))
      throw new Error(
        `maskTokenId: ${show(options.maskTokenId)} is not a token id (an integer from 0 to ${vocabulary - 1})`,
      );
  }
  if (options.evalEvery !== undefined && !options.validation) throw new Error('evalEvery: needs validation data');
  if (options.earlyStopping) {
    if (!options.validation) throw new Error('earlyStopping needs validation data');
    oneOf(options.earlyStopping.metric, 'earlyStopping.metric', ['loss', 'accuracy', 'perplexity']);
    positive(options.earlyStopping.patience, 'earlyStopping.patience');
  }
  if (options.checkpoint) {
    const { store, every, keepLast } = options.checkpoint;
    if (typeof store?.write !== 'function')
      throw new Error('checkpoint.store: expected a FileStore (nodeDirectory, memoryStore, indexedDbStore...)');
    positive(every, 'checkpoint.every');
    if (keepLast !== undefined) {
      if (!((Number.isInteger(keepLast) && keepLast > 0) || keepLast === Number.POSITIVE_INFINITY)) {
        throw new Error(
          `checkpoint.keepLast: expected a positive integer (or Infinity to keep every checkpoint), got ${show(keepLast)}`,
        );
      }
      if (keepLast !== Number.POSITIVE_INFINITY && (!store.list || !store.remove)) {
        throw new Error(
          `checkpoint.keepLast: the store at ${store.location} cannot ${store.list ? 'delete' : 'list'} files, so ` +
            'checkpoints cannot be pruned (use keepLast: Infinity, or a store with list and remove)',
        );
      }
    }
  }
  if (options.resume && !options.checkpoint) throw new Error('resume needs checkpoint.store');
}

/** Each label word as its token ids. */
const verbalizerWords = (verbalizer: readonly (number | readonly number[])[]): number[][] =>
  verbalizer.map((word) => (Array.isArray(word) ? [...word] : [word as number]));

/** The tokens of the longest label word: the [MASK] tokens a masked LM's verbalizer reads in each row. */
const longest = (words: readonly (readonly number[])[]): number => Math.max(...words.map((word) => word.length));

/** Classes the task's logits have, to check labels before any compute. */
function classCount(host: PeftHost, options: TrainOptions): number | null {
  if (options.task === 'causal-lm') return null;
  if (options.verbalizer) return options.verbalizer.length;
  if (host.config.numLabels === undefined) {
    throw new Error(
      `task "${options.task}": the host has no classification head (config.numLabels); use a verbalizer or a classification model`,
    );
  }
  return host.config.numLabels;
}

/** What every example must satisfy on this host and task (see checkExample). */
function exampleRules(host: PeftHost, options: TrainOptions): ExampleRules {
  const virtualTokens = host.hooks.virtualTokens;
  return {
    task: options.task,
    vocabSize: host.config.vocabSize,
    maxPositions: host.config.maxPositions,
    virtualTokens,
    // a key/value prefix takes positions, but has no logits for the loss to see
    prepended: virtualTokens - (host.hooks.keyValuePrefix?.length ?? 0),
    classes: classCount(host, options),
    ...(options.verbalizer && options.maskTokenId !== undefined
      ? {
          masks: {
            tokenId: options.maskTokenId,
            needed: longest(verbalizerWords(options.verbalizer)),
          },
        }
      : {}),
  };
}

/** The task loss of one batch (and the logits, for metrics). */
function batchLoss(
  host: PeftHost,
  batch: Batch,
  options: TrainOptions,
  training: boolean,
  seed: number,
): { loss: tf.Scalar; count: number; classLogits: tf.Tensor | null; prepended: number; rowLabels?: number[] } {
  // token classification: the head at the labelled positions only (a masked LM's 15%); a masked LM's
  // verbalizer: at the masks it reads only, each row's first K (K: the longest label word's tokens;
  // checkExample made sure every row holds them)
  const tokenLabels = options.task === 'token-classification' ? (batch.labels as number[][]) : null;
  const words = options.verbalizer ? verbalizerWords(options.verbalizer) : null;
  const maskTokenId = options.maskTokenId;
  const masksAt =
    words && maskTokenId !== undefined
      ? batch.inputIds.map((row) => row.flatMap((id, t) => (id === maskTokenId ? [t] : [])).slice(0, longest(words)))
      : null;
  const rows = tokenLabels
    ? headRowsOf(host, batch, (b) => tokenLabels[b]!.flatMap((label, t) => (label === IGNORE_INDEX ? [] : [t])))
    : masksAt
      ? headRowsOf(host, batch, (b) => masksAt[b]!)
      : null;
  const output = host.forward({
    inputIds: batch.inputIds,
    attentionMask: batch.attentionMask,
    tokenTypeIds: batch.tokenTypeIds,
    training,
    seed,
    ...(training && options.gradientCheckpointing ? { checkpointLayers: true } : {}),
    ...(batch.taskIds ? { taskIds: batch.taskIds } : {}),
    ...(options.task === 'causal-lm' ? { headless: true } : {}),
    ...(rows ? { headRows: rows.rows } : {}),
  });
  const logits = output.logits;
  // a host that computed every position (one that does not know headRows) is read as before
  const picked = rows !== null && logits.rank === 2;
  if (picked && output.prepended !== rows.prepended)
    throw new Error(
      `headRows: the pass put ${output.prepended} virtual tokens in front, the adapter's hooks announced ${rows.prepended}`,
    );
  if (options.task === 'causal-lm') {
    const labels = batch.labels as number[][];
    const result = output.lmHead
      ? fusedCausalLmLoss(logits as tf.Tensor3D, output.lmHead, labels, output.prepended, training)
      : causalLmLoss(logits as tf.Tensor3D, labels, output.prepended);
    return { ...result, classLogits: null, prepended: output.prepended };
  }
  if (tokenLabels) {
    if (picked) {
      const labels = tokenLabels.flat().filter((label) => label !== IGNORE_INDEX); // in the rows' order
      const result = sequenceClassificationLoss(logits as tf.Tensor2D, labels);
      return { ...result, classLogits: logits, prepended: output.prepended, rowLabels: labels };
    }
    const result = tokenClassificationLoss(logits as tf.Tensor3D, tokenLabels, output.prepended);
    return { ...result, classLogits: logits, prepended: output.prepended };
  }
  let classLogits = logits as tf.Tensor2D;
  if (words && masksAt) {
    // picked: [B·K, V], the k-th mask of row b at row b·K + k; else [B, L, V] read at each row's masks
    const masks = longest(words);
    const view = picked ? tf.reshape(logits, [batch.inputIds.length, masks, logits.shape[1]!]) : logits;
    const positions = masksAt.map((at) => (picked ? at.map((_, k) => k) : at.map((t) => output.prepended + t)));
    classLogits = maskedVerbalizerLogits(view as tf.Tensor3D, positions, words);
  } else if (words) {
    const width = batch.inputIds[0]!.length;
    const last = batch.attentionMask.map((row) =>
      options.paddingSide === 'left'
        ? output.prepended + width - 1
        : output.prepended + row.reduce((a, b) => a + b, 0) - 1,
    );
    classLogits = verbalizerLogits(
      logits as tf.Tensor3D,
      last,
      words.map((word) => word[0]!),
    );
  }
  return {
    ...sequenceClassificationLoss(classLogits, batch.labels as number[]),
    classLogits,
    prepended: output.prepended,
  };
}

/**
 * The rows of the flattened [B, prepended + T] logits at which the head is needed: for batch row b,
 * the positions `at(b)` of its real tokens; `prepended` as the adapter's hooks announce it (prompt
 * tuning's virtual tokens; a key/value prefix has no logits).
 */
function headRowsOf(host: PeftHost, batch: Batch, at: (b: number) => number[]): { rows: number[]; prepended: number } {
  const prepended = host.hooks.virtualTokens - (host.hooks.keyValuePrefix?.length ?? 0);
  const width = prepended + batch.inputIds[0]!.length;
  return { rows: batch.inputIds.flatMap((_, b) => at(b).map((t) => b * width + prepended + t)), prepended };
}

/** Correct predictions (argmax) and labelled items of a classification batch (`rowLabels`: one per row of the logits). */
function countCorrect(
  classLogits: tf.Tensor,
  batch: Batch,
  prepended: number,
  rowLabels?: readonly number[],
): { correct: number; total: number } {
  const predictions = tf.tidy(() => tf.argMax(classLogits, -1).dataSync() as Int32Array);
  let correct = 0;
  let total = 0;
  if (rowLabels) {
    for (const [i, label] of rowLabels.entries()) if (predictions[i] === label) correct += 1;
    return { correct, total: rowLabels.length };
  }
  if (classLogits.rank === 2) {
    (batch.labels as number[]).forEach((label, i) => {
      total += 1;
      if (predictions[i] === label) correct += 1;
    });
  } else {
    const length = classLogits.shape[1]!;
    (batch.labels as number[][]).forEach((row, b) => {
      row.forEach((label, t) => {
        if (label === IGNORE_INDEX) return;
        total += 1;
        if (predictions[b * length + prepended + t] === label) correct += 1;
      });
    });
  }
  return { correct, total };
}

/** Loss (and accuracy or perplexity) over a dataset, without gradients. */
export async function evaluate(
  model: TrainableModel,
  data: Dataset<Example> | readonly Example[],
  options: TrainOptions,
  step = 0,
): Promise<EvalResult> {
  const examples = checkedData(data, 'validation', exampleRules(model.host, options));
  let lossSum = 0;
  let count = 0;
  let correct = 0;
  let total = 0;
  for await (const group of batchExamples(examples, { batchSize: options.batchSize })) {
    const batch = collate(group, { padTokenId: options.padTokenId, paddingSide: options.paddingSide ?? 'right' });
    let n = 0;
    let prepended = 0;
    let rowLabels: number[] | undefined;
    const [loss, classLogits] = tf.tidy(() => {
      const result = batchLoss(model.host, batch, options, false, 0);
      n = result.count;
      prepended = result.prepended;
      rowLabels = result.rowLabels;
      return [result.loss, result.classLogits ?? tf.scalar(0)];
    }) as [tf.Scalar, tf.Tensor];
    try {
      lossSum += loss.dataSync()[0]! * n;
      count += n;
      if (options.task !== 'causal-lm') {
        const c = countCorrect(classLogits, batch, prepended, rowLabels);
        correct += c.correct;
        total += c.total;
      }
    } finally {
      tf.dispose([loss, classLogits]);
    }
  }
  if (count === 0) throw new Error('validation data is empty (no labelled tokens)');
  const mean = lossSum / count;
  const result: EvalResult = { step, loss: mean };
  if (options.task === 'causal-lm') result.perplexity = Math.exp(mean);
  else result.accuracy = correct / Math.max(1, total);
  return result;
}

function makeOptimizer(options: TrainOptions): Optimizer {
  if (typeof options.optimizer === 'object') return options.optimizer;
  if (options.optimizer === 'sgd')
    return new Sgd({ momentum: options.momentum ?? 0, weightDecay: options.weightDecay ?? 0 });
  return new AdamW({ weightDecay: options.weightDecay ?? 0 });
}

function globalNorm(gradients: Iterable<tf.Tensor>): number {
  return tf.tidy(() => {
    const squares = [...gradients].map((g) => tf.sum(tf.square(g)));
    return squares.length === 0 ? 0 : Math.sqrt(tf.addN(squares).dataSync()[0]!);
  });
}

/** What the options fix before the first step. */
interface TrainingPlan {
  seed: number;
  epochs: number;
  /** Micro-batches per optimizer step. */
  accumulation: number;
  /** Optimizer steps of the whole run; null for a dataset of unknown size and no maxSteps. */
  totalSteps: number | null;
  schedule: ScheduleName;
  warmupSteps: number;
  /** null: no clipping. */
  maxGradNorm: number | null;
}

/**
 * How `train` batches epoch `epoch` (0-based) of a run: shuffled by a generator seeded from the run's
 * seed and the epoch, examples of similar length grouped unless `bucketByLength` is false. With
 * batchExamples over the same data, the batches each optimizer step sees (with no gradient
 * accumulation): what another implementation needs to train on the same batches in the same order.
 */
export function epochBatching(
  options: { batchSize: number; seed: number; bucketByLength: boolean },
  epoch: number,
): BatchingOptions {
  return {
    batchSize: options.batchSize,
    random: new SeededRandom(deriveSeed(options.seed, epoch)),
    ...(options.bucketByLength ? { bucketPool: 64 } : {}),
  };
}

function planTraining(options: TrainOptions, data: Dataset<Example>): TrainingPlan {
  const epochs = options.epochs ?? 1;
  const accumulation = options.gradientAccumulationSteps ?? 1;
  const batchesPerEpoch = data.size === undefined ? null : Math.ceil(data.size / options.batchSize);
  const stepsPerEpoch = batchesPerEpoch === null ? null : Math.ceil(batchesPerEpoch / accumulation);
  const plannedSteps = stepsPerEpoch === null ? null : stepsPerEpoch * epochs;
  const totalSteps =
    options.maxSteps !== undefined ? Math.min(options.maxSteps, plannedSteps ?? Infinity) : plannedSteps;
  const schedule = options.schedule ?? 'linear';
  if (totalSteps === null && schedule !== 'constant') {
    throw new Error(`schedule "${schedule}" needs the total steps: give maxSteps, or a dataset with a size`);
  }
  return {
    seed: options.seed ?? 0,
    epochs,
    accumulation,
    totalSteps,
    schedule,
    warmupSteps: options.warmupSteps ?? Math.round((options.warmupRatio ?? 0) * (totalSteps ?? 0)),
    maxGradNorm: options.maxGradNorm === undefined ? 1.0 : options.maxGradNorm,
  };
}

/**
 * Signals closer together than this are one Ctrl-C: a terminal sends SIGINT to its whole foreground
 * process group (pnpm, tsx, node), and tsx relays it to node once more.
 */
const SAME_INTERRUPT_MS = 1000;

/**
 * Listens for Ctrl-C (SIGINT) under Node when the options ask for it (by default when checkpointing):
 * the first calls `onInterrupt` (the run stops after its current optimizer step), repeats of the same
 * Ctrl-C are ignored, and a Ctrl-C after that exits the process at once. Returns the function that
 * stops listening; null when not listening.
 */
function listenForInterrupt(
  options: TrainOptions,
  notice: (message: string) => void,
  onInterrupt: () => void,
  lastCheckpoint: () => string | null,
): (() => void) | null {
  const nodeProcess = (globalThis as { process?: NodeJS.Process }).process;
  if (!(options.handleInterrupt ?? options.checkpoint !== undefined) || typeof nodeProcess?.on !== 'function')
    return null;
  let first: number | null = null;
  const listener = (): void => {
    const now = performance.now();
    if (first === null) {
      first = now;
      onInterrupt();
      notice(
        `Ctrl-C: stopping after the current optimizer step${options.checkpoint ? ' and saving a checkpoint' : ''} ` +
          '(Ctrl-C again to exit at once)',
      );
      return;
    }
    if (now - first < SAME_INTERRUPT_MS) return;
    const last = lastCheckpoint();
    notice(
      `Ctrl-C again: exiting at once without saving (${last ? `the last checkpoint, ${last}, is intact` : 'no checkpoint was saved'})`,
    );
    nodeProcess.exit(130);
  };
  nodeProcess.on('SIGINT', listener);
  return () => nodeProcess.removeListener('SIGINT', listener);
}

/** Lets timers and signal handlers run (a step's work is synchronous: without this, Ctrl-C waits for the run's end). */
function yieldToEventLoop(): Promise<void> {
  const { setImmediate } = globalThis as { setImmediate?: (callback: () => void) => unknown };
  return new Promise((resolve) => (setImmediate ? setImmediate(resolve) : setTimeout(resolve, 0)));
}

/** The optimizer step in progress: the summed gradients, loss and tokens of its micro-batches so far. */
class AccumulatedStep {
  /** By the trainable variables' stable names. */
  gradients = new Map<string, tf.Tensor>();
  microBatches = 0;
  /** The micro-batches' losses, each divided by the accumulation. */
  loss = 0;
  tokens = 0;
  private started = performance.now();

  /** Adds a micro-batch: its gradients (disposed here once summed), loss and tokens. */
  add(
    variables: ReadonlyMap<string, tf.Variable>,
    grads: Record<string, tf.Tensor>,
    loss: number,
    tokens: number,
  ): void {
    this.loss += loss;
    for (const [name, variable] of variables) {
      const gradient = grads[variable.name];
      if (!gradient) continue;
      const previous = this.gradients.get(name);
      this.gradients.set(name, previous ? tf.add(previous, gradient) : gradient);
      if (previous) {
        previous.dispose();
        gradient.dispose();
      }
    }
    this.tokens += tokens;
    this.microBatches += 1;
  }

  /** Since the previous step was reported, or the epoch began. */
  seconds(): number {
    return (performance.now() - this.started) / 1000;
  }

  /** Frees the gradients of a step that will not be applied (the run failed in it). */
  dispose(): void {
    tf.dispose([...this.gradients.values()]);
    this.reset();
  }

  /** Starts the next step, once this one is applied (its gradients disposed) and reported. */
  reset(): void {
    this.gradients = new Map();
    this.microBatches = 0;
    this.loss = 0;
    this.tokens = 0;
    this.started = performance.now();
  }
}

/**
 * One run of `train`: the model, its plan, and where the run stands (`state`, which a checkpoint
 * saves). The loop, top to bottom: epoch -> micro-step -> optimizer step -> evaluation, checkpoint.
 * Its life: `start` (lock the checkpoint folder, resume), `run`, and `close` whatever happened (the
 * optimizer state it made, the lock, the Ctrl-C listener).
 */
class Trainer {
  private readonly model: TrainableModel;
  private readonly options: TrainOptions;
  private readonly variables: ReadonlyMap<string, tf.Variable>;
  private readonly data: Dataset<Example>;
  private readonly plan: TrainingPlan;
  private readonly optimizer: Optimizer;
  private readonly notice: (message: string) => void;
  private state: TrainerState;
  private resumedFrom: number | null = null;
  /** The epoch a resumed checkpoint stopped in, and the batches of it already consumed. */
  private resumeAt = { epoch: 0, batches: 0 };
  /** Why the run stopped; null while it runs. */
  private stoppedBy: TrainResult['stoppedBy'] | null = null;
  private alreadyFinished = false;
  private interrupted = false;
  private lock: TrainingLock | null = null;
  private stopListening: (() => void) | null = null;
  /** The checkpoint saved last (or resumed from), for messages. */
  private lastCheckpoint: string | null = null;

  /** Checks the examples (all of them, when in memory) before anything is made. */
  constructor(model: TrainableModel, options: TrainOptions) {
    this.model = model;
    this.options = options;
    this.notice = options.onNotice ?? ((message) => console.warn(message));
    this.variables = model.trainableVariables();
    if (this.variables.size === 0) throw new Error('the model has no trainable variables');
    const rules = exampleRules(model.host, options);
    this.data = checkedData(options.data, 'data', rules);
    if (this.data.size === 0) throw new Error('training data is empty');
    if (options.validation) checkedData(options.validation, 'validation', rules);
    this.plan = planTraining(options, this.data);
    for (const variable of this.variables.values()) variable.trainable = true;
    this.optimizer = makeOptimizer(options);
    this.state = {
      step: 0,
      epoch: 0,
      batchesInEpoch: 0,
      seed: this.plan.seed,
      losses: [],
      evaluations: [],
      best: null,
      badEvaluations: 0,
      skippedSteps: 0,
      tokens: 0,
    };
  }

  /** Takes the checkpoint folder, continues from its latest checkpoint when asked to, and listens for Ctrl-C. */
  async start(): Promise<void> {
    const { checkpoint } = this.options;
    if (checkpoint) this.lock = await lockCheckpointFolder(checkpoint.store, this.notice);
    if (this.options.resume && checkpoint) await this.resume(checkpoint.store);
    this.stopListening = listenForInterrupt(
      this.options,
      this.notice,
      () => {
        this.interrupted = true;
      },
      () => (this.lastCheckpoint && checkpoint ? describeFile(checkpoint.store, this.lastCheckpoint) : null),
    );
  }

  /**
   * Whatever happened: the optimizer state this run made, the listener, the lock. After a `failure`,
   * a lock that cannot be released is said through onNotice, and the failure is what `train` throws.
   */
  async close(failure: unknown): Promise<void> {
    this.stopListening?.();
    if (typeof this.options.optimizer !== 'object') this.optimizer.dispose();
    try {
      await this.lock?.release();
    } catch (error) {
      if (failure === null) throw error;
      this.notice(`the checkpoint folder's lock was not released: ${(error as Error).message}`);
    }
  }

  private async resume(store: FileStore): Promise<void> {
    const seed = this.plan.seed;
    const projectionWeights = new Set<tf.Variable>(
      [...this.model.host.linears.values()].map((linear) => linear.weight),
    );
    const projections = new Set([...this.variables].filter(([, v]) => projectionWeights.has(v)).map(([name]) => name));
    const loaded = await loadTrainingCheckpoint(
      store,
      this.variables,
      this.optimizer,
      (saved, { file }) => {
        if (saved.seed !== seed) {
          throw new Error(
            `resume: ${file} was trained with seed ${saved.seed}, this run has seed ${seed} ` +
              `(the data order and dropout follow the seed: give seed ${saved.seed} to continue that run)`,
          );
        }
      },
      projections,
    );
    if (!loaded) return;
    const finished = this.finishedBy(loaded);
    // why that run stopped is its story: this one saves its own
    const { stoppedBy: _stoppedBy, ...state } = loaded;
    this.state = state;
    this.resumedFrom = loaded.step;
    this.resumeAt = { epoch: loaded.epoch, batches: loaded.batchesInEpoch };
    this.lastCheckpoint = `checkpoint-${loaded.step}`;
    if (finished) {
      this.alreadyFinished = true;
      this.stoppedBy = finished;
      this.notice(
        `resume: checkpoint-${loaded.step} ends a finished run (${finished} at step ${loaded.step}); nothing to train ` +
          '(raise epochs or maxSteps to train further)',
      );
    }
  }

  /** Why a resumed run has nothing left to do under these options; null when it goes on. */
  private finishedBy(state: TrainerState): 'completed' | 'max-steps' | 'early-stopping' | null {
    const { options, plan } = this;
    if (options.maxSteps !== undefined && state.step >= options.maxSteps) return 'max-steps';
    if (state.epoch >= plan.epochs) return 'completed';
    const patience = options.earlyStopping?.patience;
    if (state.stoppedBy === 'early-stopping' && patience !== undefined && state.badEvaluations >= patience)
      return 'early-stopping';
    return null;
  }

  /** The epochs, then (unless stopped early or interrupted) a last evaluation and checkpoint. */
  async run(): Promise<TrainResult> {
    const started = performance.now();
    const tokensBefore = this.state.tokens;
    if (!this.alreadyFinished) {
      for (let epoch = this.state.epoch; epoch < this.plan.epochs; epoch++) {
        if (await this.trainEpoch(epoch)) break;
      }
      if (this.stoppedBy === null || this.stoppedBy === 'max-steps') {
        this.stoppedBy ??= 'completed';
        await this.finish();
      }
    }
    const seconds = (performance.now() - started) / 1000;
    const tokens = this.state.tokens - tokensBefore;
    return {
      steps: this.state.step,
      epochs: this.state.epoch,
      stoppedBy: this.stoppedBy ?? 'completed',
      losses: this.state.losses,
      evaluations: this.state.evaluations,
      skippedSteps: this.state.skippedSteps,
      tokens,
      seconds,
      tokensPerSecond: tokens / Math.max(seconds, 1e-9),
      resumedFrom: this.resumedFrom,
      alreadyFinished: this.alreadyFinished,
    };
  }

  /** One pass over the data (what a resumed checkpoint left of it); true when the run stops in it. */
  private async trainEpoch(epoch: number): Promise<boolean> {
    const { options, plan } = this;
    const batching = epochBatching(
      { batchSize: options.batchSize, seed: plan.seed, bucketByLength: options.bucketByLength ?? true },
      epoch,
    );
    const accumulated = new AccumulatedStep();
    const losses: number[] = [];
    let batchIndex = 0;
    try {
      for await (const examples of batchExamples(this.data, batching)) {
        batchIndex += 1;
        // consumed before the checkpoint this run resumed from
        if (epoch === this.resumeAt.epoch && batchIndex <= this.resumeAt.batches) continue;
        const batch = collate(examples, {
          padTokenId: options.padTokenId,
          paddingSide: options.paddingSide ?? 'right',
        });
        this.microStep(batch, accumulated);
        if (accumulated.microBatches === plan.accumulation) {
          losses.push(await this.optimizerStep(accumulated, epoch, batchIndex));
          if (await this.stopsAfterStep()) return true;
        }
      }
      // an epoch ending inside an accumulation group still takes its step, as transformers does
      if (accumulated.microBatches > 0) {
        losses.push(await this.optimizerStep(accumulated, epoch, batchIndex));
        if (await this.stopsAfterStep()) return true;
      }
    } finally {
      // a failed micro-step or step leaves gradients of a step that is never applied
      accumulated.dispose();
    }
    if (batchIndex === 0) throw new Error(`training data is empty (epoch ${epoch + 1} produced no batch)`);
    options.onEpoch?.({
      epoch: epoch + 1,
      step: this.state.step,
      meanLoss: losses.length ? losses.reduce((a, b) => a + b, 0) / losses.length : Number.NaN,
    });
    this.state.epoch = epoch + 1;
    this.state.batchesInEpoch = 0;
    return false;
  }

  /** Forward and backward of one micro-batch; its gradients join the step's. */
  private microStep(batch: Batch, accumulated: AccumulatedStep): void {
    const { accumulation, seed } = this.plan;
    const stepSeed = deriveSeed(seed, this.state.step, accumulated.microBatches);
    const { value, grads } = variableGradients(() => {
      const { loss } = batchLoss(this.model.host, batch, this.options, true, stepSeed);
      return accumulation === 1 ? loss : tf.div(loss, accumulation);
    }, [...this.variables.values()]);
    const loss = value.dataSync()[0]!;
    value.dispose();
    accumulated.add(this.variables, grads, loss, batch.tokens);
  }

  /** Clips and applies the accumulated gradients, then reports the step; returns its loss. */
  private async optimizerStep(accumulated: AccumulatedStep, epoch: number, batchIndex: number): Promise<number> {
    const { options, plan, state } = this;
    const { gradients, microBatches } = accumulated;
    // micro-batch losses were divided by the accumulation; a short last group is rescaled (the
    // scale goes to the optimizer with the clipping's, so the gradients are never rewritten)
    const loss = (accumulated.loss * plan.accumulation) / microBatches;
    let gradientScale = plan.accumulation / microBatches;
    const norm = globalNorm(gradients.values()) * gradientScale;
    const finite = Number.isFinite(loss) && Number.isFinite(norm);
    if (!finite && options.nonFinite !== 'skip') {
      throw new Error(
        `step ${state.step + 1} (epoch ${epoch + 1}): the loss is ${loss} and the gradient norm ${norm}; ` +
          'training stopped (lower the learning rate, or pass nonFinite: "skip" to skip such steps)',
      );
    }
    const learningRate = learningRateAt(state.step, {
      schedule: plan.schedule,
      learningRate: options.learningRate,
      warmupSteps: plan.warmupSteps,
      totalSteps: plan.totalSteps ?? 0,
    });
    if (finite) {
      if (plan.maxGradNorm !== null && norm > plan.maxGradNorm) gradientScale *= plan.maxGradNorm / (norm + 1e-6);
      this.optimizer.apply(this.variables, gradients, learningRate, gradientScale);
      this.checkWeightsFinite(`step ${state.step + 1} (epoch ${epoch + 1})`, learningRate, norm);
    } else state.skippedSteps += 1;
    tf.dispose([...gradients.values()]);
    state.step += 1;
    state.batchesInEpoch = batchIndex;
    state.tokens += accumulated.tokens;
    state.losses.push(loss);
    await options.onStep?.({
      step: state.step,
      totalSteps: plan.totalSteps,
      epoch: epoch + 1,
      loss,
      learningRate,
      gradientNorm: norm,
      tokens: accumulated.tokens,
      seconds: accumulated.seconds(),
      tensors: tf.memory().numTensors,
    });
    accumulated.reset();
    return loss;
  }

  /**
   * Finite or stop: after an update that left a trainable variable NaN or infinite, the run stops
   * before anything saves it (the checkpoint in the folder stays the last good one).
   */
  private checkWeightsFinite(where: string, learningRate: number, gradientNorm: number): void {
    const flags = [...this.variables.values()].map((variable) => tf.tidy(() => tf.all(tf.isFinite(variable))));
    const finite = tf.tidy(() => tf.stack(flags).dataSync());
    tf.dispose(flags);
    const bad = finite.indexOf(0);
    if (bad < 0) return;
    const name = [...this.variables.keys()][bad]!;
    const { checkpoint } = this.options;
    throw new Error(
      `${where}: the update made the weights non-finite ("${name}" holds NaN or Infinity; learning rate ` +
        `${learningRate}, gradient norm ${gradientNorm}); training stopped before saving: the weights in memory are not ` +
        `usable; ${
          checkpoint && this.lastCheckpoint
            ? `the last checkpoint, ${describeFile(checkpoint.store, this.lastCheckpoint)}, is intact: resume from it with a lower learning rate`
            : 'no checkpoint was saved'
        }`,
    );
  }

  /**
   * After each optimizer step, in this order: evaluation (early stopping), an interrupt, the step
   * limit, the periodic checkpoint. True when the run stops here.
   */
  private async stopsAfterStep(): Promise<boolean> {
    const { options, state } = this;
    // a step is synchronous work: Ctrl-C and aborts from timers arrive here
    if (this.stopListening || options.signal) await yieldToEventLoop();
    if (options.evalEvery && state.step % options.evalEvery === 0 && (await this.runEvaluation())) {
      this.stoppedBy = 'early-stopping';
      await this.checkpoint();
      return true;
    }
    if (this.interrupted || options.signal?.aborted) {
      this.stoppedBy = 'interrupted';
      await this.checkpoint();
      return true;
    }
    if (options.maxSteps !== undefined && state.step >= options.maxSteps) {
      this.stoppedBy = 'max-steps';
      return true;
    }
    if (options.checkpoint?.every !== undefined && state.step % options.checkpoint.every === 0) await this.checkpoint();
    return false;
  }

  /** Evaluates on `validation` (when given); true when early stopping's patience has run out. */
  private async runEvaluation(): Promise<boolean> {
    const { options, state } = this;
    if (!options.validation) return false;
    const result = await evaluate(this.model, options.validation, options, state.step);
    state.evaluations.push(result);
    options.onEval?.(result);
    const stopping = options.earlyStopping;
    if (!stopping) return false;
    const value = result[stopping.metric];
    if (value === undefined)
      throw new Error(`earlyStopping: metric "${stopping.metric}" is not reported for task "${options.task}"`);
    const better = state.best === null || (stopping.metric === 'accuracy' ? value > state.best : value < state.best);
    if (better) {
      state.best = value;
      state.badEvaluations = 0;
    } else state.badEvaluations += 1;
    return state.badEvaluations >= stopping.patience;
  }

  /**
   * A resumable checkpoint, when the run has a store (saying why the run stopped, when it did); the
   * newest `keepLast` and the best evaluation's stay.
   */
  private async checkpoint(): Promise<void> {
    const { options, state } = this;
    if (!options.checkpoint) return;
    const { store, keepLast } = options.checkpoint;
    const saved: TrainerState = { ...state, ...(this.stoppedBy ? { stoppedBy: this.stoppedBy } : {}) };
    const step = state.step;
    // before the files too: a run that lost the folder must not write over the other run's checkpoint
    await this.lock?.verify(step);
    this.lastCheckpoint = await saveTrainingCheckpoint(store, saved, this.variables, this.optimizer, {
      ...(keepLast !== undefined ? { keepLast } : {}),
      keepSteps: this.bestEvaluationStep(),
      beforeCommit: async () => this.lock?.verify(step),
      onNotice: this.notice,
    });
  }

  /** The step of the best evaluation (by early stopping's metric, else the loss), to keep its checkpoint. */
  private bestEvaluationStep(): number[] {
    const metric = this.options.earlyStopping?.metric ?? 'loss';
    const higherIsBetter = metric === 'accuracy';
    let best: { step: number; value: number } | null = null;
    for (const evaluation of this.state.evaluations) {
      const value = evaluation[metric];
      if (value === undefined || !Number.isFinite(value)) continue;
      if (best === null || (higherIsBetter ? value > best.value : value < best.value))
        best = { step: evaluation.step, value };
    }
    return best ? [best.step] : [];
  }

  /** A run that completed or reached its step limit: a last evaluation (unless its last step had one), a checkpoint. */
  private async finish(): Promise<void> {
    const { options, state } = this;
    if (options.validation && (state.evaluations.at(-1)?.step ?? -1) !== state.step) await this.runEvaluation();
    await this.checkpoint();
  }
}

/**
 * Trains `model` on `options.data`.
 *
 * ```ts
 * const result = await train(model, { data, task: 'causal-lm', padTokenId, batchSize: 8, learningRate: 3e-4,
 *   epochs: 3, onStep: ({ step, loss }) => console.log(step, loss) });
 * ```
 */
export async function train(model: TrainableModel, options: TrainOptions): Promise<TrainResult> {
  validateOptions(options, model.host);
  assertGradientsRegistered();
  const trainer = new Trainer(model, options);
  let failure: unknown = null;
  try {
    await trainer.start();
    return await trainer.run();
  } catch (error) {
    failure = error;
    throw error;
  } finally {
    await trainer.close(failure);
  }
}
