// BERT as Hugging Face `transformers` defines it, with the sequence classification head
// (BertForSequenceClassification: pooler + classifier) and the token classification head
// (BertForTokenClassification: classifier on every token). Post-LN blocks, bidirectional
// attention, absolute learned positions, token types, exact (erf) gelu. Shapes in comments and the
// releasing op (addReleasing): see the notes at the top of transformer-host.ts.
import {
  activation,
  addReleasing,
  layerNorm,
  preview,
  type Checkpoint,
  type ForwardContext,
  type HostLinear,
} from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

import type { ConfigReader } from './config.js';
import { attention, mergeHeads, splitHeads } from './ops.js';
import { DropoutSite, TransformerHost, type DropoutRates, type LayerState } from './transformer-host.js';
import { WeightLoader, newHead } from './weights.js';

interface LayerNormWeights {
  weight: tf.Variable<tf.Rank.R1>; // [d]
  bias: tf.Variable<tf.Rank.R1>; // [d]
}

interface BertLayer {
  query: HostLinear; // attention.self.query: d -> d
  key: HostLinear; // attention.self.key: d -> d
  value: HostLinear; // attention.self.value: d -> d
  attentionOut: HostLinear; // attention.output.dense: d -> d
  attentionNorm: LayerNormWeights; // attention.output.LayerNorm
  intermediate: HostLinear; // intermediate.dense: d -> intermediate
  output: HostLinear; // output.dense: intermediate -> d
  outputNorm: LayerNormWeights; // output.LayerNorm
}

export const BERT_TASKS = {
  BertForSequenceClassification: 'sequence-classification',
  BertForTokenClassification: 'token-classification',
} as const;
export type BertTask = (typeof BERT_TASKS)[keyof typeof BERT_TASKS];

export interface BertConfig {
  task: BertTask; // from architectures[0]
  vocabSize: number; // vocab_size
  hiddenSize: number; // hidden_size
  numLayers: number; // num_hidden_layers
  numHeads: number; // num_attention_heads
  intermediateSize: number; // intermediate_size
  activation: string; // hidden_act, default gelu (erf)
  maxPositions: number; // max_position_embeddings
  typeVocabSize: number; // type_vocab_size: segments
  layerNormEpsilon: number; // layer_norm_eps
  numLabels: number; // len(id2label) or num_labels
  architecture: string; // architectures[0]: the head
  dropout: DropoutRates; // hidden_dropout_prob, attention_probs_dropout_prob, classifier_dropout
}

export function parseBertConfig(reader: ConfigReader): BertConfig {
  const architectures = reader.raw.architectures;
  const architecture =
    Array.isArray(architectures) && typeof architectures[0] === 'string' ? architectures[0] : undefined;
  const task = architecture ? BERT_TASKS[architecture as keyof typeof BERT_TASKS] : undefined;
  if (!task) {
    throw new Error(
      `${reader.source}: "architectures" ${preview(architectures)} names no supported BERT head (supported: ${Object.keys(BERT_TASKS).join(', ')})`,
    );
  }
  const hiddenSize = reader.positiveInteger('hidden_size');
  const numLabels = reader.numLabels();
  const positionType = reader.string('position_embedding_type', 'absolute');
  if (positionType !== 'absolute') {
    throw new Error(`${reader.source}: "position_embedding_type" "${positionType}" is not supported (only absolute)`);
  }
  const vocabSize = reader.positiveInteger('vocab_size');
  const numLayers = reader.positiveInteger('num_hidden_layers');
  const intermediateSize = reader.positiveInteger('intermediate_size');
  const maxPositions = reader.positiveInteger('max_position_embeddings');
  const typeVocabSize = reader.positiveInteger('type_vocab_size', 2);
  const hiddenDropout = reader.probability('hidden_dropout_prob', 0.1);
  reader.fits('word_embeddings', '"vocab_size" x "hidden_size"', [vocabSize, hiddenSize]);
  reader.fits('position_embeddings', '"max_position_embeddings" x "hidden_size"', [maxPositions, hiddenSize]);
  reader.fits('token_type_embeddings', '"type_vocab_size" x "hidden_size"', [typeVocabSize, hiddenSize]);
  const layers = [numLayers, hiddenSize, hiddenSize];
  reader.fits('attention.output.dense of every layer', '"num_hidden_layers" x "hidden_size"²', layers);
  reader.fits('intermediate.dense', '"intermediate_size" x "hidden_size"', [intermediateSize, hiddenSize]);
  reader.fits('the classifier', '"num_labels" x "hidden_size"', [numLabels, hiddenSize]);
  return {
    task,
    vocabSize,
    hiddenSize,
    numLayers,
    numHeads: reader.divisor('num_attention_heads', hiddenSize, 'hidden_size'),
    intermediateSize,
    activation: reader.string('hidden_act', 'gelu'),
    maxPositions,
    typeVocabSize,
    layerNormEpsilon: reader.positiveNumber('layer_norm_eps', 1e-12),
    numLabels,
    architecture: architecture!,
    dropout: {
      embedding: hiddenDropout,
      attention: reader.probability('attention_probs_dropout_prob', 0.1),
      residual: hiddenDropout,
      // classifier_dropout, else hidden_dropout_prob
      classifier: reader.has('classifier_dropout') ? reader.probability('classifier_dropout') : hiddenDropout,
    },
  };
}

