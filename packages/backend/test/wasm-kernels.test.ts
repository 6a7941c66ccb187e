import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { availableBackends, loadBackend } from '../src/index.js';

const hasWasm = (await availableBackends()).includes('wasm');

describe.runIf(hasWasm)('wasm kernels for training', () => {
  it('the gradient of gather (an embedding table) equals the cpu backend', async () => {
    const gradient = async (backend: 'wasm' | 'cpu'): Promise<number[]> => {
      await loadBackend(backend);
      const table = tf.variable(tf.tensor2d([[1, 2], [3, 4], [5, 6], [7, 8]]));
      const ids = tf.tensor2d([[0, 2, 2], [3, 0, 1]], [2, 3], 'int32');
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
