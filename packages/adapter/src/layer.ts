// One bottleneck adapter at one sublayer of one layer: down-project, nonlinearity, up-project,
// with its own residual, as AdapterHub's Adapter / BottleneckLayer compute it.
import {
  activation,
  addReleasing,
  deriveSeed,
  seededDropout,
  layerNorm,
  ownVariable,
  seededNormal,
  type ForwardContext,
  type SublayerSurroundings,
} from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

import type { BottleneckConfig } from './config.js';

const LAYER_NORM_EPSILON = 1e-5; // torch.nn.LayerNorm's default, as AdapterHub uses

interface Norm {
  weight: tf.Variable<tf.Rank.R1>;
  bias: tf.Variable<tf.Rank.R1>;
}

export class BottleneckModule {
  /** Linear weights held [in, out]; AdapterHub (torch) stores them [out, in]. */
  readonly down: tf.Variable<tf.Rank.R2>;
  readonly downBias: tf.Variable<tf.Rank.R1>;
  readonly up: tf.Variable<tf.Rank.R2>;
  readonly upBias: tf.Variable<tf.Rank.R1>;
  readonly normBefore: Norm | null;
  readonly normAfter: Norm | null;
  active = false;
  private readonly act: (x: tf.Tensor) => tf.Tensor;

  constructor(
    /** AdapterHub's module path: `transformer.h.0.output_adapters.adapters.<name>`. */
    readonly path: string,
    readonly adapterName: string,
    readonly config: BottleneckConfig,
    readonly hidden: number,
    readonly size: number,
    private readonly seed: number,
  ) {
    this.act = activation(config.nonLinearity, 'BottleneckConfig.nonLinearity');
    const [down, up] = tf.tidy(() => {
      switch (config.initWeights) {
        case 'mam_adapter': // exact identity at the start: zero up projection
          return [
            tf.randomUniform([hidden, size], -1 / Math.sqrt(hidden), 1 / Math.sqrt(hidden), 'float32', seed),
            tf.zeros([size, hidden]),
          ];
        case 'houlsby': // truncated N(0, 0.01) within two standard deviations
          return [
            seededNormal([hidden, size], 0, 1e-2, seed, true),
            seededNormal([size, hidden], 0, 1e-2, seed + 1, true),
          ];
        default: // 'bert': N(0, 0.02)
          return [seededNormal([hidden, size], 0, 0.02, seed), seededNormal([size, hidden], 0, 0.02, seed + 1)];
      }
    });
    this.down = ownVariable(down!, true) as tf.Variable<tf.Rank.R2>;
    this.up = ownVariable(up!, true) as tf.Variable<tf.Rank.R2>;
    this.downBias = ownVariable(tf.zeros([size]), true) as tf.Variable<tf.Rank.R1>;
    this.upBias = ownVariable(tf.zeros([hidden]), true) as tf.Variable<tf.Rank.R1>;
    const norm = (): Norm => ({
      weight: ownVariable(tf.ones([hidden]), true) as tf.Variable<tf.Rank.R1>,
      bias: ownVariable(tf.zeros([hidden]), true) as tf.Variable<tf.Rank.R1>,
    });
    this.normBefore = config.lnBefore ? norm() : null;
    this.normAfter = config.lnAfter ? norm() : null;
  }

  /** The hook: the sublayer output h [B, T, d] with what surrounds it -> what the host adds back. */
  apply(h: tf.Tensor3D, context: ForwardContext, { residual, norm }: SublayerSurroundings): tf.Tensor3D {
    let rows: tf.Tensor3D | null = null;
    if (context.sampleAdapters) {
      const mine = context.sampleAdapters.map((name) => (name === this.adapterName ? 1 : 0));
      if (!mine.includes(1)) return h;
      rows = tf.tensor3d(mine, [mine.length, 1, 1]);
    } else if (!this.active) return h;
    const adapted = this.isParallel(h, residual, context) ?? this.sequential(h, residual, norm, context);
    const out = (rows ? tf.add(h, tf.mul(rows, tf.sub(adapted, h))) : adapted) as tf.Tensor3D;
    return out;
  }

  /** ParBn: the adapter reads the sublayer input; its scaled output joins the sublayer output. */
  private isParallel(h: tf.Tensor3D, residual: tf.Tensor3D, context: ForwardContext): tf.Tensor3D | null {
    if (!this.config.isParallel) return null;
    return tf.add(h, this.afterNorm(this.scaledUp(residual, context))) as tf.Tensor3D;
  }

  /** up(down(x))·scaling, with dropout in training. */
  private scaledUp(x: tf.Tensor3D, context: ForwardContext): tf.Tensor {
    const up = tf.mul(this.bottleneck(x), this.config.scaling);
    return context.training && this.config.dropout > 0
      ? seededDropout(up, this.config.dropout, deriveSeed(this.seed, context.seed ?? 0))
      : up;
  }

