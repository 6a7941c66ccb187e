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
function unsortedSegmentSum({ inputs, backend, attrs }: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
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

/** Registers the missing wasm kernels once (a no-op when a later tfjs ships them). */
export function registerWasmKernels(): void {
  if (!tf.getKernel('UnsortedSegmentSum', 'wasm')) {
    tf.registerKernel({ kernelName: 'UnsortedSegmentSum', backendName: 'wasm', kernelFunc: unsortedSegmentSum as tf.KernelFunc });
  }
}
