// Phi-3 as Hugging Face `transformers` defines it (Phi3ForCausalLM): the Llama layout (RMSNorm,
// rotary positions, SwiGLU, grouped-query attention, no biases) with two fused projections, each ONE
// nn.Linear: self_attn.qkv_proj (q, k, v concatenated on the output axis) and mlp.gate_up_proj (gate,
// then up). They stay one HostLinear each, so that LoRA adapts the fused weight as peft does and a
// merge is one exact update. Rotary on the first partial_rotary_factor of each head (Phi-4-mini),
// LongRoPE's short factors (the 128k checkpoints) up to original_max_position_embeddings, optional
// sliding-window attention. Dropout in training as transformers: attention_dropout and resid_pdrop
// (embd_pdrop is read by no transformers code). Shapes in comments and the releasing ops: see the notes at the top of
// transformer-host.ts.
import {
  gatedActivation,
  preview,
  rmsNorm,
  type Checkpoint,
  type ForwardContext,
  type HostLinear,
  type LinearDeltaGraph,
  type LmHead,
} from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

import { ConfigReader } from './config.js';
import { type DecodeGraph, DecodeGraphBuilder, graphActivation } from './decode-graph.js';
import { attentionOnlyDropout, checkDecoderSizes, rotary } from './llama.js';
import { attention, lmHeadLogits, mergeHeads, splitHeads } from './ops.js';
import { TransformerHost, type DropoutRates, type LayerState, type RotaryEmbedding } from './transformer-host.js';
import { WeightLoader, keptTable } from './weights.js';

interface Phi3Block {
  inputNorm: tf.Variable<tf.Rank.R1>; // input_layernorm [d]
  qkv: HostLinear; // self_attn.qkv_proj: d -> (H + 2·Hkv)·hd, q then k then v
  o: HostLinear; // self_attn.o_proj: H·hd -> d
  postAttentionNorm: tf.Variable<tf.Rank.R1>; // post_attention_layernorm [d]
  gateUp: HostLinear; // mlp.gate_up_proj: d -> 2·intermediate, gate then up
  down: HostLinear; // mlp.down_proj: intermediate -> d
}

export interface Phi3Rope {
  theta: number; // rope_theta
  type: 'default' | 'longrope'; // rope_type ("su" and "yarn" are older names of longrope)
  rotaryDim: number; // int(head_dim · partial_rotary_factor): the rotated leading part of each head
  shortFactor: number[] | null; // longrope: per-frequency divisors, [rotaryDim / 2]
  attentionFactor: number; // longrope: scales cos and sin; 1 for default
  originalMaxPositions: number; // longrope: positions the short factors cover (original_max_position_embeddings)
}

export interface Phi3Config {
  vocabSize: number; // vocab_size
  hiddenSize: number; // hidden_size
  intermediateSize: number; // intermediate_size: SwiGLU width (gate_up_proj is twice that)
  numLayers: number; // num_hidden_layers
  numHeads: number; // num_attention_heads
  numKeyValueHeads: number; // num_key_value_heads, default num_attention_heads
  headDim: number; // head_dim, default hidden_size / num_attention_heads
  rmsNormEpsilon: number; // rms_norm_eps, default 1e-5
  activation: string; // hidden_act, default silu
  rope: Phi3Rope; // rope_parameters, or rope_theta, partial_rotary_factor and rope_scaling
  slidingWindow: number | null; // sliding_window: a query sees this many most recent keys
  tieWordEmbeddings: boolean; // tie_word_embeddings
  architecture: string; // architectures[0], default Phi3ForCausalLM
  dropout: DropoutRates; // attention_dropout, resid_pdrop (embd_pdrop: transformers applies none)
}

/** Inverse frequencies [rotaryDim / 2]: 1 / (factor_i · θ^(2i / rotaryDim)), factor 1 without LongRoPE. */
function inverseFrequencies(rope: Phi3Rope): Float32Array {
  const half = rope.rotaryDim / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    out[i] = 1 / ((rope.shortFactor?.[i] ?? 1) * rope.theta ** ((2 * i) / rope.rotaryDim));
  }
  return out;
}

