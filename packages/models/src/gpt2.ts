// GPT-2 as Hugging Face `transformers` defines it (GPT2LMHeadModel): learned positions, pre-LN
// blocks, Conv1D projections stored [in, out], fused q/k/v (`c_attn`), gelu_new, LM head tied to
// the token embeddings unless the config unties it. Shapes in comments and the releasing ops
// (addReleasing, reshapeReleasing): see the notes at the top of transformer-host.ts.
import {
  type HostLinear,
  activation,
  addReleasing,
  headProduct,
  layerNorm,
  reshapeReleasing,
  type Checkpoint,
  type ForwardContext,
  type LinearDeltaGraph,
  type LmHead,
} from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

import type { ConfigReader } from './config.js';
import { type DecodeGraph, DecodeGraphBuilder, graphActivation } from './decode-graph.js';
import { attention, mergeHeads, splitHeads } from './ops.js';
import { DropoutSite, TransformerHost, type DropoutRates, type LayerState } from './transformer-host.js';
import { WeightLoader, newHead } from './weights.js';

interface LayerNormWeights {
  weight: tf.Variable<tf.Rank.R1>; // [d]
  bias: tf.Variable<tf.Rank.R1>; // [d]
}

interface Gpt2Block {
  ln1: LayerNormWeights; // ln_1
  attention: HostLinear; // attn.c_attn: d -> 3d (q, k, v)
  attentionOut: HostLinear; // attn.c_proj: d -> d
  ln2: LayerNormWeights; // ln_2
  up: HostLinear; // mlp.c_fc: d -> inner
  down: HostLinear; // mlp.c_proj: inner -> d
}

export interface Gpt2Config {
  vocabSize: number; // vocab_size
  maxPositions: number; // n_positions: learned position table
  hiddenSize: number; // n_embd
  numLayers: number; // n_layer
  numHeads: number; // n_head
  innerSize: number; // n_inner, default 4·n_embd
  activation: string; // activation_function, default gelu_new
  layerNormEpsilon: number; // layer_norm_epsilon
  scaleAttentionWeights: boolean; // scale_attn_weights: divide scores by sqrt(headDim)
  scaleByInverseLayerIndex: boolean; // scale_attn_by_inverse_layer_idx: also divide by layer + 1
  tieWordEmbeddings: boolean; // tie_word_embeddings
  architecture: string; // architectures[0], default GPT2LMHeadModel: decides the head
  numLabels: number; // len(id2label) or num_labels (classification heads)
  padTokenId: number | null; // pad_token_id: sequence classification pools at the last other token
  dropout: DropoutRates; // embd_pdrop, attn_pdrop, resid_pdrop; the token head's classifier_dropout
}

/** transformers' GPT-2 classes and the heads they put on the body. */
export const GPT2_HEADS = {
  GPT2LMHeadModel: 'lm',
  GPT2ForSequenceClassification: 'sequence-classification',
  GPT2ForTokenClassification: 'token-classification',
} as const;
export type Gpt2Head = (typeof GPT2_HEADS)[keyof typeof GPT2_HEADS];