export class BertModel extends TransformerHost {
  readonly headModules: readonly string[] = ['classifier'];
  readonly layerPaths: string[];
  readonly wordEmbeddings: tf.Variable<tf.Rank.R2>; // [V, d]
  private readonly positionEmbeddings: tf.Variable<tf.Rank.R2>; // [P, d]
  private readonly tokenTypeEmbeddings: tf.Variable<tf.Rank.R2>; // [type_vocab_size, d]
  private readonly embeddingNorm: LayerNormWeights;
  private readonly layers: BertLayer[] = [];
  private readonly pooler: HostLinear | null; // sequence classification only
  private readonly classifier: HostLinear;
  private readonly act: (x: tf.Tensor) => tf.Tensor;

  /** `bert.` (BertFor... checkpoints) or empty (BertModel ones, as sentence-transformers saves them). */

  /**
   * `newHeadSeed`: when the checkpoint has no weights for the head its architecture names (a
   * BertModel checkpoint loaded for classification), create them N(0, 0.02) with this seed (the
   * pooler too where it is missing), as transformers initialises them; without it a missing head is
   * an error.
   */
  constructor(
    readonly bert: BertConfig,
    checkpoint: Checkpoint,
    newHeadSeed?: number,
  ) {
    super(
      {
        modelType: 'bert',
        numLayers: bert.numLayers,
        hiddenSize: bert.hiddenSize,
        numAttentionHeads: bert.numHeads,
        numKeyValueHeads: bert.numHeads,
        headDim: bert.hiddenSize / bert.numHeads,
        vocabSize: bert.vocabSize,
        maxPositions: bert.maxPositions,
        numLabels: bert.numLabels,
        architecture: bert.architecture,
      },
      false,
    );
    this.dropoutRates = bert.dropout;
    this.act = activation(bert.activation, 'config.json hidden_act');
    // BertModel checkpoints store the body unprefixed; every BERT head class holds it as `bert.`
    const prefix = checkpoint.has('bert.embeddings.word_embeddings.weight') ? 'bert.' : '';
    const load = new WeightLoader(checkpoint, prefix, 'bert.');
    this.layerPaths = Array.from({ length: bert.numLayers }, (_, i) => `bert.encoder.layer.${i}`);
    const { hiddenSize: d, intermediateSize } = bert;
    const norm = (name: string): LayerNormWeights => ({
      weight: load.variable(`${name}.weight`, [d]) as tf.Variable<tf.Rank.R1>,
      bias: load.variable(`${name}.bias`, [d]) as tf.Variable<tf.Rank.R1>,
    });
    this.wordEmbeddings = load.variable('embeddings.word_embeddings.weight', [
      bert.vocabSize,
      d,
    ]) as tf.Variable<tf.Rank.R2>;
    this.positionEmbeddings = load.variable('embeddings.position_embeddings.weight', [
      bert.maxPositions,
      d,
    ]) as tf.Variable<tf.Rank.R2>;
    this.tokenTypeEmbeddings = load.variable('embeddings.token_type_embeddings.weight', [
      bert.typeVocabSize,
      d,
    ]) as tf.Variable<tf.Rank.R2>;
    this.embeddingNorm = norm('embeddings.LayerNorm');
    for (let i = 0; i < bert.numLayers; i++) {
      const prefix = `encoder.layer.${i}`;
      const layer: BertLayer = {
        query: load.linear(`${prefix}.attention.self.query`, d, d, 'linear', true),
        key: load.linear(`${prefix}.attention.self.key`, d, d, 'linear', true),
        value: load.linear(`${prefix}.attention.self.value`, d, d, 'linear', true),
        attentionOut: load.linear(`${prefix}.attention.output.dense`, d, d, 'linear', true),
        attentionNorm: norm(`${prefix}.attention.output.LayerNorm`),
        intermediate: load.linear(`${prefix}.intermediate.dense`, d, intermediateSize, 'linear', true),
        output: load.linear(`${prefix}.output.dense`, intermediateSize, d, 'linear', true),
        outputNorm: norm(`${prefix}.output.LayerNorm`),
      };
      for (const linear of [
        layer.query,
        layer.key,
        layer.value,
        layer.attentionOut,
        layer.intermediate,
        layer.output,
      ]) {
        this.linearMap.set(linear.name, linear);
      }
      this.layers.push(layer);
    }
    const created = (name: string, inputs: number, outputs: number, seed: number): HostLinear => {
      const head = newHead(name, inputs, outputs, true, seed);
      this.parameterMap.set(`${name}.weight`, head.weight);
      this.parameterMap.set(`${name}.bias`, head.bias!);
      return head;
    };
    const missing = (loader: WeightLoader, name: string): boolean =>
      newHeadSeed !== undefined && !loader.has(`${name}.weight`);
    this.pooler =
      bert.task !== 'sequence-classification'
        ? null
        : missing(load, 'pooler.dense')
          ? created('bert.pooler.dense', d, d, newHeadSeed! + 1)
          : load.linear('pooler.dense', d, d, 'linear', true);
    if (this.pooler) this.linearMap.set(this.pooler.name, this.pooler);
    const headLoader = new WeightLoader(checkpoint, '');
    this.classifier = missing(headLoader, 'classifier')
      ? created('classifier', d, bert.numLabels, newHeadSeed!)
      : headLoader.linear('classifier', d, bert.numLabels, 'linear', true);
    this.linearMap.set(this.classifier.name, this.classifier);
    for (const [name, variable] of [...load.variables, ...headLoader.variables]) this.parameterMap.set(name, variable);
  }