/** rope_parameters (transformers 5) or rope_theta, partial_rotary_factor and rope_scaling (Phi-3's own checkpoints). */
function parsePhi3Rope(reader: ConfigReader, headDim: number): Phi3Rope {
  const raw = reader.raw;
  const fromParameters = typeof raw.rope_parameters === 'object' && raw.rope_parameters !== null;
  const parameters = (fromParameters ? raw.rope_parameters : (raw.rope_scaling ?? {})) as Record<string, unknown>;
  const field = fromParameters ? 'rope_parameters' : 'rope_scaling';
  const nested = new ConfigReader(parameters, `${reader.source} "${field}"`);
  const named = (parameters.rope_type ?? parameters.type ?? 'default') as string;
  const type = named === 'su' || named === 'yarn' ? 'longrope' : named;
  if (type !== 'default' && type !== 'longrope') {
    throw new Error(
      `${reader.source}: "${field}" rope_type ${preview(named)} is not supported (supported: default, longrope)`,
    );
  }
  const theta = nested.has('rope_theta')
    ? nested.positiveNumber('rope_theta')
    : reader.positiveNumber('rope_theta', 10000);
  const partial = nested.has('partial_rotary_factor')
    ? nested.number('partial_rotary_factor')
    : reader.number('partial_rotary_factor', 1);
  const rotaryDim = Math.trunc(headDim * partial);
  if (rotaryDim <= 0 || rotaryDim > headDim || rotaryDim % 2 !== 0) {
    throw new Error(
      `${reader.source}: "partial_rotary_factor" ${partial} gives ${rotaryDim} rotary dimensions of a head of ${headDim}; expected an even number in 2..${headDim}`,
    );
  }
  if (type === 'default') {
    return { theta, type, rotaryDim, shortFactor: null, attentionFactor: 1, originalMaxPositions: 0 };
  }
  // transformers reads original_max_position_embeddings from the top level first (Phi-3 keeps it there)
  const maxPositions = reader.positiveInteger('max_position_embeddings', 4096);
  const originalMaxPositions = reader.has('original_max_position_embeddings')
    ? reader.positiveInteger('original_max_position_embeddings')
    : nested.positiveInteger('original_max_position_embeddings', maxPositions);
  const shortFactor = parameters.short_factor;
  if (
    !Array.isArray(shortFactor) ||
    shortFactor.length !== rotaryDim / 2 ||
    !shortFactor.every((f) => typeof f === 'number' && f > 0)
  ) {
    throw new Error(
      `${reader.source}: "${field}" short_factor must be ${rotaryDim / 2} positive numbers (rotary dimensions / 2), got ${preview(shortFactor)}`,
    );
  }
  const factor = nested.has('factor') ? nested.positiveNumber('factor') : maxPositions / originalMaxPositions;
  const attentionFactor = nested.has('attention_factor')
    ? nested.positiveNumber('attention_factor')
    : factor <= 1
      ? 1
      : Math.sqrt(1 + Math.log(factor) / Math.log(originalMaxPositions));
  return { theta, type, rotaryDim, shortFactor: shortFactor as number[], attentionFactor, originalMaxPositions };
}

export function parsePhi3Config(reader: ConfigReader): Phi3Config {
  const hiddenSize = reader.positiveInteger('hidden_size');
  const numHeads = reader.positiveInteger('num_attention_heads');
  const numKeyValueHeads = reader.divisor('num_key_value_heads', numHeads, 'num_attention_heads', numHeads);
  const headDim = reader.has('head_dim') ? reader.positiveInteger('head_dim') : hiddenSize / numHeads;
  if (!Number.isInteger(headDim)) {
    throw new Error(
      `${reader.source}: "hidden_size" (${hiddenSize}) must be divisible by "num_attention_heads" (${numHeads}) when "head_dim" is not given`,
    );
  }
  const vocabSize = reader.positiveInteger('vocab_size');
  const intermediateSize = reader.positiveInteger('intermediate_size');
  const numLayers = reader.positiveInteger('num_hidden_layers');
  const rope = parsePhi3Rope(reader, headDim);
  checkDecoderSizes(reader, { vocabSize, hiddenSize, numLayers, numHeads, headDim, intermediateSize }, rope.rotaryDim);
  return {
    vocabSize,
    hiddenSize,
    intermediateSize,
    numLayers,
    numHeads,
    numKeyValueHeads,
    headDim,
    rmsNormEpsilon: reader.positiveNumber('rms_norm_eps', 1e-5),
    activation: reader.string('hidden_act', 'silu'),
    rope,
    slidingWindow: reader.has('sliding_window') ? reader.positiveInteger('sliding_window') : null,
    tieWordEmbeddings: reader.boolean('tie_word_embeddings', false),
    architecture: reader.architecture('Phi3ForCausalLM'),
    dropout: { ...attentionOnlyDropout(reader), residual: reader.probability('resid_pdrop', 0) },
  };
}

/**
 * Rotary on the leading `rotaryDim` features of each head, the rest passed through (scaled by
 * `passScale`, the attention scale the queries carry). Slice and concat take their own gradients.
 */
