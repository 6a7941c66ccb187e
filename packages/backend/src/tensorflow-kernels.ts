// Kernel choices on the tensorflow backend (tfjs-node over libtensorflow) that run faster than the
// ones tfjs-node registers.
import * as tf from '@tensorflow/tfjs-core';

interface TensorflowBackendLike {
  binding: { TF_ATTR_BOOL: number; TF_ATTR_TYPE: number; TF_FLOAT: number };
  executeSingleOutput(name: string, attrs: { name: string; type: number; value: unknown }[], inputs: tf.TensorInfo[]): tf.TensorInfo;
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

/** Marks the kernel this module registered, so that a second call leaves it alone. */
const REGISTERED = Symbol('peft tensorflow matmul');

/** Puts the faster matmul in place on the tensorflow backend (once; tfjs-node must be loaded). */
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
}
