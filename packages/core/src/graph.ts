// A dataflow graph of TensorFlow ops that a backend runs as one call (GRAPH_KERNEL): the native
// backend hands it to libtensorflow's graph executor, which runs hundreds of small ops for a few
// microseconds each where one eager op costs tens (decoding one token of GPT-2 runs ~370 of them).
// Hosts describe a step with GraphBuilder and run it with runGraph where the kernel is registered.
import * as tf from '@tensorflow/tfjs-core';

/** Inputs: the graph's placeholders by name; attrs: `{ graph: GraphSpec }`; outputs: spec.outputs in order. */
export const GRAPH_KERNEL = 'PeftGraph';

export type GraphDtype = 'float32' | 'int32' | 'bool';

/** An op attribute, as TensorFlow's AttrValue holds it. */
export type GraphAttr =
  | { type: GraphDtype }
  | { i: number }
  | { f: number }
  | { b: boolean }
  | { s: string }
  | { shape: (number | null)[] | null }
  | { tensor: { dtype: 'float32' | 'int32'; shape: number[]; values: number[] } };

export interface GraphNode {
  name: string;
  /** A TensorFlow op name (`MatMul`, `ConcatV2`, ...). */
  op: string;
  /** `node` or `node:k` (its k-th output). */
  inputs: string[];
  attrs: Record<string, GraphAttr>;
}

export interface GraphSpec {
  readonly nodes: readonly GraphNode[];
  /** The placeholders, fed by name on every run. */
  readonly inputs: readonly { name: string; dtype: GraphDtype }[];
  /** What a run returns, in order: `node` or `node:k`. */
  readonly outputs: readonly string[];
}

/** Whether the current backend runs graphs (the native one does). */
export function graphKernelAvailable(): boolean {
  return tf.getKernel(GRAPH_KERNEL, tf.getBackend()) !== undefined;
}

/** Runs `spec` once; `inputs` must name every placeholder, with its dtype. */
export function runGraph(spec: GraphSpec, inputs: Record<string, tf.Tensor>): tf.Tensor[] {
  if (!graphKernelAvailable()) throw new Error(`${GRAPH_KERNEL}: the ${tf.getBackend()} backend runs no graphs`);
  // presence and dtype are the kernel's checks; here what only the caller's map can show
  const names = new Set(spec.inputs.map((input) => input.name));
  const extra = Object.keys(inputs).filter((name) => !names.has(name));
  if (extra.length > 0) throw new Error(`${GRAPH_KERNEL}: the graph has no inputs ${extra.join(', ')}`);
  const disposed = Object.keys(inputs).filter((name) => inputs[name]!.isDisposed);
  if (disposed.length > 0) throw new Error(`${GRAPH_KERNEL}: inputs ${disposed.join(', ')} are disposed`);
  const attrs = { graph: spec } as unknown as tf.NamedAttrMap;
  return tf.engine().runKernel(GRAPH_KERNEL, inputs, attrs) as unknown as tf.Tensor[];
}

const FLOAT: Record<string, GraphAttr> = { T: { type: 'float32' } };

/**
 * Writes a GraphSpec op by op. Each method adds one node and returns its name, the handle later
 * ops take as input. The helpers (add, matMul, reshape, concat, gather, ...) are of float32 tensors
 * and set the index attributes TensorFlow wants; `op` writes any other op with its attributes.
 */
export class GraphBuilder {
  private readonly nodes: GraphNode[] = [];
  private readonly inputs: { name: string; dtype: GraphDtype }[] = [];
  private readonly names = new Set<string>();

  op(op: string, inputs: string[], attrs: Record<string, GraphAttr> = FLOAT, name?: string): string {
    const node = name ?? `${op}_${this.nodes.length}`;
    if (this.names.has(node)) throw new Error(`GraphBuilder: a node is already named "${node}"`);
    this.names.add(node);
    this.nodes.push({ name: node, op, inputs, attrs });
    return node;
  }