function partialRotary(
  rotate: (x: tf.Tensor4D) => tf.Tensor4D,
  rotaryDim: number,
  passScale: number,
): (x: tf.Tensor4D) => tf.Tensor4D {
  return (x) => {
    const rotated = rotate(tf.slice(x, [0, 0, 0, 0], [-1, -1, -1, rotaryDim])); // [B, H, T, rd]
    const passed = tf.slice(x, [0, 0, 0, rotaryDim], [-1, -1, -1, -1]); // [B, H, T, hd - rd]
    return tf.concat([rotated, passScale === 1 ? passed : tf.mul(passed, passScale)], 3) as tf.Tensor4D;
  };
}

export class Phi3Model extends TransformerHost {
  readonly headModules = ['lm_head'] as const;
  readonly layerPaths: string[];
  private readonly tokenEmbeddings: tf.Variable<tf.Rank.R2>; // model.embed_tokens [V, d]
  private readonly blocks: Phi3Block[] = [];
  private readonly norm: tf.Variable<tf.Rank.R1>; // model.norm
  private readonly lmHead: tf.Variable<tf.Rank.R2>; // [V, d]
  private readonly inverseFrequencies: tf.Tensor1D; // [rd / 2]
  private readonly gatedAct: (gate: tf.Tensor, up: tf.Tensor) => tf.Tensor;

  get wordEmbeddings(): tf.Variable<tf.Rank.R2> {
    return this.tokenEmbeddings;
  }

  constructor(
    readonly phi3: Phi3Config,
    checkpoint: Checkpoint,
  ) {
    super(
      {
        modelType: 'phi3',
        numLayers: phi3.numLayers,
        hiddenSize: phi3.hiddenSize,
        numAttentionHeads: phi3.numHeads,
        numKeyValueHeads: phi3.numKeyValueHeads,
        headDim: phi3.headDim,
        vocabSize: phi3.vocabSize,
        // rotary positions have no table to run past (LongRoPE's limit is checked per pass)
        maxPositions: Number.POSITIVE_INFINITY,
        architecture: phi3.architecture,
      },
      true,
    );
    this.dropoutRates = phi3.dropout;
    this.gatedAct = gatedActivation(phi3.activation, 'config.json hidden_act');
    const load = new WeightLoader(checkpoint, '');
    this.layerPaths = Array.from({ length: phi3.numLayers }, (_, i) => `model.layers.${i}`);
    const { hiddenSize: d, numHeads, numKeyValueHeads, headDim, intermediateSize, vocabSize } = phi3;
    this.tokenEmbeddings = load.variable('model.embed_tokens.weight', [vocabSize, d]) as tf.Variable<tf.Rank.R2>;
    for (let i = 0; i < phi3.numLayers; i++) {
      const layer = `model.layers.${i}`;
      const block: Phi3Block = {
        inputNorm: load.variable(`${layer}.input_layernorm.weight`, [d]) as tf.Variable<tf.Rank.R1>,
        qkv: load.linear(
          `${layer}.self_attn.qkv_proj`,
          d,
          (numHeads + 2 * numKeyValueHeads) * headDim,
          'linear',
          false,
        ),
        o: load.linear(`${layer}.self_attn.o_proj`, numHeads * headDim, d, 'linear', false),
        postAttentionNorm: load.variable(`${layer}.post_attention_layernorm.weight`, [d]) as tf.Variable<tf.Rank.R1>,
        gateUp: load.linear(`${layer}.mlp.gate_up_proj`, d, 2 * intermediateSize, 'linear', false),
        down: load.linear(`${layer}.mlp.down_proj`, intermediateSize, d, 'linear', false),
      };
      for (const linear of [block.qkv, block.o, block.gateUp, block.down]) this.linearMap.set(linear.name, linear);
      this.blocks.push(block);
    }
    this.norm = load.variable('model.norm.weight', [d]) as tf.Variable<tf.Rank.R1>;
    this.lmHead = phi3.tieWordEmbeddings
      ? this.tokenEmbeddings
      : (load.variable('lm_head.weight', [vocabSize, d]) as tf.Variable<tf.Rank.R2>);
    for (const [name, variable] of load.variables) this.parameterMap.set(name, variable);
    this.inverseFrequencies = keptTable(inverseFrequencies(phi3.rope));
  }

  protected embedTokens(ids: tf.Tensor2D): tf.Tensor3D {
    return tf.gather(this.tokenEmbeddings, ids) as tf.Tensor as tf.Tensor3D; // [B, T, d]
  }

  /** Positions enter through the rotary embedding (rotaryEmbedding below), not the embeddings. */
  protected embedPositions(embeddings: tf.Tensor3D): tf.Tensor3D {
    return embeddings;
  }

