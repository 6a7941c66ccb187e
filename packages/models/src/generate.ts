// Autoregressive generation with a key/value cache: the prompt is processed once, then each new
// token costs one position. Greedy and sampling (temperature, top-k, top-p, seeded), stop tokens,
// left-padded batches, as Hugging Face `generate` does them.
import { hostOf, type HostSource, type KeyValueCache, type PeftHost } from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

import { lmHeadLogits } from './ops.js';

export interface GenerateOptions {
  /** [B, T] prompt ids; pad on the left for batches of different lengths. */
  inputIds: number[][];
  /** [B, T], 0 at padding. Default all ones. */
  attentionMask?: number[][];
  maxNewTokens: number;
  /** Sample instead of taking the most likely token (default false: greedy). */
  doSample?: boolean;
  /** Divides the logits before sampling (default 1). */
  temperature?: number;
  /** Keep only the k most likely tokens (0 = all). */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (1 = all). */
  topP?: number;
  /** Seed of the sampler: the same seed gives the same tokens. */
  seed?: number;
  /** A sequence that produces one of these stops; later positions get `padTokenId`. */
  stopTokens?: readonly number[];
  padTokenId?: number;
  /** Called after each step with the new tokens (streaming). */
  onToken?: (tokens: number[], step: number) => void;
}

export interface GenerateResult {
  /** Prompt followed by the generated tokens, [B, T + generated]. */
  sequences: number[][];
  /** New tokens per sequence, without padding after a stop. */
  generated: number[][];
}

/** mulberry32: a small seeded generator, enough for choosing tokens. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/** Temperature, then top-k, then top-p (nucleus), then a draw; as HF's logits warpers order them. */
function sample(row: Float32Array, options: GenerateOptions, random: () => number): number {
  const temperature = options.temperature ?? 1;
  let order = Array.from(row.keys()).sort((a, b) => row[b]! - row[a]!);
  if (options.topK && options.topK > 0) order = order.slice(0, options.topK);
  const top = row[order[0]!]! / temperature;
  let weights = order.map((i) => Math.exp(row[i]! / temperature - top));
  const total = weights.reduce((a, b) => a + b, 0);
  weights = weights.map((w) => w / total);
  const topP = options.topP ?? 1;
  if (topP < 1) {
    let cumulative = 0;
    let keep = 0;
    while (keep < weights.length && cumulative < topP) cumulative += weights[keep++]!;
    order = order.slice(0, Math.max(1, keep));
    weights = weights.slice(0, order.length);
  }
  const sum = weights.reduce((a, b) => a + b, 0);
  let draw = random() * sum;
  for (let i = 0; i < order.length; i++) {
    draw -= weights[i]!;
    if (draw <= 0) return order[i]!;
  }
  return order[order.length - 1]!;
}

function validate(options: GenerateOptions): void {
  if (!Number.isInteger(options.maxNewTokens) || options.maxNewTokens < 0) {
    throw new Error(`maxNewTokens: expected a non-negative integer, got ${options.maxNewTokens}`);
  }
  if (options.temperature !== undefined && !(options.temperature > 0)) {
    throw new Error(`temperature: expected a positive number, got ${options.temperature}`);
  }
  if (options.topP !== undefined && !(options.topP > 0 && options.topP <= 1)) {
    throw new Error(`topP: expected a number in (0, 1], got ${options.topP}`);
  }
  if (options.topK !== undefined && !(Number.isInteger(options.topK) && options.topK >= 0)) {
    throw new Error(`topK: expected a non-negative integer, got ${options.topK}`);
  }
}

/**
 * Refuses, before any compute, a run that would pass the end of the model's position table
 * (learned positions: GPT-2, BERT; rotary ones have no end): the virtual tokens of an adapter, the
 * prompt and every new token but the last each take a position. Chosen over stopping at the limit
 * with a shorter result, which a caller who does not look would take for the whole answer.
 */
function checkPositions(host: PeftHost, options: GenerateOptions): void {
  const maxPositions = host.config.maxPositions;
  if (!Number.isFinite(maxPositions) || options.maxNewTokens === 0) return;
  const promptLength = options.inputIds[0]?.length ?? 0;
  const virtual = host.hooks.virtualTokens;
  const prompt = `a prompt of ${promptLength} tokens${virtual > 0 ? ` (and ${virtual} virtual ones)` : ''}`;
  if (virtual + promptLength > maxPositions) {
    throw new Error(`inputIds: ${prompt} is longer than the model's ${maxPositions} positions`);
  }
  const needed = virtual + promptLength + options.maxNewTokens - 1;
  if (needed > maxPositions) {
    throw new Error(
      `maxNewTokens: ${options.maxNewTokens} new tokens after ${prompt} need ${needed} positions, the model has ` +
        `${maxPositions}: at most ${maxPositions - virtual - promptLength + 1} new tokens fit`,
    );
  }
}

