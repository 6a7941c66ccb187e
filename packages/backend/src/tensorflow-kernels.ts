// Kernel choices on the tensorflow backend (tfjs-node over libtensorflow) that run faster than the
// ones tfjs-node registers.
import * as tf from '@tensorflow/tfjs-core';

import { allocatorChoice } from './allocator.js';
import { GRAPH_KERNEL, graphKernel } from './graph-kernel.js';

interface OpAttr {
  name: string;
  type: number;
  value: unknown;
}

export interface TensorflowBackendLike {
  binding: {
    TF_ATTR_BOOL: number;
    TF_ATTR_FLOAT: number;
    TF_ATTR_SHAPE: number;
    TF_ATTR_STRING: number;
    TF_ATTR_TYPE: number;
    TF_FLOAT: number;
    TF_INT32: number;
    TF_BOOL: number;
  };
  /** tfjs-node runs one libtensorflow op eagerly; its outputs come back as tensors. */
  executeSingleOutput(name: string, attrs: OpAttr[], inputs: tf.TensorInfo[]): tf.Tensor;
  executeMultipleOutputs(name: string, attrs: OpAttr[], inputs: tf.TensorInfo[], outputs: number): tf.Tensor[];
  /** libtensorflow's type enum of a tfjs dtype. */
  getDTypeInteger(dtype: tf.DataType): number;
  /** Data held by the backend alone: the engine neither counts nor frees it. */
  write(values: tf.backend_util.BackendValues, shape: number[], dtype: tf.DataType): tf.DataId;
  readSync(dataId: tf.DataId): tf.backend_util.BackendValues;
  disposeData(dataId: tf.DataId, force?: boolean): boolean;
}

/** A float32 type attribute named `name` (T, dtype). */
const floatAttr = (backend: TensorflowBackendLike, name: string): OpAttr => ({
  name,
  type: backend.binding.TF_ATTR_TYPE,
  value: backend.binding.TF_FLOAT,
});

/**
 * tfjs-node runs every matmul as libtensorflow's BatchMatMulV2. For a plain 2-D product with
 * neither operand transposed, libtensorflow's MatMul is faster at the shapes of a training step
 * (measured on 2 cores, medians of 15: [512,32000]x[32000,768], the LM head's input gradient,
 * 160-172 -> 215-219 GFLOPS; [512,2048]x[2048,768] 171-183 -> 198-201; [512,768]x[768,256]
 * 169-194 -> 191-203). With a transposed operand (the input and weight gradients of every
 * projection) Eigen's MatMul is as fast or slower ([512,3072] by [768,3072]ᵀ: 201 -> 158), and
 * oneDNN's (`_MklMatMul`, in libtensorflow's x86 builds; TensorFlow leaves oneDNN off by default on
 * CPUs without AVX-512) is faster: [512,768] by [50257,768]ᵀ 57 -> 93-100 GFLOPS, [768,512]ᵀ by
 * [512,2304] 100-139 -> 134-150 (AMD EPYC, 2 cores). So transposed 2-D products run on oneDNN where
 * the build has it, plain ones too from ONEDNN_PLAIN_ROWS rows (measured there), the others on
 * MatMul. Batched products (attention's scores and
 * weighted values, and their gradients) run on oneDNN's batched matmul there: at the small Llama's
 * attention shapes ([16,384,64] by [16,128,64]ᵀ and the like) 16-29 -> 32-54 GFLOPS, interleaved in
 * one process (AMD EPYC, 2 cores). Same product, same float32 result up to rounding.
 */
function makeBatchMatMul(original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return original(args);
    const backend = args.backend as TensorflowBackendLike;
    const batched = a.shape.length !== 2 || b.shape.length !== 2;
    const rows = a.shape[transposeA ? 1 : 0]!;
    const op = batched
      ? ONEDNN_BATCH_MATMUL
      : transposeA || transposeB || rows >= ONEDNN_PLAIN_ROWS
        ? ONEDNN_MATMUL
        : 'MatMul';
    if (op !== 'MatMul' && !hasOneDnn(backend, op)) return original(args);
    return backend.executeSingleOutput(op, matMulAttrs(backend, op, transposeA, transposeB), [a, b]);
  };
}

/**
 * From this many rows, plain 2-D products (a training step's forward projections: batch x sequence
 * rows) run on oneDNN too. Interleaved in one process (AMD EPYC, 2 cores), GFLOPS MatMul -> oneDNN:
 * [512,768]x[768,2048] 66-86 -> 95-106, [512,768]x[768,2304] 73-81 -> 102-109, [512,768]x[768,768]
 * 122 -> 124, [512,2048]x[2048,768] 92-120 -> 109-130, [256,896]x[896,4864] 71-73 -> 87-97; at 128
 * rows oneDNN is slower where the weight is wide ([128,768]x[768,2048] 49-70 -> 58-62) and faster
 * where it is not ([128,768]x[768,768] 59-64 -> 92-96), and at 1-8 rows alike or slower: fewer rows
 * stay on MatMul. Training steps alternating in one process (`ab-step onednn-plain`): see the bench README.
 */
