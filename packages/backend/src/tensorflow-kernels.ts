// Kernel choices on the tensorflow backend (tfjs-node over libtensorflow) that run faster than the
// ones tfjs-node registers.
import * as tf from '@tensorflow/tfjs-core';

interface OpAttr {
  name: string;
  type: number;
  value: unknown;
}

interface TensorflowBackendLike {
  binding: {
    TF_ATTR_BOOL: number;
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
 * 169-194 -> 191-203), while with a transposed operand it is as fast or slower ([512,3072] by
 * [768,3072]ᵀ: 201 -> 158), so those stay on BatchMatMulV2. Same product, same float32 result up to
 * rounding.
 */
function makeBatchMatMul(original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    if (
      a.shape.length !== 2 ||
      b.shape.length !== 2 ||
      transposeA ||
      transposeB ||
      a.dtype !== 'float32' ||
      b.dtype !== 'float32'
    ) {
      return original(args);
    }
    const backend = args.backend as TensorflowBackendLike;
    const { binding } = backend;
    return backend.executeSingleOutput(
      'MatMul',
      [
        floatAttr(backend, 'T'),
        { name: 'transpose_a', type: binding.TF_ATTR_BOOL, value: false },
        { name: 'transpose_b', type: binding.TF_ATTR_BOOL, value: false },
      ],
      [a, b],
    );
  };
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

/** Marks the kernels this module registered, so that a second call leaves them alone. */
const REGISTERED = Symbol('peft tensorflow kernels');

/** Puts the faster matmul and the fused AdamW in place on the tensorflow backend (once; tfjs-node must be loaded). */
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
  const own: [string, (args: KernelArgs) => tf.TensorInfo][] = [
    [ADAMW_KERNEL, adamW],
    [ADAMW_MOMENT_KERNEL, adamWMoment],
    [ADAMW_READ_KERNEL, adamWRead],
    [DROPOUT_MASK_KERNEL, dropoutMask],
  ];
  for (const [kernelName, kernelFunc] of own) {
    if (!tf.getKernel(kernelName, 'tensorflow'))
      tf.registerKernel({ kernelName, backendName: 'tensorflow', kernelFunc: kernelFunc as unknown as tf.KernelFunc });
  }
}