export function parseGpt2Config(reader: ConfigReader): Gpt2Config {
  const hiddenSize = reader.positiveInteger('n_embd');
  const vocabSize = reader.positiveInteger('vocab_size');
  const maxPositions = reader.positiveInteger('n_positions');
  const numLayers = reader.positiveInteger('n_layer');
  const innerSize = reader.positiveInteger('n_inner', 4 * hiddenSize);
  const architecture = reader.architecture('GPT2LMHeadModel');
  const numLabels = reader.numLabels();
  reader.fits('wte', '"vocab_size" x "n_embd"', [vocabSize, hiddenSize]);
  reader.fits('wpe', '"n_positions" x "n_embd"', [maxPositions, hiddenSize]);
  reader.fits('attn.c_proj of every layer', '"n_layer" x "n_embd"²', [numLayers, hiddenSize, hiddenSize]);
  reader.fits('mlp.c_fc', '"n_inner" x "n_embd"', [innerSize, hiddenSize]);
  if (architecture !== 'GPT2LMHeadModel') reader.fits('the head', '"num_labels" x "n_embd"', [numLabels, hiddenSize]);
  return {
    vocabSize,
    maxPositions,
    hiddenSize,
    numLayers,
    numHeads: reader.divisor('n_head', hiddenSize, 'n_embd'),
    innerSize,
    activation: reader.string('activation_function', 'gelu_new'),
    layerNormEpsilon: reader.positiveNumber('layer_norm_epsilon', 1e-5),
    scaleAttentionWeights: reader.boolean('scale_attn_weights', true),
    scaleByInverseLayerIndex: reader.boolean('scale_attn_by_inverse_layer_idx', false),
    tieWordEmbeddings: reader.boolean('tie_word_embeddings', true),
    architecture,
    numLabels,
    padTokenId: reader.has('pad_token_id') ? reader.nonNegativeInteger('pad_token_id') : null,
    dropout: {
      embedding: reader.probability('embd_pdrop', 0.1),
      attention: reader.probability('attn_pdrop', 0.1),
      residual: reader.probability('resid_pdrop', 0.1),
      // GPT2ForTokenClassification: classifier_dropout, else hidden_dropout, else 0.1
      classifier:
        GPT2_HEADS[architecture as keyof typeof GPT2_HEADS] === 'token-classification'
          ? reader.has('classifier_dropout')
            ? reader.probability('classifier_dropout')
            : reader.probability('hidden_dropout', 0.1)
          : 0,
    },
  };
}

export class Gpt2Model extends TransformerHost {
  readonly headModules: readonly string[];
  readonly task: Gpt2Head;
  /** Classification heads: score [d -> labels] (no bias) or classifier [d -> labels] (bias). */
  private readonly classifier: HostLinear | null = null;
  readonly layerPaths: string[];
  private readonly tokenEmbeddings: tf.Variable<tf.Rank.R2>; // wte [V, d]
  private readonly positionEmbeddings: tf.Variable<tf.Rank.R2>; // wpe [P, d]
  private readonly blocks: Gpt2Block[] = [];
  private readonly lnF: LayerNormWeights;
  /** [V, d]: the token embeddings when tied. */
  private readonly lmHead: tf.Variable<tf.Rank.R2>;
  private readonly act: (x: tf.Tensor) => tf.Tensor;
  /** `transformer.` (GPT2LMHeadModel checkpoints) or empty (GPT2Model ones, as the original gpt2). */

  get wordEmbeddings(): tf.Variable<tf.Rank.R2> {
    return this.tokenEmbeddings;
  }

