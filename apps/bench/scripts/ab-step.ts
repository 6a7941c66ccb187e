// Paired A/B of a training step in one process: steps alternate between variant A and B, so the
// machine's drift (±10-25% between runs here) falls on both alike; prints each side's median step
// and the median of the per-pair ratios B/A. Used to decide speed changes (#11).
//
//   pnpm --filter @peft/bench ab-step <variant> [model=llama] [method=lora] [pairs=8]
// Variants: tf-matmul (A: tfjs-node's BatchMatMulV2 for every product, B: @peft/backend's MatMul
// for plain 2-D products); fused-loss (A: the logits, then the loss; B: fusedCausalLmLoss, the head
// and the loss in chunks, as `train` does); loss-kernel (A: the chunked loss composed of tfjs ops,
// B: with the backend's one-kernel softmax cross-entropy); onednn-matmul (A: 2-D products with a
// transposed operand on tfjs-node's BatchMatMulV2, as before; B: on oneDNN, as @peft/backend runs them);
// onednn-batch (A: batched products, attention's, on tfjs-node's BatchMatMulV2; B: on oneDNN's);
// onednn-plain (A: every plain 2-D product on libtensorflow's MatMul, as before; B: as @peft/backend runs
// them, those of 256 rows and more on oneDNN's _MklMatMul);
// head-product (A: the head's logits as (W·hᵀ)ᵀ from tfjs ops; B: the backend's HEAD_PRODUCT_KERNEL, h·Wᵀ on oneDNN).
import { selectBackend } from '@peft/backend';
import { HEAD_PRODUCT_KERNEL, SOFTMAX_CROSS_ENTROPY_KERNEL, train } from '@peft/core';
import { randomModel } from '@peft/models';
import * as tf from '@tensorflow/tfjs-core';

import { median } from '../src/perf/perf.js';
import { PERF_METHODS, PERF_MODELS, perfConfig, stepExamples } from '../src/perf/workloads.js';

