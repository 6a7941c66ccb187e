// Turning checkpoint tensors into frozen tf.Variables, with shapes checked against the config.
import { HostLinear, ownVariable, type Checkpoint } from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

export class WeightLoader {
  readonly variables = new Map<string, tf.Variable>();

  constructor(
    readonly checkpoint: Checkpoint,
    /** Prepended to every name looked up (e.g. `transformer.` for a GPT2LMHeadModel checkpoint). */
    readonly prefix: string,
  ) {}

  has(name: string): boolean {
    return this.checkpoint.has(this.prefix + name);
  }

  /**
   * A frozen variable for `name` of the given shape, registered under its full checkpoint name
   * (`registeredAs` overrides it, for tensors a checkpoint stores under another name).
   */
  variable(name: string, shape: readonly number[], registeredAs = this.prefix + name): tf.Variable {
    const data = this.checkpoint.tensor(this.prefix + name, shape);
    if (data.dtype !== 'float32')
      throw new Error(`${this.checkpoint.location}: tensor "${this.prefix + name}" is not a float tensor`);
    const variable = ownVariable(tf.tensor(data.values, [...shape], 'float32'), false);
    this.variables.set(registeredAs, variable);
    return variable;
  }

  /**
   * A projection. `linear` checkpoints store [out, in] and are transposed once here; `conv1d`
   * (GPT-2) store [in, out] already.
   */
  linear(
    name: string,
    inFeatures: number,
    outFeatures: number,
    layout: 'linear' | 'conv1d',
    withBias: boolean,
  ): HostLinear {
    const full = this.prefix + name;
    let weight: tf.Variable<tf.Rank.R2>;
    if (layout === 'conv1d') {
      weight = this.variable(`${name}.weight`, [inFeatures, outFeatures]) as tf.Variable<tf.Rank.R2>;
    } else {
      const data = this.checkpoint.tensor(`${full}.weight`, [outFeatures, inFeatures]);
      weight = tf.tidy(() =>
        tf.variable(tf.transpose(tf.tensor2d(data.values as Float32Array, [outFeatures, inFeatures])), false),
      ) as tf.Variable<tf.Rank.R2>;
      this.variables.set(`${full}.weight`, weight);
    }
    const bias = withBias ? (this.variable(`${name}.bias`, [outFeatures]) as tf.Variable<tf.Rank.R1>) : null;
    return new HostLinear(full, weight, bias, layout);
  }
}
