// Optimizers over named variables, written out (tfjs has no AdamW) and matching torch.optim's
// update rules, with their state exportable for checkpoints.
import * as tf from '@tensorflow/tfjs-core';

import { ownVariable } from './variables.js';

export interface OptimizerState {
  /** Optimizer steps taken. */
  step: number;
  /** Slot tensors by `<variable name>/<slot>`. */
  slots: Record<string, tf.Tensor>;
}

export interface Optimizer {
  readonly name: string;
  /**
   * Applies one update; `gradients` by variable name, `learningRate` for this step. The gradients
   * count multiplied by `gradientScale` (default 1): clipping folded into the update, no extra pass.
   */
  apply(
    variables: ReadonlyMap<string, tf.Variable>,
    gradients: ReadonlyMap<string, tf.Tensor>,
    learningRate: number,
    gradientScale?: number,
  ): void;
  getState(): OptimizerState;
  setState(state: OptimizerState): void;
  dispose(): void;
}

export interface AdamWOptions {
  beta1?: number; // default 0.9
  beta2?: number; // default 0.999
  epsilon?: number; // default 1e-8
  /** Decoupled weight decay (Loshchilov & Hutter): p -= lr·wd·p before the Adam step. Default 0.01 (torch). */
  weightDecay?: number;
  /**
   * Where the backend has a fused AdamW kernel (tensorflow), parameters of at least this many
   * elements use it. Default FUSED_ADAMW_MIN_ELEMENTS; 0: every parameter; Infinity: none.
   */
  fusedMinElements?: number;
}

/**
 * A backend's fused AdamW step: one kernel for what the composed update does in a dozen passes over
 * the parameter's memory, with the two moments kept in the backend as state it updates in place.
 * `@peft/backend` registers the three kernels on the tensorflow backend; where the active backend
 * lacks them, AdamW composes the step from elementwise ops.
 *
 * - `ADAMW_KERNEL`: inputs `{ param, expAvg, expAvgSq, gradient }`, param and gradient float32 of
 *   one shape, the moments as made by ADAMW_MOMENT_KERNEL; one step of torch.optim.AdamW with the
 *   attributes below. Output the parameter after the step (a new tensor; the input is left as it
 *   was); the moments are updated in place.
 * - `ADAMW_MOMENT_KERNEL`: inputs `{ value }` (float32); output a moment holding value's values
 *   (an opaque tensor; `value` stays as it was, whatever happens to the moment).
 * - `ADAMW_READ_KERNEL`: inputs `{ moment }`; output its values now, float32 (later steps leave
 *   the output as it is).
 */
export const ADAMW_KERNEL = 'PeftAdamW';
export const ADAMW_MOMENT_KERNEL = 'PeftAdamWMoment';
export const ADAMW_READ_KERNEL = 'PeftAdamWRead';

export interface AdamWKernelAttrs {
  beta1: number;
  beta2: number;
  /** β1^t and β2^t at this step t (the bias corrections are 1 - β^t). */
  beta1Power: number;
  beta2Power: number;
  learningRate: number;
  /** torch's ε: added to √v̂ (the bias-corrected second moment's root). */
  epsilon: number;
  /** The parameter is multiplied by this before the step: 1 - lr·weight decay (1: none). */
  decay: number;
  /** The gradient counts multiplied by this (clipping). */
  gradientScale: number;
}

/**
 * Parameters smaller than this take the composed update even where the fused kernel exists: its
 * fixed cost per call is the larger one there (tensorflow, per parameter: 6,144 elements 370 µs
 * composed against 453 fused; 65,536: 756 against 572; 1,048,576: 4.6 against 2.7 ms).
 */
export const FUSED_ADAMW_MIN_ELEMENTS = 32_768;

/** Throws `<optimizer>: <option>: expected ...` unless `value` is a finite number in the range. */
function checkOptimizerNumber(
  owner: string,
  name: string,
  value: number,
  range: { min: number; below?: number; above?: boolean },
): void {
  const inRange =
    typeof value === 'number' &&
    Number.isFinite(value) &&
    (range.above ? value > range.min : value >= range.min) &&
    (range.below === undefined || value < range.below);
  if (inRange) return;
  const expected =
    range.below !== undefined
      ? `a number from ${range.min} up to (not including) ${range.below}`
      : `a finite number ${range.above ? '>' : '>='} ${range.min}`;
  throw new Error(`${owner}: ${name}: expected ${expected}, got ${value}`);
}

/**
 * A fused-kernel moment holding `value`'s values; kept, since a step may run inside the caller's
 * tf.tidy, which must not take the moments with it.
 */
function backendMoment(value: tf.Tensor): tf.Tensor {
  return tf.keep(tf.engine().runKernel(ADAMW_MOMENT_KERNEL, { value }) as tf.Tensor);
}

