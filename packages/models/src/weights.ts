// Turning checkpoint tensors into frozen tf.Variables, with shapes checked against the config.
import { HostLinear, ownVariable, seededNormal, type Checkpoint } from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

import { decodesNatively, nativeWeight } from './native-weights.js';

export class WeightLoader {
  readonly variables = new Map<string, tf.Variable>();
  /** Decoded weights before they become tensors (see `Staging`). */
  private readonly decoded = new Staging();
  private readonly transposed = new Staging();

  constructor(
    readonly checkpoint: Checkpoint,
    /** Prepended to every name looked up (e.g. `transformer.` for a GPT2LMHeadModel checkpoint). */
    readonly prefix: string,
    /**
     * Prepended to the names weights are registered and projections named under: the module paths of
     * the model class the host is, where the checkpoint's differ (a BertModel checkpoint, unprefixed,
     * loaded as BertForSequenceClassification, whose body is `bert.`): adapters then name modules as
     * peft does on that class.
     */
    readonly namePrefix: string = prefix,
  ) {}

  has(name: string): boolean {
    return this.checkpoint.has(this.prefix + name);
  }

  /**
   * A frozen variable for `name` of the given shape, registered under its full checkpoint name
   * (`registeredAs` overrides it, for tensors a checkpoint stores under another name).
   */
  variable(name: string, shape: readonly number[], registeredAs = this.namePrefix + name): tf.Variable {
    const native = this.native(this.prefix + name, shape, false);
    if (native) {
      this.variables.set(registeredAs, native.variable);
      this.checkFinite(native.variable, this.prefix + name, false, native.sum);
      return native.variable;
    }
    const data = this.checkpoint.tensor(this.prefix + name, shape, this.decoded.take(size(shape)));
    if (data.dtype !== 'float32')
      throw new Error(`${this.checkpoint.location}: tensor "${this.prefix + name}" is not a float tensor`);
    const variable = this.frozen(data.values as Float32Array, shape);
    this.variables.set(registeredAs, variable);
    this.checkFinite(variable, this.prefix + name, false);
    return variable;
  }

  /**
   * A projection, held [out, in] (HostLinear): `linear` checkpoints store it so; `conv1d` (GPT-2)
   * store [in, out] and are transposed once here.
   */
  linear(
    name: string,
    inFeatures: number,
    outFeatures: number,
    layout: 'linear' | 'conv1d',
    withBias: boolean,
  ): HostLinear {
    const full = this.prefix + name;
    const named = this.namePrefix + name;
    let weight: tf.Variable<tf.Rank.R2>;
    const native = layout === 'conv1d' ? this.native(`${full}.weight`, [inFeatures, outFeatures], true) : null;
    if (layout === 'linear') {
      weight = this.variable(`${name}.weight`, [outFeatures, inFeatures]) as tf.Variable<tf.Rank.R2>;
    } else if (native) {
      weight = native.variable as tf.Variable<tf.Rank.R2>;
      this.variables.set(`${named}.weight`, weight);
      this.checkFinite(weight, `${full}.weight`, true, native.sum);
    } else {
      const count = outFeatures * inFeatures;
      const data = this.checkpoint.tensor(`${full}.weight`, [inFeatures, outFeatures], this.decoded.take(count));
      const values = transpose(data.values as Float32Array, inFeatures, outFeatures, this.transposed.take(count));
      weight = this.frozen(values, [outFeatures, inFeatures]) as tf.Variable<tf.Rank.R2>;
      this.variables.set(`${named}.weight`, weight);
      this.checkFinite(weight, `${full}.weight`, true);
    }
    const bias = withBias ? (this.variable(`${name}.bias`, [outFeatures]) as tf.Variable<tf.Rank.R1>) : null;
    return new HostLinear(named, weight, bias, layout);
  }

  /**
   * Refuses a weight that holds a NaN or an infinity, which would give NaN logits far from their
   * cause. One sum on the backend right after the weight is made, while its memory is still in
   * cache (a NaN or an infinity makes the sum non-finite), read back; only a weight whose sum is
   * not finite is read value by value (finite values can overflow a sum: such a weight passes).
   * `transposed`: held [out, in] from the file's [in, out] (Conv1D), whose coordinates the message gives.
   * `sum`: where the native decoding computed it already (from the stored values, see
   * native-weights.ts).
   */
  private checkFinite(weight: tf.Tensor, name: string, transposed: boolean, sum = this.sum(weight)): void {
    if (Number.isFinite(sum)) return;
    const values = weight.dataSync() as Float32Array;
    let first = -1;
    let count = 0;
    for (let i = 0; i < values.length; i++) {
      if (Number.isFinite(values[i]!)) continue;
      if (first < 0) first = i;
      count++;
    }
    if (first < 0) return;
    const shape = transposed ? [...weight.shape].reverse() : weight.shape;
    const at = coordinatesOf(first, weight.shape);
    if (transposed) at.reverse();
    throw new Error(
      `${this.checkpoint.fileOf?.(name) ?? this.checkpoint.location}: tensor "${name}" [${shape.join(', ')}] holds ` +
        `${count} non-finite value${count === 1 ? '' : 's'} (the first, ${values[first]}, at [${at.join(', ')}]): ` +
        'the model would compute NaN',
    );
  }

  private sum(weight: tf.Tensor): number {
    const total = tf.sum(weight);
    const value = total.dataSync()[0]!;
    total.dispose();
    return value;
  }

