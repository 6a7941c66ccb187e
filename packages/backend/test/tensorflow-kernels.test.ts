import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { availableBackends, loadBackend } from '../src/index.js';
import { registerTensorflowKernels } from '../src/tensorflow-kernels.js';

const hasTensorflow = (await availableBackends()).includes('tensorflow');

/** a·b in float64, from row-major values: the reference every case is held to. */
function reference(a: Float32Array, b: Float32Array, m: number, k: number, n: number, transposeA: boolean, transposeB: boolean): number[] {
  const out: number[] = [];
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let p = 0; p < k; p++) sum += a[transposeA ? p * m + i : i * k + p]! * b[transposeB ? j * k + p : p * n + j]!;
      out.push(sum);
    }
  }
  return out;
}

describe.runIf(hasTensorflow)('matmul on the tensorflow backend', () => {
  it('computes every product as the definition, with and without transposes, batched or not', async () => {
    await loadBackend('tensorflow');
    const [m, k, n] = [37, 53, 29];
    for (const [transposeA, transposeB] of [[false, false], [false, true], [true, false], [true, true]] as const) {
      for (const batch of [[], [3]]) {
        const a = tf.randomUniform([...batch, ...(transposeA ? [k, m] : [m, k])], -1, 1, 'float32', 1);
        const b = tf.randomUniform([...batch, ...(transposeB ? [n, k] : [k, n])], -1, 1, 'float32', 2);
        const product = tf.matMul(a, b, transposeA, transposeB);
        expect(product.shape).toEqual([...batch, m, n]);
        const [av, bv, pv] = [a.dataSync() as Float32Array, b.dataSync() as Float32Array, product.dataSync()];
        for (let i = 0; i < (batch[0] ?? 1); i++) {
          const expected = reference(av.subarray(i * m * k), bv.subarray(i * k * n), m, k, n, transposeA, transposeB);
          const got = Array.from(pv.subarray(i * m * n, (i + 1) * m * n));
          expect(Math.max(...got.map((x, j) => Math.abs(x - expected[j]!)))).toBeLessThan(1e-5);
        }
        tf.dispose([a, b, product]);
      }
    }
  });

  it('trains through the plain 2-D product: gradients equal the definition', async () => {
    await loadBackend('tensorflow');
    const a = tf.variable(tf.randomUniform([5, 7], -1, 1, 'float32', 3));
    const b = tf.variable(tf.randomUniform([7, 4], -1, 1, 'float32', 4));
    const weights = tf.randomUniform([5, 4], -1, 1, 'float32', 5);
    const { grads } = tf.variableGrads(() => tf.sum(tf.mul(tf.matMul(a, b), weights)), [a, b]);
    // d/da = weights·bᵀ, d/db = aᵀ·weights
    const [av, bv, wv] = [a.dataSync() as Float32Array, b.dataSync() as Float32Array, weights.dataSync() as Float32Array];
    const close = (got: tf.Tensor, expected: number[]): void => {
      expect(Math.max(...Array.from(got.dataSync()).map((x, j) => Math.abs(x - expected[j]!)))).toBeLessThan(1e-5);
    };
    close(grads[a.name]!, reference(wv, bv, 5, 4, 7, false, true));
    close(grads[b.name]!, reference(av, wv, 7, 5, 4, true, false));
    tf.dispose([a, b, weights, ...Object.values(grads)]);
  });

  it('puts its matmul in place once and integer products still work', async () => {
    await loadBackend('tensorflow');
    const kernel = tf.getKernel('BatchMatMul', 'tensorflow');
    const { batchMatMulConfig } = (await import('@tensorflow/tfjs-node/dist/kernels/BatchMatMul.js')) as { batchMatMulConfig: tf.KernelConfig };
    expect(kernel!.kernelFunc).not.toBe(batchMatMulConfig.kernelFunc);
    registerTensorflowKernels();
    expect(tf.getKernel('BatchMatMul', 'tensorflow')).toBe(kernel);
    const product = tf.matMul(tf.tensor2d([[1, 2], [3, 4]], [2, 2], 'int32'), tf.tensor2d([[5], [6]], [2, 1], 'int32'));
    expect(Array.from(product.dataSync())).toEqual([17, 39]);
  });
});
