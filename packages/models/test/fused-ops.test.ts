// Ops that carry their own gradient (core's cross-entropy, tanh GELU, LayerNorm, RMSNorm, SwiGLU): on every
// backend, value and gradient must equal the definition (plain double-precision arithmetic, or, for
// the norms, the composed tfjs ops differentiated by tfjs).
import { availableBackends, loadBackend, type BackendName } from '@peft/backend';
import {
  ACTIVATIONS,
  IGNORE_INDEX,
  causalLmLoss,
  gatedActivation,
  layerNorm,
  maskedCrossEntropy,
  rmsNorm,
} from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

const ROWS = 5;
const CLASSES = 7;
const values = Float32Array.from({ length: ROWS * CLASSES }, (_, i) => Math.sin(i * 1.7) * 3);
const labels = Int32Array.from([3, IGNORE_INDEX, 0, 6, 3]);

/** Loss and d loss / d logits by the definition: mean over labelled rows of logsumexp - picked. */
function reference(): { loss: number; gradient: Float32Array } {
  const gradient = new Float32Array(ROWS * CLASSES);
  const labelled = [...labels].filter((l) => l !== IGNORE_INDEX).length;
  let loss = 0;
  for (let r = 0; r < ROWS; r++) {
    if (labels[r] === IGNORE_INDEX) continue;
    const row = values.subarray(r * CLASSES, (r + 1) * CLASSES);
    const max = Math.max(...row);
    const sum = row.reduce((s, v) => s + Math.exp(v - max), 0);
    loss += (Math.log(sum) + max - row[labels[r]!]!) / labelled;
    for (let c = 0; c < CLASSES; c++)
      gradient[r * CLASSES + c] = (Math.exp(row[c]! - max) / sum - (c === labels[r] ? 1 : 0)) / labelled;
  }
  return { loss, gradient };
}

const backends = await availableBackends();

describe.each(backends)('cross-entropy on the %s backend', (backend: BackendName) => {
  it('value and gradient equal the definition', async () => {
    await loadBackend(backend);
    const expected = reference();
    const logits = tf.tensor2d(values, [ROWS, CLASSES]);
    const { value, grad: grads } = tf.valueAndGrad((x: tf.Tensor) => maskedCrossEntropy(x as tf.Tensor2D, labels).loss)(
      logits,
    );
    expect(value.dataSync()[0]).toBeCloseTo(expected.loss, 5);
    const gradient = grads.dataSync();
    for (let i = 0; i < gradient.length; i++) expect(gradient[i]).toBeCloseTo(expected.gradient[i]!, 6);
    // the ignored row gets no gradient at all
    expect([...gradient.subarray(CLASSES, 2 * CLASSES)].every((g) => g === 0)).toBe(true);
    tf.dispose([logits, value, grads]);
  });

  it('causal LM: the last position predicts nothing and takes no gradient', async () => {
    await loadBackend(backend);
    const logits = tf.tensor3d(values, [1, ROWS, CLASSES]);
    const next = [[1, 3, IGNORE_INDEX, 0, 6]]; // position t is scored against label t + 1
    const { value, grad: grads } = tf.valueAndGrad((x: tf.Tensor) => causalLmLoss(x as tf.Tensor3D, next).loss)(logits);
    const shifted = maskedCrossEntropy(
      tf.tensor2d(values.subarray(0, 4 * CLASSES), [4, CLASSES]),
      Int32Array.from([3, IGNORE_INDEX, 0, 6]),
    );
    expect(value.dataSync()[0]).toBeCloseTo(shifted.loss.dataSync()[0]!, 6);
    expect([...grads.dataSync().subarray(4 * CLASSES)].every((g) => g === 0)).toBe(true);
  });
});

/** GPT-2's gelu_new as transformers writes it, in float64. */
const geluNew = (x: number): number => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