  /**
   * `newHeadSeed`: when the checkpoint has no weights for the head its architecture names (an LM
   * checkpoint loaded for classification), create them N(0, 0.02) with this seed, as transformers
   * initialises a new head; without it a missing head is an error.
   */
  constructor(
    readonly gpt2: Gpt2Config,
    checkpoint: Checkpoint,
    newHeadSeed?: number,
  ) {
    const headDim = gpt2.hiddenSize / gpt2.numHeads;
    const task = GPT2_HEADS[gpt2.architecture as keyof typeof GPT2_HEADS];
    if (!task) {
      throw new Error(
        `config.json: "architectures" ${gpt2.architecture} is not a GPT-2 head we have (supported: ${Object.keys(GPT2_HEADS).join(', ')})`,
      );
    }
    super(
      {
        modelType: 'gpt2',
        numLayers: gpt2.numLayers,
        hiddenSize: gpt2.hiddenSize,
        numAttentionHeads: gpt2.numHeads,
        numKeyValueHeads: gpt2.numHeads,
        headDim,
        vocabSize: gpt2.vocabSize,
        maxPositions: gpt2.maxPositions,
        architecture: gpt2.architecture,
        ...(task === 'lm' ? {} : { numLabels: gpt2.numLabels }),
      },
      true,
    );
    this.dropoutRates = gpt2.dropout;
    this.task = task;
    this.headModules = task === 'lm' ? ['lm_head'] : task === 'sequence-classification' ? ['score'] : ['classifier'];
    this.act = activation(gpt2.activation, 'config.json activation_function');
    // GPT2LMHeadModel checkpoints prefix the body with `transformer.`; GPT2Model ones do not.
    // (every GPT-2 head class holds the body as `transformer.`: its modules are named so)
    const prefix = checkpoint.has('transformer.wte.weight') ? 'transformer.' : '';
    const load = new WeightLoader(checkpoint, prefix, 'transformer.');
    this.layerPaths = Array.from({ length: gpt2.numLayers }, (_, i) => `transformer.h.${i}`);
    const { hiddenSize: d, vocabSize, maxPositions, innerSize } = gpt2;
    this.tokenEmbeddings = load.variable('wte.weight', [vocabSize, d]) as tf.Variable<tf.Rank.R2>;
    this.positionEmbeddings = load.variable('wpe.weight', [maxPositions, d]) as tf.Variable<tf.Rank.R2>;
    const norm = (name: string): LayerNormWeights => ({
      weight: load.variable(`${name}.weight`, [d]) as tf.Variable<tf.Rank.R1>,
      bias: load.variable(`${name}.bias`, [d]) as tf.Variable<tf.Rank.R1>,
    });
    for (let i = 0; i < gpt2.numLayers; i++) {
      const block: Gpt2Block = {
        ln1: norm(`h.${i}.ln_1`),
        attention: load.linear(`h.${i}.attn.c_attn`, d, 3 * d, 'conv1d', true),
        attentionOut: load.linear(`h.${i}.attn.c_proj`, d, d, 'conv1d', true),
        ln2: norm(`h.${i}.ln_2`),
        up: load.linear(`h.${i}.mlp.c_fc`, d, innerSize, 'conv1d', true),
        down: load.linear(`h.${i}.mlp.c_proj`, innerSize, d, 'conv1d', true),
      };
      for (const linear of [block.attention, block.attentionOut, block.up, block.down])
        this.linearMap.set(linear.name, linear);
      this.blocks.push(block);
    }
    this.lnF = norm('ln_f');
    if (task !== 'lm') {
      const name = this.headModules[0]!;
      const headLoader = new WeightLoader(checkpoint, '');
      if (!headLoader.has(`${name}.weight`) && newHeadSeed !== undefined) {
        this.classifier = newHead(name, d, gpt2.numLabels, task === 'token-classification', newHeadSeed);
      } else {
        this.classifier = headLoader.linear(name, d, gpt2.numLabels, 'linear', task === 'token-classification');
        for (const [key, variable] of headLoader.variables) this.parameterMap.set(key, variable);
      }
      if (this.classifier.bias && !this.parameterMap.has(`${name}.bias`))
        this.parameterMap.set(`${name}.bias`, this.classifier.bias);
      this.parameterMap.set(`${name}.weight`, this.classifier.weight);
      this.linearMap.set(this.classifier.name, this.classifier);
    }
    if (gpt2.tieWordEmbeddings || task !== 'lm') {
      this.lmHead = this.tokenEmbeddings;
    } else {
      const lmLoader = new WeightLoader(checkpoint, '');
      this.lmHead = lmLoader.variable('lm_head.weight', [vocabSize, d]) as tf.Variable<tf.Rank.R2>;
      for (const [name, variable] of lmLoader.variables) this.parameterMap.set(name, variable);
    }
    for (const [name, variable] of load.variables) this.parameterMap.set(name, variable);
  }

  protected embedTokens(ids: tf.Tensor2D): tf.Tensor3D {
    return tf.gather(this.tokenEmbeddings, ids) as tf.Tensor as tf.Tensor3D; // [B, T, d]
  }

  protected embedPositions(embeddings: tf.Tensor3D, positions: tf.Tensor2D): tf.Tensor3D {
    return tf.add(embeddings, tf.gather(this.positionEmbeddings, positions)) as tf.Tensor3D; // [B, T, d]
  }

