// Gemma 2 as Hugging Face `transformers` defines it (Gemma2ForCausalLM): the Llama layout (rotary
// positions, grouped-query attention, gated feed-forward) with Gemma's changes. RMSNorm scales by
// (1 + w); token embeddings are multiplied by √hidden_size; head_dim is its own field (not
// hidden_size / heads) and the attention scale is query_pre_attn_scalar^-0.5; GeGLU with the tanh
// GELU; every sublayer has a norm before and after it (the residual adds the normalised output);
// attention scores and final logits are soft-capped, c·tanh(x / c); layers alternate sliding-window
// and full attention (layer_types). attention_dropout applies in training, as in transformers.
//
// Gemma 3's text model (Gemma3ForCausalLM, model_type gemma3_text) is a variant: an RMSNorm (1 + w)
// over each head of the queries and keys before the rotary embedding (q_norm, k_norm); local
// (sliding) and global layers by layer_types (default: every sliding_window_pattern-th layer global)
// with their own RoPE bases (rope_local_base_freq for the local ones, rope_theta and rope_scaling for
// the global ones; nested per layer type in rope_parameters); soft-capping off by default. Gemma3Attention
// does not pass attn_logit_softcapping to its attention, so a set value changes nothing, here as there.
// Shapes in comments and the releasing ops: see the notes at the top of transformer-host.ts.
import {
  addReleasing,
  gatedActivation,
  preview,
  rmsNorm,
  type Checkpoint,
  type HostLinear,
  type LmHead,
} from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

import { ConfigReader } from './config.js';
import {
  attentionOnlyDropout,
  checkDecoderSizes,
  parseRope,
  rotary,
  rotaryInverseFrequencies,
  type RopeConfig,
} from './llama.js';
import { attention, gatedMlp, lmHeadLogits, mergeHeads, splitHeads } from './ops.js';
import { TransformerHost, type DropoutRates, type LayerState, type RotaryEmbedding } from './transformer-host.js';
import { WeightLoader, keptTable } from './weights.js';

/**
 * Gemma's RMSNorm: x / √(mean(x²) + ε)·(1 + w), the weight stored as an offset from 1. The weight
 * passed to rmsNorm is a tensor, not the variable, so the backward pass also sums its gradient
 * (one product and sum per norm) where the variable is frozen.
 */
function gemmaNorm<T extends tf.Tensor>(x: T, weight: tf.Variable<tf.Rank.R1>, epsilon: number): T {
  return rmsNorm(x, tf.add(weight, 1), epsilon) as T;
}

interface Gemma2Block {
  inputNorm: tf.Variable<tf.Rank.R1>; // input_layernorm [d]
  q: HostLinear; // self_attn.q_proj: d -> H·hd
  k: HostLinear; // self_attn.k_proj: d -> Hkv·hd
  v: HostLinear; // self_attn.v_proj: d -> Hkv·hd
  o: HostLinear; // self_attn.o_proj: H·hd -> d
  queryNorm: tf.Variable<tf.Rank.R1> | null; // self_attn.q_norm [hd] (Gemma 3)
  keyNorm: tf.Variable<tf.Rank.R1> | null; // self_attn.k_norm [hd] (Gemma 3)
  postAttentionNorm: tf.Variable<tf.Rank.R1>; // post_attention_layernorm [d], on the attention output
  preFeedforwardNorm: tf.Variable<tf.Rank.R1>; // pre_feedforward_layernorm [d]
  gate: HostLinear; // mlp.gate_proj: d -> intermediate
  up: HostLinear; // mlp.up_proj: d -> intermediate
  down: HostLinear; // mlp.down_proj: intermediate -> d
  postFeedforwardNorm: tf.Variable<tf.Rank.R1>; // post_feedforward_layernorm [d], on the MLP output
  sliding: boolean; // layer_types[i] is sliding_attention
}

