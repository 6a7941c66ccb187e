// Llama as Hugging Face `transformers` defines it (LlamaForCausalLM), and the family that shares its
// layout: Mistral (sliding-window attention), Qwen2 (biases on q, k, v) and Qwen3 (an RMSNorm over
// each head of the queries and keys, before the rotary embedding). RMSNorm, rotary
// positions (default, linear and llama3 scaling), SwiGLU feed-forward, grouped-query attention,
// nn.Linear projections stored [out, in], tied or untied LM head. Shapes in comments and the
// releasing ops (addReleasing, reshapeReleasing): see the notes at the top of transformer-host.ts.
import {
  gatedActivation,
  preview,
  rmsNorm,
  type Checkpoint,
  type HostLinear,
  type LinearDeltaGraph,
  type LmHead,
} from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

import { ConfigReader } from './config.js';
import { type DecodeGraph, DecodeGraphBuilder, graphActivation } from './decode-graph.js';
import { attention, gatedMlp, lmHeadLogits, mergeHeads, splitHeads } from './ops.js';
import {
  NO_DROPOUT,
  TransformerHost,
  type DropoutRates,
  type LayerState,
  type RotaryEmbedding,
} from './transformer-host.js';
import { WeightLoader, keptTable } from './weights.js';

/** Inverse frequencies of the rotary embedding, [headDim / 2], with the configured scaling. */
export function rotaryInverseFrequencies(headDim: number, rope: RopeConfig): Float32Array {
  const half = headDim / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    let frequency = 1 / rope.theta ** ((2 * i) / headDim);
    if (rope.type === 'linear') frequency /= rope.factor;
    if (rope.type === 'llama3') {
      const lowWavelength = rope.originalMaxPositions / rope.lowFrequencyFactor;
      const highWavelength = rope.originalMaxPositions / rope.highFrequencyFactor;
      const wavelength = (2 * Math.PI) / frequency;
      if (wavelength > lowWavelength) frequency /= rope.factor;
      else if (wavelength >= highWavelength) {
        const smooth =
          (rope.originalMaxPositions / wavelength - rope.lowFrequencyFactor) /
          (rope.highFrequencyFactor - rope.lowFrequencyFactor);
        frequency = (1 - smooth) * (frequency / rope.factor) + smooth * frequency;
      }
    }
    out[i] = frequency;
  }
  return out;
}

/** [x1, x2] -> [x2, x1] over the last axis: one reverse of a length-2 axis. Its own transpose. */
function swapHalves(x: tf.Tensor4D): tf.Tensor4D {
  const [batch, heads, length, headDim] = x.shape;
  return tf.reshape(tf.reverse(tf.reshape(x, [batch, heads, length, 2, headDim / 2]), 3), x.shape) as tf.Tensor4D;
}

/**
 * The rotary embedding x·cos + rotate_half(x)·sin of HF Llama (rotate_half([x1, x2]) = [-x2, x1]),
 * written as x·cos + swapHalves(x)·sinSigned with sinSigned = [-sin, sin], one op with its gradient
 * dy·cos + swapHalves(dy·sinSigned) (the swap is a symmetric permutation). Composed, rotate_half ran
 * split, neg and concat forward and twice as many kernels backward.
 */
export function rotary(cos: tf.Tensor4D, sinSigned: tf.Tensor4D): (x: tf.Tensor4D) => tf.Tensor4D {
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, save] = args as [tf.Tensor4D, tf.GradSaveFunc];
    save([cos, sinSigned]); // kept for the backward pass, which runs after the forward's scope is gone
    return {
      value: tf.add(tf.mul(x, cos), tf.mul(swapHalves(x), sinSigned)),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.tidy(() => {
          const [c, s] = saved as [tf.Tensor4D, tf.Tensor4D];
          return tf.add(tf.mul(dy, c), swapHalves(tf.mul(dy, s) as tf.Tensor4D));
        }),
    };
  });
  return (x) => op(x) as tf.Tensor4D;
}

