// variableGradients against tf.variableGrads: the same gradients, less memory held in the backward pass.
import { availableBackends, loadBackend, type BackendName } from '@peft/backend';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { addReleasing, reshapeReleasing, variableGradients } from '../src/index.js';

const backends = await availableBackends();

/** A small network with what a backward pass meets: shared inputs, broadcasts, a frozen weight, a pass-through custom gradient, two paths joining. */
function network(w: tf.Variable, b: tf.Variable, frozen: tf.Variable, x: tf.Tensor2D): tf.Scalar {
  const passThrough = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input] = args as [tf.Tensor];
    return { value: tf.mul(input, 1), gradFunc: (dy: tf.Tensor) => dy };
  });
  const h = tf.tanh(tf.add(tf.matMul(x, w), b)); // [4, 3]
  const squared = tf.mul(h, h); // the same tensor as both inputs
  const frozenPath = tf.matMul(passThrough(squared) as tf.Tensor2D, frozen); // [4, 3]
  const joined = tf.add(tf.sigmoid(frozenPath), tf.mul(h, b)); // b used twice
  return tf.mean(tf.square(joined)) as tf.Scalar;
}

/** x·1 whose gradient records `read(tf.memory())` when the backward pass reaches it. */
function memoryProbe(readings: number[], read: (memory: tf.MemoryInfo) => number): (x: tf.Tensor) => tf.Tensor {
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input] = args as [tf.Tensor];
    return {
      value: tf.mul(input, 1),
      gradFunc: (dy: tf.Tensor) => {
        readings.push(read(tf.memory()));
        return tf.mul(dy, 1);
      },
    };
  });
  return (x) => op(x);
}

/** variableGradients of `loss` for w: the gradient, and the bytes alive beyond those before the call when the backward pass reached the probe. */
function probedGradient(
  w: tf.Variable,
  loss: (probe: (x: tf.Tensor) => tf.Tensor) => tf.Scalar,
): { gradient: tf.TypedArray; bytes: number } {
  const readings: number[] = [];
  const probe = memoryProbe(readings, (memory) => memory.numBytes);
  const before = tf.memory().numBytes;
  const { value, grads } = variableGradients(() => loss(probe), [w]);
  const gradient = grads[w.name]!.dataSync();
  tf.dispose([value, grads[w.name]!]);
  return { gradient, bytes: readings[0]! - before };
}