  /** Causal self-attention over the normalised input [B, T, d] -> [B, T, d]: fused q, k, v, then c_proj. */
  private selfAttention(index: number, block: Gpt2Block, normed: tf.Tensor3D, state: LayerState): tf.Tensor3D {
    const { numHeads, hiddenSize } = this.gpt2;
    const { headDim } = this.config;
    const { context } = state;
    const [batch, length] = normed.shape;
    const rows = tf.reshape(normed, [batch * length, hiddenSize]); // [B·T, d]
    const qkv = block.attention.apply(rows, context); // [B·T, 3d]
    // q, k, v: [B·T, d] each
    const [q, k, v] = tf.split(qkv, [hiddenSize, hiddenSize, hiddenSize], -1) as [
      tf.Tensor2D,
      tf.Tensor2D,
      tf.Tensor2D,
    ];
    const { key, value } = this.extendKeys(
      index,
      splitHeads(k, batch, numHeads, headDim), // [B, H, T, hd]
      splitHeads(v, batch, numHeads, headDim), // [B, H, T, hd]
      state,
    ); // [B, H, S, hd]
    let scale = this.gpt2.scaleAttentionWeights ? 1 / Math.sqrt(headDim) : 1;
    if (this.gpt2.scaleByInverseLayerIndex) scale /= index + 1;
    const query = splitHeads(q, batch, numHeads, headDim); // [B, H, T, hd]
    const attended = mergeHeads(
      attention(query, key, value, state.bias, scale, null, this.attentionDropout(index, context)),
    ); // [B·T, d]
    const output = block.attentionOut.apply(attended, context); // [B·T, d]
    const dropped = this.dropout(output, this.dropoutRates.residual, context, index, DropoutSite.AttentionOutput);
    return tf.reshape(dropped, [batch, length, hiddenSize]) as tf.Tensor3D; // [B, T, d]
  }

  /** c_fc, the activation (gelu_new), c_proj: [B, T, d] -> [B, T, d]. */
  private mlp(index: number, block: Gpt2Block, normed: tf.Tensor3D, context: ForwardContext): tf.Tensor3D {
    const [batch, length, hiddenSize] = normed.shape;
    const rows = tf.reshape(normed, [batch * length, hiddenSize]); // [B·T, d]
    const inner = this.act(block.up.apply(rows, context)); // [B·T, inner]
    const output = block.down.apply(inner, context); // [B·T, d]
    const dropped = this.dropout(output, this.dropoutRates.residual, context, index, DropoutSite.FeedForwardOutput);
    return tf.reshape(dropped, [batch, length, hiddenSize]) as tf.Tensor3D; // [B, T, d]
  }

  /**
   * Pre-LN block: x + attention(ln_1(x)), then x + mlp(ln_2(x)). The sublayer hooks see each
   * output before its residual add.
   */
  protected layer(index: number, hidden: tf.Tensor3D, state: LayerState): tf.Tensor3D {
    const block = this.blocks[index]!;
    const { layerNormEpsilon } = this.gpt2;
    const { context } = state;

    const normed1 = layerNorm(hidden, block.ln1.weight, block.ln1.bias, layerNormEpsilon) as tf.Tensor3D;
    let attentionOutput = this.selfAttention(index, block, normed1, state); // [B, T, d]
    attentionOutput = this.hooks.applySublayer('afterAttention', index, attentionOutput, context, {
      residual: hidden,
      norm: null,
    });
    const afterAttention = addReleasing(hidden, attentionOutput) as tf.Tensor3D; // [B, T, d]

    const normed2 = layerNorm(afterAttention, block.ln2.weight, block.ln2.bias, layerNormEpsilon) as tf.Tensor3D;
    let ffn = this.mlp(index, block, normed2, context); // [B, T, d]
    ffn = this.hooks.applySublayer('afterFfn', index, ffn, context, { residual: afterAttention, norm: null });
    return addReleasing(afterAttention, ffn) as tf.Tensor3D; // [B, T, d]
  }

  protected finalNorm(hidden: tf.Tensor3D): tf.Tensor3D {
    return layerNorm(hidden, this.lnF.weight, this.lnF.bias, this.gpt2.layerNormEpsilon) as tf.Tensor3D;
  }

