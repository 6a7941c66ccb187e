// One engine trains every method: it sees a host, the adapter's trainable variables and a task
// loss. Gradients flow to the trainable variables only; frozen weights get none.
import * as tf from '@tensorflow/tfjs-core';

import { arrayDataset, batchExamples, collate, type Batch, type Dataset, type Example } from './data.js';
import type { FileStore } from './files.js';
import { variableGradients } from './gradients.js';
import type { PeftHost } from './host.js';
import {
  IGNORE_INDEX,
  causalLmLoss,
  sequenceClassificationLoss,
  tokenClassificationLoss,
  verbalizerLogits,
} from './losses.js';
import { AdamW, Sgd, type Optimizer } from './optimizers.js';
import { SeededRandom, deriveSeed } from './random.js';
import { learningRateAt, type ScheduleName } from './schedules.js';
import { loadTrainingCheckpoint, saveTrainingCheckpoint, type TrainerState } from './training-checkpoint.js';

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
  tokens: number;
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
  data: Dataset<Example> | readonly Example[];
  validation?: Dataset<Example> | readonly Example[];
  task: TaskName;
  /** Sequence classification through an LM: the token id standing for each class. */
  verbalizer?: readonly number[];
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
  /** Save a resumable checkpoint here every `every` steps (and at the end, and on Ctrl-C). */
  checkpoint?: { store: FileStore; every?: number };
  /** Continue from the latest checkpoint in `checkpoint.store`, if there is one. */
  resume?: boolean;
  /** Ctrl-C (SIGINT) saves a checkpoint and stops cleanly. Default true when checkpointing. */
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
}