export interface Gemma2Config {
  modelType: 'gemma2' | 'gemma3_text'; // model_type
  vocabSize: number; // vocab_size
  hiddenSize: number; // hidden_size
  intermediateSize: number; // intermediate_size: GeGLU width
  numLayers: number; // num_hidden_layers
  numHeads: number; // num_attention_heads
  numKeyValueHeads: number; // num_key_value_heads
  headDim: number; // head_dim, default 256 (not hidden_size / num_attention_heads)
  queryPreAttentionScalar: number; // query_pre_attn_scalar, default 256: attention scale is its -1/2 power
  rmsNormEpsilon: number; // rms_norm_eps, default 1e-6
  activation: string; // hidden_activation, default gelu_pytorch_tanh
  rope: RopeConfig; // rope_parameters (or rope_theta and rope_scaling); Gemma 3: the global layers'
  localRope: RopeConfig | null; // Gemma 3: the local (sliding) layers' (rope_local_base_freq); null = rope
  queryKeyNorm: boolean; // Gemma 3: self_attn.q_norm and k_norm
  attentionBias: boolean; // attention_bias: biases on q, k, v and o
  attentionSoftCap: number | null; // attn_logit_softcapping, default 50; null = none (Gemma 3: never applied)
  finalSoftCap: number | null; // final_logit_softcapping, default 30 (Gemma 3: null); null = none
  slidingWindow: number | null; // sliding_window, default 4096: keys a sliding layer's query sees
  layerTypes: ('full_attention' | 'sliding_attention')[]; // layer_types, default sliding, full, sliding, ...
  tieWordEmbeddings: boolean; // tie_word_embeddings, default true
  architecture: string; // architectures[0], default Gemma2ForCausalLM (Gemma3ForCausalLM)
  dropout: DropoutRates; // attention_dropout
}

/** A field whose absence means Gemma2Config's default and whose null means none. */
function nullableNumber(reader: ConfigReader, field: string, fallback: number | null): number | null {
  if (reader.raw[field] === null || (fallback === null && !reader.has(field))) return null;
  return reader.positiveNumber(field, fallback ?? undefined);
}

function parseLayerTypes(reader: ConfigReader, numLayers: number, gemma3: boolean): Gemma2Config['layerTypes'] {
  if (!reader.has('layer_types')) {
    // Gemma3TextConfig's default: every sliding_window_pattern-th layer (1-based) is global
    const pattern = gemma3 ? reader.positiveInteger('sliding_window_pattern', 6) : 2;
    // Gemma2Config's default: layers 0, 2, 4, ... slide
    const slides = (i: number) => (gemma3 ? (i + 1) % pattern !== 0 : i % 2 === 0);
    return Array.from({ length: numLayers }, (_, i) => (slides(i) ? 'sliding_attention' : 'full_attention'));
  }
  const raw = reader.raw.layer_types;
  const valid = ['full_attention', 'sliding_attention'];
  if (!Array.isArray(raw) || raw.length !== numLayers || !raw.every((type) => valid.includes(type as string))) {
    throw new Error(
      `${reader.source}: field "layer_types" must list "full_attention" or "sliding_attention" for each of the ${numLayers} layers ("num_hidden_layers"), got ${preview(raw)}`,
    );
  }
  return raw as Gemma2Config['layerTypes'];
}

/**
 * Gemma 3's two RoPE settings as Gemma3TextConfig resolves them: rope_parameters nested by layer type
 * ({full_attention: {...}, sliding_attention: {...}}), or the flat fields rope_theta (default 1e6)
 * and rope_scaling for the global layers and rope_local_base_freq (default 1e4) for the local ones.
 * Default and linear scaling; anything else is refused, naming the field.
 */