  /** A placeholder fed on every run; null dimensions vary from run to run. */
  input(name: string, dtype: GraphDtype, shape: (number | null)[] | null): string {
    this.inputs.push({ name, dtype });
    return this.op('Placeholder', [], { dtype: { type: dtype }, shape: { shape } }, name);
  }

  ints(values: number[], shape: number[] = [values.length]): string {
    return this.op('Const', [], { dtype: { type: 'int32' }, value: { tensor: { dtype: 'int32', shape, values } } });
  }

  int(value: number): string {
    return this.ints([value], []);
  }

  float(value: number): string {
    return this.op('Const', [], {
      dtype: { type: 'float32' },
      value: { tensor: { dtype: 'float32', shape: [], values: [value] } },
    });
  }

  add(a: string, b: string): string {
    return this.op('AddV2', [a, b]);
  }

  mul(a: string, b: string): string {
    return this.op('Mul', [a, b]);
  }

  matMul(a: string, b: string, transposeB = false): string {
    return this.op('MatMul', [a, b], { ...FLOAT, transpose_a: { b: false }, transpose_b: { b: transposeB } });
  }

  batchMatMul(a: string, b: string, adjointB = false): string {
    return this.op('BatchMatMulV2', [a, b], { ...FLOAT, adj_x: { b: false }, adj_y: { b: adjointB } });
  }

  reshape(x: string, shape: number[]): string {
    return this.op('Reshape', [x, this.ints(shape)], { ...FLOAT, Tshape: { type: 'int32' } });
  }

  transpose(x: string, perm: number[]): string {
    return this.op('Transpose', [x, this.ints(perm)], { ...FLOAT, Tperm: { type: 'int32' } });
  }

  concat(values: string[], axis: number): string {
    return this.op('ConcatV2', [...values, this.int(axis)], {
      ...FLOAT,
      Tidx: { type: 'int32' },
      N: { i: values.length },
    });
  }

  /** Splits the last axis of a rank-`rank` tensor into parts of the sizes given. */
  split(x: string, sizes: number[], rank: number): string[] {
    const node = this.op('SplitV', [x, this.ints(sizes), this.int(rank - 1)], {
      ...FLOAT,
      Tlen: { type: 'int32' },
      num_split: { i: sizes.length },
    });
    return sizes.map((_, i) => `${node}:${i}`);
  }

  /** Rows of `table` at integer `indices` (axis 0). */
  gather(table: string, indices: string): string {
    return this.op('GatherV2', [table, indices, this.int(0)], {
      Tparams: { type: 'float32' },
      Tindices: { type: 'int32' },
      Taxis: { type: 'int32' },
      batch_dims: { i: 0 },
    });
  }

  /** Mean over the last axis, kept. */
  meanLast(x: string): string {
    return this.op('Mean', [x, this.ints([-1])], { ...FLOAT, Tidx: { type: 'int32' }, keep_dims: { b: true } });
  }

  /** LayerNorm over the last axis with the biased variance (transformers' nn.LayerNorm). */
  layerNorm(x: string, weight: string, bias: string, epsilon: number): string {
    const centred = this.op('Sub', [x, this.meanLast(x)]);
    const variance = this.meanLast(this.op('Square', [centred]));
    const normed = this.mul(centred, this.op('Rsqrt', [this.add(variance, this.float(epsilon))]));
    return this.add(this.mul(normed, weight), bias);
  }

  /** RMSNorm over the last axis: x·rsqrt(mean(x²) + ε)·w (transformers' LlamaRMSNorm). */
  rmsNorm(x: string, weight: string, epsilon: number): string {
    const inverse = this.op('Rsqrt', [this.add(this.meanLast(this.op('Square', [x])), this.float(epsilon))]);
    return this.mul(this.mul(x, inverse), weight);
  }

  build(outputs: string[]): GraphSpec {
    for (const output of outputs) {
      if (!this.names.has(output.split(':')[0]!)) throw new Error(`GraphBuilder: no node "${output}" to output`);
    }
    return { nodes: [...this.nodes], inputs: [...this.inputs], outputs: [...outputs] };
  }
}