const ONEDNN_PLAIN_ROWS = 256;

/** oneDNN's 2-D and batched products, reached from eager mode by their kernel label. */
const ONEDNN_MATMUL = '_MklMatMul';
const ONEDNN_BATCH_MATMUL = '_MklBatchMatMulV2';

/**
 * The attributes of a product `op`: MatMul and ONEDNN_MATMUL take transpose_a / transpose_b,
 * ONEDNN_BATCH_MATMUL (BatchMatMulV2's) adj_x / adj_y; the oneDNN ops also name their kernel's label.
 */
function matMulAttrs(backend: TensorflowBackendLike, op: string, transposeA: boolean, transposeB: boolean): OpAttr[] {
  const { binding } = backend;
  const [a, b] = op === ONEDNN_BATCH_MATMUL ? ['adj_x', 'adj_y'] : ['transpose_a', 'transpose_b'];
  return [
    floatAttr(backend, 'T'),
    { name: a, type: binding.TF_ATTR_BOOL, value: transposeA },
    { name: b, type: binding.TF_ATTR_BOOL, value: transposeB },
    ...(op === 'MatMul' ? [] : [{ name: '_kernel', type: binding.TF_ATTR_STRING, value: 'MklNameChangeOp' }]),
  ];
}

const oneDnnProbes = new WeakMap<TensorflowBackendLike, Map<string, boolean>>();

/** Whether this libtensorflow has oneDNN's 2-D (`_MklMatMul`) or batched product (x86 builds do; others refuse the op); probed once each. */
function hasOneDnn(backend: TensorflowBackendLike, op: typeof ONEDNN_MATMUL | typeof ONEDNN_BATCH_MATMUL): boolean {
  let known = oneDnnProbes.get(backend);
  if (!known) {
    known = new Map();
    oneDnnProbes.set(backend, known);
  }
  let has = known.get(op);
  if (has === undefined) {
    has = probeOneDnn(backend, op);
    known.set(op, has);
  }
  return has;
}

function probeOneDnn(backend: TensorflowBackendLike, op: typeof ONEDNN_MATMUL | typeof ONEDNN_BATCH_MATMUL): boolean {
  // the user's own switch: 0 keeps oneDNN out of every op, ours included
  if (process.env.TF_ENABLE_ONEDNN_OPTS === '0') return false;
  const shape = op === ONEDNN_MATMUL ? [2, 2] : [1, 2, 2];
  const inputs = [
    [1, 2, 3, 4],
    [5, 6, 7, 8],
  ].map((values) => ({
    dataId: backend.write(Float32Array.from(values), shape, 'float32'),
    shape,
    dtype: 'float32' as const,
  }));
  try {
    // [[1,2],[3,4]]·[[5,6],[7,8]]ᵀ = [[17,23],[39,53]]; [[1,2],[3,4]]ᵀ·[[5,6],[7,8]] = [[26,30],[38,44]]
    for (const [transposeA, expected] of [
      [false, '17,23,39,53'],
      [true, '26,30,38,44'],
    ] as const) {
      const product = backend.executeSingleOutput(op, matMulAttrs(backend, op, transposeA, !transposeA), inputs);
      try {
        if ([...(backend.readSync(product.dataId) as Float32Array)].join() !== expected) return false;
      } finally {
        product.dispose();
      }
    }
    return true;
  } catch {
    return false;
  } finally {
    for (const input of inputs) backend.disposeData(input.dataId, true);
  }
}

/**
 * Small constant inputs (shapes, axes, scalars, a norm's unit scale) that tfjs-node's kernels make
 * and upload anew on each call: a Reshape made an int32 tensor for its shape every time (a tensor to
 * create, track, upload and free: about as long as the op itself at decoding's sizes). Kept by the
 * backend, never by the engine (so no tensor count changes), the oldest freed past CONSTANT_LIMIT.
 */
const CONSTANT_LIMIT = 1024;
const constantCache = new WeakMap<TensorflowBackendLike, Map<string, tf.TensorInfo>>();