function disposeCache(cache: KeyValueCache | undefined): void {
  for (const layer of cache?.layers ?? []) {
    layer.key.dispose();
    layer.value.dispose();
  }
}

/**
 * Generates up to `maxNewTokens` tokens after each prompt, with a base model or a `PeftModel`
 * (its active adapter; prefix and prompt methods' virtual tokens included). A run that would not
 * fit the model's position table is refused before it starts, saying how many new tokens fit.
 *
 * ```ts
 * const { generated } = generate(peftModel, { inputIds: [ids], maxNewTokens: 20, stopTokens: [eos] });
 * ```
 */
export function generate(model: HostSource, options: GenerateOptions): GenerateResult {
  validate(options);
  const host = hostOf(model);
  checkPositions(host, options);
  const batch = options.inputIds.length;
  const mask = options.attentionMask?.map((row) => [...row]) ?? options.inputIds.map((row) => row.map(() => 1));
  const random = seededRandom(options.seed ?? 0);
  const stop = new Set(options.stopTokens ?? []);
  const padTokenId = options.padTokenId ?? options.stopTokens?.[0] ?? 0;
  const sequences = options.inputIds.map((row) => [...row]);
  const generated: number[][] = sequences.map(() => []);
  const finished = new Array<boolean>(batch).fill(false);
  // Positions as HF generate derives them from the mask (so left padding does not shift them),
  // after the key/value prefix. With an input-embedding hook, peft ignores position ids: so do we.
  const explicitPositions = host.hooks.inputEmbedding === null;
  const offset = host.hooks.keyValuePrefix?.length ?? 0;
  const nextPosition = mask.map((row) => offset + row.reduce((a, b) => a + b, 0));
  let positionIds: number[][] | undefined = explicitPositions
    ? mask.map((row) => {
        let seen = -1;
        return row.map((m) => (m ? offset + ++seen : 1));
      })
    : undefined;

  let cache: KeyValueCache | undefined;
  let stepIds = options.inputIds;
  try {
    for (let step = 0; step < options.maxNewTokens && !finished.every(Boolean); step++) {
      const output = host.forward({
        inputIds: stepIds,
        attentionMask: mask,
        ...(positionIds ? { positionIds } : {}),
        ...(cache ? { cache } : {}),
        useCache: true,
        // the head's input back, not [B, T, vocabulary] logits: only the last position's are needed
        // (a prompt of 16 tokens ran the 50,257-row head 16 times for one row)
        headless: true,
      });
      disposeCache(cache);
      cache = output.cache;
      const last = tf.tidy(() => {
        const states = output.logits as tf.Tensor3D; // logits, or with an lmHead its input
        const final = tf.slice(states, [0, states.shape[1] - 1, 0], [batch, 1, -1]) as tf.Tensor3D;
        const logits = output.lmHead ? lmHeadLogits(final, output.lmHead.weight, output.lmHead.softCap) : final;
        return tf.reshape(logits, [batch, -1]);
      });
      output.logits.dispose();
      const values = last.dataSync() as Float32Array;
      const vocabulary = last.shape[1]!;
      last.dispose();
      const chosen: number[] = [];
      for (let b = 0; b < batch; b++) {
        const row = values.subarray(b * vocabulary, (b + 1) * vocabulary);
        let token = options.doSample ? sample(row, options, random) : argmax(row);
        if (finished[b]) token = padTokenId;
        else {
          generated[b]!.push(token);
          if (stop.has(token)) finished[b] = true;
        }
        chosen.push(token);
        sequences[b]!.push(token);
        mask[b]!.push(1);
      }
      options.onToken?.(chosen, step);
      stepIds = chosen.map((token) => [token]);
      if (explicitPositions) positionIds = nextPosition.map((position) => [position]);
      for (let b = 0; b < batch; b++) nextPosition[b]! += 1;
    }
  } finally {
    disposeCache(cache);
  }
  return { sequences, generated };
}