interface LlamaBlock {
  inputNorm: tf.Variable<tf.Rank.R1>; // input_layernorm [d]
  q: HostLinear; // self_attn.q_proj: d -> H·hd
  k: HostLinear; // self_attn.k_proj: d -> Hkv·hd
  v: HostLinear; // self_attn.v_proj: d -> Hkv·hd
  o: HostLinear; // self_attn.o_proj: H·hd -> d
  queryNorm: tf.Variable<tf.Rank.R1> | null; // self_attn.q_norm [hd] (Qwen3)
  keyNorm: tf.Variable<tf.Rank.R1> | null; // self_attn.k_norm [hd] (Qwen3)
  postAttentionNorm: tf.Variable<tf.Rank.R1>; // post_attention_layernorm [d]
  gate: HostLinear; // mlp.gate_proj: d -> intermediate
  up: HostLinear; // mlp.up_proj: d -> intermediate
  down: HostLinear; // mlp.down_proj: intermediate -> d
}

export interface RopeConfig {
  theta: number; // rope_theta
  type: 'default' | 'linear' | 'llama3'; // rope_type
  factor: number; // linear, llama3: how far the context was stretched
  lowFrequencyFactor: number; // llama3
  highFrequencyFactor: number; // llama3
  originalMaxPositions: number; // llama3: context length of pre-training
}

export interface LlamaConfig {
  modelType: 'llama' | 'mistral' | 'qwen2' | 'qwen3'; // model_type
  vocabSize: number; // vocab_size
  hiddenSize: number; // hidden_size
  intermediateSize: number; // intermediate_size: SwiGLU width
  numLayers: number; // num_hidden_layers
  numHeads: number; // num_attention_heads
  numKeyValueHeads: number; // num_key_value_heads: < numHeads is grouped-query attention
  headDim: number; // head_dim, default hidden_size / num_attention_heads
  rmsNormEpsilon: number; // rms_norm_eps
  activation: string; // hidden_act, default silu
  maxPositions: number; // max_position_embeddings (informative: rotary positions have no table)
  rope: RopeConfig; // rope_parameters, or rope_theta and rope_scaling
  attentionBias: boolean; // attention_bias: bias on q, k, v, o (Qwen2: q, k, v always)
  queryKeyNorm: boolean; // Qwen3: q_norm and k_norm, an RMSNorm over each head of q and k
  mlpBias: boolean; // mlp_bias
  slidingWindow: number | null; // sliding_window (Mistral; Qwen2/3 with use_sliding_window): a query sees this many most recent keys
  tieWordEmbeddings: boolean; // tie_word_embeddings
  architecture: string; // architectures[0], default <Family>ForCausalLM
  dropout: DropoutRates; // attention_dropout
}

/** rope_parameters (transformers 5) or rope_theta + rope_scaling (earlier checkpoints). */
export function parseRope(reader: ConfigReader): RopeConfig {
  const raw = reader.raw;
  const fromParameters = typeof raw.rope_parameters === 'object' && raw.rope_parameters !== null;
  const parameters = (fromParameters ? raw.rope_parameters : (raw.rope_scaling ?? {})) as Record<string, unknown>;
  const field = fromParameters ? 'rope_parameters' : 'rope_scaling';
  const nested = new ConfigReader(parameters, `${reader.source} "${field}"`);
  const type = (parameters.rope_type ?? parameters.type ?? 'default') as string;
  if (type !== 'default' && type !== 'linear' && type !== 'llama3') {
    throw new Error(
      `${reader.source}: "${field}" rope_type ${preview(type)} is not supported (supported: default, linear, llama3)`,
    );
  }
  const theta = fromParameters
    ? nested.positiveNumber('rope_theta', 10000)
    : reader.positiveNumber('rope_theta', 10000);
  return {
    theta,
    type,
    factor: type === 'default' ? 1 : nested.positiveNumber('factor'),
    lowFrequencyFactor: type === 'llama3' ? nested.positiveNumber('low_freq_factor') : 1,
    highFrequencyFactor: type === 'llama3' ? nested.positiveNumber('high_freq_factor') : 1,
    originalMaxPositions:
      type === 'llama3'
        ? nested.positiveInteger('original_max_position_embeddings', reader.positiveInteger('max_position_embeddings'))
        : 0,
  };
}

/**
 * Qwen2's and Qwen3's window, as Qwen2Config and Qwen3Config resolve it (alike): `sliding_window` only with `use_sliding_window`, and
 * per layer by `layer_types` (when absent: "sliding_attention" from layer `max_window_layers` on).
 * One window for every layer is what the host's single attention mask holds, so a model that mixes
 * full and sliding layers is refused.
 */