/** target = value(), the value computed in a scope of its own (its temporaries freed at once). */
function assignComputed(target: tf.Variable, value: () => tf.Tensor): void {
  const next = tf.tidy(value);
  target.assign(next);
  next.dispose();
}

/** torch.optim.AdamW. */
export class AdamW implements Optimizer {
  readonly name = 'adamw';
  private step = 0;
  /** Moments of the composed update, and those restored by setState until a fused step takes them. */
  private readonly slots = new Map<string, tf.Variable>();
  /** Moments kept by the backend's fused kernel (ADAMW_MOMENT_KERNEL), by slot name. */
  private readonly moments = new Map<string, tf.Tensor>();
  /** What getState read out of `moments`; disposed at the next step or getState. */
  private snapshots: tf.Tensor[] = [];
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly epsilon: number;
  private readonly weightDecay: number;
  private readonly fusedMinElements: number;

  constructor(options: AdamWOptions = {}) {
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.epsilon = options.epsilon ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0.01;
    this.fusedMinElements = options.fusedMinElements ?? FUSED_ADAMW_MIN_ELEMENTS;
    checkOptimizerNumber('AdamW', 'beta1', this.beta1, { min: 0, below: 1 });
    checkOptimizerNumber('AdamW', 'beta2', this.beta2, { min: 0, below: 1 });
    checkOptimizerNumber('AdamW', 'epsilon', this.epsilon, { min: 0, above: true });
    checkOptimizerNumber('AdamW', 'weightDecay', this.weightDecay, { min: 0 });
    if (!(this.fusedMinElements >= 0))
      throw new Error(`AdamW: fusedMinElements: expected a number >= 0 (or Infinity), got ${this.fusedMinElements}`);
  }

  private slot(name: string, like: tf.Variable): tf.Variable {
    let slot = this.slots.get(name);
    if (!slot) {
      slot = ownVariable(tf.zerosLike(like), false);
      this.slots.set(name, slot);
    }
    return slot;
  }

  /** The fused kernel's moment for a slot: zeros at first, or what setState restored. */
  private moment(name: string, like: tf.Variable): tf.Tensor {
    let moment = this.moments.get(name);
    if (!moment) {
      const restored = this.slots.get(name);
      const value = restored ?? tf.zerosLike(like);
      moment = backendMoment(value);
      value.dispose();
      this.slots.delete(name);
      this.moments.set(name, moment);
    }
    return moment;
  }

