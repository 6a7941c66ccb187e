// Weights decoded by TensorFlow itself on tfjs-node: a checkpoint tensor's stored bytes go to
// libtensorflow as uint8 and come back float32 (and transposed where asked) through its Bitcast, Cast
// and Transpose kernels, vectorised and on every core, where a JavaScript loop would decode and
// transpose each value itself. These are ops that tfjs does not expose (there is no bfloat16 in
// tfjs), run through tfjs-node's binding; where that binding is absent, or a canary decoded here
// does not equal the JavaScript decoding, the loader decodes in JavaScript.
import { bfloat16ToFloat32, float16ToFloat32, releasableBytes, releaseBytes, type StoredTensor } from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

interface TensorMetadata {
  id: number;
  shape: number[];
  dtype: number;
}

interface OpAttr {
  name: string;
  type: number;
  value: number | boolean | number[];
}

/** The parts of tfjs-node's NodeJSKernelBackend (4.22) used here. */
interface NodeBackend {
  binding: {
    TF_FLOAT: number;
    TF_INT32: number;
    TF_UINT8: number;
    TF_ATTR_TYPE: number;
    TF_ATTR_BOOL: number;
    createTensor(shape: number[], dtype: number, values: Uint8Array | Int32Array): number;
    executeOp(name: string, attrs: OpAttr[], inputs: number[], outputs: number): TensorMetadata[];
    tensorDataSync(id: number): ArrayLike<number>;
    deleteTensor(id: number): void;
  };
  createOutputTensor(metadata: TensorMetadata): tf.Tensor;
}

// TF_DataType values of the TensorFlow C API (tf_datatype.h), which the binding does not export
const TF_BFLOAT16 = 14;
const TF_HALF = 19;

const STORED: Partial<Record<StoredTensor['dtype'], { type: number; width: number }>> = {
  BF16: { type: TF_BFLOAT16, width: 2 },
  F16: { type: TF_HALF, width: 2 },
  F32: { type: 0, width: 4 }, // type filled in from the binding (TF_FLOAT)
};

function nodeBackend(): NodeBackend | null {
  const backend = tf.backend() as Partial<NodeBackend>;
  const binding = backend.binding;
  if (
    typeof backend.createOutputTensor !== 'function' ||
    typeof binding?.createTensor !== 'function' ||
    typeof binding.executeOp !== 'function' ||
    typeof binding.tensorDataSync !== 'function' ||
    typeof binding.deleteTensor !== 'function'
  )
    return null;
  return backend as NodeBackend;
}

/** A weight decoded natively, with the sum of its values (non-finite where one of them is). */
export interface NativeWeight {
  weight: tf.Tensor;
  sum: number;
}

/**
 * The float32 tensor of a stored [rows, cols] (or any shape) tensor, [cols, rows] when `transpose`;
 * null where this backend cannot (the caller decodes in JavaScript).
 */
function decodeNatively(backend: NodeBackend, stored: StoredTensor, transpose: boolean): NativeWeight | null {
  const format = STORED[stored.dtype];
  if (!format) return null;
  const { binding } = backend;
  const type = stored.dtype === 'F32' ? binding.TF_FLOAT : format.type;
  const made: number[] = [];
  const run = (name: string, attrs: OpAttr[], inputs: number[]): number => {
    const [output] = binding.executeOp(name, attrs, inputs, 1);
    made.push(output!.id);
    return output!.id;
  };
  const typeAttr = (name: string, value: number): OpAttr => ({ name, type: binding.TF_ATTR_TYPE, value });
  let copy: Uint8Array | null = null;
  try {
    // uint8 [..., width] -> the stored type [...]: a view of the same bytes. TensorFlow computes on
    // an aligned JavaScript array in place, and Bitcast (and a Transpose that moves only dimensions
    // of 1) pass their input's buffer on: float32 bytes are handed over at an odd address, so that
    // TensorFlow copies them and the weight never lives in memory the loader reuses. Cast makes
    // new memory for the 16-bit types.
    copy = stored.dtype === 'F32' ? offAlignment(stored.bytes) : null;
    const bytes = binding.createTensor([...stored.shape, format.width], binding.TF_UINT8, copy ?? stored.bytes);
    made.push(bytes);
    const cast = (from: number, input: number): number =>
      run(
        'Cast',
        [
          typeAttr('SrcT', from),
          typeAttr('DstT', binding.TF_FLOAT),
          { name: 'Truncate', type: binding.TF_ATTR_BOOL, value: false },
        ],
        [input],
      );
    let id = run('Bitcast', [typeAttr('T', binding.TF_UINT8), typeAttr('type', type)], [bytes]);
    const stored16 = id;
    if (type !== binding.TF_FLOAT) id = cast(type, id);
    // The sum that tells a weight with a NaN or an infinity (WeightLoader.checkFinite), over all its
    // values while they are at hand: bfloat16 as stored (half the bytes to read; the range of
    // float32, so finite values overflow no sooner), float16 after the cast (a float16 sum would
    // overflow at 65504).
    const summed = type === TF_BFLOAT16 ? stored16 : id;
    const axes = binding.createTensor([stored.shape.length], binding.TF_INT32, Int32Array.from(stored.shape.keys()));
    made.push(axes);
    let total = run(
      'Sum',
      [
        typeAttr('T', type === TF_BFLOAT16 ? type : binding.TF_FLOAT),
        typeAttr('Tidx', binding.TF_INT32),
        { name: 'keep_dims', type: binding.TF_ATTR_BOOL, value: false },
      ],
      [summed, axes],
    );
    if (type === TF_BFLOAT16) total = cast(type, total);
    const sum = binding.tensorDataSync(total)[0]!;
    if (transpose) {
      const permutation = binding.createTensor([2], binding.TF_INT32, Int32Array.of(1, 0));
      made.push(permutation);
      id = run('Transpose', [typeAttr('T', binding.TF_FLOAT), typeAttr('Tperm', binding.TF_INT32)], [id, permutation]);
    }
    made.splice(made.indexOf(id), 1);
    const shape = transpose ? [stored.shape[1]!, stored.shape[0]!] : stored.shape;
    return { weight: backend.createOutputTensor({ id, shape, dtype: binding.TF_FLOAT }), sum };
  } finally {
    for (const id of made) binding.deleteTensor(id);
    // the weight never views it (checked on the canary): nothing of TensorFlow's holds it now
    if (copy) releaseBytes(copy);
  }
}