function parseGemma3Rope(reader: ConfigReader): { global: RopeConfig; local: RopeConfig } {
  const raw = reader.raw;
  const nested = typeof raw.rope_parameters === 'object' && raw.rope_parameters !== null;
  const parameters = (nested ? raw.rope_parameters : {}) as Record<string, unknown>;
  const one = (layerType: string, flat: Record<string, unknown>, field: string, theta: number): RopeConfig => {
    const given = parameters[layerType];
    const settings = (typeof given === 'object' && given !== null ? given : flat) as Record<string, unknown>;
    const source = nested ? `rope_parameters.${layerType}` : field;
    const type = (settings.rope_type ?? settings.type ?? 'default') as string;
    if (type !== 'default' && type !== 'linear') {
      throw new Error(
        `${reader.source}: field "${source}" has rope_type ${preview(type)}, not supported for gemma3_text (supported: default, linear)`,
      );
    }
    const sub = new ConfigReader(settings, `${reader.source} "${source}"`);
    return {
      theta: sub.positiveNumber('rope_theta', theta),
      type,
      factor: type === 'linear' ? sub.positiveNumber('factor') : 1,
      lowFrequencyFactor: 1,
      highFrequencyFactor: 1,
      originalMaxPositions: 0,
    };
  };
  const globalFlat = { ...((raw.rope_scaling ?? {}) as Record<string, unknown>) };
  return {
    global: one('full_attention', globalFlat, 'rope_scaling', reader.positiveNumber('rope_theta', 1_000_000)),
    local: one('sliding_attention', {}, 'rope_local_base_freq', reader.positiveNumber('rope_local_base_freq', 10_000)),
  };
}

/** Gemma 3's text model (model_type gemma3_text) as the Gemma 2 variant it is (see the top of this file). */
export function parseGemma3TextConfig(reader: ConfigReader): Gemma2Config {
  return parseGemmaConfig(reader, 'gemma3_text');
}

export function parseGemma2Config(reader: ConfigReader): Gemma2Config {
  return parseGemmaConfig(reader, 'gemma2');
}

function parseGemmaConfig(reader: ConfigReader, modelType: Gemma2Config['modelType']): Gemma2Config {
  const gemma3 = modelType === 'gemma3_text';
  if (reader.raw.use_bidirectional_attention === true) {
    throw new Error(
      `${reader.source}: field "use_bidirectional_attention" is true (an encoder); not supported, only causal attention`,
    );
  }
  const numHeads = reader.positiveInteger('num_attention_heads', 8);
  const numLayers = reader.positiveInteger('num_hidden_layers');
  const vocabSize = reader.positiveInteger('vocab_size');
  const hiddenSize = reader.positiveInteger('hidden_size');
  const intermediateSize = reader.positiveInteger('intermediate_size');
  const headDim = reader.positiveInteger('head_dim', 256);
  checkDecoderSizes(reader, { vocabSize, hiddenSize, numLayers, numHeads, headDim, intermediateSize });
  const layerTypes = parseLayerTypes(reader, numLayers, gemma3);
  const rope = gemma3 ? parseGemma3Rope(reader) : { global: parseRope(reader), local: null };
  const slidingWindow = reader.raw.sliding_window === null ? null : reader.positiveInteger('sliding_window', 4096);
  if (slidingWindow === null && layerTypes.includes('sliding_attention')) {
    throw new Error(
      `${reader.source}: "layer_types" has sliding_attention layers but field "sliding_window" is null (no window)`,
    );
  }
  return {
    modelType,
    vocabSize,
    hiddenSize,
    intermediateSize,
    numLayers,
    numHeads,
    numKeyValueHeads: reader.divisor('num_key_value_heads', numHeads, 'num_attention_heads', 4),
    headDim,
    queryPreAttentionScalar: reader.positiveNumber('query_pre_attn_scalar', 256),
    rmsNormEpsilon: reader.positiveNumber('rms_norm_eps', 1e-6),
    activation: reader.string('hidden_activation', 'gelu_pytorch_tanh'),
    rope: rope.global,
    localRope: rope.local,
    queryKeyNorm: gemma3,
    attentionBias: reader.boolean('attention_bias', false),
    attentionSoftCap: nullableNumber(reader, 'attn_logit_softcapping', gemma3 ? null : 50),
    finalSoftCap: nullableNumber(reader, 'final_logit_softcapping', gemma3 ? null : 30),
    slidingWindow,
    layerTypes,
    tieWordEmbeddings: reader.boolean('tie_word_embeddings', true),
    architecture: reader.architecture(gemma3 ? 'Gemma3ForCausalLM' : 'Gemma2ForCausalLM'),
    dropout: attentionOnlyDropout(reader),
  };
}

