// One decoding step (one new token per row, a key/value cache behind it) as a TensorFlow graph that
// the native backend runs in one call (@peft/core GRAPH_KERNEL). Op by op, a GPT-2 small token runs
// ~370 tfjs ops whose bookkeeping costs about as much as the arithmetic; the graph executor runs the
// same ops for a few microseconds each. Hosts write their step with DecodeGraphBuilder (gpt2.ts,
// llama.ts); TransformerHost.forward runs it where it computes what the op-by-op pass would: no
// sublayer hooks, no delta paths (a merged LoRA is a plain weight), no training, one token.
import { GraphBuilder, type GraphSpec, type HostLinear, type LinearDeltaGraph } from '@peft/core';
import type * as tf from '@tensorflow/tfjs-core';

/** A host's decoding step: the graph, and the weight each of its weight inputs reads. */
export interface DecodeGraph {
  readonly spec: GraphSpec;
  /** Placeholder name -> the tensor fed to it (a variable is read at every step: a merge or an assign shows). */
  readonly weights: ReadonlyMap<string, tf.Tensor>;
  readonly numLayers: number;
}

/** Input names every decoding graph has. Outputs: `logits` [B, 1, V], then per layer `key{i}`, `value{i}`. */
export const DECODE_INPUTS = {
  /** [B, 1] int32: the new token of each row. */
  ids: 'ids',
  /** [B, 1] int32: its position. */
  positions: 'positions',
  /** [B, 1, 1, S] float32: the additive attention mask over the cached keys and the new one. */
  bias: 'bias',
  /** [B, Hkv, S - 1, hd] float32: layer i's cached keys and values. */
  pastKey: (layer: number) => `pastKey${layer}`,
  pastValue: (layer: number) => `pastValue${layer}`,
} as const;

/** Names the delta paths a graph includes, per projection: graphs of equal keys are the same. */
export function deltaKey(deltas: ReadonlyMap<HostLinear, readonly LinearDeltaGraph[]>): string {
  return [...deltas].map(([linear, forms]) => `${linear.name}: ${forms.map((f) => f.key).join(', ')}`).join('; ');
}

export class DecodeGraphBuilder extends GraphBuilder {
  /** `deltas`: the delta paths active in this pass, by projection; `linear` adds them. */
  constructor(private readonly deltas: ReadonlyMap<HostLinear, readonly LinearDeltaGraph[]>) {
    super();
  }

  /** x·Wᵀ + b + Σ delta paths, for rows x [N, in] (HostLinear.apply). */
  linear(x: string, projection: HostLinear): string {
    let y = this.matMul(x, this.weight(projection.weight), true);
    if (projection.bias) y = this.add(y, this.weight(projection.bias));
    for (const form of this.deltas.get(projection) ?? [])
      y = this.add(
        y,
        form.write(this, x, (t) => this.weight(t)),
      );
    return y;
  }

  private readonly weightInputs = new Map<string, tf.Tensor>();
  private readonly placeholders = new Map<tf.Tensor, string>();
  private readonly cacheOutputs: string[] = [];

  /** The inputs of every step (DECODE_INPUTS): new ids and positions [B, 1], the attention bias [B, 1, 1, S]. */
  stepInputs(): { ids: string; positions: string; bias: string } {
    return {
      ids: this.input(DECODE_INPUTS.ids, 'int32', [null, 1]),
      positions: this.input(DECODE_INPUTS.positions, 'int32', [null, 1]),
      bias: this.input(DECODE_INPUTS.bias, 'float32', [null, 1, 1, null]),
    };
  }

  /** A weight (or a host's table) as an input of the graph, fed from `variable` at every step. */
  weight(variable: tf.Tensor): string {
    const known = this.placeholders.get(variable);
    if (known) return known;
    const name = this.input(`weight${this.weightInputs.size}`, 'float32', variable.shape);
    this.weightInputs.set(name, variable);
    this.placeholders.set(variable, name);
    return name;
  }

  /**
   * Appends the new key and value [B, Hkv, 1, hd] to layer `layer`'s cache; returns the layer's keys
   * and values [B, Hkv, S, hd], which are also the step's cache outputs.
   */
  extendCache(layer: number, key: string, value: string, kvHeads: number, headDim: number): [string, string] {
    if (layer !== this.cacheOutputs.length / 2) throw new Error(`DecodeGraphBuilder: layer ${layer} out of order`);
    const shape = [null, kvHeads, null, headDim];
    const keys = this.concat([this.input(DECODE_INPUTS.pastKey(layer), 'float32', shape), key], 2);
    const values = this.concat([this.input(DECODE_INPUTS.pastValue(layer), 'float32', shape), value], 2);
    this.cacheOutputs.push(keys, values);
    return [keys, values];
  }