describe.each(backends)('tanh GELU on the %s backend', (backend: BackendName) => {
  it('value and gradient equal the definition (central differences)', async () => {
    await loadBackend(backend);
    const points = Float32Array.from({ length: 41 }, (_, i) => -6 + i * 0.3);
    const x = tf.tensor1d(points);
    const { value, grad } = tf.valueAndGrad((t: tf.Tensor) =>
      tf.sum(tf.mul(ACTIVATIONS.gelu_new!(t), tf.range(1, 42))),
    )(x);
    const y = ACTIVATIONS.gelu_new!(x).dataSync();
    const gradient = grad.dataSync();
    const h = 1e-5;
    points.forEach((p, i) => {
      expect(y[i]).toBeCloseTo(geluNew(p), 6);
      // the upstream gradient is i + 1 (the weights of the sum)
      expect(gradient[i]! / (i + 1)).toBeCloseTo((geluNew(p + h) - geluNew(p - h)) / (2 * h), 5);
    });
    expect(value.dataSync()[0]).toBeCloseTo(
      points.reduce((s, p, i) => s + geluNew(p) * (i + 1), 0),
      2,
    );
    tf.dispose([x, value, grad]);
  });
});

/** The norms as composed tfjs ops, differentiated by tfjs: the reference for the written-out gradients. */
const composedLayerNorm = (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor): tf.Tensor => {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-5))), w), b);
};
const composedRmsNorm = (x: tf.Tensor, w: tf.Tensor): tf.Tensor =>
  tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), 1e-6))), w);