export class Gemma2Model extends TransformerHost {
  readonly headModules = ['lm_head'] as const;
  readonly layerPaths: string[];
  private readonly tokenEmbeddings: tf.Variable<tf.Rank.R2>; // model.embed_tokens [V, d]
  private readonly blocks: Gemma2Block[] = [];
  private readonly norm: tf.Variable<tf.Rank.R1>; // model.norm
  private readonly lmHead: tf.Variable<tf.Rank.R2>; // [V, d]
  private readonly inverseFrequencies: tf.Tensor1D; // [hd / 2]
  private readonly localInverseFrequencies: tf.Tensor1D | null; // [hd / 2], Gemma 3's local layers
  private readonly gatedAct: (gate: tf.Tensor, up: tf.Tensor) => tf.Tensor;

  get wordEmbeddings(): tf.Variable<tf.Rank.R2> {
    return this.tokenEmbeddings;
  }

  /** √hidden_size in float32, as Gemma2TextScaledWordEmbedding's embed_scale. */
  get wordEmbeddingScale(): number {
    return Math.fround(Math.sqrt(this.gemma2.hiddenSize));
  }

  constructor(
    readonly gemma2: Gemma2Config,
    checkpoint: Checkpoint,
  ) {
    super(
      {
        modelType: gemma2.modelType,
        numLayers: gemma2.numLayers,
        hiddenSize: gemma2.hiddenSize,
        numAttentionHeads: gemma2.numHeads,
        numKeyValueHeads: gemma2.numKeyValueHeads,
        headDim: gemma2.headDim,
        vocabSize: gemma2.vocabSize,
        // rotary positions have no table to run past
        maxPositions: Number.POSITIVE_INFINITY,
        architecture: gemma2.architecture,
      },
      true,
    );
    this.dropoutRates = gemma2.dropout;
    this.gatedAct = gatedActivation(gemma2.activation, 'config.json hidden_activation');
    const load = new WeightLoader(checkpoint, '');
    this.layerPaths = Array.from({ length: gemma2.numLayers }, (_, i) => `model.layers.${i}`);
    const { hiddenSize: d, numHeads, numKeyValueHeads, headDim, intermediateSize, vocabSize, attentionBias } = gemma2;
    const norm = (name: string, size = d) => load.variable(name, [size]) as tf.Variable<tf.Rank.R1>;
    this.tokenEmbeddings = load.variable('model.embed_tokens.weight', [vocabSize, d]) as tf.Variable<tf.Rank.R2>;
    for (let i = 0; i < gemma2.numLayers; i++) {
      const layer = `model.layers.${i}`;
      const block: Gemma2Block = {
        inputNorm: norm(`${layer}.input_layernorm.weight`),
        q: load.linear(`${layer}.self_attn.q_proj`, d, numHeads * headDim, 'linear', attentionBias),
        k: load.linear(`${layer}.self_attn.k_proj`, d, numKeyValueHeads * headDim, 'linear', attentionBias),
        v: load.linear(`${layer}.self_attn.v_proj`, d, numKeyValueHeads * headDim, 'linear', attentionBias),
        o: load.linear(`${layer}.self_attn.o_proj`, numHeads * headDim, d, 'linear', attentionBias),
        queryNorm: gemma2.queryKeyNorm ? norm(`${layer}.self_attn.q_norm.weight`, headDim) : null,
        keyNorm: gemma2.queryKeyNorm ? norm(`${layer}.self_attn.k_norm.weight`, headDim) : null,
        postAttentionNorm: norm(`${layer}.post_attention_layernorm.weight`),
        preFeedforwardNorm: norm(`${layer}.pre_feedforward_layernorm.weight`),
        gate: load.linear(`${layer}.mlp.gate_proj`, d, intermediateSize, 'linear', false),
        up: load.linear(`${layer}.mlp.up_proj`, d, intermediateSize, 'linear', false),
        down: load.linear(`${layer}.mlp.down_proj`, intermediateSize, d, 'linear', false),
        postFeedforwardNorm: norm(`${layer}.post_feedforward_layernorm.weight`),
        sliding: gemma2.layerTypes[i] === 'sliding_attention',
      };
      for (const linear of [block.q, block.k, block.v, block.o, block.gate, block.up, block.down]) {
        this.linearMap.set(linear.name, linear);
      }
      this.blocks.push(block);
    }
    this.norm = norm('model.norm.weight');
    this.lmHead = gemma2.tieWordEmbeddings
      ? this.tokenEmbeddings
      : (load.variable('lm_head.weight', [vocabSize, d]) as tf.Variable<tf.Rank.R2>);
    for (const [name, variable] of load.variables) this.parameterMap.set(name, variable);
    this.inverseFrequencies = keptTable(rotaryInverseFrequencies(headDim, gemma2.rope));
    this.localInverseFrequencies = gemma2.localRope
      ? keptTable(rotaryInverseFrequencies(headDim, gemma2.localRope))
      : null;
  }

