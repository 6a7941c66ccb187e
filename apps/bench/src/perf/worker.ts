// Our side of `pnpm bench perf`: one workload per process (so that its peak RSS is its own), the
// same as oracle/bench_perf.py does in Python. Prints one JSON line.
//
//   tsx src/perf/worker.ts '{"model":"gpt2","method":"lora","mode":"train","batch":4,...}'
import { selectBackend, parseBackendRequest } from '@peft/backend';
import {
  countParameters,
  getPeftModel,
  train,
  type Example,
  type PeftHost,
  type PeftModel,
  type TrainableModel,
} from '@peft/core';
import { LoraConfig } from '@peft/lora';
import { generate, randomModel } from '@peft/models';
import * as tf from '@tensorflow/tfjs-core';

import { PERF_METHODS, PERF_MODELS, forwardMatmuls, perfConfig, type PerfMethod, type PerfModel } from './workloads.js';

export interface WorkerRequest {
  model: string;
  method: string;
  /** `public`: LoRA trained as the README does it (the independent check of `train`'s figure). */
  mode: 'train' | 'infer' | 'ceiling' | 'public';
  batch: number;
  sequence: number;
  warmup: number;
  steps: number;
  rounds: number;
  newTokens: number;
  backend: string;
  /** Training with gradient checkpointing (each layer recomputed in the backward pass). */
  checkpointing?: boolean;
  /** Every dropout rate of the model's config (perfConfig); default 0. */
  dropout?: number;
}

export interface WorkerResult {
  runtime: string;
  peak_rss_mb: number;
  trainable?: number;
  step_seconds?: number;
  tokens_per_second?: number;
  matmul_seconds?: number[];
  /** base_forward_ms, adapted_decode_ms, merged_forward_ms, ... */
  [timing: string]: number | string | number[] | undefined;
}