function constant(
  backend: TensorflowBackendLike,
  dtype: 'float32' | 'int32',
  shape: number[],
  values: readonly number[] | { fill: number },
): tf.TensorInfo {
  let cache = constantCache.get(backend);
  if (!cache) {
    cache = new Map();
    constantCache.set(backend, cache);
  }
  const fill = Array.isArray(values) ? null : (values as { fill: number }).fill;
  const key = `${dtype}|${shape.join(',')}|${fill === null ? (values as readonly number[]).join(',') : `fill ${fill}`}`;
  let info = cache.get(key);
  if (info) return info;
  const size = shape.reduce((product, extent) => product * extent, 1);
  const data = dtype === 'int32' ? new Int32Array(size) : new Float32Array(size);
  if (fill === null) data.set(values as readonly number[]);
  else data.fill(fill);
  info = { dataId: backend.write(data, shape, dtype), shape, dtype };
  if (cache.size >= CONSTANT_LIMIT) {
    const [oldest, evicted] = cache.entries().next().value as [string, tf.TensorInfo];
    backend.disposeData(evicted.dataId, true);
    cache.delete(oldest);
  }
  cache.set(key, info);
  return info;
}

const intVector = (backend: TensorflowBackendLike, values: readonly number[]): tf.TensorInfo =>
  constant(backend, 'int32', [values.length], values);
const floatScalar = (backend: TensorflowBackendLike, value: number): tf.TensorInfo =>
  constant(backend, 'float32', [], [value]);

const typeAttr = (backend: TensorflowBackendLike, name: string, dtype: tf.DataType): OpAttr => ({
  name,
  type: backend.binding.TF_ATTR_TYPE,
  value: backend.getDTypeInteger(dtype),
});

/** libtensorflow Mean's attributes for a float32 input (its axes are an int32 input). */
const meanAttrs = (backend: TensorflowBackendLike, keepDims: boolean): OpAttr[] => [
  { name: 'keep_dims', type: backend.binding.TF_ATTR_BOOL, value: keepDims },
  floatAttr(backend, 'T'),
  typeAttr(backend, 'Tidx', 'int32'),
];

/** Reshape with its shape from the constant cache (tfjs-node's makes and uploads it each call). */
function makeReshape(original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (x.dtype !== 'float32' && x.dtype !== 'int32') return original(args);
    const backend = args.backend as TensorflowBackendLike;
    const shape = tf.util.inferFromImplicitShape(
      [...(args.attrs as { shape: number[] }).shape],
      tf.util.sizeFromShape(x.shape),
    );
    return backend.executeSingleOutput(
      'Reshape',
      [typeAttr(backend, 'T', x.dtype), typeAttr(backend, 'Tshape', 'int32')],
      [x, intVector(backend, shape)],
    );
  };
}

/**
 * Mean of a float32 tensor without tfjs-node's cast of its input to float32 (a copy, made for the
 * other dtypes) and with its axes from the constant cache: one op where there were three and an upload.
 */
function makeMean(original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (x.dtype !== 'float32') return original(args);
    const backend = args.backend as TensorflowBackendLike;
    const { axis, keepDims } = args.attrs as { axis: number | number[]; keepDims: boolean };
    return backend.executeSingleOutput('Mean', meanAttrs(backend, keepDims), [
      x,
      intVector(backend, tf.util.parseAxisParam(axis, x.shape)),
    ]);
  };
}

/**
 * Runs `body` with `run(op, inputs, attrs)` executing libtensorflow ops (attributes default to a
 * float32 T) and `adopt(tensors)` for the outputs of ops run otherwise; every intermediate is freed,
 * the returned tensor kept. Used by the inference kernels: plain ops with cached constants, none of
 * tfjs's per-op bookkeeping, and none of customGrad's (a GELU of one decoded token spent 130 of its
 * 340 µs there).
 */
function plainOps(
  backend: TensorflowBackendLike,
  body: (
    run: (name: string, inputs: tf.TensorInfo[], attrs?: OpAttr[]) => tf.TensorInfo,
    adopt: (tensors: tf.Tensor[]) => void,
  ) => tf.TensorInfo,
): tf.TensorInfo {
  const T = [floatAttr(backend, 'T')];
  const made: tf.Tensor[] = [];
  try {
    const out = body(
      (name, inputs, attrs = T) => {
        const tensor = backend.executeSingleOutput(name, attrs, inputs);
        made.push(tensor);
        return tensor;
      },
      (tensors) => made.push(...tensors),
    );
    made.splice(made.indexOf(out as tf.Tensor), 1);
    return out;
  } finally {
    tf.dispose(made);
  }
}

/** @peft/core's layer norm kernel (`LAYER_NORM_KERNEL`; no dependency on core). */
export const LAYER_NORM_KERNEL = 'PeftLayerNorm';

/**
 * Up to this many rows, the layer norm is one FusedBatchNormV3; past it, whose NCHW layout costs
 * two transposes on CPU, the composed form is faster (measured on 2 cores, 768 wide: 1 row 265 ->
 * 107 µs, 512 rows 1.5 -> 1.9 ms).
 */
const FUSED_NORM_ROWS = 64;

/**
 * LayerNorm over the last axis, (x - mean)/√(var + ε)·w + b with the biased variance, as libtensorflow
 * ops run directly: for inference (no gradient). At decoding's sizes each tfjs op costs more than
 * its arithmetic, and tfjs's composed norm ran 11 (two of them casts); here the rows are the channels
 * of a training-mode FusedBatchNormV3 in NCHW layout ([1, rows, 1, d]: the statistics of each row),
 * then the weight and bias: five ops. Larger inputs run the composed form as seven plain ops.
 */