  protected override languageModelHead(): LmHead | null {
    return this.classifier ? null : { weight: this.lmHead, softCap: null };
  }

  protected override get perTokenHead(): boolean {
    return this.task !== 'sequence-classification';
  }

  /** The LM head's decoding step as one graph (decode-graph.ts): the ops of embed, layer and head for one token. */
  protected override buildDecodeGraph(
    deltas: ReadonlyMap<HostLinear, readonly LinearDeltaGraph[]>,
  ): DecodeGraph | null {
    if (this.classifier) return null;
    const { hiddenSize: d, numHeads, numLayers, layerNormEpsilon, vocabSize } = this.gpt2;
    const { headDim } = this.config;
    const graph = new DecodeGraphBuilder(deltas);
    const { ids, positions, bias } = graph.stepInputs();
    const tokenTable = graph.weight(this.tokenEmbeddings);
    const embedded = graph.add(
      graph.gather(tokenTable, ids),
      graph.gather(graph.weight(this.positionEmbeddings), positions),
    );
    let hidden = graph.reshape(embedded, [-1, d]); // [B, d]
    const norm = (x: string, weights: LayerNormWeights) =>
      graph.layerNorm(x, graph.weight(weights.weight), graph.weight(weights.bias), layerNormEpsilon);
    for (let i = 0; i < numLayers; i++) {
      const block = this.blocks[i]!;
      const [q, k, v] = graph.split(graph.linear(norm(hidden, block.ln1), block.attention), [d, d, d], 2);
      const heads = (x: string) => graph.reshape(x, [-1, numHeads, 1, headDim]); // [B, H, 1, hd]
      const [keys, values] = graph.extendCache(i, heads(k!), heads(v!), numHeads, headDim);
      let scale = this.gpt2.scaleAttentionWeights ? 1 / Math.sqrt(headDim) : 1;
      if (this.gpt2.scaleByInverseLayerIndex) scale /= i + 1;
      const attended = graph.attend(heads(q!), keys, values, bias, numHeads, numHeads, headDim, scale);
      hidden = graph.add(hidden, graph.linear(attended, block.attentionOut));
      const inner = graphActivation(graph, this.gpt2.activation, graph.linear(norm(hidden, block.ln2), block.up));
      if (inner === null) return null;
      hidden = graph.add(hidden, graph.linear(inner, block.down));
    }
    const logits = graph.matMul(norm(hidden, this.lnF), graph.weight(this.lmHead), true); // [B, V]
    return graph.finish(logits, vocabSize, numLayers);
  }

  protected head(normed: tf.Tensor3D, state: LayerState): tf.Tensor {
    const [batch, length, d] = normed.shape;
    if (this.classifier) {
      // GPT2ForTokenClassification's dropout before its classifier (the sequence head has none)
      const input =
        this.task === 'token-classification'
          ? this.dropout(normed, this.dropoutRates.classifier, state.context, -1, DropoutSite.Classifier)
          : normed;
      const logits = this.classifier.apply(input, state.context) as tf.Tensor3D; // [B, T, labels]
      if (this.task === 'token-classification') return logits;
      // GPT2ForSequenceClassification: the logits of each row's last token that is not padding
      const pad = this.gpt2.padTokenId;
      const last = state.inputIds.arraySync().map((row) => {
        let index = row.length - 1;
        if (pad !== null) while (index > 0 && row[index] === pad) index -= 1;
        return state.prepended + index;
      });
      const pick = tf.reshape(tf.oneHot(tf.tensor1d(last, 'int32'), length), [batch, 1, length]);
      return tf.reshape(tf.matMul(pick, logits), [batch, this.gpt2.numLabels]);
    }
    const logits = headProduct(tf.reshape(normed, [batch * length, d]) as tf.Tensor2D, this.lmHead); // [B·T, V]
    return reshapeReleasing(logits, [batch, length, this.config.vocabSize]); // [B, T, V]
  }
}
