import * as tf from '@tensorflow/tfjs-core';

/**
 * A small seeded generator (mulberry32) whose whole state is one integer, so a checkpoint can save
 * it and a resumed run draws the same numbers. For data order and sampling, not for security.
 */
export class SeededRandom {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [0, n). */
  integer(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Fisher-Yates, in place. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.integer(i + 1);
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  }

  getState(): number {
    return this.state;
  }

  setState(state: number): void {
    this.state = state >>> 0;
  }
}

/** Mixes integers into one seed (for per-epoch and per-step streams derived from a run's seed). */
export function deriveSeed(...parts: number[]): number {
  let h = 0x811c9dc5;
  for (const part of parts) {
    h = Math.imul(h ^ (part >>> 0), 0x01000193) >>> 0;
    h = Math.imul(h ^ (h >>> 13), 0x5bd1e995) >>> 0;
  }
  return h >>> 0;
}

/**
 * A seeded normal (or truncated normal) tensor. tf.randomNormal and tf.truncatedNormal treat seed 0
 * as "no seed" and draw different numbers on every call; seed 0 is mapped to another constant so
 * that a seeded run stays reproducible.
 */
export function seededNormal(shape: number[], mean: number, std: number, seed: number, truncated = false): tf.Tensor {
  const nonZero = seed === 0 ? 0x5f3759df : seed;
  return truncated
    ? tf.truncatedNormal(shape, mean, std, 'float32', nonZero)
    : tf.randomNormal(shape, mean, std, 'float32', nonZero);
}

/** The dropout mask kernel a backend may register (@peft/backend does on `tensorflow`): attrs `shape`, `rate`, `seed`. */
export const DROPOUT_MASK_KERNEL = 'PeftDropoutMask';

/**
 * tf.dropout(x, rate) with a seed: the same seed, the same mask (a layer recomputed under gradient
 * checkpointing drops what it dropped). Where the backend registers DROPOUT_MASK_KERNEL (the native
 * one: libtensorflow's Philox) the mask comes from it, else from tf.dropout's generator in
 * JavaScript; the two draw different masks.
 */
export function seededDropout<T extends tf.Tensor>(x: T, rate: number, seed: number): T {
  if (rate === 0) return x;
  if (!tf.getKernel(DROPOUT_MASK_KERNEL, tf.getBackend())) return tf.dropout(x, rate, undefined, seed) as T;
  return tf.tidy(() => {
    // no inputs: the mask is a constant of the tape, as tf.dropout's is
    const attrs = { shape: x.shape, rate, seed } as unknown as tf.NamedAttrMap;
    const mask = tf.engine().runKernel(DROPOUT_MASK_KERNEL, {}, attrs) as tf.Tensor;
    return tf.mul(x, mask) as T;
  });
}