  apply(
    variables: ReadonlyMap<string, tf.Variable>,
    gradients: ReadonlyMap<string, tf.Tensor>,
    learningRate: number,
    gradientScale = 1,
  ): void {
    checkOptimizerNumber('AdamW', 'learning rate', learningRate, { min: 0 });
    checkOptimizerNumber('AdamW', 'gradient scale', gradientScale, { min: 0 });
    tf.dispose(this.snapshots);
    this.snapshots = [];
    this.step += 1;
    const correction1 = 1 - this.beta1 ** this.step;
    const root2 = Math.sqrt(1 - this.beta2 ** this.step);
    // torch: p -= lr/c1 · m / (√v/√c2 + ε), written as lr·√c2/c1 · m / (√v + ε·√c2): two passes fewer
    const stepSize = (learningRate * root2) / correction1;
    const epsilon = this.epsilon * root2;
    const backend = tf.getBackend();
    const fused = [ADAMW_KERNEL, ADAMW_MOMENT_KERNEL, ADAMW_READ_KERNEL].every(
      (kernel) => tf.getKernel(kernel, backend) !== undefined,
    );
    const attrs: AdamWKernelAttrs = {
      beta1: this.beta1,
      beta2: this.beta2,
      beta1Power: this.beta1 ** this.step,
      beta2Power: this.beta2 ** this.step,
      learningRate,
      epsilon: this.epsilon,
      decay: 1 - learningRate * this.weightDecay,
      gradientScale,
    };
    for (const [name, variable] of variables) {
      const gradient = gradients.get(name);
      if (!gradient) continue;
      if (fused && variable.dtype === 'float32' && variable.size >= this.fusedMinElements) {
        const inputs = {
          param: variable,
          expAvg: this.moment(`${name}/exp_avg`, variable),
          expAvgSq: this.moment(`${name}/exp_avg_sq`, variable),
          gradient,
        };
        const next = tf.engine().runKernel(ADAMW_KERNEL, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
        variable.assign(next);
        next.dispose();
        continue;
      }
      if (this.moments.has(`${name}/exp_avg`)) {
        throw new Error(
          `AdamW: the moments of "${name}" are held by the fused kernel of the backend they were made on, which the ` +
            `${backend} backend lacks; go back to that backend, or carry them over with getState() and setState()`,
        );
      }
      const m = this.slot(`${name}/exp_avg`, variable);
      const v = this.slot(`${name}/exp_avg_sq`, variable);
      // three scopes, so that each one's temporaries are freed before the next allocates its own
      assignComputed(m, () => tf.add(tf.mul(m, this.beta1), tf.mul(gradient, (1 - this.beta1) * gradientScale)));
      assignComputed(v, () =>
        tf.add(tf.mul(v, this.beta2), tf.mul(tf.square(gradient), (1 - this.beta2) * gradientScale * gradientScale)),
      );
      assignComputed(variable, () => {
        const decayed = this.weightDecay ? tf.mul(variable, 1 - learningRate * this.weightDecay) : variable;
        return tf.sub(decayed, tf.mul(tf.div(m, tf.add(tf.sqrt(v), epsilon)), stepSize));
      });
    }
  }

  /** The slot tensors belong to the optimizer and hold their values until its next step. */
  getState(): OptimizerState {
    tf.dispose(this.snapshots);
    this.snapshots = [...this.moments.values()].map((moment) =>
      tf.keep(tf.engine().runKernel(ADAMW_READ_KERNEL, { moment }) as tf.Tensor),
    );
    const read = [...this.moments.keys()].map((name, i) => [name, this.snapshots[i]!] as const);
    return { step: this.step, slots: Object.fromEntries([...this.slots, ...read]) };
  }

  setState(state: OptimizerState): void {
    this.step = state.step;
    for (const [name, value] of Object.entries(state.slots)) {
      const moment = this.moments.get(name);
      if (moment) {
        this.moments.set(name, backendMoment(value));
        moment.dispose();
        continue;
      }
      const existing = this.slots.get(name);
      if (existing) existing.assign(value);
      else this.slots.set(name, tf.variable(value, false));
    }
  }

  dispose(): void {
    tf.dispose([...this.slots.values(), ...this.moments.values(), ...this.snapshots]);
    this.slots.clear();
    this.moments.clear();
    this.snapshots = [];
  }
}

export interface SgdOptions {
  /** Default 0 (plain SGD). */
  momentum?: number;
  /** L2 penalty added to the gradient, as torch.optim.SGD. Default 0. */
  weightDecay?: number;
}

/** torch.optim.SGD (momentum buffer starts at the first gradient). */
export class Sgd implements Optimizer {
  readonly name = 'sgd';
  private step = 0;
  private readonly buffers = new Map<string, tf.Variable>();

  constructor(private readonly options: SgdOptions = {}) {
    checkOptimizerNumber('SGD', 'momentum', options.momentum ?? 0, { min: 0 });
    checkOptimizerNumber('SGD', 'weightDecay', options.weightDecay ?? 0, { min: 0 });
  }

  apply(
    variables: ReadonlyMap<string, tf.Variable>,
    gradients: ReadonlyMap<string, tf.Tensor>,
    learningRate: number,
    gradientScale = 1,
  ): void {
    checkOptimizerNumber('SGD', 'learning rate', learningRate, { min: 0 });
    checkOptimizerNumber('SGD', 'gradient scale', gradientScale, { min: 0 });
    this.step += 1;
    const momentum = this.options.momentum ?? 0;
    const weightDecay = this.options.weightDecay ?? 0;
    for (const [name, variable] of variables) {
      const gradient = gradients.get(name);
      if (!gradient) continue;
      tf.tidy(() => {
        const scaled = gradientScale === 1 ? gradient : tf.mul(gradient, gradientScale);
        let direction: tf.Tensor = weightDecay ? tf.add(scaled, tf.mul(variable, weightDecay)) : scaled;
        if (momentum) {
          const key = `${name}/momentum_buffer`;
          const buffer = this.buffers.get(key);
          if (buffer) buffer.assign(tf.add(tf.mul(buffer, momentum), direction));
          else this.buffers.set(key, tf.keep(tf.variable(direction, false)));
          direction = this.buffers.get(key)!;
        }
        variable.assign(tf.sub(variable, tf.mul(direction, learningRate)));
      });
    }
  }

  getState(): OptimizerState {
    return { step: this.step, slots: Object.fromEntries(this.buffers) };
  }

  setState(state: OptimizerState): void {
    this.step = state.step;
    for (const [name, value] of Object.entries(state.slots)) {
      const existing = this.buffers.get(name);
      if (existing) existing.assign(value);
      else this.buffers.set(name, tf.variable(value, false));
    }
  }

  dispose(): void {
    for (const buffer of this.buffers.values()) buffer.dispose();
    this.buffers.clear();
  }
}