  /**
   * Token embeddings times √hidden_size, as Gemma2TextScaledWordEmbedding (in the weights' dtype:
   * float32 here). Only the real tokens: transformers does not scale inputs_embeds, so the virtual
   * tokens the input-embedding hook prepends (prompt tuning) enter unscaled, as with peft.
   */
  protected embedTokens(ids: tf.Tensor2D): tf.Tensor3D {
    const embeddings = tf.gather(this.tokenEmbeddings, ids); // [B, T, d]
    return tf.mul(embeddings, this.wordEmbeddingScale) as tf.Tensor3D;
  }

  /** Positions enter through the rotary embedding (rotaryEmbedding below), not the embeddings. */
  protected embedPositions(embeddings: tf.Tensor3D): tf.Tensor3D {
    return embeddings;
  }

  /** The rotary tables of this pass; the queries' carry the scale query_pre_attn_scalar^-0.5. */
  protected override rotaryEmbedding(positions: tf.Tensor2D): RotaryEmbedding {
    return this.rotaryTables(positions, this.inverseFrequencies);
  }

  /** Gemma 3's local layers: the same with their own base (rope_local_base_freq). */
  protected override slidingRotaryEmbedding(positions: tf.Tensor2D): RotaryEmbedding | null {
    return this.localInverseFrequencies && this.blocks.some((block) => block.sliding)
      ? this.rotaryTables(positions, this.localInverseFrequencies)
      : null;
  }

  private rotaryTables(positions: tf.Tensor2D, inverseFrequencies: tf.Tensor1D): RotaryEmbedding {
    const [batch, length] = positions.shape;
    const column = tf.reshape(tf.cast(positions, 'float32'), [batch, length, 1]); // [B, T, 1]
    const angles = tf.mul(column, inverseFrequencies); // [B, T, hd/2]
    const shape: [number, number, number, number] = [batch, 1, length, this.gemma2.headDim];
    const cos = tf.reshape(tf.cos(tf.concat([angles, angles], -1)), shape) as tf.Tensor4D; // [B, 1, T, hd]
    const sine = tf.sin(angles); // [B, T, hd/2]
    const sinSigned = tf.reshape(tf.concat([tf.neg(sine), sine], -1), shape) as tf.Tensor4D; // [B, 1, T, hd]
    const scale = this.gemma2.queryPreAttentionScalar ** -0.5;
    return { keys: rotary(cos, sinSigned), queries: rotary(tf.mul(cos, scale), tf.mul(sinSigned, scale)) };
  }