function layerNormKernel(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as TensorflowBackendLike;
  const { x, weight, bias } = args.inputs as Record<'x' | 'weight' | 'bias', tf.TensorInfo>;
  const { epsilon } = args.attrs as unknown as { epsilon: number };
  const width = x.shape.at(-1) ?? 0;
  checkFloat(LAYER_NORM_KERNEL, 'x', x, x.shape);
  checkFloat(LAYER_NORM_KERNEL, 'weight', weight, [width]);
  checkFloat(LAYER_NORM_KERNEL, 'bias', bias, [width]);
  if (!(epsilon > 0)) throw new Error(`${LAYER_NORM_KERNEL}: epsilon ${epsilon} is not > 0`);
  const rows = tf.util.sizeFromShape(x.shape) / width;
  const T = floatAttr(backend, 'T');
  const shapeAttrs = [T, typeAttr(backend, 'Tshape', 'int32')];
  return plainOps(backend, (run, adopt) => {
    const affine = (normed: tf.TensorInfo): tf.TensorInfo => run('AddV2', [run('Mul', [normed, weight]), bias]);
    if (rows <= FUSED_NORM_ROWS) {
      const rowsAsChannels = run('Reshape', [x, intVector(backend, [1, rows, 1, width])], shapeAttrs);
      const empty = constant(backend, 'float32', [0], []);
      const outputs = backend.executeMultipleOutputs(
        'FusedBatchNormV3',
        [
          T,
          floatAttr(backend, 'U'),
          { name: 'epsilon', type: backend.binding.TF_ATTR_FLOAT, value: epsilon },
          { name: 'exponential_avg_factor', type: backend.binding.TF_ATTR_FLOAT, value: 1 },
          { name: 'data_format', type: backend.binding.TF_ATTR_STRING, value: 'NCHW' },
          { name: 'is_training', type: backend.binding.TF_ATTR_BOOL, value: true },
        ],
        [
          rowsAsChannels,
          constant(backend, 'float32', [rows], { fill: 1 }),
          constant(backend, 'float32', [rows], { fill: 0 }),
          empty,
          empty,
        ],
        6,
      );
      adopt(outputs); // y, then the batch statistics, which are not needed
      return run('Reshape', [affine(outputs[0]!), intVector(backend, x.shape)], shapeAttrs);
    }
    const lastAxis = intVector(backend, [x.shape.length - 1]);
    const centred = run('Sub', [x, run('Mean', [x, lastAxis], meanAttrs(backend, true))]);
    const variance = run('Mean', [run('Square', [centred]), lastAxis], meanAttrs(backend, true));
    return affine(run('Mul', [centred, run('Rsqrt', [run('AddV2', [variance, floatScalar(backend, epsilon)])])]));
  });
}

/** @peft/core's inference kernels of GELU (tanh), SwiGLU and RMSNorm (`GELU_TANH_KERNEL`, ...). */
export const GELU_TANH_KERNEL = 'PeftGeluTanh';
export const SWIGLU_KERNEL = 'PeftSwiGlu';
export const RMS_NORM_KERNEL = 'PeftRmsNorm';

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** GELU, tanh approximation, as core's: x·σ(2c·(x + 0.044715·x³)), c = √(2/π): six ops. */
function geluTanhKernel(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as TensorflowBackendLike;
  const { x } = args.inputs as { x: tf.TensorInfo };
  checkFloat(GELU_TANH_KERNEL, 'x', x, x.shape);
  const twoC = 2 * SQRT_2_OVER_PI;
  return plainOps(backend, (run) => {
    const slope = run('AddV2', [
      run('Mul', [run('Square', [x]), floatScalar(backend, twoC * 0.044715)]),
      floatScalar(backend, twoC),
    ]);
    return run('Mul', [x, run('Sigmoid', [run('Mul', [x, slope])])]);
  });
}

/** SiLU(gate)·up: gate·σ(gate)·up, three ops. */
function swiGluKernel(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as TensorflowBackendLike;
  const { gate, up } = args.inputs as { gate: tf.TensorInfo; up: tf.TensorInfo };
  checkFloat(SWIGLU_KERNEL, 'gate', gate, gate.shape);
  checkFloat(SWIGLU_KERNEL, 'up', up, gate.shape);
  return plainOps(backend, (run) => run('Mul', [run('Mul', [gate, run('Sigmoid', [gate])]), up]));
}