function toDataset(data: Dataset<Example> | readonly Example[]): Dataset<Example> {
  return Array.isArray(data) ? arrayDataset(data as readonly Example[]) : (data as Dataset<Example>);
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

function validateOptions(options: TrainOptions): void {
  const positive = (value: number | undefined, name: string): void => {
    if (value !== undefined && !(Number.isInteger(value) && value > 0))
      throw new Error(`${name}: expected a positive integer, got ${value}`);
  };
  positive(options.batchSize, 'batchSize');
  positive(options.epochs, 'epochs');
  positive(options.maxSteps, 'maxSteps');
  positive(options.gradientAccumulationSteps, 'gradientAccumulationSteps');
  positive(options.evalEvery, 'evalEvery');
  if (!(options.learningRate > 0))
    throw new Error(`learningRate: expected a positive number, got ${options.learningRate}`);
  if (options.verbalizer && options.task !== 'sequence-classification') {
    throw new Error('verbalizer: only for task "sequence-classification"');
  }
  if (options.earlyStopping && !options.validation) throw new Error('earlyStopping needs validation data');
  if (options.resume && !options.checkpoint) throw new Error('resume needs checkpoint.store');
}

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

function checkBatch(batch: Batch, host: PeftHost, classes: number | null, where: string): void {
  const width = batch.inputIds[0]!.length;
  const virtual = host.hooks.virtualTokens;
  const limit = host.config.maxPositions;
  if (width + virtual > limit) {
    throw new Error(
      virtual === 0
        ? `${where}: a batch of ${width} tokens is longer than the model's ${limit} positions; truncate the examples`
        : `${where}: a batch of ${width} tokens plus the adapter's ${virtual} virtual tokens needs ${width + virtual} positions, ` +
            `more than the model's ${limit}; truncate the examples to ${limit - virtual} tokens`,
    );
  }
  if (classes === null) return;
  const labels = (batch.labels as (number | number[])[]).flat();
  const bad = labels.find(
    (label) => label !== IGNORE_INDEX && (label < 0 || label >= classes || !Number.isInteger(label)),
  );
  if (bad !== undefined)
    throw new Error(`${where}: label ${bad} is outside the ${classes} classes of the head (0..${classes - 1})`);
}

/** The task loss of one batch (and the logits, for metrics). */
function batchLoss(
  host: PeftHost,
  batch: Batch,
  options: TrainOptions,
  training: boolean,
  seed: number,
): { loss: tf.Scalar; count: number; classLogits: tf.Tensor | null; prepended: number } {
  const output = host.forward({
    inputIds: batch.inputIds,
    attentionMask: batch.attentionMask,
    tokenTypeIds: batch.tokenTypeIds,
    training,
    seed,
    ...(training && options.gradientCheckpointing ? { checkpointLayers: true } : {}),
    ...(batch.taskIds ? { taskIds: batch.taskIds } : {}),
  });
  const logits = output.logits;
  if (options.task === 'causal-lm') {
    const result = causalLmLoss(logits as tf.Tensor3D, batch.labels as number[][], output.prepended);
    return { ...result, classLogits: null, prepended: output.prepended };
  }
  if (options.task === 'token-classification') {
    const result = tokenClassificationLoss(logits as tf.Tensor3D, batch.labels as number[][], output.prepended);
    return { ...result, classLogits: logits, prepended: output.prepended };
  }
  let classLogits = logits as tf.Tensor2D;
  if (options.verbalizer) {
    const width = batch.inputIds[0]!.length;
    const last = batch.attentionMask.map((row) =>
      options.paddingSide === 'left'
        ? output.prepended + width - 1
        : output.prepended + row.reduce((a, b) => a + b, 0) - 1,
    );
    classLogits = verbalizerLogits(logits as tf.Tensor3D, last, options.verbalizer);
  }
  return {
    ...sequenceClassificationLoss(classLogits, batch.labels as number[]),
    classLogits,
    prepended: output.prepended,
  };
}

/** Correct predictions (argmax) and labelled items of a classification batch. */
function countCorrect(classLogits: tf.Tensor, batch: Batch, prepended: number): { correct: number; total: number } {
  const predictions = tf.tidy(() => tf.argMax(classLogits, -1).dataSync() as Int32Array);
  let correct = 0;
  let total = 0;
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
  const classes = classCount(model.host, options);
  let lossSum = 0;
  let count = 0;
  let correct = 0;
  let total = 0;
  for await (const examples of batchExamples(toDataset(data), { batchSize: options.batchSize })) {
    const batch = collate(examples, { padTokenId: options.padTokenId, paddingSide: options.paddingSide ?? 'right' });
    checkBatch(batch, model.host, classes, 'validation');
    let n = 0;
    let prepended = 0;
    const [loss, classLogits] = tf.tidy(() => {
      const result = batchLoss(model.host, batch, options, false, 0);
      n = result.count;
      prepended = result.prepended;
      return [result.loss, result.classLogits ?? tf.scalar(0)];
    }) as [tf.Scalar, tf.Tensor];
    lossSum += loss.dataSync()[0]! * n;
    count += n;
    if (options.task !== 'causal-lm') {
      const c = countCorrect(classLogits, batch, prepended);
      correct += c.correct;
      total += c.total;
    }
    tf.dispose([loss, classLogits]);
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

function planTraining(options: TrainOptions, data: Dataset<Example>): TrainingPlan {
  if (options.gradientCheckpointing !== undefined && typeof options.gradientCheckpointing !== 'boolean') {
    throw new Error(
      `gradientCheckpointing: expected true or false, got ${JSON.stringify(options.gradientCheckpointing)}`,
    );
  }
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
 * Calls `onInterrupt` on Ctrl-C (SIGINT) under Node, when the options ask for it (by default when
 * checkpointing); returns the function that stops listening.
 */
function listenForInterrupt(options: TrainOptions, onInterrupt: () => void): () => void {
  const nodeProcess = (globalThis as { process?: NodeJS.Process }).process;
  if (!(options.handleInterrupt ?? options.checkpoint !== undefined) || typeof nodeProcess?.once !== 'function') {
    return () => undefined;
  }
  nodeProcess.once('SIGINT', onInterrupt);
  return () => nodeProcess.removeListener('SIGINT', onInterrupt);
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
 */
class Trainer {
  private readonly model: TrainableModel;
  private readonly options: TrainOptions;
  private readonly variables: ReadonlyMap<string, tf.Variable>;
  /** Classes of the task's head, to check labels before any compute (null: causal LM). */
  private readonly classes: number | null;
  private readonly data: Dataset<Example>;
  private readonly plan: TrainingPlan;
  private readonly optimizer: Optimizer;
  private state: TrainerState;
  private resumedFrom: number | null = null;
  /** The epoch a resumed checkpoint stopped in, and the batches of it already consumed. */
  private resumeAt = { epoch: 0, batches: 0 };
  private stoppedBy: TrainResult['stoppedBy'] = 'completed';
  private interrupted = false;

  constructor(model: TrainableModel, options: TrainOptions) {
    this.model = model;
    this.options = options;
    this.variables = model.trainableVariables();
    if (this.variables.size === 0) throw new Error('the model has no trainable variables');
    for (const variable of this.variables.values()) variable.trainable = true;
    this.classes = classCount(model.host, options);
    this.data = toDataset(options.data);
    if (this.data.size === 0) throw new Error('training data is empty');
    this.plan = planTraining(options, this.data);
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

  /** Continues from the latest checkpoint in `checkpoint.store`, when asked to and there is one. */
  async resume(): Promise<void> {
    const { checkpoint } = this.options;
    if (!this.options.resume || !checkpoint) return;
    const loaded = await loadTrainingCheckpoint(checkpoint.store, this.variables, this.optimizer);
    if (!loaded) return;
    const seed = this.plan.seed;
    if (loaded.seed !== seed)
      throw new Error(`resume: the checkpoint was trained with seed ${loaded.seed}, this run has seed ${seed}`);
    this.state = loaded;
    this.resumedFrom = loaded.step;
    this.resumeAt = { epoch: loaded.epoch, batches: loaded.batchesInEpoch };
  }

  /** The epochs, then (unless stopped early or interrupted) a last evaluation and checkpoint. */
  async run(): Promise<TrainResult> {
    const stopListening = listenForInterrupt(this.options, () => {
      this.interrupted = true;
    });
    const started = performance.now();
    const tokensBefore = this.state.tokens;
    try {
      for (let epoch = this.state.epoch; epoch < this.plan.epochs; epoch++) {
        if (await this.trainEpoch(epoch)) break;
      }
      if (this.stoppedBy === 'completed' || this.stoppedBy === 'max-steps') await this.finish();
    } finally {
      stopListening();
      if (typeof this.options.optimizer !== 'object') this.optimizer.dispose();
    }
    const seconds = (performance.now() - started) / 1000;
    const tokens = this.state.tokens - tokensBefore;
    return {
      steps: this.state.step,
      epochs: this.state.epoch,
      stoppedBy: this.stoppedBy,
      losses: this.state.losses,
      evaluations: this.state.evaluations,
      skippedSteps: this.state.skippedSteps,
      tokens,
      seconds,
      tokensPerSecond: tokens / Math.max(seconds, 1e-9),
      resumedFrom: this.resumedFrom,
    };
  }

  /** One pass over the data (what a resumed checkpoint left of it); true when the run stops in it. */
  private async trainEpoch(epoch: number): Promise<boolean> {
    const { options, plan } = this;
    const batching = {
      batchSize: options.batchSize,
      random: new SeededRandom(deriveSeed(plan.seed, epoch)),
      ...(options.bucketByLength === false ? {} : { bucketPool: 64 }),
    };
    const accumulated = new AccumulatedStep();
    const losses: number[] = [];
    let batchIndex = 0;
    for await (const examples of batchExamples(this.data, batching)) {
      batchIndex += 1;
      // consumed before the checkpoint this run resumed from
      if (epoch === this.resumeAt.epoch && batchIndex <= this.resumeAt.batches) continue;
      const batch = collate(examples, { padTokenId: options.padTokenId, paddingSide: options.paddingSide ?? 'right' });
      checkBatch(batch, this.model.host, this.classes, `training batch ${batchIndex} of epoch ${epoch + 1}`);
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
      tf.dispose([...gradients.values()]);
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
   * After each optimizer step, in this order: evaluation (early stopping), an interrupt, the step
   * limit, the periodic checkpoint. True when the run stops here.
   */
  private async stopsAfterStep(): Promise<boolean> {
    const { options, state } = this;
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

  /** A resumable checkpoint, when the run has a store. */
  private async checkpoint(): Promise<void> {
    if (this.options.checkpoint)
      await saveTrainingCheckpoint(this.options.checkpoint.store, this.state, this.variables, this.optimizer);
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
  validateOptions(options);
  assertGradientsRegistered();
  const trainer = new Trainer(model, options);
  await trainer.resume();
  return trainer.run();
}
