// Kernel choices on the tensorflow backend (tfjs-node over libtensorflow) that run faster than the
// ones tfjs-node registers.
import * as tf from '@tensorflow/tfjs-core';

interface OpAttr {
  name: string;
  type: number;
  value: unknown;
}

interface TensorflowBackendLike {
  binding: { TF_ATTR_BOOL: number; TF_ATTR_SHAPE: number; TF_ATTR_STRING: number; TF_ATTR_TYPE: number; TF_FLOAT: number };
  /** tfjs-node runs one libtensorflow op eagerly; its outputs come back as tensors. */
  executeSingleOutput(name: string, attrs: OpAttr[], inputs: tf.TensorInfo[]): tf.Tensor;
  executeMultipleOutputs(name: string, attrs: OpAttr[], inputs: tf.TensorInfo[], outputs: number): tf.Tensor[];
}

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
    if (a.shape.length !== 2 || b.shape.length !== 2 || transposeA || transposeB || a.dtype !== 'float32' || b.dtype !== 'float32') {
      return original(args);
    }
    const backend = args.backend as TensorflowBackendLike;
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
  };
}

/** @peft/core's fused AdamW kernel (`ADAMW_KERNEL`; this package does not depend on core). */
export const ADAMW_KERNEL = 'PeftAdamW';

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

/**
 * AdamW as libtensorflow's ResourceApplyAdam, one fused pass that updates parameter and moments in
 * place, instead of the composed update's twelve elementwise ops, each a pass over memory that
 * writes a new tensor (measured alone: [32000,768] 120 -> 58 ms, [768,2048] 11.7 -> 5.0 ms).
 *
 * The update runs on three variables that live for this call only: each is assigned its input
 * (sharing the buffer) and read back after the step. A variable whose buffer something else still
 * holds is copied before the in-place update (TensorFlow's copy-on-write), so the inputs are left
 * as they were and the kernel is a pure function, as tfjs expects. The decayed parameter and the
 * scaled gradient are made here and released before the step, so they are updated without a copy.
 *
 * ResourceApplyAdam: lr_t = lr·√(1-β2^t)/(1-β1^t); m += (g-m)(1-β1); v += (g²-v)(1-β2);
 * p -= lr_t·m/(√v + ε̂). With ε̂ = ε·√(1-β2^t) that is torch's p -= lr/(1-β1^t)·m/(√v/√(1-β2^t) + ε).
 */
function adamW(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const backend = args.backend as TensorflowBackendLike;
  const { binding } = backend;
  const { param, expAvg, expAvgSq, gradient } = args.inputs as Record<'param' | 'expAvg' | 'expAvgSq' | 'gradient', tf.TensorInfo>;
  const attrs = args.attrs as unknown as AdamWAttrs;
  for (const [name, input] of Object.entries({ param, expAvg, expAvgSq, gradient })) {
    if (input.dtype !== 'float32' || !tf.util.arraysEqual(input.shape, param.shape)) {
      throw new Error(`${ADAMW_KERNEL}: ${name} is ${input.dtype} [${input.shape}], expected float32 [${param.shape}] like the parameter`);
    }
  }
  const float: OpAttr = { name: 'dtype', type: binding.TF_ATTR_TYPE, value: binding.TF_FLOAT };
  const made: tf.Tensor[] = [];
  const make = (tensor: tf.Tensor): tf.Tensor => {
    made.push(tensor);
    return tensor;
  };
  const release = (tensor: tf.Tensor): void => {
    made.splice(made.indexOf(tensor), 1);
    tensor.dispose();
  };
  const multiply = (x: tf.TensorInfo, factor: number): tf.Tensor =>
    backend.executeSingleOutput('Mul', [{ name: 'T', type: binding.TF_ATTR_TYPE, value: binding.TF_FLOAT }], [x, make(tf.scalar(factor))]);
  try {
    const variables = [0, 1, 2].map(() =>
      make(
        backend.executeSingleOutput(
          'VarHandleOp',
          [
            { name: 'container', type: binding.TF_ATTR_STRING, value: '' },
            { name: 'shared_name', type: binding.TF_ATTR_STRING, value: ANONYMOUS_RESOURCE },
            float,
            { name: 'shape', type: binding.TF_ATTR_SHAPE, value: param.shape },
          ],
          [],
        ),
      ),
    );
    const decayed = attrs.decay === 1 ? undefined : make(multiply(param, attrs.decay));
    [decayed ?? param, expAvg, expAvgSq].forEach((value, i) => backend.executeMultipleOutputs('AssignVariableOp', [float], [variables[i]!, value], 0));
    if (decayed) release(decayed);
    const scaled = attrs.gradientScale === 1 ? gradient : make(multiply(gradient, attrs.gradientScale));
    const scalars = [attrs.beta1Power, attrs.beta2Power, attrs.learningRate, attrs.beta1, attrs.beta2, attrs.epsilon * Math.sqrt(1 - attrs.beta2Power)].map((x) => make(tf.scalar(x)));
    backend.executeMultipleOutputs(
      'ResourceApplyAdam',
      [
        { name: 'T', type: binding.TF_ATTR_TYPE, value: binding.TF_FLOAT },
        { name: 'use_locking', type: binding.TF_ATTR_BOOL, value: false },
        { name: 'use_nesterov', type: binding.TF_ATTR_BOOL, value: false },
      ],
      [...variables, ...scalars, scaled],
      0,
    );
    return variables.map((variable) => backend.executeSingleOutput('ReadVariableOp', [float], [variable]));
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
  const own: [string, (args: Parameters<tf.KernelFunc>[0]) => tf.TensorInfo[]][] = [
    [ADAMW_KERNEL, adamW],
  ];
  for (const [kernelName, kernelFunc] of own) {
    if (!tf.getKernel(kernelName, 'tensorflow')) tf.registerKernel({ kernelName, backendName: 'tensorflow', kernelFunc: kernelFunc as unknown as tf.KernelFunc });
  }
}
