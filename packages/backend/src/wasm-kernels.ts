// Kernels the wasm backend lacks and training needs, written in JavaScript over its heap.
import * as tf from '@tensorflow/tfjs-core';

interface WasmBackendLike {
  readSync(dataId: object): ArrayLike<number>;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array | Int32Array;
}

/**
 * UnsortedSegmentSum is the gradient of `gather`, so without it nothing read through an embedding
 * table trains on wasm. out[s, ...] = Σ x[i, ...] over i with segmentIds[i] = s; ids outside
 * [0, numSegments) are dropped, as TensorFlow does.
 */
function unsortedSegmentSum({
  inputs,
  backend,
  attrs,
}: {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}): tf.TensorInfo {
  const wasm = backend as WasmBackendLike;
  const x = inputs.x!;
  const segmentIds = inputs.segmentIds!;
  const numSegments = (attrs as { numSegments: number }).numSegments;
  const rows = segmentIds.shape.reduce((a, b) => a * b, 1);
  const inner = x.shape.slice(segmentIds.shape.length).reduce((a, b) => a * b, 1);
  const values = wasm.readSync(x.dataId);
  const ids = wasm.readSync(segmentIds.dataId);
  const output = wasm.makeOutput([numSegments, ...x.shape.slice(segmentIds.shape.length)], x.dtype);
  const out = wasm.typedArrayFromHeap(output);
  out.fill(0);
  for (let i = 0; i < rows; i++) {
    const segment = ids[i]!;
    if (segment < 0 || segment >= numSegments) continue;
    const from = i * inner;
    const to = segment * inner;
    for (let j = 0; j < inner; j++) out[to + j]! += values[from + j]!;
  }
  return output;
}

/** x with its last two axes swapped, as a real transpose (a copy in the new layout). */
function swapLastAxes(x: tf.Tensor): tf.Tensor {
  const perm = x.shape.map((_, i) => i);
  [perm[perm.length - 2], perm[perm.length - 1]] = [perm[perm.length - 1]!, perm[perm.length - 2]!];
  return tf.transpose(x, perm);
}

/**
 * The gradient of BatchMatMul, as tfjs-core's (same four cases), except that on wasm the transposed
 * operands are transposed explicitly: wasm's matmul takes XNNPACK only when neither input is
 * transposed, and every backward matmul of tfjs's gradient is transposed (measured: a LoRA training
 * step several times slower). Other backends keep the transpose flags.
 */
const matMul = (x: tf.Tensor, y: tf.Tensor, transposeX: boolean, transposeY: boolean): tf.Tensor =>
  tf.getBackend() === 'wasm'
    ? tf.matMul(transposeX ? swapLastAxes(x) : x, transposeY ? swapLastAxes(y) : y)
    : tf.matMul(x, y, transposeX, transposeY);
export const batchMatMulGradient: tf.GradConfig = {
  kernelName: 'BatchMatMul',
  inputsToSave: ['a', 'b'],
  gradFunc: (dy, saved, attrs) => {
    const [a, b] = saved as [tf.Tensor, tf.Tensor];
    const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
    const g = dy as tf.Tensor;
    if (!transposeA && !transposeB) return { a: () => matMul(g, b, false, true), b: () => matMul(a, g, true, false) };
    if (!transposeA && transposeB) return { a: () => matMul(g, b, false, false), b: () => matMul(g, a, true, false) };
    if (transposeA && !transposeB) return { a: () => matMul(b, g, false, true), b: () => matMul(a, g, false, false) };
    return { a: () => matMul(b, g, true, true), b: () => matMul(g, a, true, true) };
  },
};

/** Registers the missing wasm kernels once (a no-op when a later tfjs ships them). */
export function registerWasmKernels(): void {
  if (tf.getGradient('BatchMatMul') !== batchMatMulGradient) tf.registerGradient(batchMatMulGradient);
  if (!tf.getKernel('UnsortedSegmentSum', 'wasm')) {
    tf.registerKernel({
      kernelName: 'UnsortedSegmentSum',
      backendName: 'wasm',
      kernelFunc: unsortedSegmentSum as tf.KernelFunc,
    });
  }
}