function parseQwenSlidingWindow(reader: ConfigReader, numLayers: number): number | null {
  // sliding_window: absent is the configs' default 4096, null is no window
  const window =
    reader.boolean('use_sliding_window', false) && reader.raw.sliding_window !== null
      ? reader.positiveInteger('sliding_window', 4096)
      : null;
  let layerTypes: string[];
  if (reader.has('layer_types')) {
    const raw = reader.raw.layer_types;
    const valid = ['full_attention', 'sliding_attention'];
    if (!Array.isArray(raw) || raw.length !== numLayers || !raw.every((type) => valid.includes(type as string))) {
      throw new Error(
        `${reader.source}: field "layer_types" must list "full_attention" or "sliding_attention" for each of the ${numLayers} layers ("num_hidden_layers"), got ${preview(raw)}`,
      );
    }
    layerTypes = raw as string[];
  } else {
    const firstSliding = reader.nonNegativeInteger('max_window_layers', 28);
    layerTypes = Array.from({ length: numLayers }, (_, i) =>
      window !== null && i >= firstSliding ? 'sliding_attention' : 'full_attention',
    );
  }
  const sliding = layerTypes.filter((type) => type === 'sliding_attention').length;
  if (sliding === 0) return null;
  if (window === null) {
    throw new Error(
      `${reader.source}: "layer_types" has sliding_attention layers but no window ("use_sliding_window" is ${preview(reader.raw.use_sliding_window ?? false)}, "sliding_window" ${preview(reader.raw.sliding_window ?? null)})`,
    );
  }
  if (sliding < numLayers) {
    throw new Error(
      `${reader.source}: "layer_types" mixes full_attention and sliding_attention layers (${layerTypes.join(', ')}; from "use_sliding_window" and "max_window_layers" when not given): not supported, only a window on every layer or on none`,
    );
  }
  return window;
}

/**
 * The sizes of a decoder with rotary positions, checked before anything is made: an even head
 * (rotary embeddings turn pairs of dimensions), and no tensor, or layer stack, larger than the
 * checkpoint (ConfigReader.fits).
 */
export function checkDecoderSizes(
  reader: ConfigReader,
  sizes: {
    vocabSize: number;
    hiddenSize: number;
    numLayers: number;
    numHeads: number;
    headDim: number;
    intermediateSize: number;
  },
  rotaryDim = sizes.headDim,
): void {
  const { vocabSize, hiddenSize, numLayers, numHeads, headDim, intermediateSize } = sizes;
  if (rotaryDim % 2 !== 0) {
    throw new Error(
      `${reader.source}: the head size ${headDim} ("head_dim", else "hidden_size" / "num_attention_heads") must be even for rotary positions`,
    );
  }
  const attention = '"hidden_size" x "num_attention_heads" x "head_dim"';
  reader.fits('embed_tokens', '"vocab_size" x "hidden_size"', [vocabSize, hiddenSize]);
  reader.fits('q_proj', attention, [hiddenSize, numHeads, headDim]);
  const layers = [numLayers, hiddenSize, numHeads, headDim];
  reader.fits('o_proj of every layer', `"num_hidden_layers" x ${attention}`, layers);
  reader.fits('mlp.up_proj', '"intermediate_size" x "hidden_size"', [intermediateSize, hiddenSize]);
}

export function parseLlamaConfig(reader: ConfigReader): LlamaConfig {
  const modelType = reader.string('model_type') as LlamaConfig['modelType'];
  const hiddenSize = reader.positiveInteger('hidden_size');
  const numHeads = reader.positiveInteger('num_attention_heads');
  const numKeyValueHeads = reader.divisor('num_key_value_heads', numHeads, 'num_attention_heads', numHeads);
  // Qwen3Config's head_dim defaults to 128, not hidden_size / num_attention_heads
  const headDim = reader.has('head_dim')
    ? reader.positiveInteger('head_dim')
    : modelType === 'qwen3'
      ? 128
      : hiddenSize / numHeads;
  if (!Number.isInteger(headDim)) {
    throw new Error(
      `${reader.source}: "hidden_size" (${hiddenSize}) must be divisible by "num_attention_heads" (${numHeads}) when "head_dim" is not given`,
    );
  }
  const numLayers = reader.positiveInteger('num_hidden_layers');
  const vocabSize = reader.positiveInteger('vocab_size');
  const intermediateSize = reader.positiveInteger('intermediate_size');
  checkDecoderSizes(reader, { vocabSize, hiddenSize, numLayers, numHeads, headDim, intermediateSize });
  const slidingWindow =
    modelType === 'qwen2' || modelType === 'qwen3'
      ? parseQwenSlidingWindow(reader, numLayers)
      : modelType === 'mistral' && reader.has('sliding_window')
        ? reader.positiveInteger('sliding_window')
        : null;
  return {
    modelType,
    vocabSize,
    hiddenSize,
    intermediateSize,
    numLayers,
    numHeads,
    numKeyValueHeads,
    headDim,
    rmsNormEpsilon: reader.positiveNumber('rms_norm_eps', 1e-6),
    activation: reader.string('hidden_act', 'silu'),
    maxPositions: reader.positiveInteger('max_position_embeddings', 2048),
    rope: parseRope(reader),
    attentionBias: modelType === 'qwen2' || reader.boolean('attention_bias', false),
    queryKeyNorm: modelType === 'qwen3',
    mlpBias: reader.boolean('mlp_bias', false),
    slidingWindow,
    tieWordEmbeddings: reader.boolean('tie_word_embeddings', false),
    architecture: reader.architecture(
      {
        llama: 'LlamaForCausalLM',
        mistral: 'MistralForCausalLM',
        qwen2: 'Qwen2ForCausalLM',
        qwen3: 'Qwen3ForCausalLM',
      }[modelType],
    ),
    dropout: attentionOnlyDropout(reader),
  };
}