/** RMSNorm over the last axis, x/√(mean(x²) + ε)·w: six ops. */
function rmsNormKernel(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as TensorflowBackendLike;
  const { x, weight } = args.inputs as { x: tf.TensorInfo; weight: tf.TensorInfo };
  const { epsilon } = args.attrs as unknown as { epsilon: number };
  checkFloat(RMS_NORM_KERNEL, 'x', x, x.shape);
  checkFloat(RMS_NORM_KERNEL, 'weight', weight, [x.shape.at(-1) ?? 0]);
  if (!(epsilon > 0)) throw new Error(`${RMS_NORM_KERNEL}: epsilon ${epsilon} is not > 0`);
  return plainOps(backend, (run) => {
    const meanSquare = run(
      'Mean',
      [run('Square', [x]), intVector(backend, [x.shape.length - 1])],
      meanAttrs(backend, true),
    );
    const inverse = run('Rsqrt', [run('AddV2', [meanSquare, floatScalar(backend, epsilon)])]);
    return run('Mul', [run('Mul', [x, inverse]), weight]);
  });
}

/** @peft/core's language-model head product (`HEAD_PRODUCT_KERNEL`; no dependency on core). */
export const HEAD_PRODUCT_KERNEL = 'PeftHeadProduct';

/**
 * rows [N, d] by a head's weight [V, d]: rows·weightᵀ [N, V]. On oneDNN the product with the weight
 * transposed is the faster form at the heads' shapes (interleaved in one process, AMD EPYC, 2 cores:
 * [128,768] by [50257,768]ᵀ 160 -> 128 ms, [128,896] by [151936,896]ᵀ 437 -> 405, [508,768] by
 * [50257,768]ᵀ 443 -> 393, [512,768] by [32000,768]ᵀ 304 -> 259, [254-256,896] by [151936,896]ᵀ
 * 889-973 -> 866-922; one earlier run at 256 rows 775 -> 794) and makes one [N, V] tensor where the
 * other makes two. Without oneDNN, libtensorflow's own
 * product with the vocabulary-sized operand transposed runs at about half speed, so the kernel runs
 * (weight·rowsᵀ)ᵀ there, as tfjs ops did before.
 */
function headProductKernel(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as TensorflowBackendLike;
  const { rows, weight } = args.inputs as { rows: tf.TensorInfo; weight: tf.TensorInfo };
  if (rows.shape.length !== 2 || weight.shape.length !== 2) {
    throw new Error(`${HEAD_PRODUCT_KERNEL}: rows [${rows.shape}] and weight [${weight.shape}] are not both 2-D`);
  }
  checkFloat(HEAD_PRODUCT_KERNEL, 'rows', rows, rows.shape);
  checkFloat(HEAD_PRODUCT_KERNEL, 'weight', weight, [weight.shape[0]!, rows.shape[1]!]);
  return headProductOps(backend, rows, weight, hasOneDnn(backend, ONEDNN_MATMUL));
}

/** HEAD_PRODUCT_KERNEL's ops, on oneDNN or not (exported for the tests, which run both on one build). */
export function headProductOps(
  backend: TensorflowBackendLike,
  rows: tf.TensorInfo,
  weight: tf.TensorInfo,
  oneDnn: boolean,
): tf.TensorInfo {
  if (oneDnn)
    return backend.executeSingleOutput(ONEDNN_MATMUL, matMulAttrs(backend, ONEDNN_MATMUL, false, true), [rows, weight]);
  const swap = intVector(backend, [1, 0]);
  const transposeAttrs = [floatAttr(backend, 'T'), typeAttr(backend, 'Tperm', 'int32')];
  return plainOps(backend, (run) =>
    run(
      'Transpose',
      [
        run(
          'MatMul',
          [weight, run('Transpose', [rows, swap], transposeAttrs)],
          matMulAttrs(backend, 'MatMul', false, false),
        ),
        swap,
      ],
      transposeAttrs,
    ),
  );
}

/** @peft/core's softmax cross-entropy kernel (`SOFTMAX_CROSS_ENTROPY_KERNEL`; no dependency on core). */
export const SOFTMAX_CROSS_ENTROPY_KERNEL = 'PeftSoftmaxCrossEntropy';

/**
 * Per row of `logits` [n, V] with its class in `labels` [n] (int32, each in 0..V-1): the loss
 * logsumexp(row) - row[label] [n], and its gradient softmax(row) - onehot(label) [n, V], as one
 * libtensorflow SparseSoftmaxCrossEntropyWithLogits. The composed form ran eleven kernels over the
 * [n, V] values (GPT-2's head over 508 tokens: 203 -> 117 ms, loss and gradient alike).
 */