const [variant = '', modelName = 'llama', methodName = 'lora', pairsArg = '8'] = process.argv.slice(2);
// tfjs-node is loaded here before selectBackend (to keep its own matmul kernel): the allocator
// selectBackend would choose is asked for by hand
process.env.TF_CPU_ALLOCATOR_USE_BFC ??= 'true';
await import('@tensorflow/tfjs-node');
const plain = tf.getKernel('BatchMatMul', 'tensorflow')!;
await selectBackend({ backend: 'tensorflow', warnIfSlow: false });
const chosen = tf.getKernel('BatchMatMul', 'tensorflow')!;
const lossKernel = tf.getKernel(SOFTMAX_CROSS_ENTROPY_KERNEL, 'tensorflow')!;
const headKernel = tf.getKernel(HEAD_PRODUCT_KERNEL, 'tensorflow')!;
const use = (config: tf.KernelConfig) => (): void => {
  tf.unregisterKernel('BatchMatMul', 'tensorflow');
  tf.registerKernel(config);
};
/** fused-loss's switch: whether train's headless passes reach the host. */
let fusedLoss = true;
/** The chosen kernel, with the products `back` picks sent back to tfjs-node's BatchMatMulV2. */
function sendingBack(back: (a: tf.TensorInfo, b: tf.TensorInfo, transposed: boolean) => boolean): tf.KernelConfig {
  return {
    ...chosen,
    kernelFunc: (args) => {
      const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
      return (back(a, b, transposeA || transposeB) ? plain : chosen).kernelFunc(args);
    },
  };
}
/** The transposed 2-D products on BatchMatMulV2. */
const transposedOnPlain = sendingBack((a, b, transposed) => a.shape.length === 2 && b.shape.length === 2 && transposed);
/** The batched products on BatchMatMulV2. */
const batchedOnPlain = sendingBack((a, b) => a.shape.length > 2 || b.shape.length > 2);
/** The chosen kernel, with every plain 2-D product on libtensorflow's MatMul (before oneDNN took those of 256 rows and more). */
const plainOnMatMul: tf.KernelConfig = {
  ...chosen,
  kernelFunc: (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    if (a.shape.length !== 2 || b.shape.length !== 2 || transposeA || transposeB || a.dtype !== 'float32')
      return chosen.kernelFunc(args);
    const backend = args.backend as unknown as {
      binding: Record<string, number>;
      executeSingleOutput(op: string, attrs: unknown[], inputs: tf.TensorInfo[]): tf.TensorInfo;
    };
    const { binding } = backend;
    return backend.executeSingleOutput(
      'MatMul',
      [
        { name: 'T', type: binding.TF_ATTR_TYPE, value: binding.TF_FLOAT },
        { name: 'transpose_a', type: binding.TF_ATTR_BOOL, value: false },
        { name: 'transpose_b', type: binding.TF_ATTR_BOOL, value: false },
      ],
      [a, b],
    );
  },
};
const VARIANTS: Record<string, { a: () => void; b: () => void }> = {
  'tf-matmul': { a: use(plain), b: use(chosen) },
  'onednn-matmul': { a: use(transposedOnPlain), b: use(chosen) },
  'onednn-batch': { a: use(batchedOnPlain), b: use(chosen) },
  'onednn-plain': { a: use(plainOnMatMul), b: use(chosen) },
  'fused-loss': {
    a: () => {
      fusedLoss = false;
    },
    b: () => {
      fusedLoss = true;
    },
  },
  'head-product': {
    a: () => {
      if (tf.getKernel(HEAD_PRODUCT_KERNEL, 'tensorflow')) tf.unregisterKernel(HEAD_PRODUCT_KERNEL, 'tensorflow');
    },
    b: () => {
      if (!tf.getKernel(HEAD_PRODUCT_KERNEL, 'tensorflow')) tf.registerKernel(headKernel);
    },
  },
  'loss-kernel': {
    a: () => {
      if (tf.getKernel(SOFTMAX_CROSS_ENTROPY_KERNEL, 'tensorflow'))
        tf.unregisterKernel(SOFTMAX_CROSS_ENTROPY_KERNEL, 'tensorflow');
    },
    b: () => {
      if (!tf.getKernel(SOFTMAX_CROSS_ENTROPY_KERNEL, 'tensorflow')) tf.registerKernel(lossKernel);
    },
  },
};
const chosenVariant = VARIANTS[variant];
const model = PERF_MODELS.find((m) => m.name === modelName);
const method = PERF_METHODS.find((m) => m.name === methodName);
if (!chosenVariant || !model || !method) {
  throw new Error(
    `usage: ab-step <${Object.keys(VARIANTS).join('|')}> [${PERF_MODELS.map((m) => m.name).join('|')}] [${PERF_METHODS.map((m) => m.name).join('|')}] [pairs]`,
  );
}
const pairs = Number(pairsArg);
const vocab = model.config.vocab_size as number;
const host = randomModel(perfConfig(model, 0)); // dropout off, as the harness by default
const hostForward = host.forward.bind(host);
host.forward = (input) => hostForward(fusedLoss ? input : { ...input, headless: false });
const trainable = method.make(host, model);
const warmup = 2;
const steps = warmup + 2 * pairs;
const data = stepExamples(4 * steps, vocab);
const seconds: { a: number[]; b: number[] } = { a: [], b: [] };
// pair p runs A then B when p is even, B then A when odd
const sideOf = (step: number): 'a' | 'b' => {
  const k = step - warmup - 1; // 0-based timed index (the timed steps are warmup + 1, ...)
  const first = Math.floor(k / 2) % 2 === 0 ? 'a' : 'b';
  return k % 2 === 0 ? first : first === 'a' ? 'b' : 'a';
};
chosenVariant[sideOf(warmup + 1)]();
await train(trainable, {
  task: 'causal-lm',
  padTokenId: 0,
  batchSize: 4,
  learningRate: 1e-4,
  schedule: 'constant',
  bucketByLength: false,
  data,
  onStep: (info) => {
    if (info.step > warmup) seconds[sideOf(info.step)].push(info.seconds);
    if (info.step < steps) chosenVariant[sideOf(info.step + 1)]();
  },
});
const ratios = seconds.a.map((a, i) => seconds.b[i]! / a);
console.log(
  `${variant} on ${model.name} ${method.name}, ${pairs} pairs: A ${(median(seconds.a) * 1000).toFixed(0)} ms, B ${(median(seconds.b) * 1000).toFixed(0)} ms; ` +
    `B/A per pair: median ${median(ratios).toFixed(3)} (${ratios.map((r) => r.toFixed(3)).join(' ')})`,
);