/** attention_dropout alone: these architectures have no other dropout. */
export function attentionOnlyDropout(reader: ConfigReader): DropoutRates {
  return { ...NO_DROPOUT, attention: reader.probability('attention_dropout', 0) };
}

export class LlamaModel extends TransformerHost {
  readonly headModules = ['lm_head'] as const;
  readonly layerPaths: string[];
  private readonly tokenEmbeddings: tf.Variable<tf.Rank.R2>; // model.embed_tokens [V, d]
  private readonly blocks: LlamaBlock[] = [];
  private readonly norm: tf.Variable<tf.Rank.R1>; // model.norm
  private readonly lmHead: tf.Variable<tf.Rank.R2>; // [V, d]
  private readonly inverseFrequencies: tf.Tensor1D; // [hd / 2]
  private readonly gatedAct: (gate: tf.Tensor, up: tf.Tensor) => tf.Tensor;

  get wordEmbeddings(): tf.Variable<tf.Rank.R2> {
    return this.tokenEmbeddings;
  }

  constructor(
    readonly llama: LlamaConfig,
    checkpoint: Checkpoint,
  ) {
    super(
      {
        modelType: llama.modelType,
        numLayers: llama.numLayers,
        hiddenSize: llama.hiddenSize,
        numAttentionHeads: llama.numHeads,
        numKeyValueHeads: llama.numKeyValueHeads,
        headDim: llama.headDim,
        vocabSize: llama.vocabSize,
        // rotary positions have no table to run past
        maxPositions: Number.POSITIVE_INFINITY,
        architecture: llama.architecture,
      },
      true,
    );
    this.dropoutRates = llama.dropout;
    this.gatedAct = gatedActivation(llama.activation, 'config.json hidden_act');
    const load = new WeightLoader(checkpoint, '');
    this.layerPaths = Array.from({ length: llama.numLayers }, (_, i) => `model.layers.${i}`);
    const { hiddenSize: d, numHeads, numKeyValueHeads, headDim, intermediateSize, vocabSize } = llama;
    this.tokenEmbeddings = load.variable('model.embed_tokens.weight', [vocabSize, d]) as tf.Variable<tf.Rank.R2>;
    const oBias = llama.attentionBias && llama.modelType !== 'qwen2';
    for (let i = 0; i < llama.numLayers; i++) {
      const layer = `model.layers.${i}`;
      const block: LlamaBlock = {
        inputNorm: load.variable(`${layer}.input_layernorm.weight`, [d]) as tf.Variable<tf.Rank.R1>,
        q: load.linear(`${layer}.self_attn.q_proj`, d, numHeads * headDim, 'linear', llama.attentionBias),
        k: load.linear(`${layer}.self_attn.k_proj`, d, numKeyValueHeads * headDim, 'linear', llama.attentionBias),
        v: load.linear(`${layer}.self_attn.v_proj`, d, numKeyValueHeads * headDim, 'linear', llama.attentionBias),
        o: load.linear(`${layer}.self_attn.o_proj`, numHeads * headDim, d, 'linear', oBias),
        queryNorm: llama.queryKeyNorm
          ? (load.variable(`${layer}.self_attn.q_norm.weight`, [headDim]) as tf.Variable<tf.Rank.R1>)
          : null,
        keyNorm: llama.queryKeyNorm
          ? (load.variable(`${layer}.self_attn.k_norm.weight`, [headDim]) as tf.Variable<tf.Rank.R1>)
          : null,
        postAttentionNorm: load.variable(`${layer}.post_attention_layernorm.weight`, [d]) as tf.Variable<tf.Rank.R1>,
        gate: load.linear(`${layer}.mlp.gate_proj`, d, intermediateSize, 'linear', llama.mlpBias),
        up: load.linear(`${layer}.mlp.up_proj`, d, intermediateSize, 'linear', llama.mlpBias),
        down: load.linear(`${layer}.mlp.down_proj`, intermediateSize, d, 'linear', llama.mlpBias),
      };
      for (const linear of [block.q, block.k, block.v, block.o, block.gate, block.up, block.down]) {
        this.linearMap.set(linear.name, linear);
      }
      this.blocks.push(block);
    }
    this.norm = load.variable('model.norm.weight', [d]) as tf.Variable<tf.Rank.R1>;
    this.lmHead = llama.tieWordEmbeddings
      ? this.tokenEmbeddings
      : (load.variable('lm_head.weight', [vocabSize, d]) as tf.Variable<tf.Rank.R2>);
    for (const [name, variable] of load.variables) this.parameterMap.set(name, variable);
    this.inverseFrequencies = keptTable(rotaryInverseFrequencies(headDim, llama.rope));
  }