  /**
   * The weight `name` decoded by libtensorflow from its stored bytes (see native-weights.ts), with
   * the sum of its values; or null where the backend or the checkpoint cannot (then it is decoded
   * in JavaScript).
   */
  private native(
    name: string,
    shape: readonly number[],
    transpose: boolean,
  ): { variable: tf.Variable; sum: number } | null {
    if (!this.checkpoint.stored || !decodesNatively()) return null;
    const stored = this.checkpoint.stored(name, shape);
    const decoded = nativeWeight(stored, transpose);
    return decoded ? { variable: ownVariable(decoded.weight, false), sum: decoded.sum } : null;
  }

  /**
   * A frozen variable of `values`, handed to the backend now: a copy it makes (always of staging
   * memory; of other arrays where they are not aligned for it) then happens one weight at a time,
   * not for all of them at the first forward pass with every array still held.
   */
  private frozen(values: Float32Array, shape: readonly number[]): tf.Variable {
    const tensor = tf.tensor(values, [...shape], 'float32');
    settle(tensor);
    return ownVariable(tensor, false);
  }
}

/**
 * A layer transformers would create for a head the checkpoint lacks (a classifier, BERT's pooler):
 * weight N(0, 0.02), bias 0, from `seed`.
 */
export function newHead(name: string, inputs: number, outputs: number, withBias: boolean, seed: number): HostLinear {
  // drawn [in, out] and held [out, in]: the values of a seed stay those it gave before weights were held so
  const drawn = seededNormal([inputs, outputs], 0, 0.02, seed);
  const weight = ownVariable(tf.transpose(drawn), false) as tf.Variable<tf.Rank.R2>;
  drawn.dispose();
  const bias = withBias ? (ownVariable(tf.zeros([outputs]), false) as tf.Variable<tf.Rank.R1>) : null;
  return new HostLinear(name, weight, bias, 'linear');
}

/**
 * A table a host computes and keeps (rotary frequencies): a frozen variable like the weights, so
 * that a construction that fails after it frees it with them (load-pretrained.ts).
 */
export function keptTable(values: Float32Array): tf.Variable<tf.Rank.R1> {
  return ownVariable(tf.tensor1d(values), false) as tf.Variable<tf.Rank.R1>;
}

/** The place of the `index`-th value of a row-major tensor of `shape`. */
function coordinatesOf(index: number, shape: readonly number[]): number[] {
  const coordinates = new Array<number>(shape.length).fill(0);
  let rest = index;
  for (let axis = shape.length - 1; axis >= 0; axis--) {
    coordinates[axis] = rest % shape[axis]!;
    rest = Math.floor(rest / shape[axis]!);
  }
  return coordinates;
}

function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Weights larger than this get an array of their own rather than growing the staging buffer for good. */
const MAX_STAGED_VALUES = 16 * 1024 * 1024;

/**
 * Where weights are decoded when the backend copies a new tensor's values into memory of its own
 * (checked once per backend: `copiesOnSettle`). Reused from one weight to the next, so loading
 * touches fresh memory only for the backend's copies, not once more per weight for arrays that the
 * collector frees later. Elsewhere (the cpu backend computes on the arrays themselves) it gives
 * nothing and each weight is decoded into an array of its own.
 */
class Staging {
  private buffer: Float32Array | null = null;

  take(count: number): Float32Array | undefined {
    if (!copiesOnSettle()) return undefined;
    if (count > MAX_STAGED_VALUES) return unaligned(count);
    if (!this.buffer || this.buffer.length < count) this.buffer = unaligned(count);
    return this.buffer.subarray(0, count);
  }
}

/**
 * `count` floats 4 bytes into their buffer: allocations are at least 16-byte aligned, so the view
 * never is, and TensorFlow, which computes on a typed array's own memory when it is aligned for its
 * vector instructions, copies it (see `copiesOnSettle`).
 */
function unaligned(count: number): Float32Array {
  return new Float32Array(new ArrayBuffer((count + 1) * 4), 4, count);
}

/**
 * Has the backend take a new tensor's values now; true when it could. tfjs-node hands a typed array
 * to TensorFlow only when an op first uses the tensor.
 */
function settle(tensor: tf.Tensor): boolean {
  const backend = tf.backend() as { getInputTensorIds?: (tensors: tf.Tensor[]) => unknown };
  if (typeof backend.getInputTensorIds !== 'function') return false;
  backend.getInputTensorIds([tensor]);
  return true;
}

const copying = new WeakMap<object, boolean>();

/**
 * Whether a tensor made from an unaligned view and settled holds its own copy, so that the view's
 * memory can take the next weight. True on tfjs-node, where TensorFlow copies data that is not
 * aligned for its vector instructions (and shares aligned data); checked on a small canary per
 * backend, never assumed: where it fails every weight gets an array of its own.
 */
function copiesOnSettle(): boolean {
  const backend = tf.backend();
  let known = copying.get(backend);
  if (known === undefined) {
    const view = unaligned(4).fill(1);
    const canary = tf.tensor(view, [4], 'float32');
    known = settle(canary);
    if (known) {
      view.fill(2);
      known = canary.dataSync()[0] === 1;
    }
    canary.dispose();
    copying.set(backend, known);
  }
  return known;
}

/**
 * A [rows, cols] row-major matrix as [cols, rows] (into `out` when given), in blocks that stay in
 * cache. Here rather than a backend transpose: the backend never holds a weight and its transposed
 * twin at once.
 */
export function transpose(values: Float32Array, rows: number, cols: number, out?: Float32Array): Float32Array {
  const result = out ?? new Float32Array(rows * cols);
  const block = 32;
  for (let r0 = 0; r0 < rows; r0 += block) {
    const r1 = Math.min(r0 + block, rows);
    for (let c0 = 0; c0 < cols; c0 += block) {
      const c1 = Math.min(c0 + block, cols);
      for (let r = r0; r < r1; r++) {
        const from = r * cols;
        for (let c = c0; c < c1; c++) result[c * rows + r] = values[from + c]!;
      }
    }
  }
  return result;
}