  /**
   * LongRoPE switches to its long factors once a pass reaches past original_max_position_embeddings,
   * and transformers then recomputes the whole cache; neither is implemented: such a pass is refused.
   */
  private checkLongRopePositions(positions: tf.Tensor2D): void {
    const { rope } = this.phi3;
    if (rope.type !== 'longrope') return;
    const last = tf.tidy(() => tf.max(positions));
    const length = last.dataSync()[0]! + 1;
    last.dispose();
    if (length > rope.originalMaxPositions) {
      throw new Error(
        `phi3: a sequence of ${length} positions needs LongRoPE's long_factor (rope_type "longrope" past original_max_position_embeddings ${rope.originalMaxPositions}), which is not implemented; keep sequences within ${rope.originalMaxPositions} positions`,
      );
    }
  }

  /** The rotary tables of this pass, computed once for all its layers (LayerState.rotary). */
  protected override rotaryEmbedding(positions: tf.Tensor2D): RotaryEmbedding {
    this.checkLongRopePositions(positions);
    const { headDim, rope } = this.phi3;
    const [batch, length] = positions.shape;
    const column = tf.reshape(tf.cast(positions, 'float32'), [batch, length, 1]); // [B, T, 1]
    const angles = tf.mul(column, this.inverseFrequencies); // [B, T, rd/2]
    const shape: [number, number, number, number] = [batch, 1, length, rope.rotaryDim];
    let cos = tf.reshape(tf.cos(tf.concat([angles, angles], -1)), shape) as tf.Tensor4D; // [B, 1, T, rd]
    const sine = tf.sin(angles); // [B, T, rd/2]
    let sinSigned = tf.reshape(tf.concat([tf.neg(sine), sine], -1), shape) as tf.Tensor4D; // [B, 1, T, rd]
    if (rope.attentionFactor !== 1) {
      cos = tf.mul(cos, rope.attentionFactor);
      sinSigned = tf.mul(sinSigned, rope.attentionFactor);
    }
    const scale = 1 / Math.sqrt(headDim);
    const keys = rotary(cos, sinSigned);
    const queries = rotary(tf.mul(cos, scale), tf.mul(sinSigned, scale));
    if (rope.rotaryDim === headDim) return { keys, queries };
    return { keys: partialRotary(keys, rope.rotaryDim, 1), queries: partialRotary(queries, rope.rotaryDim, scale) };
  }

  /** Grouped-query self-attention over the normalised input [B, T, d] -> [B, T, d]. */
  private selfAttention(index: number, block: Phi3Block, normed: tf.Tensor3D, state: LayerState): tf.Tensor3D {
    const { numHeads, numKeyValueHeads, headDim } = this.phi3;
    const { context } = state;
    const [batch, length, d] = normed.shape;
    const rows = tf.reshape(normed, [batch * length, d]); // [B·T, d]
    const qkv = block.qkv.apply(rows, context); // [B·T, (H + 2·Hkv)·hd]
    const kvWidth = numKeyValueHeads * headDim;
    const [qRows, kRows, vRows] = tf.split(qkv, [numHeads * headDim, kvWidth, kvWidth], 1); // [B·T, H·hd], [B·T, Hkv·hd] ×2
    const { queries, keys } = state.rotary!;
    // q carries the attention scale (folded into its rotary tables), so attention scales by 1
    const q = queries(splitHeads(qRows!, batch, numHeads, headDim)); // [B, H, T, hd]
    const k = keys(splitHeads(kRows!, batch, numKeyValueHeads, headDim)); // [B, Hkv, T, hd]
    const v = splitHeads(vRows!, batch, numKeyValueHeads, headDim); // [B, Hkv, T, hd]
    const { key, value } = this.extendKeys(index, k, v, state); // [B, Hkv, S, hd]
    const attended = mergeHeads(attention(q, key, value, state.bias, 1, null, this.attentionDropout(index, context))); // [B·T, H·hd]
    const output = block.o.apply(attended, context); // [B·T, d]
    return tf.reshape(output, [batch, length, d]) as tf.Tensor3D; // [B, T, d]
  }

  /** SwiGLU on the fused projection: down(act(gate) · up) with [gate, up] = gate_up(x), [B, T, d] -> [B, T, d]. */
  private mlp(block: Phi3Block, normed: tf.Tensor3D, context: ForwardContext): tf.Tensor3D {
    const [batch, length, d] = normed.shape;
    const rows = tf.reshape(normed, [batch * length, d]); // [B·T, d]
    const [gate, up] = tf.split(block.gateUp.apply(rows, context), 2, 1); // [B·T, intermediate] ×2
    const gated = this.gatedAct(gate!, up!); // [B·T, intermediate]
    const output = block.down.apply(gated, context); // [B·T, d]
    return tf.reshape(output, [batch, length, d]) as tf.Tensor3D; // [B, T, d]
  }