function softmaxCrossEntropy(args: KernelArgs): tf.TensorInfo[] {
  const backend = args.backend as TensorflowBackendLike;
  const { logits, labels } = args.inputs as { logits: tf.TensorInfo; labels: tf.TensorInfo };
  if (logits.shape.length !== 2)
    throw new Error(`${SOFTMAX_CROSS_ENTROPY_KERNEL}: logits [${logits.shape}] are not [n, V]`);
  checkFloat(SOFTMAX_CROSS_ENTROPY_KERNEL, 'logits', logits, logits.shape);
  if (labels.dtype !== 'int32' || !tf.util.arraysEqual(labels.shape, [logits.shape[0]!])) {
    throw new Error(
      `${SOFTMAX_CROSS_ENTROPY_KERNEL}: labels are ${labels.dtype} [${labels.shape}], expected int32 [${logits.shape[0]}]`,
    );
  }
  return backend.executeMultipleOutputs(
    'SparseSoftmaxCrossEntropyWithLogits',
    [floatAttr(backend, 'T'), typeAttr(backend, 'Tlabels', 'int32')],
    [logits, labels],
    2,
  );
}

/** @peft/core's fused AdamW kernels (`ADAMW_KERNEL` and its two helpers; no dependency on core). */
export const ADAMW_KERNEL = 'PeftAdamW';
export const ADAMW_MOMENT_KERNEL = 'PeftAdamWMoment';
export const ADAMW_READ_KERNEL = 'PeftAdamWRead';

/** @peft/core's `AdamWKernelAttrs`: one step of torch.optim.AdamW. */
interface AdamWAttrs {
  beta1: number;
  beta2: number;
  beta1Power: number;
  beta2Power: number;
  learningRate: number;
  epsilon: number;
  decay: number;
  gradientScale: number;
}

/**
 * TensorFlow's name for a resource that lives as long as its handle (ResourceHandle::ANONYMOUS_NAME,
 * what TensorFlow's own eager variables use): disposing the handle frees the variable. With any
 * other name the resource manager would keep each variable until the process ends.
 */
const ANONYMOUS_RESOURCE = 'cd2c89b7-88b7-44c8-ad83-06c2a9158347';

type KernelArgs = Parameters<tf.KernelFunc>[0];

/**
 * A libtensorflow resource variable (a handle tensor; tfjs-node shows it as a string scalar) holding
 * `value`. Assigning shares value's buffer; the first in-place update copies it while anything else
 * still holds that buffer (TensorFlow's copy-on-write), so `value` never changes.
 */
function makeVariable(backend: TensorflowBackendLike, value: tf.TensorInfo): tf.Tensor {
  const { binding } = backend;
  const handle = backend.executeSingleOutput(
    'VarHandleOp',
    [
      { name: 'container', type: binding.TF_ATTR_STRING, value: '' },
      { name: 'shared_name', type: binding.TF_ATTR_STRING, value: ANONYMOUS_RESOURCE },
      floatAttr(backend, 'dtype'),
      { name: 'shape', type: binding.TF_ATTR_SHAPE, value: value.shape },
    ],
    [],
  );
  backend.executeMultipleOutputs('AssignVariableOp', [floatAttr(backend, 'dtype')], [handle, value], 0);
  return handle;
}

/** A variable's values now, as a tensor that later in-place updates leave alone (copy-on-write). */
function readVariable(backend: TensorflowBackendLike, handle: tf.TensorInfo): tf.Tensor {
  return backend.executeSingleOutput('ReadVariableOp', [floatAttr(backend, 'dtype')], [handle]);
}

function checkFloat(kernel: string, name: string, input: tf.TensorInfo, shape: number[]): void {
  if (input.dtype !== 'float32' || !tf.util.arraysEqual(input.shape, shape)) {
    throw new Error(`${kernel}: ${name} is ${input.dtype} [${input.shape}], expected float32 [${shape}]`);
  }
}

function checkMoment(name: string, input: tf.TensorInfo): void {
  if (input.dtype !== 'string' || input.shape.length !== 0) {
    throw new Error(
      `${ADAMW_KERNEL}: ${name} is ${input.dtype} [${input.shape}], expected a moment made by ${ADAMW_MOMENT_KERNEL}`,
    );
  }
}

/**
 * AdamW as libtensorflow's ResourceApplyAdam: one fused pass that updates parameter and moments in
 * place, instead of the composed update's twelve elementwise ops, each a pass over memory that
 * writes a new tensor (measured alone, moments copied each call: [32000,768] 120 -> 58 ms,
 * [768,2048] 11.7 -> 5.0 ms). The moments live in the backend between steps (ADAMW_MOMENT_KERNEL),
 * so they are updated where they are. The parameter goes into a variable that lives for this call:
 * the tfjs tensor still holds its buffer, so the update works on a copy and the input stays as it
 * was (the decayed parameter, made here and released first, needs no copy).
 *
 * ResourceApplyAdam: lr_t = lr·√(1-β2^t)/(1-β1^t); m += (g-m)(1-β1); v += (g²-v)(1-β2);
 * p -= lr_t·m/(√v + ε̂). Given β^t = 0, lr = torch's lr·√(1-β2^t)/(1-β1^t) and ε̂ = ε·√(1-β2^t), that
 * is torch's p -= lr/(1-β1^t)·m/(√v/√(1-β2^t) + ε).
 */
