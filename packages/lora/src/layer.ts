// One LoRA update beside one frozen projection: y = Wx + (x·Aᵀ·Bᵀ)·scale, A [r, in], B [out, r].
// Held transposed (Aᵀ [in, r], Bᵀ [r, out]) so that both products run without a transpose.
import type { ForwardContext, HostLinear, LinearDeltaGraph } from '@peft/core';
import { deriveSeed, seededDropout, seededNormal } from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

import type { LoraInit } from './config.js';

export interface LoraLayerOptions {
  adapterName: string;
  r: number;
  scale: number;
  dropout: number;
  init: LoraInit;
  seed: number;
}

/** Numbers each layer: a graph written for one layer reads its own weights (LinearDeltaGraph.key). */
let layerCount = 0;

export class LoraLayer {
  /** Aᵀ [in, r] */
  readonly down: tf.Variable<tf.Rank.R2>;
  /** Bᵀ [r, out] */
  readonly up: tf.Variable<tf.Rank.R2>;
  readonly r: number;
  readonly scale: number;
  readonly dropout: number;
  active = false;
  merged = false;
  private readonly seed: number;
  private readonly id = layerCount++;

  constructor(
    readonly linear: HostLinear,
    readonly options: LoraLayerOptions,
  ) {
    const { r, init, seed } = options;
    const { inFeatures, outFeatures } = linear;
    this.r = r;
    this.scale = options.scale;
    this.dropout = options.dropout;
    this.seed = seed;
    // kaiming_uniform(a=√5) on A [r, in] is U(-1/√in, 1/√in); 'gaussian' is N(0, 1/r) (as peft)
    const down =
      init === 'gaussian'
        ? seededNormal([inFeatures, r], 0, 1 / r, seed)
        : tf.randomUniform([inFeatures, r], -1 / Math.sqrt(inFeatures), 1 / Math.sqrt(inFeatures), 'float32', seed);
    // B starts at zero so training starts from the base model; `false` keeps nn.Linear's init (B ≠ 0)
    const up =
      init === false
        ? tf.randomUniform([r, outFeatures], -1 / Math.sqrt(r), 1 / Math.sqrt(r), 'float32', seed + 1)
        : tf.zeros([r, outFeatures]);
    this.down = tf.variable(down, true) as tf.Variable<tf.Rank.R2>;
    this.up = tf.variable(up, true) as tf.Variable<tf.Rank.R2>;
    down.dispose();
    up.dispose();
  }

  /** The delta path installed on the host projection. */
  delta(x: tf.Tensor2D, context: ForwardContext): tf.Tensor2D | null {
    if (this.merged) return null;
    let rows: tf.Tensor2D | null = null;
    if (context.sampleAdapters) {
      const mine = context.sampleAdapters.map((name) => (name === this.options.adapterName ? 1 : 0));
      if (!mine.includes(1)) return null;
      // x rows are sample-major: sample b owns rows b·T .. b·T + T - 1
      const perRow = mine.flatMap((m) => new Array<number>(context.sequenceLength).fill(m));
      rows = tf.tensor2d(perRow, [perRow.length, 1]);
    } else if (!this.active) return null;
    let input: tf.Tensor2D = x;
    if (context.training && this.dropout > 0) {
      input = seededDropout(x, this.dropout, deriveSeed(this.seed, context.seed ?? 0));
    }
    // the scale applied to the [N, r] product: one small op instead of one the size of the output
    let out = tf.matMul(tf.mul(tf.matMul(input, this.down), this.scale), this.up) as tf.Tensor2D; // [N, out]
    if (rows) out = tf.mul(out, rows);
    return out;
  }

  /**
   * `delta` as graph ops for an inference pass (no dropout there): (x·Aᵀ·scale)·Bᵀ, or null when it
   * adds nothing (merged, inactive). Mixed-adapter batches are not asked for (hosts run those op by op).
   */
  graphForm(context: ForwardContext): LinearDeltaGraph | null {
    if (context.sampleAdapters || context.training) {
      throw new Error('LoRA: only an inference pass of one adapter has a graph form (no mixed batch, no training)');
    }
    if (this.merged || !this.active) return null;
    return {
      key: `lora#${this.id} scale ${this.scale}`,
      write: (graph, x, weight) =>
        graph.matMul(graph.mul(graph.matMul(x, weight(this.down)), graph.float(this.scale)), weight(this.up)),
    };
  }

  /** ΔW in the host's (and peft's) [out, in] orientation: B·A·scale. */
  deltaWeight(): tf.Tensor2D {
    return tf.tidy(() => tf.mul(tf.matMul(this.up, this.down, true, true), this.scale) as tf.Tensor2D);
  }

  merge(): void {
    if (this.merged) return;
    const delta = this.deltaWeight();
    try {
      this.linear.merge(delta);
    } finally {
      delta.dispose();
    }
    this.merged = true;
  }

  unmerge(): void {
    if (!this.merged) return;
    const delta = this.deltaWeight();
    try {
      this.linear.merge(delta, -1);
    } finally {
      delta.dispose();
    }
    this.merged = false;
  }

  dispose(): void {
    this.down.dispose();
    this.up.dispose();
  }
}