describe.each(backends)('norms on the %s backend', (backend: BackendName) => {
  const x = (): tf.Tensor =>
    tf.tensor3d(
      Float32Array.from({ length: 2 * 3 * 8 }, (_, i) => Math.cos(i * 0.9) * 2 + (i % 5)),
      [2, 3, 8],
    );
  const w = (): tf.Tensor => tf.tensor1d(Float32Array.from({ length: 8 }, (_, i) => 0.5 + i * 0.1));
  const b = (): tf.Tensor => tf.tensor1d(Float32Array.from({ length: 8 }, (_, i) => i * 0.05 - 0.2));
  // a weighted sum, so that every output position sends its own gradient
  const upstream = (): tf.Tensor =>
    tf.tensor3d(
      Float32Array.from({ length: 48 }, (_, i) => Math.sin(i)),
      [2, 3, 8],
    );
  const close = (actual: tf.Tensor, expected: tf.Tensor): void => {
    const a = actual.dataSync();
    const e = expected.dataSync();
    expect(a.length).toBe(e.length);
    for (let i = 0; i < a.length; i++) expect(a[i]).toBeCloseTo(e[i]!, 4);
  };

  it('layerNorm: value and gradients for x, weight and bias equal the composed ops', async () => {
    await loadBackend(backend);
    const f =
      (norm: (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => tf.Tensor) =>
      (xs: tf.Tensor, ws: tf.Tensor, bs: tf.Tensor) =>
        tf.sum(tf.mul(norm(xs, ws, bs), upstream()));
    const fused = tf.grads(f((a, c, d) => layerNorm(a, c as tf.Tensor1D, d as tf.Tensor1D, 1e-5)))([x(), w(), b()]);
    const composed = tf.grads(f(composedLayerNorm))([x(), w(), b()]);
    for (const [i, g] of fused.entries()) close(g, composed[i]!);
    close(layerNorm(x(), w() as tf.Tensor1D, b() as tf.Tensor1D, 1e-5), composedLayerNorm(x(), w(), b()));
  });

  it('rmsNorm: value and gradients for x and weight equal the composed ops', async () => {
    await loadBackend(backend);
    const f = (norm: (x: tf.Tensor, w: tf.Tensor) => tf.Tensor) => (xs: tf.Tensor, ws: tf.Tensor) =>
      tf.sum(tf.mul(norm(xs, ws), upstream()));
    const fused = tf.grads(f((a, c) => rmsNorm(a, c as tf.Tensor1D, 1e-6)))([x(), w()]);
    const composed = tf.grads(f(composedRmsNorm))([x(), w()]);
    for (const [i, g] of fused.entries()) close(g, composed[i]!);
    close(rmsNorm(x(), w() as tf.Tensor1D, 1e-6), composedRmsNorm(x(), w()));
  });

  it("a frozen weight (a variable that is not trainable) takes no gradient pass; x's gradient is unchanged", async () => {
    await loadBackend(backend);
    const input = tf.variable(x());
    // the weight gradients are feature sums: count the Sum kernels of each run
    const runs: { dx: Float32Array; sums: number }[] = [];
    for (const trainable of [true, false]) {
      const weight = tf.variable(w(), trainable);
      const bias = tf.variable(b(), trainable);
      const profile = await tf.profile(() => {
        const { grads } = tf.variableGrads(
          () =>
            tf.sum(
              tf.mul(
                tf.add(
                  layerNorm(input, weight as tf.Variable<tf.Rank.R1>, bias as tf.Variable<tf.Rank.R1>, 1e-5),
                  rmsNorm(input, weight as tf.Variable<tf.Rank.R1>, 1e-6),
                ),
                upstream(),
              ),
            ) as tf.Scalar,
          [input, weight, bias],
        );
        runs.push({ dx: grads[input.name]!.dataSync() as Float32Array, sums: 0 });
        // tfjs names a frozen variable's gradient null
        expect(grads[weight.name] === null).toBe(!trainable);
      });
      runs.at(-1)!.sums = profile.kernels.filter((k) => k.name === 'Sum').length;
      tf.dispose([weight, bias]);
    }
    expect(Array.from(runs[1]!.dx)).toEqual(Array.from(runs[0]!.dx));
    expect(runs[0]!.sums - runs[1]!.sums).toBe(3); // layerNorm's weight and bias, rmsNorm's weight
  });
});

/** SiLU(gate)·up composed from tfjs ops, differentiated by tfjs: the reference for SwiGLU's gradient. */
const composedSwiGlu = (gate: tf.Tensor, up: tf.Tensor): tf.Tensor => tf.mul(tf.mul(gate, tf.sigmoid(gate)), up);

describe.each(backends)('SwiGLU on the %s backend', (backend: BackendName) => {
  it('value and gradients for gate and up equal the composed ops; other activations are composed', async () => {
    await loadBackend(backend);
    const gate = (): tf.Tensor =>
      tf.tensor2d(
        Float32Array.from({ length: 40 }, (_, i) => -8 + i * 0.41),
        [5, 8],
      );
    const up = (): tf.Tensor =>
      tf.tensor2d(
        Float32Array.from({ length: 40 }, (_, i) => Math.cos(i * 0.7) * 2),
        [5, 8],
      );
    const upstream = tf.tensor2d(
      Float32Array.from({ length: 40 }, (_, i) => Math.sin(i * 1.3)),
      [5, 8],
    );
    for (const name of ['silu', 'swish', 'gelu_new']) {
      const act = ACTIVATIONS[name]!;
      const fused = gatedActivation(name, 'test');
      const reference = name === 'gelu_new' ? (g: tf.Tensor, u: tf.Tensor) => tf.mul(act(g), u) : composedSwiGlu;
      const f = (op: (g: tf.Tensor, u: tf.Tensor) => tf.Tensor) => (g: tf.Tensor, u: tf.Tensor) =>
        tf.sum(tf.mul(op(g, u), upstream));
      const ours = tf.grads(f(fused))([gate(), up()]);
      const expected = tf.grads(f(reference))([gate(), up()]);
      for (const [got, want] of [
        [fused(gate(), up()), reference(gate(), up())],
        ...ours.map((g, i) => [g, expected[i]!]),
      ] as [tf.Tensor, tf.Tensor][]) {
        const a = got.dataSync();
        const e = want.dataSync();
        for (let i = 0; i < a.length; i++) expect(a[i], name).toBeCloseTo(e[i]!, 5);
      }
    }
    expect(() => gatedActivation('nope', 'config.json hidden_act')).toThrow(
      /config.json hidden_act: unsupported activation "nope"/,
    );
  });
});