let odd = new Uint8Array(1);

/**
 * A copy of `bytes` at an odd address: one byte into a reused buffer, or past 64 MB into one of
 * its own that `releaseBytes` gives back once TensorFlow has copied it (where the platform has
 * resizable buffers), not left to a collector that may not run before the load ends.
 */
function offAlignment(bytes: Uint8Array): Uint8Array {
  const length = bytes.byteLength;
  if (length <= 64 * 2 ** 20 && odd.byteLength <= length) odd = new Uint8Array(length + 1);
  const buffer = length > 64 * 2 ** 20 ? releasableBytes(length + 1) : odd;
  const view = buffer.subarray(1, length + 1);
  view.set(bytes);
  return view;
}

const verified = new WeakMap<object, boolean>();

/**
 * Whether this backend decodes natively, checked once per backend: a canary of each stored type,
 * transposed and not, must equal the JavaScript decoding bit for bit.
 */
function nativeDecoding(): NodeBackend | null {
  const backend = nodeBackend();
  if (!backend) return null;
  let ok = verified.get(backend);
  if (ok === undefined) {
    ok = canaryPasses(backend);
    verified.set(backend, ok);
  }
  return ok ? backend : null;
}

function canaryPasses(backend: NodeBackend): boolean {
  const values = Float32Array.of(1.5, -2.25, 3e-3, 65504, -0, 7.125);
  const bits = new Uint16Array(values.length);
  const words = new Uint32Array(values.buffer);
  for (let i = 0; i < values.length; i++) bits[i] = words[i]! >>> 16;
  const cases: { stored: StoredTensor; expected: Float32Array }[] = [
    { stored: stored('BF16', bits), expected: bfloat16ToFloat32(bits) },
    {
      stored: stored('F16', Uint16Array.of(0x3c00, 0xc000, 0x0001, 0x7bff, 0x8000, 0x4720)),
      expected: new Float32Array(0),
    },
    { stored: stored('F32', values), expected: values },
  ];
  cases[1]!.expected = float16ToFloat32(new Uint16Array(cases[1]!.stored.bytes.buffer.slice(0)));
  try {
    for (const { stored: tensor, expected } of cases) {
      for (const transpose of [false, true]) {
        const decoded = decodeNatively(backend, tensor, transpose);
        if (!decoded) return false;
        const out = decoded.weight;
        if (!Number.isFinite(decoded.sum)) return false;
        // the weight must not view the bytes it came from (the loader reuses them)
        const original = tensor.bytes.slice();
        tensor.bytes.fill(0xff);
        odd.fill(0xff);
        const got = out.dataSync();
        tensor.bytes.set(original);
        out.dispose();
        const want = transpose ? Float32Array.of(...[0, 3, 1, 4, 2, 5].map((i) => expected[i]!)) : expected;
        if (!(got instanceof Float32Array) || !equalBits(got, want)) return false;
      }
    }
    return true;
  } catch {
    return false;
  }
}

function stored(dtype: StoredTensor['dtype'], values: Uint16Array | Float32Array): StoredTensor {
  return { dtype, shape: [2, 3], bytes: new Uint8Array(values.buffer.slice(0)) };
}

function equalBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.every((v, i) => v === y[i]);
}

/**
 * A weight decoded by libtensorflow from its stored bytes ([cols, rows] when `transpose`), and the
 * sum of its values; or null where that cannot be done here (another backend, a dtype other than
 * F32/F16/BF16).
 */
export function nativeWeight(stored: StoredTensor, transpose: boolean): NativeWeight | null {
  const backend = nativeDecoding();
  return backend ? decodeNatively(backend, stored, transpose) : null;
}

/** Whether weights are decoded by libtensorflow on the current backend (for tests and reports). */
export function decodesNatively(): boolean {
  return nativeDecoding() !== null;
}