function adamW(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as TensorflowBackendLike;
  const { param, expAvg, expAvgSq, gradient } = args.inputs as Record<
    'param' | 'expAvg' | 'expAvgSq' | 'gradient',
    tf.TensorInfo
  >;
  const attrs = args.attrs as unknown as AdamWAttrs;
  checkFloat(ADAMW_KERNEL, 'param', param, param.shape);
  checkFloat(ADAMW_KERNEL, 'gradient', gradient, param.shape);
  checkMoment('expAvg', expAvg);
  checkMoment('expAvgSq', expAvgSq);
  const made: tf.Tensor[] = [];
  const make = (tensor: tf.Tensor): tf.Tensor => {
    made.push(tensor);
    return tensor;
  };
  const multiply = (x: tf.TensorInfo, factor: number): tf.Tensor =>
    make(backend.executeSingleOutput('Mul', [floatAttr(backend, 'T')], [x, make(tf.scalar(factor))]));
  try {
    const decayed = attrs.decay === 1 ? null : multiply(param, attrs.decay);
    const variable = make(makeVariable(backend, decayed ?? param));
    decayed?.dispose(); // the variable holds the only reference now: updated without a copy
    const scaled = attrs.gradientScale === 1 ? gradient : multiply(gradient, attrs.gradientScale);
    // the bias corrections go into the step size and ε here, in float64: given β^t, libtensorflow
    // would form 1 - β2^t in float32 (1 - 0.999f is 1.3e-5 off 0.001)
    const root2 = Math.sqrt(1 - attrs.beta2Power);
    const stepSize = (attrs.learningRate * root2) / (1 - attrs.beta1Power);
    const scalars = [0, 0, stepSize, attrs.beta1, attrs.beta2, attrs.epsilon * root2].map((x) => make(tf.scalar(x)));
    backend.executeMultipleOutputs(
      'ResourceApplyAdam',
      [
        floatAttr(backend, 'T'),
        { name: 'use_locking', type: backend.binding.TF_ATTR_BOOL, value: false },
        { name: 'use_nesterov', type: backend.binding.TF_ATTR_BOOL, value: false },
      ],
      [variable, expAvg, expAvgSq, ...scalars, scaled],
      0,
    );
    return readVariable(backend, variable);
  } finally {
    tf.dispose(made.filter((tensor) => !tensor.isDisposed));
  }
}

function adamWMoment(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as TensorflowBackendLike;
  const { value } = args.inputs as { value: tf.TensorInfo };
  checkFloat(ADAMW_MOMENT_KERNEL, 'value', value, value.shape);
  return makeVariable(backend, value);
}

function adamWRead(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as TensorflowBackendLike;
  const { moment } = args.inputs as { moment: tf.TensorInfo };
  if (moment.dtype !== 'string' || moment.shape.length !== 0)
    throw new Error(
      `${ADAMW_READ_KERNEL}: expected a moment made by ${ADAMW_MOMENT_KERNEL}, got ${moment.dtype} [${moment.shape}]`,
    );
  return readVariable(backend, moment);
}

/** @peft/core's dropout mask kernel (`DROPOUT_MASK_KERNEL`; no dependency on core). */
export const DROPOUT_MASK_KERNEL = 'PeftDropoutMask';

/**
 * A dropout mask of `shape`: 1 / (1 - rate) where a value is kept, 0 where it is dropped, from
 * libtensorflow's StatelessRandomUniform (Philox, seeded by `seed`: the same seed, the same mask),
 * in four native passes. tfjs's tf.dropout draws each number in JavaScript: 18% of a GPT-2 LoRA step
 * with GPT-2's dropout 0.1 went there.
 */
function dropoutMask(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as TensorflowBackendLike;
  const { binding } = backend;
  const { shape, rate, seed } = args.attrs as unknown as { shape: number[]; rate: number; seed: number };
  if (!(rate >= 0 && rate < 1)) throw new Error(`${DROPOUT_MASK_KERNEL}: rate ${rate} is outside [0, 1)`);
  const type = (name: string, value: number): OpAttr => ({ name, type: binding.TF_ATTR_TYPE, value });
  const made: tf.Tensor[] = [];
  const make = (tensor: tf.Tensor): tf.Tensor => {
    made.push(tensor);
    return tensor;
  };
  try {
    const uniform = make(
      backend.executeSingleOutput(
        'StatelessRandomUniform',
        [type('dtype', binding.TF_FLOAT), type('T', binding.TF_INT32), type('Tseed', binding.TF_INT32)],
        [make(tf.tensor1d(shape, 'int32')), make(tf.tensor1d([seed | 0, 0x5eed], 'int32'))],
      ),
    );
    const kept = make(
      backend.executeSingleOutput('GreaterEqual', [floatAttr(backend, 'T')], [uniform, make(tf.scalar(rate))]),
    );
    const ones = make(
      backend.executeSingleOutput(
        'Cast',
        [
          type('SrcT', binding.TF_BOOL),
          type('DstT', binding.TF_FLOAT),
          { name: 'Truncate', type: binding.TF_ATTR_BOOL, value: false },
        ],
        [kept],
      ),
    );
    return backend.executeSingleOutput('Mul', [floatAttr(backend, 'T')], [ones, make(tf.scalar(1 / (1 - rate)))]);
  } finally {
    tf.dispose(made);
  }
}

