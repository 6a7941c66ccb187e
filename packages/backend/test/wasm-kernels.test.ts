import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { availableBackends, loadBackend } from '../src/index.js';
import { batchMatMulGradient } from '../src/wasm-kernels.js';

const hasWasm = (await availableBackends()).includes('wasm');

describe.runIf(hasWasm)('wasm kernels for training', () => {
  it('the gradient of gather (an embedding table) equals the cpu backend', async () => {
    const gradient = async (backend: 'wasm' | 'cpu'): Promise<number[]> => {
      await loadBackend(backend);
      const table = tf.variable(
        tf.tensor2d([
          [1, 2],
          [3, 4],
          [5, 6],
          [7, 8],
        ]),
      );
      const ids = tf.tensor2d(
        [
          [0, 2, 2],
          [3, 0, 1],
        ],
        [2, 3],
        'int32',
      );
      const { grads } = tf.variableGrads(() => tf.sum(tf.mul(tf.gather(table, ids), tf.tensor1d([1, 10]))), [table]);
      const values = Array.from(Object.values(grads)[0]!.dataSync());
      tf.dispose([table, ids, ...Object.values(grads)]);
      return values;
    };
    const wasm = await gradient('wasm');
    expect(wasm).toEqual(await gradient('cpu'));
    expect(wasm).toEqual([2, 20, 1, 10, 2, 20, 1, 10]);
    await loadBackend('cpu');
  });
});

describe.runIf(hasWasm)('matMul gradient on wasm', () => {
  it('equals the cpu backend for every transpose combination and batch rank', async () => {
    const gradients = async (backend: 'wasm' | 'cpu'): Promise<number[][]> => {
      await loadBackend(backend);
      const out: number[][] = [];
      for (const [transposeA, transposeB] of [
        [false, false],
        [false, true],
        [true, false],
        [true, true],
      ] as const) {
        for (const batch of [[], [2]]) {
          const a = tf.variable(
            tf.reshape(tf.range(0, 3 * 4 * (batch[0] ?? 1)), [...batch, ...(transposeA ? [4, 3] : [3, 4])]).div(7),
          );
          const b = tf.variable(
            tf.reshape(tf.range(0, 4 * 5 * (batch[0] ?? 1)), [...batch, ...(transposeB ? [5, 4] : [4, 5])]).div(11),
          );
          const weights = tf.randomUniform([...batch, 3, 5], -1, 1, 'float32', 3);
          const { grads } = tf.variableGrads(
            () => tf.sum(tf.mul(tf.matMul(a, b, transposeA, transposeB), weights)),
            [a, b],
          );
          out.push(Array.from(grads[a.name]!.dataSync()), Array.from(grads[b.name]!.dataSync()));
          tf.dispose([a, b, weights, ...Object.values(grads)]);
        }
      }
      return out;
    };
    const wasm = await gradients('wasm');
    expect(tf.getGradient('BatchMatMul')).toBe(batchMatMulGradient); // ours is the one in use
    const cpu = await gradients('cpu');
    expect(wasm).toHaveLength(16);
    for (const [i, values] of wasm.entries())
      for (const [j, v] of values.entries()) expect(v).toBeCloseTo(cpu[i]![j]!, 4);
    await loadBackend('cpu');
  });
});