  /**
   * Grouped-query self-attention over the normalised input [B, T, d] -> [B, T, d], soft-capped
   * (Gemma 2), with the sliding-window mask (and Gemma 3's local rotary tables) on the layers that
   * slide. Gemma 3 normalises each head of the queries and keys before rotating them. The prefix's
   * keys are soft-capped and windowed like the others.
   */
  private selfAttention(index: number, block: Gemma2Block, normed: tf.Tensor3D, state: LayerState): tf.Tensor3D {
    const { numHeads, numKeyValueHeads, headDim, rmsNormEpsilon, modelType } = this.gemma2;
    // Gemma3Attention leaves attn_logit_softcapping unused
    const softCap = modelType === 'gemma2' ? this.gemma2.attentionSoftCap : null;
    const { context } = state;
    const [batch, length, d] = normed.shape;
    const rows = tf.reshape(normed, [batch * length, d]); // [B·T, d]
    const { queries, keys } = (block.sliding ? state.slidingRotary : null) ?? state.rotary!;
    let qHeads = splitHeads(block.q.apply(rows, context), batch, numHeads, headDim); // [B, H, T, hd]
    let kHeads = splitHeads(block.k.apply(rows, context), batch, numKeyValueHeads, headDim); // [B, Hkv, T, hd]
    if (block.queryNorm) qHeads = gemmaNorm(qHeads, block.queryNorm, rmsNormEpsilon); // [B, H, T, hd]
    if (block.keyNorm) kHeads = gemmaNorm(kHeads, block.keyNorm, rmsNormEpsilon); // [B, Hkv, T, hd]
    // q carries the attention scale (folded into its rotary tables), so attention scales by 1
    const q = queries(qHeads); // [B, H, T, hd]
    const k = keys(kHeads); // [B, Hkv, T, hd]
    const v = splitHeads(block.v.apply(rows, context), batch, numKeyValueHeads, headDim); // [B, Hkv, T, hd]
    const { key, value } = this.extendKeys(index, k, v, state); // [B, Hkv, S, hd]
    const bias = block.sliding ? state.slidingBias! : state.bias; // [B, 1, T, S]
    const attended = mergeHeads(attention(q, key, value, bias, 1, softCap, this.attentionDropout(index, context))); // [B·T, H·hd]
    const output = block.o.apply(attended, context); // [B·T, d]
    return tf.reshape(output, [batch, length, d]) as tf.Tensor3D; // [B, T, d]
  }

  /**
   * Sandwich-norm block: x + postNorm(attention(norm(x))), then x + postNorm(mlp(preNorm(x))). The
   * sublayer hooks see each raw output (o_proj's, down_proj's) before its post norm, where AdapterHub's
   * Gemma interface hooks its adapters; the post norm goes with them as `norm`, applied after the hook
   * and before the residual add.
   */
  protected layer(index: number, hidden: tf.Tensor3D, state: LayerState): tf.Tensor3D {
    const block = this.blocks[index]!;
    const { rmsNormEpsilon } = this.gemma2;
    const { context } = state;
    const postAttentionNorm = (x: tf.Tensor3D): tf.Tensor3D => gemmaNorm(x, block.postAttentionNorm, rmsNormEpsilon);
    const postFeedforwardNorm = (x: tf.Tensor3D): tf.Tensor3D =>
      gemmaNorm(x, block.postFeedforwardNorm, rmsNormEpsilon);

    const inputNormed = gemmaNorm(hidden, block.inputNorm, rmsNormEpsilon); // [B, T, d]
    let attended = this.selfAttention(index, block, inputNormed, state); // [B, T, d]
    attended = this.hooks.applySublayer('afterAttention', index, attended, context, {
      residual: hidden,
      norm: postAttentionNorm,
    });
    const afterAttention = addReleasing(hidden, postAttentionNorm(attended)) as tf.Tensor3D; // [B, T, d]

    const feedforwardNormed = gemmaNorm(afterAttention, block.preFeedforwardNorm, rmsNormEpsilon); // [B, T, d]
    let ffn = gatedMlp(block, feedforwardNormed, this.gatedAct, context); // GeGLU, [B, T, d]
    ffn = this.hooks.applySublayer('afterFfn', index, ffn, context, {
      residual: afterAttention,
      norm: postFeedforwardNorm,
    });
    return addReleasing(afterAttention, postFeedforwardNorm(ffn)) as tf.Tensor3D; // [B, T, d]
  }

  protected finalNorm(hidden: tf.Tensor3D): tf.Tensor3D {
    return gemmaNorm(hidden, this.norm, this.gemma2.rmsNormEpsilon);
  }

  protected override languageModelHead(): LmHead {
    return { weight: this.lmHead, softCap: this.gemma2.finalSoftCap };
  }

  protected head(normed: tf.Tensor3D): tf.Tensor {
    return lmHeadLogits(normed, this.lmHead, this.gemma2.finalSoftCap); // [B, T, V]
  }

  protected override slidingLayersWindow(): number | null {
    return this.blocks.some((block) => block.sliding) ? this.gemma2.slidingWindow : null;
  }

  override dispose(): void {
    super.dispose();
    this.inverseFrequencies.dispose();
    this.localInverseFrequencies?.dispose();
  }
}