  /** Pre-norm block, as Llama's: x + attention(norm(x)), then x + mlp(norm(x)). */
  protected layer(index: number, hidden: tf.Tensor3D, state: LayerState): tf.Tensor3D {
    const block = this.blocks[index]!;
    const norms = { input: block.inputNorm, postAttention: block.postAttentionNorm, epsilon: this.phi3.rmsNormEpsilon };
    return this.preNormLayer(
      index,
      hidden,
      state,
      norms,
      (normed) => this.selfAttention(index, block, normed, state),
      (normed) => this.mlp(block, normed, state.context),
    );
  }

  protected finalNorm(hidden: tf.Tensor3D): tf.Tensor3D {
    return rmsNorm(hidden, this.norm, this.phi3.rmsNormEpsilon) as tf.Tensor3D;
  }

  protected override languageModelHead(): LmHead {
    return { weight: this.lmHead, softCap: null };
  }

  protected head(normed: tf.Tensor3D): tf.Tensor {
    return lmHeadLogits(normed, this.lmHead); // [B, T, V]
  }

  protected override slidingWindow(): number | null {
    return this.phi3.slidingWindow;
  }

  protected override checkStepPositions(positions: tf.Tensor2D): void {
    this.checkLongRopePositions(positions);
  }

  /** The decoding step as one graph (decode-graph.ts): selfAttention and mlp above for one token. */
  protected override buildDecodeGraph(
    deltas: ReadonlyMap<HostLinear, readonly LinearDeltaGraph[]>,
  ): DecodeGraph | null {
    const {
      hiddenSize: d,
      numHeads,
      numKeyValueHeads,
      headDim,
      numLayers,
      rmsNormEpsilon,
      vocabSize,
      rope,
    } = this.phi3;
    const { intermediateSize } = this.phi3;
    const graph = new DecodeGraphBuilder(deltas);
    const { ids, positions, bias } = graph.stepInputs();
    let hidden = graph.reshape(graph.gather(graph.weight(this.tokenEmbeddings), ids), [-1, d]); // [B, d]
    const scale = 1 / Math.sqrt(headDim);
    const tables = graph.rotaryTables(
      positions,
      graph.weight(this.inverseFrequencies),
      rope.rotaryDim,
      scale,
      rope.attentionFactor,
    );
    const norm = (x: string, weight: tf.Variable) => graph.rmsNorm(x, graph.weight(weight), rmsNormEpsilon);
    const heads = (x: string, count: number) => graph.reshape(x, [-1, count, 1, headDim]); // [B, count, 1, hd]
    const kvWidth = numKeyValueHeads * headDim;
    for (let i = 0; i < numLayers; i++) {
      const block = this.blocks[i]!;
      const qkv = graph.linear(norm(hidden, block.inputNorm), block.qkv);
      const [qRows, kRows, vRows] = graph.split(qkv, [numHeads * headDim, kvWidth, kvWidth], 2);
      const q = graph.rotatePartly(
        heads(qRows!, numHeads),
        tables.scaledCos,
        tables.scaledSin,
        rope.rotaryDim,
        headDim,
        scale,
      );
      const k = graph.rotatePartly(
        heads(kRows!, numKeyValueHeads),
        tables.cos,
        tables.sinSigned,
        rope.rotaryDim,
        headDim,
        1,
      );
      const [keys, values] = graph.extendCache(i, k, heads(vRows!, numKeyValueHeads), numKeyValueHeads, headDim);
      const attended = graph.attend(q, keys, values, bias, numHeads, numKeyValueHeads, headDim, 1);
      hidden = graph.add(hidden, graph.linear(attended, block.o));
      const [gateRows, upRows] = graph.split(
        graph.linear(norm(hidden, block.postAttentionNorm), block.gateUp),
        [intermediateSize, intermediateSize],
        2,
      );
      const gate = graphActivation(graph, this.phi3.activation, gateRows!);
      if (gate === null) return null;
      hidden = graph.add(hidden, graph.linear(graph.mul(gate, upRows!), block.down));
    }
    const logits = graph.matMul(norm(hidden, this.norm), graph.weight(this.lmHead), true); // [B, V]
    return graph.finish(logits, vocabSize, numLayers);
  }

  override dispose(): void {
    super.dispose();
    this.inverseFrequencies.dispose();
  }
}