describe.each(backends)('variableGradients on the %s backend', (backend: BackendName) => {
  beforeAll(async () => {
    await loadBackend(backend);
  });
  afterAll(async () => {
    await loadBackend('cpu');
  });

  it('computes what tf.variableGrads computes, bit for bit, and leaks nothing', () => {
    const random = (shape: number[], seed: number) => tf.randomNormal(shape, 0, 0.5, 'float32', seed);
    const w = tf.variable(random([5, 3], 1), true, 'w');
    const b = tf.variable(random([3], 2), true, 'b');
    const frozen = tf.variable(random([3, 3], 3), false, 'frozen');
    const x = random([4, 5], 4) as tf.Tensor2D;
    const before = tf.memory().numTensors;
    const expected = tf.variableGrads(() => network(w, b, frozen, x), [w, b, frozen]);
    const actual = variableGradients(() => network(w, b, frozen, x), [w, b, frozen]);
    expect(actual.value.dataSync()).toEqual(expected.value.dataSync());
    expect(Object.keys(actual.grads).sort()).toEqual(['b', 'w']);
    for (const name of ['w', 'b']) expect(actual.grads[name]!.dataSync()).toEqual(expected.grads[name]!.dataSync());
    tf.dispose([
      actual.value,
      expected.value,
      ...Object.values(actual.grads),
      ...Object.values(expected.grads).filter((g) => g !== null),
    ]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([w, b, frozen, x]);
  });

  it('releases each gradient and saved tensor once its node is done', () => {
    // a chain of 40 ops; a probe at its start reports how many tensors are alive when the
    // backward pass reaches it: tfjs holds every gradient and saved tensor of the chain there
    const w = tf.variable(tf.fill([64, 64], 0.01), true);
    const alive: number[] = [];
    const probe = memoryProbe(alive, (memory) => memory.numTensors);
    const loss = () => {
      let h = probe(w) as tf.Tensor;
      for (let i = 0; i < 40; i++) h = tf.sin(tf.mul(h, 1.01));
      return tf.sum(h) as tf.Scalar;
    };
    const before = tf.memory().numTensors;
    const expected = tf.variableGrads(loss, [w]);
    const actual = variableGradients(loss, [w]);
    expect(actual.grads[w.name]!.dataSync()).toEqual(expected.grads[w.name]!.dataSync());
    const [tfjs, ours] = alive.map((n) => n - before);
    expect(tfjs).toBeGreaterThan(100); // ~80 gradients and ~80 saved tensors
    expect(ours).toBeLessThan(20);
    tf.dispose([actual.value, expected.value, actual.grads[w.name]!, expected.grads[w.name]!, w]);
  });

  it('reshapeReleasing differentiates as tf.reshape without keeping its input for the backward pass', () => {
    const w = tf.variable(tf.randomNormal([64, 64], 0, 1, 'float32', 5), true);
    // h = 2w (16 KB) is kept by nothing but tf.reshape's gradient (neg saves nothing); the probe's
    // gradient runs before the reshape's
    const loss = (reshape: (x: tf.Tensor, shape: number[]) => tf.Tensor) => (probe: (x: tf.Tensor) => tf.Tensor) =>
      tf.sum(tf.square(probe(tf.neg(reshape(tf.mul(w, 2), [32, 128]))))) as tf.Scalar;
    const releasing = probedGradient(w, loss(reshapeReleasing));
    const plain = probedGradient(w, loss(tf.reshape));
    expect(releasing.gradient).toEqual(plain.gradient);
    expect(plain.bytes - releasing.bytes).toBe(64 * 64 * 4);
    w.dispose();
  });

  it.each([
    ['the same shape', [6, 5], true],
    ['a broadcast trainable bias', [5], true],
    ['a frozen bias', [5], false],
  ] as [string, number[], boolean][])(
    'addReleasing differentiates as tf.add: %s, under both backward passes',
    (_, bShape, trainable) => {
      const a = tf.variable(tf.randomNormal([6, 5], 0, 1, 'float32', 6), true, `a${bShape.length}${trainable}`);
      const b = tf.variable(tf.randomNormal(bShape, 0, 1, 'float32', 7), trainable, `b${bShape.length}${trainable}`);
      // a and b feed other paths too: the backward pass accumulates into the gradients the add
      // passed through (b's is accumulated before a's producer has used its own)
      const loss = (add: (x: tf.Tensor, y: tf.Tensor) => tf.Tensor) => () => {
        const scaled = tf.mul(a, 3);
        const doubled = tf.mul(b, 2);
        const sum = add(scaled, b);
        return tf.add(tf.sum(tf.add(tf.mul(sum, sum), tf.mul(sum, a))), tf.sum(doubled)) as tf.Scalar;
      };
      const expected = tf.variableGrads(loss(tf.add), [a, b]);
      for (const gradients of [
        variableGradients(loss(addReleasing), [a, b]),
        tf.variableGrads(loss(addReleasing), [a, b]),
      ]) {
        expect(gradients.value.dataSync()).toEqual(expected.value.dataSync());
        expect(
          Object.keys(gradients.grads)
            .filter((name) => gradients.grads[name])
            .sort(),
        ).toEqual(trainable ? [a.name, b.name].sort() : [a.name]);
        for (const [name, gradient] of Object.entries(gradients.grads))
          if (gradient) expect(gradient.dataSync()).toEqual(expected.grads[name]!.dataSync());
        tf.dispose([gradients.value, ...Object.values(gradients.grads).filter((g) => g !== null)]);
      }
      tf.dispose([expected.value, ...Object.values(expected.grads).filter((g) => g !== null), a, b]);
    },
  );

  it('addReleasing keeps neither input for the backward pass', () => {
    const w = tf.variable(tf.randomNormal([64, 64], 0, 1, 'float32', 8), true);
    // 2w and 3w (16 KB each) are kept by nothing but tf.add's gradient; the probe's runs before it
    const loss = (add: (x: tf.Tensor, y: tf.Tensor) => tf.Tensor) => (probe: (x: tf.Tensor) => tf.Tensor) =>
      tf.sum(tf.square(probe(tf.neg(add(tf.mul(w, 2), tf.mul(w, 3)))))) as tf.Scalar;
    const releasing = probedGradient(w, loss(addReleasing));
    const plain = probedGradient(w, loss(tf.add));
    expect(releasing.gradient).toEqual(plain.gradient);
    expect(plain.bytes - releasing.bytes).toBe(2 * 64 * 64 * 4);
    w.dispose();
  });

  it('refuses what tf.variableGrads refuses', () => {
    const frozen = tf.variable(tf.ones([2]), false);
    const trainable = tf.variable(tf.ones([2]), true);
    const unrelated = tf.variable(tf.ones([2]), true);
    const before = tf.memory().numTensors;
    expect(() => variableGradients(() => tf.sum(frozen) as tf.Scalar, [frozen])).toThrow(
      /none of the 1 variables is trainable/,
    );
    expect(() => variableGradients(() => tf.mul(trainable, 2) as unknown as tf.Scalar, [trainable])).toThrow(
      /must return a scalar tensor, not rank 1/,
    );
    expect(() => variableGradients(() => tf.sum(frozen) as tf.Scalar, [unrelated])).toThrow(
      /no trainable variable reaches the loss/,
    );
    expect(tf.memory().numTensors).toBe(before); // the refused forward passes left nothing behind
    expect(() => tf.tidy(() => addReleasing(trainable, tf.ones([3, 2])))).toThrow(
      /\[3,2\] broadcasts \[2\] to \[3,2\]; the first operand must carry the result's shape/,
    );
    tf.dispose([frozen, trainable, unrelated]);
  });
});