  protected embedTokens(ids: tf.Tensor2D): tf.Tensor3D {
    return tf.gather(this.wordEmbeddings, ids) as tf.Tensor as tf.Tensor3D; // [B, T, d]
  }

  protected embedPositions(embeddings: tf.Tensor3D, positions: tf.Tensor2D, tokenTypes: tf.Tensor2D): tf.Tensor3D {
    const [minType, maxType] = [tf.min(tokenTypes).dataSync()[0]!, tf.max(tokenTypes).dataSync()[0]!];
    if (minType < 0 || maxType >= this.bert.typeVocabSize) {
      throw new Error(
        `tokenTypeIds: segment ${minType < 0 ? minType : maxType} is outside 0..${this.bert.typeVocabSize - 1} (type_vocab_size)`,
      );
    }
    const summed = tf.addN([
      embeddings,
      tf.gather(this.positionEmbeddings, positions) as tf.Tensor as tf.Tensor3D,
      tf.gather(this.tokenTypeEmbeddings, tokenTypes) as tf.Tensor as tf.Tensor3D,
    ]);
    return layerNorm(
      summed,
      this.embeddingNorm.weight,
      this.embeddingNorm.bias,
      this.bert.layerNormEpsilon,
    ) as tf.Tensor3D;
  }

  /** Bidirectional self-attention [B, T, d] -> [B, T, d], before the residual and its norm. */
  private selfAttention(index: number, layer: BertLayer, hidden: tf.Tensor3D, state: LayerState): tf.Tensor3D {
    const { numHeads } = this.bert;
    const { headDim } = this.config;
    const { context } = state;
    const [batch, length, d] = hidden.shape;
    const rows = tf.reshape(hidden, [batch * length, d]); // [B·T, d]
    const q = splitHeads(layer.query.apply(rows, context), batch, numHeads, headDim); // [B, H, T, hd]
    const k = splitHeads(layer.key.apply(rows, context), batch, numHeads, headDim); // [B, H, T, hd]
    const v = splitHeads(layer.value.apply(rows, context), batch, numHeads, headDim); // [B, H, T, hd]
    const { key, value } = this.extendKeys(index, k, v, state); // [B, H, S, hd]
    const attended = mergeHeads(
      attention(q, key, value, state.bias, 1 / Math.sqrt(headDim), null, this.attentionDropout(index, context)),
    ); // [B·T, d]
    const output = layer.attentionOut.apply(attended, context); // [B·T, d]
    const dropped = this.dropout(output, this.dropoutRates.residual, context, index, DropoutSite.AttentionOutput);
    return tf.reshape(dropped, [batch, length, d]) as tf.Tensor3D; // [B, T, d]
  }