const median = (values: readonly number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** A deterministic stream of token ids (the same kind of input as Python's torch.randint). */
function tokens(count: number, vocab: number, seed: number): number[] {
  let state = seed >>> 0;
  return Array.from({ length: count }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state % vocab;
  });
}

/** The examples of `steps` optimizer steps from step `first` on: `batch` sequences each, the same ones for every run. */
function stepData(request: WorkerRequest, vocab: number, steps: number, first = 0): Example[] {
  return Array.from({ length: steps * request.batch }, (_, i) => {
    const ids = tokens(request.sequence, vocab, first * request.batch + i + 1);
    return { inputIds: ids, labels: ids };
  });
}

async function trainSteps(
  model: TrainableModel,
  request: WorkerRequest,
  vocab: number,
): Promise<Partial<WorkerResult>> {
  const { batch, sequence, warmup, steps } = request;
  const seconds: number[] = [];
  await train(model, {
    data: stepData(request, vocab, warmup + steps),
    task: 'causal-lm',
    padTokenId: 0,
    batchSize: batch,
    learningRate: 1e-4,
    schedule: 'constant',
    gradientCheckpointing: request.checkpointing === true,
    bucketByLength: false,
    onStep: ({ step, seconds: s }) => {
      if (step > warmup) seconds.push(s);
    },
  });
  const trainable = countParameters(model.trainableVariables().values());
  return { trainable, step_seconds: median(seconds), tokens_per_second: (batch * sequence) / median(seconds) };
}

/**
 * LoRA trained as a README example trains it: getPeftModel with LoraConfig (r 8, alpha 16, the
 * architecture's peft defaults), `train` with its defaults (linear schedule, length bucketing,
 * clipping 1.0, AdamW), timed by the wall clock around the call. A first call of `warmup` steps warms
 * the process up as the worker's untimed steps do; the second, of `steps` steps, is the figure.
 */
async function publicApiTraining(host: PeftHost, model: PerfModel, request: WorkerRequest, vocab: number) {
  const peft = getPeftModel(host, new LoraConfig({ r: 8, loraAlpha: 16, targetModules: model.loraTargets }));
  const run = (data: Example[]) =>
    train(peft, { data, task: 'causal-lm', padTokenId: 0, batchSize: request.batch, learningRate: 1e-4 });
  await run(stepData(request, vocab, request.warmup));
  const started = performance.now();
  const result = await run(stepData(request, vocab, request.steps, request.warmup));
  const seconds = (performance.now() - started) / 1000;
  const trainable = countParameters(peft.trainableVariables().values());
  return { trainable, step_seconds: seconds / result.steps, tokens_per_second: result.tokens / seconds };
}

function inference(model: PeftModel, method: PerfMethod, request: WorkerRequest, vocab: number): Partial<WorkerResult> {
  const ids = [tokens(request.sequence, vocab, 99)];
  const host = model.host;
  const forward = (): number => {
    const start = performance.now();
    const { logits } = host.forward({ inputIds: ids });
    logits.dataSync();
    logits.dispose();
    return performance.now() - start;
  };
  const generateMs = (count: number): number => {
    const start = performance.now();
    generate(host, { inputIds: ids, maxNewTokens: count });
    return performance.now() - start;
  };
  // ms per new token after the prompt: (prefill + 1 + N tokens) - (prefill + 1 token), over N
  const decode = (): number => (generateMs(request.newTokens + 1) - generateMs(1)) / request.newTokens;
  const both = (): [number, number] => [forward(), decode()];
  const variants: Record<string, () => [number, number]> = {
    base: () => model.withAdapterDisabled(both),
    adapted: both,
  };
  if (method.mergeable) {
    variants.merged = () => {
      model.merge();
      try {
        return both();
      } finally {
        model.unmerge();
      }
    };
  }
  const rows = Object.fromEntries(
    Object.keys(variants).map((name) => [name, { forward: [] as number[], decode: [] as number[] }]),
  );
  // rounds, each variant in every position in turn (the order rotates), so that drift of the
  // machine and the effects of the previous variant fall on every variant alike; round 0 warms up
  const entries = Object.entries(variants);
  for (let round = 0; round <= request.rounds; round++) {
    for (const [name, run] of entries.map((_, i) => entries[(i + round) % entries.length]!)) {
      const [f, d] = run();
      if (round > 0) {
        rows[name]!.forward.push(f);
        rows[name]!.decode.push(d);
      }
    }
  }
  const result: Partial<WorkerResult> = {};
  for (const [name, row] of Object.entries(rows)) {
    result[`${name}_forward_ms`] = median(row.forward);
    result[`${name}_decode_ms`] = median(row.decode);
  }
  return result;
}

function ceiling(request: WorkerRequest, model: (typeof PERF_MODELS)[number]): Partial<WorkerResult> {
  // the first products of a process run slow (the library sets up its kernels): half a second first
  const started = performance.now();
  tf.tidy(() => {
    const x = tf.randomUniform([512, 768]);
    while (performance.now() - started < 500) tf.matMul(x, tf.transpose(x)).dataSync();
  });
  const matmul_seconds = forwardMatmuls(model, request.batch * request.sequence).map(({ shape: [m, k, n] }) => {
    const a = tf.randomUniform([m, k]);
    const b = tf.randomUniform([k, n]);
    const times: number[] = [];
    for (let i = 0; i < request.warmup + request.steps; i++) {
      const start = performance.now();
      const c = tf.matMul(a, b);
      // tfjs-node runs kernels synchronously; reading one value also waits for asynchronous backends
      tf.slice(c, [0, 0], [1, 1]).dataSync();
      if (i >= request.warmup) times.push((performance.now() - start) / 1000);
      c.dispose();
    }
    a.dispose();
    b.dispose();
    return Math.min(...times); // the ceiling: the fastest repetition
  });
  return { matmul_seconds };
}

/**
 * The random weights' JavaScript arrays are garbage once libtensorflow holds the weights, but V8 may
 * keep them (~170 MB for GPT-2 small) into the training steps and their peak RSS (GPT-2 LoRA: 2,338-2,484
 * MB without, 2,332-2,358 with). loadPretrained reads a checkpoint through one reused staging buffer
 * (large ones are given back as each weight is made), and torch's random init makes no copies.
 * perf.ts starts this worker with --expose-gc.
 */
function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

export async function runWorker(request: WorkerRequest): Promise<WorkerResult> {
  const backend = await selectBackend({ backend: parseBackendRequest(request.backend, 'backend'), warnIfSlow: false });
  const model = PERF_MODELS.find((m) => m.name === request.model);
  if (!model) throw new Error(`unknown model "${request.model}"`);
  const runtime = `tfjs ${tf.version_core} on ${backend.name}`;
  let figures: Partial<WorkerResult>;
  if (request.mode === 'ceiling') figures = ceiling(request, model);
  else {
    const method = PERF_METHODS.find((m) => m.name === request.method);
    if (!method) throw new Error(`unknown method "${request.method}"`);
    const host = randomModel(perfConfig(model, request.dropout ?? 0));
    collectGarbage();
    const vocab = model.config.vocab_size as number;
    if (request.mode === 'public') figures = await publicApiTraining(host, model, request, vocab);
    else {
      const trainable = method.make(host, model);
      figures =
        request.mode === 'train'
          ? await trainSteps(trainable, request, vocab)
          : inference(trainable as PeftModel, method, request, vocab);
    }
  }
  return { runtime, ...figures, peak_rss_mb: process.resourceUsage().maxRSS / 1024 };
}

if (process.argv[1] === import.meta.filename) {
  const request = JSON.parse(process.argv[2] ?? '{}') as WorkerRequest;
  console.log(JSON.stringify(await runWorker(request)));
}