  protected embedTokens(ids: tf.Tensor2D): tf.Tensor3D {
    return tf.gather(this.tokenEmbeddings, ids) as tf.Tensor as tf.Tensor3D; // [B, T, d]
  }

  /** Positions enter through the rotary embedding (rotaryEmbedding below), not the embeddings. */
  protected embedPositions(embeddings: tf.Tensor3D): tf.Tensor3D {
    return embeddings;
  }

  /** The rotary tables of this pass, computed once for all its layers (LayerState.rotary). */
  protected override rotaryEmbedding(positions: tf.Tensor2D): RotaryEmbedding {
    const [batch, length] = positions.shape;
    const column = tf.reshape(tf.cast(positions, 'float32'), [batch, length, 1]); // [B, T, 1]
    const angles = tf.mul(column, this.inverseFrequencies); // [B, T, hd/2]
    const shape: [number, number, number, number] = [batch, 1, length, this.llama.headDim];
    const cos = tf.reshape(tf.cos(tf.concat([angles, angles], -1)), shape) as tf.Tensor4D; // [B, 1, T, hd]
    const sine = tf.sin(angles); // [B, T, hd/2]
    const sinSigned = tf.reshape(tf.concat([tf.neg(sine), sine], -1), shape) as tf.Tensor4D; // [B, 1, T, hd]
    const scale = 1 / Math.sqrt(this.llama.headDim);
    return { keys: rotary(cos, sinSigned), queries: rotary(tf.mul(cos, scale), tf.mul(sinSigned, scale)) };
  }

  /** Grouped-query self-attention over the normalised input [B, T, d] -> [B, T, d]. */
  private selfAttention(index: number, block: LlamaBlock, normed: tf.Tensor3D, state: LayerState): tf.Tensor3D {
    const { numHeads, numKeyValueHeads, headDim, rmsNormEpsilon } = this.llama;
    const { context } = state;
    const [batch, length, d] = normed.shape;
    const rows = tf.reshape(normed, [batch * length, d]); // [B·T, d]
    const { queries, keys } = state.rotary!;
    let qHeads = splitHeads(block.q.apply(rows, context), batch, numHeads, headDim); // [B, H, T, hd]
    let kHeads = splitHeads(block.k.apply(rows, context), batch, numKeyValueHeads, headDim); // [B, Hkv, T, hd]
    if (block.queryNorm) qHeads = rmsNorm(qHeads, block.queryNorm, rmsNormEpsilon) as tf.Tensor4D; // [B, H, T, hd]
    if (block.keyNorm) kHeads = rmsNorm(kHeads, block.keyNorm, rmsNormEpsilon) as tf.Tensor4D; // [B, Hkv, T, hd]
    // q carries the attention scale (folded into its rotary tables), so attention scales by 1
    const q = queries(qHeads); // [B, H, T, hd]
    const k = keys(kHeads); // [B, Hkv, T, hd]
    const v = splitHeads(block.v.apply(rows, context), batch, numKeyValueHeads, headDim); // [B, Hkv, T, hd]
    const { key, value } = this.extendKeys(index, k, v, state); // [B, Hkv, S, hd]
    const attended = mergeHeads(attention(q, key, value, state.bias, 1, null, this.attentionDropout(index, context))); // [B·T, H·hd]
    const output = block.o.apply(attended, context); // [B·T, d]
    return tf.reshape(output, [batch, length, d]) as tf.Tensor3D; // [B, T, d]
  }