  /** intermediate.dense, the activation (erf gelu), output.dense: [B, T, d] -> [B, T, d], before the residual. */
  private mlp(index: number, layer: BertLayer, hidden: tf.Tensor3D, context: ForwardContext): tf.Tensor3D {
    const [batch, length, d] = hidden.shape;
    const rows = tf.reshape(hidden, [batch * length, d]); // [B·T, d]
    const intermediate = this.act(layer.intermediate.apply(rows, context)); // [B·T, intermediate]
    const output = layer.output.apply(intermediate, context); // [B·T, d]
    const dropped = this.dropout(output, this.dropoutRates.residual, context, index, DropoutSite.FeedForwardOutput);
    return tf.reshape(dropped, [batch, length, d]) as tf.Tensor3D; // [B, T, d]
  }

  /**
   * Post-LN block: x = norm(x + attention(x)), then norm(x + mlp(x)). The sublayer hooks see each
   * output before its residual add, and the norm that follows it.
   */
  protected layer(index: number, hidden: tf.Tensor3D, state: LayerState): tf.Tensor3D {
    const layer = this.layers[index]!;
    const { layerNormEpsilon: epsilon } = this.bert;
    const { context } = state;

    let attentionOutput = this.selfAttention(index, layer, hidden, state); // [B, T, d]
    const attentionNorm = (x: tf.Tensor3D): tf.Tensor3D =>
      layerNorm(x, layer.attentionNorm.weight, layer.attentionNorm.bias, epsilon) as tf.Tensor3D;
    attentionOutput = this.hooks.applySublayer('afterAttention', index, attentionOutput, context, {
      residual: hidden,
      norm: attentionNorm,
    });
    const afterAttention = attentionNorm(addReleasing(attentionOutput, hidden) as tf.Tensor3D); // [B, T, d]

    let ffn = this.mlp(index, layer, afterAttention, context); // [B, T, d]
    const outputNorm = (x: tf.Tensor3D): tf.Tensor3D =>
      layerNorm(x, layer.outputNorm.weight, layer.outputNorm.bias, epsilon) as tf.Tensor3D;
    ffn = this.hooks.applySublayer('afterFfn', index, ffn, context, { residual: afterAttention, norm: outputNorm });
    return outputNorm(addReleasing(ffn, afterAttention) as tf.Tensor3D); // [B, T, d]
  }

  /** Post-LN blocks end normalised: nothing to add. */
  protected finalNorm(hidden: tf.Tensor3D): tf.Tensor3D {
    return hidden;
  }

  /** Sequence classification: [B, numLabels] from the first token; token classification: [B, T, numLabels]. */
  protected head(hidden: tf.Tensor3D, { context }: LayerState): tf.Tensor {
    const rate = this.dropoutRates.classifier;
    if (!this.pooler)
      return this.classifier.apply(this.dropout(hidden, rate, context, -1, DropoutSite.Classifier), context);
    const [batch, , d] = hidden.shape;
    const first = tf.reshape(tf.slice(hidden, [0, 0, 0], [batch, 1, d]), [batch, d]);
    const pooled = tf.tanh(this.pooler.apply(first, context)); // [B, d]
    return this.classifier.apply(this.dropout(pooled, rate, context, -1, DropoutSite.Classifier), context);
  }
}
