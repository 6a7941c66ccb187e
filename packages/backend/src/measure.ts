import * as tf from '@tensorflow/tfjs-core';

export interface MatMulMeasurement {
  size: number;
  repetitions: number;
  /** Mean wall time of one [size x size] x [size x size] product, result read back. */
  milliseconds: number;
  gflops: number;
}

/**
 * Times a square float32 matMul on the current backend: one untimed warm-up, then repetitions
 * until `minMilliseconds` have passed (at least 2). Each product is read back (dataSync), so
 * asynchronous backends are timed to completion.
 */
export function measureMatMul(size = 512, minMilliseconds = 400): MatMulMeasurement {
  const a = tf.randomUniform([size, size], -1, 1, 'float32', 1);
  const b = tf.randomUniform([size, size], -1, 1, 'float32', 2);
  const product = (): void => {
    const c = tf.matMul(a, b);
    c.dataSync();
    c.dispose();
  };
  try {
    product();
    let repetitions = 0;
    const start = performance.now();
    let elapsed = 0;
    while (repetitions < 2 || elapsed < minMilliseconds) {
      product();
      repetitions += 1;
      elapsed = performance.now() - start;
    }
    const milliseconds = elapsed / repetitions;
    return { size, repetitions, milliseconds, gflops: (2 * size ** 3) / (milliseconds * 1e6) };
  } finally {
    a.dispose();
    b.dispose();
  }
}
