import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { availableBackends, loadBackend } from '../src/index.js';
import {
  ADAMW_KERNEL,
  ADAMW_MOMENT_KERNEL,
  ADAMW_READ_KERNEL,
  DROPOUT_MASK_KERNEL,
  GELU_TANH_KERNEL,
  HEAD_PRODUCT_KERNEL,
  LAYER_NORM_KERNEL,
  RMS_NORM_KERNEL,
  SOFTMAX_CROSS_ENTROPY_KERNEL,
  SWIGLU_KERNEL,
  type TensorflowBackendLike,
  headProductOps,
  registerTensorflowKernels,
} from '../src/tensorflow-kernels.js';

const hasTensorflow = (await availableBackends()).includes('tensorflow');

/** Records the name of every op the backend runs through executeSingleOutput until `restore`. */
function recordOps(backend: { executeSingleOutput: (name: string, ...rest: unknown[]) => tf.Tensor }): {
  ops: string[];
  restore: () => void;
} {
  const execute = backend.executeSingleOutput;
  const ops: string[] = [];
  backend.executeSingleOutput = function (this: unknown, name: string, ...rest: unknown[]) {
    ops.push(name);
    return execute.call(this, name, ...rest);
  };
  return {
    ops,
    restore: () => {
      backend.executeSingleOutput = execute;
    },
  };
}

/** a·b in float64, from row-major values: the reference every case is held to. */
function reference(
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  transposeA: boolean,
  transposeB: boolean,
): number[] {
  const out: number[] = [];
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let p = 0; p < k; p++)
        sum += a[transposeA ? p * m + i : i * k + p]! * b[transposeB ? j * k + p : p * n + j]!;
      out.push(sum);
    }
  }
  return out;
}