  /**
   * Scaled dot-product attention of one query per row: q [B, H, 1, hd] over keys and values
   * [B, Hkv, S, hd] (H a multiple of Hkv: grouped queries fold into the query axis, as ops.attention),
   * `bias` [B, 1, 1, S]; returns [B, H·hd].
   */
  attend(
    q: string,
    keys: string,
    values: string,
    bias: string,
    heads: number,
    kvHeads: number,
    headDim: number,
    scale: number,
  ): string {
    const group = heads / kvHeads;
    const grouped = group === 1 ? q : this.reshape(q, [-1, kvHeads, group, headDim]);
    let scores = this.batchMatMul(grouped, keys, true); // [B, Hkv, g, S]
    if (scale !== 1) scores = this.mul(scores, this.float(scale));
    const probabilities = this.op('Softmax', [this.add(scores, bias)]);
    return this.reshape(this.batchMatMul(probabilities, values), [-1, heads * headDim]);
  }

  /**
   * The rotary tables of one position per row: cos and [-sin, sin] of positions·inverse frequencies,
   * each [B, 1, 1, hd], times `scale` (the queries carry the attention scale, as llama.ts).
   */
  rotaryTables(
    positions: string,
    inverseFrequencies: string,
    headDim: number,
    scale: number,
    factor = 1,
  ): { cos: string; sinSigned: string; scaledCos: string; scaledSin: string } {
    const column = this.reshape(
      this.op('Cast', [positions], { SrcT: { type: 'int32' }, DstT: { type: 'float32' }, Truncate: { b: false } }),
      [-1, 1],
    );
    const angles = this.mul(column, inverseFrequencies); // [B, hd/2]
    const shape = [-1, 1, 1, headDim];
    let cos = this.reshape(this.op('Cos', [this.concat([angles, angles], 1)]), shape);
    const sine = this.op('Sin', [angles]);
    let sinSigned = this.reshape(this.concat([this.op('Neg', [sine]), sine], 1), shape);
    if (factor !== 1) {
      // LongRoPE's attention factor scales both tables (phi3.ts rotaryEmbedding)
      cos = this.mul(cos, this.float(factor));
      sinSigned = this.mul(sinSigned, this.float(factor));
    }
    const scaling = this.float(scale);
    return { cos, sinSigned, scaledCos: this.mul(cos, scaling), scaledSin: this.mul(sinSigned, scaling) };
  }

  /** x·cos + swapHalves(x)·sinSigned for heads x [B, H, 1, hd] (llama.ts rotary). */
  rotate(x: string, cos: string, sinSigned: string, headDim: number): string {
    const [first, second] = this.split(x, [headDim / 2, headDim / 2], 4);
    return this.add(this.mul(x, cos), this.mul(this.concat([second!, first!], 3), sinSigned));
  }

  /**
   * Partial rotary (Phi-3's partial_rotary_factor): the leading `rotaryDim` of each head rotated, the
   * rest passed through times `passScale` (the queries' attention scale), as phi3.ts partialRotary.
   */
  rotatePartly(
    x: string,
    cos: string,
    sinSigned: string,
    rotaryDim: number,
    headDim: number,
    passScale: number,
  ): string {
    if (rotaryDim === headDim) return this.rotate(x, cos, sinSigned, headDim);
    const [rotated, passed] = this.split(x, [rotaryDim, headDim - rotaryDim], 4);
    const rest = passScale === 1 ? passed! : this.mul(passed!, this.float(passScale));
    return this.concat([this.rotate(rotated!, cos, sinSigned, rotaryDim), rest], 3);
  }

  /** The step's graph: logits [B, V] reshaped to [B, 1, V], then the caches. */
  finish(logits: string, vocabSize: number, numLayers: number): DecodeGraph {
    if (this.cacheOutputs.length !== 2 * numLayers) {
      throw new Error(
        `DecodeGraphBuilder: ${this.cacheOutputs.length / 2} layers extend the cache, the model has ${numLayers}`,
      );
    }
    const output = this.reshape(logits, [-1, 1, vocabSize]);
    return { spec: this.build([output, ...this.cacheOutputs]), weights: new Map(this.weightInputs), numLayers };
  }
}

/**
 * An activation by its Hugging Face name as graph ops, the same function as @peft/core's ACTIVATIONS;
 * null for one the graph does not write (the host then decodes op by op).
 */
export function graphActivation(graph: GraphBuilder, name: string, x: string): string | null {
  switch (name) {
    case 'gelu_new':
    case 'gelu_pytorch_tanh': {
      // x·σ(2c·(x + 0.044715·x³)) = 0.5·x·(1 + tanh(c·(x + 0.044715·x³))), c = √(2/π)
      const cubic = graph.mul(graph.float(0.044715), graph.mul(x, graph.op('Square', [x])));
      const inner = graph.mul(graph.float(2 * Math.sqrt(2 / Math.PI)), graph.add(x, cubic));
      return graph.mul(x, graph.op('Sigmoid', [inner]));
    }
    case 'gelu':
      return graph.mul(
        graph.mul(x, graph.float(0.5)),
        graph.add(graph.float(1), graph.op('Erf', [graph.mul(x, graph.float(Math.SQRT1_2))])),
      );
    case 'silu':
    case 'swish':
      return graph.mul(x, graph.op('Sigmoid', [x]));
    case 'relu':
      return graph.op('Relu', [x]);
    default:
      return null;
  }
}
