// The graph kernel: a GraphSpec written as a SavedModel, loaded by libtensorflow and run with its
// inputs fed by handle. Held to values computed here in JavaScript.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';

import { type GraphSpec, savedModelProto } from '../src/graph-def.js';
import { GRAPH_KERNEL } from '../src/graph-kernel.js';
import { availableBackends, loadBackend } from '../src/index.js';

const hasTensorflow = (await availableBackends()).includes('tensorflow');

const F = { T: { type: 'float32' as const } };

/** y = leakyRelu(x·w + b, 0.25) and its column sums; x [null, 3], w [3, 2], b [2]; also x's halves split. */
const spec: GraphSpec = {
  inputs: [
    { name: 'x', dtype: 'float32' },
    { name: 'w', dtype: 'float32' },
    { name: 'b', dtype: 'float32' },
  ],
  nodes: [
    { name: 'x', op: 'Placeholder', inputs: [], attrs: { dtype: { type: 'float32' }, shape: { shape: [null, 3] } } },
    { name: 'w', op: 'Placeholder', inputs: [], attrs: { dtype: { type: 'float32' }, shape: { shape: [3, 2] } } },
    { name: 'b', op: 'Placeholder', inputs: [], attrs: { dtype: { type: 'float32' }, shape: { shape: null } } },
    {
      name: 'xw',
      op: 'MatMul',
      inputs: ['x', 'w'],
      attrs: { ...F, transpose_a: { b: false }, transpose_b: { b: false } },
    },
    { name: 'z', op: 'AddV2', inputs: ['xw', 'b'], attrs: F },
    { name: 'y', op: 'LeakyRelu', inputs: ['z'], attrs: { ...F, alpha: { f: 0.25 } } },
    {
      name: 'axis',
      op: 'Const',
      inputs: [],
      attrs: { dtype: { type: 'int32' }, value: { tensor: { dtype: 'int32', shape: [1], values: [0] } } },
    },
    {
      name: 'sums',
      op: 'Sum',
      inputs: ['y', 'axis'],
      attrs: { ...F, Tidx: { type: 'int32' }, keep_dims: { b: false } },
    },
    {
      name: 'sizes',
      op: 'Const',
      inputs: [],
      attrs: { dtype: { type: 'int32' }, value: { tensor: { dtype: 'int32', shape: [2], values: [1, 2] } } },
    },
    {
      name: 'last',
      op: 'Const',
      inputs: [],
      attrs: { dtype: { type: 'int32' }, value: { tensor: { dtype: 'int32', shape: [], values: [-1] } } },
    },
    {
      name: 'parts',
      op: 'SplitV',
      inputs: ['x', 'sizes', 'last'],
      attrs: { ...F, Tlen: { type: 'int32' }, num_split: { i: 2 } },
    },
  ],
  outputs: ['y', 'sums', 'parts:1'],
};

function expected(x: number[][], w: number[][], b: number[]): { y: number[][]; sums: number[] } {
  const y = x.map((row) =>
    b.map((bias, j) => {
      const z = row.reduce((s, v, k) => s + v * w[k]![j]!, bias);
      return z > 0 ? z : 0.25 * z;
    }),
  );
  return { y, sums: b.map((_, j) => y.reduce((s, row) => s + row[j]!, 0)) };
}

const run = (graph: GraphSpec, inputs: Record<string, tf.Tensor>): tf.Tensor[] =>
  tf.engine().runKernel(GRAPH_KERNEL, inputs, { graph } as unknown as tf.NamedAttrMap) as unknown as tf.Tensor[];

describe.runIf(hasTensorflow)('graph kernel (tensorflow backend)', () => {
  beforeAll(async () => {
    await loadBackend('tensorflow');
  });

  it('runs the graph: every output, for inputs of changing shapes, without leaking tensors', () => {
    const w = [
      [0.5, -1],
      [2, 0.25],
      [-1.5, 1],
    ];
    const b = [0.1, -0.2];
    const before = tf.memory().numTensors;
    for (const x of [
      [[1, 2, 3]],
      [
        [-1, 0.5, 2],
        [3, -2, 1],
        [0, 0, -4],
      ],
    ]) {
      const inputs = { x: tf.tensor2d(x), w: tf.tensor2d(w), b: tf.tensor1d(b) };
      const [y, sums, part] = run(spec, inputs);
      const want = expected(x, w, b);
      expect(y!.shape).toEqual([x.length, 2]);
      const got = (y!.arraySync() as number[][]).flat();
      const sumsGot = sums!.arraySync() as number[];
      for (const [i, v] of got.entries()) expect(v).toBeCloseTo(want.y.flat()[i]!, 5);
      for (const [j, v] of sumsGot.entries()) expect(v).toBeCloseTo(want.sums[j]!, 5);
      expect(part!.arraySync()).toEqual(x.map((row) => row.slice(1)));
      tf.dispose([y!, sums!, part!, ...Object.values(inputs)]);
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses a missing input, a wrong dtype and a graph libtensorflow cannot load, naming each', () => {
    const x = tf.ones([1, 3]);
    const w = tf.ones([3, 2]);
    expect(() => run(spec, { x, w })).toThrow(/no tensor for the graph's input "b"/);
    const intB = tf.ones([2], 'int32');
    expect(() => run(spec, { x, w, b: intB })).toThrow(/input "b" is int32, expected float32/);
    const broken: GraphSpec = {
      inputs: [],
      nodes: [{ name: 'n', op: 'NoSuchOp', inputs: [], attrs: {} }],
      outputs: ['n'],
    };
    expect(() => run(broken, {})).toThrow(/PeftGraph: libtensorflow refused the graph \(1 nodes\)/);
    tf.dispose([x, w, intB]);
  });
});

describe('SavedModel protocol buffer', () => {
  it('writes fields in the wire format (a node and its attributes, the tag, the versions)', () => {
    const bytes = savedModelProto({
      inputs: [],
      nodes: [{ name: 'c', op: 'Const', inputs: ['a:1'], attrs: { n: { i: -1 }, f: { f: 0.5 } } }],
      outputs: ['c'],
    });
    const text = new TextDecoder('latin1').decode(bytes);
    // saved_model_schema_version 1: field 1, varint
    expect([...bytes.subarray(0, 2)]).toEqual([0x08, 0x01]);
    for (const piece of ['serve', 'Const', 'a:1']) expect(text).toContain(piece);
    // i = -1 as protobuf writes a negative int64: ten bytes, 0xff x 9 then 0x01, after field 3's tag 0x18
    const tenBytes = [0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    expect(Buffer.from(bytes).includes(Buffer.from(tenBytes))).toBe(true);
    // f = 0.5: field 4, fixed32, little-endian float
    expect(Buffer.from(bytes).includes(Buffer.from([0x25, 0x00, 0x00, 0x00, 0x3f]))).toBe(true);
    expect(() =>
      savedModelProto({
        inputs: [],
        nodes: [
          {
            name: 'c',
            op: 'Const',
            inputs: [],
            attrs: { value: { tensor: { dtype: 'int32', shape: [2], values: [1] } } },
          },
        ],
        outputs: ['c'],
      }),
    ).toThrow(/shape \[2\] given 1 values/);
  });
});