describe.runIf(hasTensorflow)('matmul on the tensorflow backend', () => {
  it('computes every product as the definition, with and without transposes, batched or not', async () => {
    await loadBackend('tensorflow');
    const [m, k, n] = [37, 53, 29];
    for (const [transposeA, transposeB] of [
      [false, false],
      [false, true],
      [true, false],
      [true, true],
    ] as const) {
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
    const [av, bv, wv] = [
      a.dataSync() as Float32Array,
      b.dataSync() as Float32Array,
      weights.dataSync() as Float32Array,
    ];
    const close = (got: tf.Tensor, expected: number[]): void => {
      expect(Math.max(...Array.from(got.dataSync()).map((x, j) => Math.abs(x - expected[j]!)))).toBeLessThan(1e-5);
    };
    close(grads[a.name]!, reference(wv, bv, 5, 4, 7, false, true));
    close(grads[b.name]!, reference(av, wv, 7, 5, 4, true, false));
    tf.dispose([a, b, weights, ...Object.values(grads)]);
  });

  it('broadcasts batch dimensions as tfjs does (a batch of one against many)', async () => {
    await loadBackend('tensorflow');
    const a = tf.randomUniform([2, 1, 4, 3], -1, 1, 'float32', 7);
    const b = tf.randomUniform([1, 3, 3, 5], -1, 1, 'float32', 8);
    const product = tf.matMul(a, b);
    expect(product.shape).toEqual([2, 3, 4, 5]);
    const [av, bv, pv] = [a.dataSync() as Float32Array, b.dataSync() as Float32Array, product.dataSync()];
    for (let i = 0; i < 2; i++) {
      for (let j = 0; j < 3; j++) {
        const expected = reference(av.subarray(i * 12), bv.subarray(j * 15), 4, 3, 5, false, false);
        const got = Array.from(pv.subarray((i * 3 + j) * 20, (i * 3 + j + 1) * 20));
        expect(Math.max(...got.map((x, k) => Math.abs(x - expected[k]!)))).toBeLessThan(1e-5);
      }
    }
    tf.dispose([a, b, product]);
  });

  it('runs 2-D products with a transposed operand or 256 rows and more, and batched ones, on oneDNN where libtensorflow has it (x86), the others not', async () => {
    await loadBackend('tensorflow');
    const backend = tf.backend() as unknown as { executeSingleOutput: (name: string, ...rest: unknown[]) => tf.Tensor };
    const { ops, restore } = recordOps(backend);
    try {
      const a = tf.ones([3, 4]);
      const b = tf.ones([5, 4]);
      tf.tidy(() => [tf.matMul(a, b, false, true), tf.matMul(a, tf.ones([3, 2]), true, false)]);
      const transposed = [...ops];
      ops.length = 0;
      tf.tidy(() => [tf.matMul(a, tf.ones([4, 2])), tf.matMul(tf.ones([255, 4]), tf.ones([4, 2]))]);
      if (process.arch === 'x64') expect(transposed.filter((op) => op === '_MklMatMul')).toHaveLength(2);
      expect(ops.filter((op) => op === 'MatMul')).toHaveLength(2);
      expect(ops).not.toContain('_MklMatMul');
      // a training step's forward projections (batch x sequence rows)
      ops.length = 0;
      const product = tf.tidy(() => tf.matMul(tf.ones([256, 4]), tf.ones([4, 2])));
      expect(ops).toEqual([process.arch === 'x64' ? '_MklMatMul' : 'MatMul']);
      expect(product.shape).toEqual([256, 2]);
      expect(new Set(product.dataSync())).toEqual(new Set([4]));
      product.dispose();
      // batched products (attention) on oneDNN's batched matmul
      ops.length = 0;
      tf.tidy(() => tf.matMul(tf.ones([2, 3, 4]), tf.ones([2, 5, 4]), false, true));
      expect(ops).toEqual([process.arch === 'x64' ? '_MklBatchMatMulV2' : 'BatchMatMulV2']);
      tf.dispose([a, b]);
    } finally {
      restore();
    }
  });

  it('puts its matmul in place once and integer products still work', async () => {
    await loadBackend('tensorflow');
    const kernel = tf.getKernel('BatchMatMul', 'tensorflow');
    const { batchMatMulConfig } = (await import('@tensorflow/tfjs-node/dist/kernels/BatchMatMul.js')) as {
      batchMatMulConfig: tf.KernelConfig;
    };
    expect(kernel!.kernelFunc).not.toBe(batchMatMulConfig.kernelFunc);
    registerTensorflowKernels();
    expect(tf.getKernel('BatchMatMul', 'tensorflow')).toBe(kernel);
    const product = tf.matMul(
      tf.tensor2d(
        [
          [1, 2],
          [3, 4],
        ],
        [2, 2],
        'int32',
      ),
      tf.tensor2d([[5], [6]], [2, 1], 'int32'),
    );
    expect(Array.from(product.dataSync())).toEqual([17, 39]);
  });
});

/** One step of torch.optim.AdamW in float64 over plain arrays: the fused kernel's definition. */
function adamWReference(p: number[], m: number[], v: number[], g: number[], a: Record<string, number>): number[][] {
  const out: number[][] = [[], [], []];
  for (let i = 0; i < p.length; i++) {
    const grad = g[i]! * a.gradientScale!;
    const mi = a.beta1! * m[i]! + (1 - a.beta1!) * grad;
    const vi = a.beta2! * v[i]! + (1 - a.beta2!) * grad * grad;
    const denominator = Math.sqrt(vi) / Math.sqrt(1 - a.beta2Power!) + a.epsilon!;
    out[0]!.push(p[i]! * a.decay! - (a.learningRate! / (1 - a.beta1Power!)) * (mi / denominator));
    out[1]!.push(mi);
    out[2]!.push(vi);
  }
  return out;
}

describe.runIf(hasTensorflow)('the fused AdamW kernels on the tensorflow backend', () => {
  const attrs = (step: number, decay: number, gradientScale: number): Record<string, number> => ({
    beta1: 0.9,
    beta2: 0.999,
    beta1Power: 0.9 ** step,
    beta2Power: 0.999 ** step,
    learningRate: 1e-2,
    epsilon: 1e-8,
    decay,
    gradientScale,
  });
  const kernel = (name: string, inputs: Record<string, tf.Tensor>, a: Record<string, number> = {}): tf.Tensor =>
    tf.engine().runKernel(name, inputs, a as unknown as tf.NamedAttrMap) as tf.Tensor;

  it.each([
    ['no decay, unscaled', 1, 1],
    ['decay, unscaled', 1 - 1e-2 * 0.1, 1],
    ['no decay, scaled gradient', 1, 0.3],
    ['decay, scaled gradient', 1 - 1e-2 * 0.1, 0.3],
  ])(
    '%s: steps equal the definition; the moments change in place, nothing else does',
    async (_, decay, gradientScale) => {
      await loadBackend('tensorflow');
      const shape = [13, 7];
      const before = tf.memory().numTensors;
      let param = tf.randomUniform(shape, -1, 1, 'float32', 6);
      const start = tf.randomUniform(shape, 0, 0.1, 'float32', 7);
      const startValues = Array.from(start.dataSync());
      // both moments start from one tensor, which must stay as it is
      const expAvg = kernel(ADAMW_MOMENT_KERNEL, { value: start });
      const expAvgSq = kernel(ADAMW_MOMENT_KERNEL, { value: start });
      let moments = [startValues, startValues];
      let first: tf.Tensor | null = null;
      for (let step = 1; step <= 3; step++) {
        const gradient = tf.randomUniform(shape, -1, 1, 'float32', 10 + step);
        const values = [param, gradient].map((t) => Array.from(t.dataSync()));
        const a = attrs(step, decay, gradientScale);
        const next = kernel(ADAMW_KERNEL, { param, expAvg, expAvgSq, gradient }, a);
        const read = [expAvg, expAvgSq].map((moment) => kernel(ADAMW_READ_KERNEL, { moment }));
        const expected = adamWReference(values[0]!, moments[0]!, moments[1]!, values[1]!, a);
        // held as the change of the parameter (lr-sized) and the new moments, relative to their largest
        // element; libtensorflow computes 1 - β2 in float32 (1 - 0.999f = 0.00099998713), so the second
        // moment's increment is 1.3e-5 relative off torch's; float32 rounding of the parameter (~1) is 6e-6
        // of a change of ~1e-2
        const change = (got: ArrayLike<number>, from: number[]): number[] => Array.from(got, (x, j) => x - from[j]!);
        [next, ...read].forEach((tensor, i) => {
          expect(tensor.shape).toEqual(shape);
          const [got, want] =
            i === 0
              ? [change(tensor.dataSync(), values[0]!), change(expected[0]!, values[0]!)]
              : [Array.from(tensor.dataSync()), expected[i]!];
          const scale = Math.max(...want.map(Math.abs));
          expect(Math.max(...want.map((x, j) => Math.abs(x - got[j]!))) / scale).toBeLessThan(5e-5);
        });
        for (const [i, t] of [param, gradient].entries()) expect(Array.from(t.dataSync())).toEqual(values[i]);
        moments = read.map((t) => Array.from(t.dataSync()));
        if (step === 1) {
          first = read[0]!;
          read[1]!.dispose();
        } else tf.dispose(read);
        tf.dispose([param, gradient]);
        param = next;
      }
      // a read is a snapshot: the later steps left the first one's values alone
      expect(Array.from(first!.dataSync())).not.toEqual(moments[0]);
      expect(Array.from(start.dataSync())).toEqual(startValues);
      tf.dispose([param, start, expAvg, expAvgSq, first!]);
      expect(tf.memory().numTensors).toBe(before);
    },
  );

  it('frees the variables it updates in (repeated steps keep memory flat)', async () => {
    await loadBackend('tensorflow');
    const shape = [1024, 1024]; // 4 MB: a variable kept per call would add 4 MB a step, a moment 4 MB each
    let param = tf.randomNormal(shape);
    const gradient = tf.randomNormal(shape);
    const step = (i: number): void => {
      const moments = [0, 1].map(() => tf.tidy(() => kernel(ADAMW_MOMENT_KERNEL, { value: tf.zeros(shape) })));
      const next = kernel(
        ADAMW_KERNEL,
        { param, expAvg: moments[0]!, expAvgSq: moments[1]!, gradient },
        attrs(i, 1, 1),
      );
      tf.dispose([param, ...moments]);
      param = next;
    };
    for (let i = 1; i <= 10; i++) step(i);
    const rss = process.memoryUsage().rss;
    for (let i = 11; i <= 70; i++) step(i);
    expect(process.memoryUsage().rss - rss).toBeLessThan(240 * 2 ** 20); // kept: 720 MB
    tf.dispose([param, gradient]);
  });

  it('says which input is not what it expects', async () => {
    await loadBackend('tensorflow');
    const [param, other] = [tf.zeros([2, 3]), tf.zeros([3, 2])];
    const moment = kernel(ADAMW_MOMENT_KERNEL, { value: param });
    expect(() =>
      kernel(ADAMW_KERNEL, { param, expAvg: moment, expAvgSq: moment, gradient: other }, attrs(1, 1, 1)),
    ).toThrow('PeftAdamW: gradient is float32 [3,2], expected float32 [2,3]');
    expect(() =>
      kernel(ADAMW_KERNEL, { param, expAvg: moment, expAvgSq: param, gradient: param }, attrs(1, 1, 1)),
    ).toThrow('PeftAdamW: expAvgSq is float32 [2,3], expected a moment made by PeftAdamWMoment');
    expect(() => kernel(ADAMW_READ_KERNEL, { moment: param })).toThrow(
      'PeftAdamWRead: expected a moment made by PeftAdamWMoment, got float32 [2,3]',
    );
    tf.dispose([param, other, moment]);
  });
});

describe.runIf(hasTensorflow)('the dropout mask kernel on the tensorflow backend', () => {
  const mask = (shape: number[], rate: number, seed: number): Float32Array =>
    tf.tidy(
      () =>
        (
          tf
            .engine()
            .runKernel(DROPOUT_MASK_KERNEL, {}, { shape, rate, seed } as unknown as tf.NamedAttrMap) as tf.Tensor
        ).dataSync() as Float32Array,
    );

  it('keeps 1 - rate of the values, scaled by 1 / (1 - rate); the same seed gives the same mask', async () => {
    await loadBackend('tensorflow');
    registerTensorflowKernels();
    const before = tf.memory().numTensors;
    for (const rate of [0.1, 0.5]) {
      const values = mask([1000, 1000], rate, 12345);
      const kept = values.filter((v) => v !== 0);
      expect([...new Set(values)].sort()).toEqual([0, Math.fround(1 / (1 - rate))]);
      // 1e6 Bernoulli draws: the kept share within 5 standard deviations
      const sd = Math.sqrt((rate * (1 - rate)) / values.length);
      expect(Math.abs(kept.length / values.length - (1 - rate))).toBeLessThan(5 * sd);
      // compared value by value: vitest's toEqual over a million values takes seconds
      const same = (other: Float32Array): boolean => other.every((v, i) => v === values[i]);
      expect(same(mask([1000, 1000], rate, 12345))).toBe(true);
      expect(same(mask([1000, 1000], rate, 12346))).toBe(false);
    }
    // seeds past 2^31 (deriveSeed gives unsigned 32-bit ones) work and differ
    expect(mask([64], 0.5, 0xfffffff0)).not.toEqual(mask([64], 0.5, 0x7ffffff0));
    expect(new Set(mask([3, 5], 0, 1))).toEqual(new Set([1]));
    expect(() => mask([4], 1, 1)).toThrow('PeftDropoutMask: rate 1 is outside [0, 1)');
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe.runIf(hasTensorflow)('the layer norm, reshape and mean kernels on the tensorflow backend', () => {
  /** Values of `size` around `centre` with spread `spread` (deterministic). */
  const values = (size: number, centre: number, spread: number, seed: number): Float32Array =>
    Float32Array.from({ length: size }, (_, i) => centre + spread * Math.sin(seed * 7.31 + i * 1.713 + (i % 7) * 0.37));

  /** LayerNorm of each row in float64, biased variance: the reference. */
  function reference(x: Float32Array, weight: Float32Array, bias: Float32Array, epsilon: number): number[] {
    const width = weight.length;
    const out: number[] = [];
    for (let row = 0; row < x.length / width; row++) {
      const part = [...x.subarray(row * width, (row + 1) * width)];
      const mean = part.reduce((a, b) => a + b, 0) / width;
      const variance = part.reduce((a, b) => a + (b - mean) ** 2, 0) / width;
      for (const [i, v] of part.entries())
        out.push(((v - mean) / Math.sqrt(variance + epsilon)) * weight[i]! + bias[i]!);
    }
    return out;
  }

  it('LayerNorm equals the definition, fused (up to 64 rows) and composed (more), and frees what it makes', async () => {
    await loadBackend('tensorflow');
    registerTensorflowKernels();
    const before = tf.memory().numTensors;
    for (const shape of [
      [1, 1, 768],
      [2, 3, 7],
      [1, 64, 16],
      [1, 65, 16],
      [4, 32, 64],
      [5, 24],
    ]) {
      const width = shape.at(-1)!;
      const size = shape.reduce((a, b) => a * b, 1);
      const [x, weight, bias] = [values(size, 5, 3, 1), values(width, 1, 0.5, 2), values(width, 0, 0.2, 3)];
      for (const epsilon of [1e-5, 1e-12, 0.5]) {
        const out = tf.tidy(() =>
          tf
            .engine()
            .runKernel(
              LAYER_NORM_KERNEL,
              { x: tf.tensor(x, shape), weight: tf.tensor1d(weight), bias: tf.tensor1d(bias) },
              { epsilon },
            ),
        ) as tf.Tensor;
        expect(out.shape).toEqual(shape);
        const got = out.dataSync();
        out.dispose();
        const want = reference(x, weight, bias, epsilon);
        const worst = want.reduce((max, v, i) => Math.max(max, Math.abs(v - got[i]!)), 0);
        expect(worst, `[${shape}] epsilon ${epsilon}`).toBeLessThan(2e-5);
      }
    }
    expect(tf.memory().numTensors).toBe(before);
    const [x, weight] = [tf.ones([2, 4]), tf.ones([3])];
    expect(() => tf.engine().runKernel(LAYER_NORM_KERNEL, { x, weight, bias: weight }, { epsilon: 1e-5 })).toThrow(
      'PeftLayerNorm: weight is float32 [3], expected float32 [4]',
    );
    tf.dispose([x, weight]);
  });

  it('GELU (tanh), SwiGLU and RMSNorm equal their definitions and free what they make', async () => {
    await loadBackend('tensorflow');
    registerTensorflowKernels();
    const before = tf.memory().numTensors;
    const shape = [2, 3, 40];
    const size = 240;
    const [x, other, weight] = [values(size, 0, 4, 5), values(size, 0.5, 2, 6), values(40, 1, 0.5, 7)];
    const run = (kernel: string, inputs: Record<string, Float32Array>, attrs = {}): Float32Array =>
      tf.tidy(() => {
        const tensors = Object.fromEntries(
          Object.entries(inputs).map(([name, v]) => [name, v.length === 40 ? tf.tensor1d(v) : tf.tensor(v, shape)]),
        );
        const out = tf.engine().runKernel(kernel, tensors, attrs) as tf.Tensor;
        expect(out.shape).toEqual(shape);
        return out.dataSync() as Float32Array;
      });
    const worst = (got: Float32Array, want: (i: number) => number): number =>
      got.reduce((max, v, i) => Math.max(max, Math.abs(v - want(i)) / Math.max(1, Math.abs(want(i)))), 0);
    const gelu = (v: number): number => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
    const silu = (v: number): number => v / (1 + Math.exp(-v));
    expect(worst(run(GELU_TANH_KERNEL, { x }), (i) => gelu(x[i]!))).toBeLessThan(2e-6);
    expect(worst(run(SWIGLU_KERNEL, { gate: x, up: other }), (i) => silu(x[i]!) * other[i]!)).toBeLessThan(2e-6);
    const rms = (i: number, epsilon: number): number => {
      const row = Math.floor(i / 40);
      const part = [...x.subarray(row * 40, row * 40 + 40)];
      return (x[i]! / Math.sqrt(part.reduce((a, v) => a + v * v, 0) / 40 + epsilon)) * weight[i % 40]!;
    };
    for (const epsilon of [1e-6, 0.5])
      expect(worst(run(RMS_NORM_KERNEL, { x, weight }, { epsilon }), (i) => rms(i, epsilon))).toBeLessThan(2e-6);
    expect(tf.memory().numTensors).toBe(before);
    expect(() => run(SWIGLU_KERNEL, { gate: x, up: weight })).toThrow(
      'PeftSwiGlu: up is float32 [40], expected float32 [2,3,40]',
    );
  });

  it('reshape and mean: -1 shapes, every dtype, many shapes (their constants stay bounded), no tensor left', async () => {
    await loadBackend('tensorflow');
    registerTensorflowKernels();
    const before = tf.memory().numTensors;
    const backend = tf.backend() as unknown as { numDataIds(): number };
    tf.tidy(() => {
      const x = tf.tensor(values(24, 0, 1, 4), [2, 3, 4]);
      expect(tf.reshape(x, [4, -1]).shape).toEqual([4, 6]);
      expect([...tf.reshape(x, [-1]).dataSync()]).toEqual([...x.dataSync()]);
      expect(tf.reshape(tf.tensor([1, 2, 3, 4], [4], 'int32'), [2, 2]).arraySync()).toEqual([
        [1, 2],
        [3, 4],
      ]);
      expect(tf.reshape(tf.tensor([true, false, true, true], [4], 'bool'), [2, 2]).dtype).toBe('bool');
      expect(() => tf.reshape(x, [5, -1])).toThrow();
      const mean = (axis: number | number[], keepDims: boolean): number[] => [...tf.mean(x, axis, keepDims).dataSync()];
      const data = [...x.dataSync()];
      const at = (i: number, j: number, k: number): number => data[i * 12 + j * 4 + k]!;
      const byLast = [0, 1, 2, 3, 4, 5].map(
        (r) =>
          (at(Math.floor(r / 3), r % 3, 0) +
            at(Math.floor(r / 3), r % 3, 1) +
            at(Math.floor(r / 3), r % 3, 2) +
            at(Math.floor(r / 3), r % 3, 3)) /
          4,
      );
      for (const [i, v] of mean(-1, true).entries()) expect(v).toBeCloseTo(byLast[i]!, 5);
      expect(tf.mean(x, -1, true).shape).toEqual([2, 3, 1]);
      expect(tf.mean(x, [0, 2]).shape).toEqual([3]);
      expect(mean([0, 1, 2], false)[0]).toBeCloseTo(data.reduce((a, b) => a + b, 0) / 24, 5);
      // an int32 mean is tfjs's (a float32 result)
      expect(tf.mean(tf.tensor([1, 2], [2], 'int32')).dtype).toBe('float32');
    });
    const dataIds = backend.numDataIds();
    tf.tidy(() => {
      const x = tf.ones([3000]);
      for (let n = 1; n <= 3000; n++) tf.reshape(tf.slice(x, 0, n), [1, n]);
    });
    // 3,000 shapes: the constants made for them are bounded by the cache, not their number
    expect(backend.numDataIds() - dataIds).toBeLessThanOrEqual(1024);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe.runIf(hasTensorflow)('the softmax cross-entropy kernel on the tensorflow backend', () => {
  it("gives each row logsumexp - the label's logit and softmax - onehot, as the definition in float64", async () => {
    await loadBackend('tensorflow');
    registerTensorflowKernels();
    const before = tf.memory().numTensors;
    const [rows, classes] = [5, 37];
    const values = Float32Array.from({ length: rows * classes }, (_, i) => 8 * Math.sin(i * 1.37) + (i % 5));
    const targets = [0, 36, 4, 17, 4];
    const [losses, gradient] = tf.tidy(() => {
      const out = tf.engine().runKernel(SOFTMAX_CROSS_ENTROPY_KERNEL, {
        logits: tf.tensor2d(values, [rows, classes]),
        labels: tf.tensor1d(targets, 'int32'),
      }) as tf.Tensor[];
      return out.map((t) => t.dataSync().slice() as Float32Array);
    });
    for (let r = 0; r < rows; r++) {
      const row = [...values.subarray(r * classes, (r + 1) * classes)];
      const max = Math.max(...row);
      const total = row.reduce((sum, v) => sum + Math.exp(v - max), 0);
      expect(losses![r]).toBeCloseTo(Math.log(total) + max - row[targets[r]!]!, 4);
      for (let c = 0; c < classes; c++) {
        const expected = Math.exp(row[c]! - max) / total - (c === targets[r] ? 1 : 0);
        expect(Math.abs(gradient![r * classes + c]! - expected)).toBeLessThan(2e-6);
      }
    }
    const run =
      (shape: number[], labels: number[], dtype: 'int32' | 'float32' = 'int32') =>
      () =>
        tf.tidy(() =>
          tf
            .engine()
            .runKernel(SOFTMAX_CROSS_ENTROPY_KERNEL, { logits: tf.zeros(shape), labels: tf.tensor1d(labels, dtype) }),
        );
    expect(run([2, 3], [0, 1], 'float32')).toThrow(
      'PeftSoftmaxCrossEntropy: labels are float32 [2], expected int32 [2]',
    );
    expect(run([2, 3], [0, 1, 2])).toThrow('expected int32 [2]');
    expect(run([3], [0])).toThrow('logits [3] are not [n, V]');
    expect(run([2, 3], [0, 3])).toThrow(/label value of 3/);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe.runIf(hasTensorflow)("the language-model head's product on the tensorflow backend", () => {
  it('gives rows·weightᵀ as the definition in float64, on oneDNN where the build has it and without', async () => {
    await loadBackend('tensorflow');
    registerTensorflowKernels();
    const backend = tf.backend() as unknown as TensorflowBackendLike & {
      executeSingleOutput: (name: string, ...rest: unknown[]) => tf.Tensor;
    };
    const before = tf.memory().numTensors;
    const [n, d, vocabulary] = [3, 5, 11];
    const rowValues = Float32Array.from({ length: n * d }, (_, i) => Math.sin(i * 0.7) * 3);
    const weightValues = Float32Array.from({ length: vocabulary * d }, (_, i) => Math.cos(i * 1.3) - 0.2);
    const expected = reference(rowValues, weightValues, n, d, vocabulary, false, true);
    const rows = tf.tensor2d(rowValues, [n, d]);
    const weight = tf.tensor2d(weightValues, [vocabulary, d]);
    const worst = (got: tf.TensorInfo): number => {
      const values = got as tf.Tensor; // the backend's ops return tensors
      const diff = Math.max(...Array.from(values.dataSync(), (v, i) => Math.abs(v - expected[i]!)));
      expect(values.shape).toEqual([n, vocabulary]);
      values.dispose();
      return diff;
    };
    tf.dispose(tf.engine().runKernel(HEAD_PRODUCT_KERNEL, { rows, weight }) as tf.Tensor); // probes oneDNN once
    const { ops, restore } = recordOps(backend);
    try {
      expect(worst(tf.engine().runKernel(HEAD_PRODUCT_KERNEL, { rows, weight }) as tf.Tensor)).toBeLessThan(1e-5);
      // x64 builds have oneDNN: one product with the weight transposed, no transposes
      if (process.arch === 'x64') expect(ops).toEqual(['_MklMatMul']);
      for (const oneDnn of process.arch === 'x64' ? [true, false] : [false]) {
        ops.length = 0;
        expect(worst(headProductOps(backend, rows, weight, oneDnn))).toBeLessThan(1e-5);
        expect(ops).toEqual(oneDnn ? ['_MklMatMul'] : ['Transpose', 'MatMul', 'Transpose']);
      }
    } finally {
      restore();
    }
    const run = (rowShape: number[], weightShape: number[]) => () =>
      tf.tidy(() =>
        tf.engine().runKernel(HEAD_PRODUCT_KERNEL, { rows: tf.zeros(rowShape), weight: tf.zeros(weightShape) }),
      );
    expect(run([2, 3], [4, 5])).toThrow('PeftHeadProduct: weight is float32 [4,5], expected float32 [4,3]');
    expect(run([2, 3, 1], [4, 3])).toThrow('PeftHeadProduct: rows [2,3,1] and weight [4,3] are not both 2-D');
    tf.dispose([rows, weight]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