  private afterNorm(x: tf.Tensor): tf.Tensor {
    return this.normAfter ? layerNorm(x, this.normAfter.weight, this.normAfter.bias, LAYER_NORM_EPSILON) : x;
  }

  private bottleneck(x: tf.Tensor3D): tf.Tensor3D {
    const [batch, length] = x.shape;
    const input = this.normBefore ? layerNorm(x, this.normBefore.weight, this.normBefore.bias, LAYER_NORM_EPSILON) : x;
    const flat = tf.reshape(input, [-1, this.hidden]) as tf.Tensor2D;
    const down = this.act(addReleasing(tf.matMul(flat, this.down), this.downBias)) as tf.Tensor2D; // [N, m]
    const up = addReleasing(tf.matMul(down, this.up), this.upBias); // [N, d]
    return tf.reshape(up, [batch, length, this.hidden]) as tf.Tensor3D;
  }

  private sequential(
    h: tf.Tensor3D,
    residual: tf.Tensor3D,
    norm: SublayerSurroundings['norm'],
    context: ForwardContext,
  ): tf.Tensor3D {
    const { config } = this;
    let hidden = h;
    let adapterResidual: tf.Tensor3D = h; // residual_before_ln: the sublayer output itself
    if (config.originalLnBefore)
      hidden = norm ? norm(addReleasing(h, residual) as tf.Tensor3D) : (addReleasing(h, residual) as tf.Tensor3D);
    if (!config.residualBeforeLn) adapterResidual = hidden;
    const up = this.scaledUp(hidden, context);
    const out = config.adapterResidualBeforeLn
      ? this.afterNorm(addReleasing(up, adapterResidual))
      : addReleasing(this.afterNorm(up), adapterResidual);
    return out as tf.Tensor3D;
  }

  /**
   * AdapterHub's keys and stored shapes of the module at `path`, without making it: a file is checked
   * against them before any tensor is allocated. The same keys as entries().
   */
  static savedShapes(
    path: string,
    config: BottleneckConfig,
    hidden: number,
    size: number,
  ): { key: string; shape: number[] }[] {
    const downIndex = config.lnBefore ? 1 : 0;
    const norm = (name: string): { key: string; shape: number[] }[] => [
      { key: `${path}.${name}.weight`, shape: [hidden] },
      { key: `${path}.${name}.bias`, shape: [hidden] },
    ];
    return [
      { key: `${path}.adapter_down.${downIndex}.weight`, shape: [size, hidden] },
      { key: `${path}.adapter_down.${downIndex}.bias`, shape: [size] },
      { key: `${path}.adapter_up.weight`, shape: [hidden, size] },
      { key: `${path}.adapter_up.bias`, shape: [hidden] },
      ...(config.lnBefore ? norm('adapter_down.0') : []),
      ...(config.lnAfter ? norm('adapter_norm_after') : []),
    ];
  }

  /** Every variable by AdapterHub's key, with the [out, in] layout torch uses for Linear weights. */
  entries(): { key: string; variable: tf.Variable; transposed: boolean }[] {
    const downIndex = this.normBefore ? 1 : 0;
    const list = [
      { key: `${this.path}.adapter_down.${downIndex}.weight`, variable: this.down as tf.Variable, transposed: true },
      { key: `${this.path}.adapter_down.${downIndex}.bias`, variable: this.downBias as tf.Variable, transposed: false },
      { key: `${this.path}.adapter_up.weight`, variable: this.up as tf.Variable, transposed: true },
      { key: `${this.path}.adapter_up.bias`, variable: this.upBias as tf.Variable, transposed: false },
    ];
    if (this.normBefore) {
      list.push({ key: `${this.path}.adapter_down.0.weight`, variable: this.normBefore.weight, transposed: false });
      list.push({ key: `${this.path}.adapter_down.0.bias`, variable: this.normBefore.bias, transposed: false });
    }
    if (this.normAfter) {
      list.push({ key: `${this.path}.adapter_norm_after.weight`, variable: this.normAfter.weight, transposed: false });
      list.push({ key: `${this.path}.adapter_norm_after.bias`, variable: this.normAfter.bias, transposed: false });
    }
    return list;
  }

  /**
   * Keys AdapterHub also writes for the same variables: with lnBefore, `adapter_norm_before.*` is the
   * LayerNorm `adapter_down.0.*` again.
   */
  aliases(): { key: string; of: string }[] {
    if (!this.normBefore) return [];
    return ['weight', 'bias'].map((field) => ({
      key: `${this.path}.adapter_norm_before.${field}`,
      of: `${this.path}.adapter_down.0.${field}`,
    }));
  }

  dispose(): void {
    for (const { variable } of this.entries()) variable.dispose();
  }
}