  /** Pre-norm block: x + attention(norm(x)), then x + SwiGLU(norm(x)). */
  protected layer(index: number, hidden: tf.Tensor3D, state: LayerState): tf.Tensor3D {
    const block = this.blocks[index]!;
    const norms = {
      input: block.inputNorm,
      postAttention: block.postAttentionNorm,
      epsilon: this.llama.rmsNormEpsilon,
    };
    return this.preNormLayer(
      index,
      hidden,
      state,
      norms,
      (normed) => this.selfAttention(index, block, normed, state),
      (normed) => gatedMlp(block, normed, this.gatedAct, state.context),
    );
  }

  protected finalNorm(hidden: tf.Tensor3D): tf.Tensor3D {
    return rmsNorm(hidden, this.norm, this.llama.rmsNormEpsilon) as tf.Tensor3D;
  }

  protected override languageModelHead(): LmHead {
    return { weight: this.lmHead, softCap: null };
  }

  protected head(normed: tf.Tensor3D): tf.Tensor {
    return lmHeadLogits(normed, this.lmHead); // [B, T, V]
  }

  protected override slidingWindow(): number | null {
    return this.llama.slidingWindow;
  }

  /** The decoding step as one graph (decode-graph.ts): embed, the layers as selfAttention and gatedMlp, the head. */
  protected override buildDecodeGraph(
    deltas: ReadonlyMap<HostLinear, readonly LinearDeltaGraph[]>,
  ): DecodeGraph | null {
    const { hiddenSize: d, numHeads, numKeyValueHeads, headDim, numLayers, rmsNormEpsilon, vocabSize } = this.llama;
    const graph = new DecodeGraphBuilder(deltas);
    const { ids, positions, bias } = graph.stepInputs();
    let hidden = graph.reshape(graph.gather(graph.weight(this.tokenEmbeddings), ids), [-1, d]); // [B, d]
    const rope = graph.rotaryTables(positions, graph.weight(this.inverseFrequencies), headDim, 1 / Math.sqrt(headDim));
    const norm = (x: string, weight: tf.Variable) => graph.rmsNorm(x, graph.weight(weight), rmsNormEpsilon);
    const heads = (x: string, count: number) => graph.reshape(x, [-1, count, 1, headDim]); // [B, count, 1, hd]
    for (let i = 0; i < numLayers; i++) {
      const block = this.blocks[i]!;
      const normed = norm(hidden, block.inputNorm);
      let q = heads(graph.linear(normed, block.q), numHeads);
      let k = heads(graph.linear(normed, block.k), numKeyValueHeads);
      if (block.queryNorm) q = norm(q, block.queryNorm);
      if (block.keyNorm) k = norm(k, block.keyNorm);
      q = graph.rotate(q, rope.scaledCos, rope.scaledSin, headDim);
      k = graph.rotate(k, rope.cos, rope.sinSigned, headDim);
      const v = heads(graph.linear(normed, block.v), numKeyValueHeads);
      const [keys, values] = graph.extendCache(i, k, v, numKeyValueHeads, headDim);
      const attended = graph.attend(q, keys, values, bias, numHeads, numKeyValueHeads, headDim, 1);
      hidden = graph.add(hidden, graph.linear(attended, block.o));
      const mlpIn = norm(hidden, block.postAttentionNorm);
      const gate = graphActivation(graph, this.llama.activation, graph.linear(mlpIn, block.gate));
      if (gate === null) return null;
      hidden = graph.add(hidden, graph.linear(graph.mul(gate, graph.linear(mlpIn, block.up)), block.down));
    }
    const logits = graph.matMul(norm(hidden, this.norm), graph.weight(this.lmHead), true); // [B, V]
    return graph.finish(logits, vocabSize, numLayers);
  }

  override dispose(): void {
    super.dispose();
    this.inverseFrequencies.dispose();
  }
}