/**
 * What the tensorflow backend runs beyond tfjs-node's own kernels, for peft-doctor: one line each.
 * The backend must be the current one.
 */
export function nativeKernelChoices(): string[] {
  const backend = tf.backend() as unknown as TensorflowBackendLike;
  return [
    hasOneDnn(backend, ONEDNN_MATMUL)
      ? `matmul: oneDNN (_MklMatMul) for 2-D products with a transposed operand (training's gradients, the language-model head) or ${ONEDNN_PLAIN_ROWS} rows and more, libtensorflow's MatMul for the others`
      : "matmul: libtensorflow's MatMul and BatchMatMulV2 (this build has no oneDNN matmul)",
    hasOneDnn(backend, ONEDNN_BATCH_MATMUL)
      ? 'batched matmul (attention): oneDNN (_MklBatchMatMulV2)'
      : "batched matmul (attention): libtensorflow's BatchMatMulV2",
    `memory: ${allocatorChoice() ?? 'as libtensorflow chose it (tfjs-node was not loaded by selectBackend)'}`,
    'decoding: each step of GPT-2, the Llama family and Phi-3 as one graph (one call instead of hundreds of ops)',
    // measured, training + forward + decoding of GPT-2 in alternating processes: not faster, so not provisioned
    "library: the tensorflow-cpu 2.21 wheel's (intel-tensorflow-avx512 2.14 on an Intel Xeon and tf-nightly-cpu " +
      '2.22-dev on an AMD EPYC measured no faster; LIBTENSORFLOW_DIR at install takes another)',
  ];
}

/** Marks the kernels this module registered, so that a second call leaves them alone. */
const REGISTERED = Symbol('peft tensorflow kernels');

/**
 * Puts the faster matmul, reshape and mean, the fused AdamW, the dropout mask, the inference kernels
 * the softmax cross-entropy and the graph runner in place on the tensorflow backend (once; tfjs-node must be loaded).
 */
export function registerTensorflowKernels(): void {
  const current = tf.getKernel('BatchMatMul', 'tensorflow');
  if (!current) throw new Error('tfjs-node registered no BatchMatMul kernel for the tensorflow backend');
  if ((current as { [REGISTERED]?: boolean })[REGISTERED]) return;
  tf.unregisterKernel('BatchMatMul', 'tensorflow');
  const config: tf.KernelConfig & { [REGISTERED]?: boolean } = {
    kernelName: 'BatchMatMul',
    backendName: 'tensorflow',
    kernelFunc: makeBatchMatMul(current.kernelFunc),
  };
  config[REGISTERED] = true;
  tf.registerKernel(config);
  for (const [kernelName, make] of [
    ['Reshape', makeReshape],
    ['Mean', makeMean],
  ] as const) {
    const kernel = tf.getKernel(kernelName, 'tensorflow');
    if (!kernel) throw new Error(`tfjs-node registered no ${kernelName} kernel for the tensorflow backend`);
    tf.unregisterKernel(kernelName, 'tensorflow');
    tf.registerKernel({ kernelName, backendName: 'tensorflow', kernelFunc: make(kernel.kernelFunc) });
  }
  const own: [string, (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[]][] = [
    [ADAMW_KERNEL, adamW],
    [ADAMW_MOMENT_KERNEL, adamWMoment],
    [ADAMW_READ_KERNEL, adamWRead],
    [DROPOUT_MASK_KERNEL, dropoutMask],
    [LAYER_NORM_KERNEL, layerNormKernel],
    [GELU_TANH_KERNEL, geluTanhKernel],
    [SWIGLU_KERNEL, swiGluKernel],
    [RMS_NORM_KERNEL, rmsNormKernel],
    [SOFTMAX_CROSS_ENTROPY_KERNEL, softmaxCrossEntropy],
    [HEAD_PRODUCT_KERNEL, headProductKernel],
    [GRAPH_KERNEL, graphKernel],
  ];
  for (const [kernelName, kernelFunc] of own) {
    if (!tf.getKernel(kernelName, 'tensorflow'))
      tf.registerKernel({ kernelName, backendName: 'tensorflow', kernelFunc: kernelFunc as unknown as tf.KernelFunc });
  }
}
