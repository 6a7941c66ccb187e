// BERT as Hugging Face `transformers` defines it, with the sequence classification head
// (BertForSequenceClassification: pooler + classifier), the token classification head
// (BertForTokenClassification: classifier on every token) and the masked-LM head (BertForMaskedLM:
// dense, activation, LayerNorm, then the decoder, tied to the word embeddings, and a bias); and
// RoBERTa's masked LM (RobertaForMaskedLM: the same body, positions counted from padding_idx + 1 over
// the tokens that are not padding, its head `lm_head` with erf gelu). Post-LN blocks, bidirectional
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
  BertForMaskedLM: 'masked-lm',
} as const;
/** RoBERTa's heads (model_type roberta): its masked LM. */
export const ROBERTA_TASKS = {
  RobertaForMaskedLM: 'masked-lm',
} as const;
export type BertTask = (typeof BERT_TASKS)[keyof typeof BERT_TASKS];

export interface BertConfig {
  family: 'bert' | 'roberta'; // model_type
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
  numLabels: number; // len(id2label) or num_labels; the vocabulary for the masked LM
  architecture: string; // architectures[0]: the head
  paddingIdx: number | null; // RoBERTa's pad_token_id: positions start after it; null for BERT
  tiedDecoder: boolean; // tie_word_embeddings: the masked LM's decoder is the word embeddings
  dropout: DropoutRates; // hidden_dropout_prob, attention_probs_dropout_prob, classifier_dropout
}

export function parseBertConfig(reader: ConfigReader, family: BertConfig['family'] = 'bert'): BertConfig {
  const architectures = reader.raw.architectures;
  const architecture =
    Array.isArray(architectures) && typeof architectures[0] === 'string' ? architectures[0] : undefined;
  const heads: Readonly<Record<string, BertTask>> = family === 'bert' ? BERT_TASKS : ROBERTA_TASKS;
  const task = architecture && Object.hasOwn(heads, architecture) ? heads[architecture] : undefined;
  if (!task) {
    throw new Error(
      `${reader.source}: "architectures" ${preview(architectures)} names no supported ${family === 'bert' ? 'BERT' : 'RoBERTa'} head (supported: ${Object.keys(heads).join(', ')})`,
    );
  }
  const hiddenSize = reader.positiveInteger('hidden_size');
  const positionType = reader.string('position_embedding_type', 'absolute');
  if (positionType !== 'absolute') {
    throw new Error(`${reader.source}: "position_embedding_type" "${positionType}" is not supported (only absolute)`);
  }
  const vocabSize = reader.positiveInteger('vocab_size');
  const numLabels = task === 'masked-lm' ? vocabSize : reader.numLabels();
  const numLayers = reader.positiveInteger('num_hidden_layers');
  const intermediateSize = reader.positiveInteger('intermediate_size');
  const maxPositions = reader.positiveInteger('max_position_embeddings');
  // RoBERTa counts positions from padding_idx + 1 (fairseq's make_positions)
  const paddingIdx = family === 'roberta' ? reader.nonNegativeInteger('pad_token_id', 1) : null;
  if (paddingIdx !== null && paddingIdx + 1 >= maxPositions) {
    throw new Error(
      `${reader.source}: "max_position_embeddings" (${maxPositions}) leaves no position after "pad_token_id" (${paddingIdx}): RoBERTa's positions start at pad_token_id + 1`,
    );
  }
  const typeVocabSize = reader.positiveInteger('type_vocab_size', 2);
  const hiddenDropout = reader.probability('hidden_dropout_prob', 0.1);
  reader.fits('word_embeddings', '"vocab_size" x "hidden_size"', [vocabSize, hiddenSize]);
  reader.fits('position_embeddings', '"max_position_embeddings" x "hidden_size"', [maxPositions, hiddenSize]);
  reader.fits('token_type_embeddings', '"type_vocab_size" x "hidden_size"', [typeVocabSize, hiddenSize]);
  const layers = [numLayers, hiddenSize, hiddenSize];
  reader.fits('attention.output.dense of every layer', '"num_hidden_layers" x "hidden_size"²', layers);
  reader.fits('intermediate.dense', '"intermediate_size" x "hidden_size"', [intermediateSize, hiddenSize]);
  if (task !== 'masked-lm') reader.fits('the classifier', '"num_labels" x "hidden_size"', [numLabels, hiddenSize]);
  return {
    family,
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
    paddingIdx,
    tiedDecoder: reader.boolean('tie_word_embeddings', true),
    dropout: {
      embedding: hiddenDropout,
      attention: reader.probability('attention_probs_dropout_prob', 0.1),
      residual: hiddenDropout,
      // classifier_dropout, else hidden_dropout_prob
      classifier: reader.has('classifier_dropout') ? reader.probability('classifier_dropout') : hiddenDropout,
    },
  };
}

/** The masked LM's head: transform (dense, activation, LayerNorm), then the decoder and its bias. */
interface MaskedLmHead {
  transform: HostLinear; // cls.predictions.transform.dense / lm_head.dense: d -> d
  act: (x: tf.Tensor) => tf.Tensor;
  norm: LayerNormWeights; // cls.predictions.transform.LayerNorm / lm_head.layer_norm
  decoder: tf.Variable<tf.Rank.R2>; // [V, d]: the word embeddings where tied
  bias: tf.Variable<tf.Rank.R1>; // [V]
}

export class BertModel extends TransformerHost {
  readonly headModules: readonly string[];
  readonly layerPaths: string[];
  readonly wordEmbeddings: tf.Variable<tf.Rank.R2>; // [V, d]
  private readonly positionEmbeddings: tf.Variable<tf.Rank.R2>; // [P, d]
  private readonly tokenTypeEmbeddings: tf.Variable<tf.Rank.R2>; // [type_vocab_size, d]
  private readonly embeddingNorm: LayerNormWeights;
  private readonly layers: BertLayer[] = [];
  private readonly pooler: HostLinear | null; // sequence classification only
  private readonly classifier: HostLinear | null; // classification heads
  private readonly maskedLm: MaskedLmHead | null; // BertForMaskedLM, RobertaForMaskedLM
  private readonly act: (x: tf.Tensor) => tf.Tensor;

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
        modelType: bert.family,
        numLayers: bert.numLayers,
        hiddenSize: bert.hiddenSize,
        numAttentionHeads: bert.numHeads,
        numKeyValueHeads: bert.numHeads,
        headDim: bert.hiddenSize / bert.numHeads,
        vocabSize: bert.vocabSize,
        // RoBERTa's first position is padding_idx + 1
        maxPositions: bert.paddingIdx === null ? bert.maxPositions : bert.maxPositions - bert.paddingIdx - 1,
        numLabels: bert.numLabels,
        architecture: bert.architecture,
      },
      false,
    );
    this.dropoutRates = bert.dropout;
    this.act = activation(bert.activation, 'config.json hidden_act');
    // BertModel / RobertaModel checkpoints store the body unprefixed; every head class holds it as `bert.` / `roberta.`
    const body = `${bert.family}.`;
    const prefix = checkpoint.has(`${body}embeddings.word_embeddings.weight`) ? body : '';
    const load = new WeightLoader(checkpoint, prefix, body);
    this.layerPaths = Array.from({ length: bert.numLayers }, (_, i) => `${body}encoder.layer.${i}`);
    this.headModules = bert.task !== 'masked-lm' ? ['classifier'] : bert.family === 'bert' ? ['cls'] : ['lm_head'];
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
          ? created(`${body}pooler.dense`, d, d, newHeadSeed! + 1)
          : load.linear('pooler.dense', d, d, 'linear', true);
    if (this.pooler) this.linearMap.set(this.pooler.name, this.pooler);
    const headLoader = new WeightLoader(checkpoint, '');
    if (bert.task === 'masked-lm') {
      this.classifier = null;
      this.maskedLm = this.loadMaskedLmHead(headLoader);
      this.linearMap.set(this.maskedLm.transform.name, this.maskedLm.transform);
    } else {
      this.maskedLm = null;
      this.classifier = missing(headLoader, 'classifier')
        ? created('classifier', d, bert.numLabels, newHeadSeed!)
        : headLoader.linear('classifier', d, bert.numLabels, 'linear', true);
      this.linearMap.set(this.classifier.name, this.classifier);
    }
    for (const [name, variable] of [...load.variables, ...headLoader.variables]) this.parameterMap.set(name, variable);
  }

  /**
   * BertForMaskedLM's `cls.predictions` (transform.dense, hidden_act, transform.LayerNorm; decoder and
   * `cls.predictions.bias`) or RobertaForMaskedLM's `lm_head` (dense, erf gelu, layer_norm; decoder and
   * `lm_head.bias`). Tied (tie_word_embeddings, the default), the decoder is the word embeddings and
   * its bias the head's `bias`; untied, transformers ties neither: the decoder's own weight and bias.
   */
  private loadMaskedLmHead(load: WeightLoader): MaskedLmHead {
    const { hiddenSize: d, vocabSize, family, tiedDecoder } = this.bert;
    const [transform, normName, head] =
      family === 'bert'
        ? ['cls.predictions.transform.dense', 'cls.predictions.transform.LayerNorm', 'cls.predictions']
        : ['lm_head.dense', 'lm_head.layer_norm', 'lm_head'];
    const decoder = tiedDecoder
      ? this.wordEmbeddings
      : (load.variable(`${head}.decoder.weight`, [vocabSize, d]) as tf.Variable<tf.Rank.R2>);
    const untiedBias = !tiedDecoder && load.has(`${head}.decoder.bias`);
    // the head's own bias stays a weight of the model untied too (unused then, as in transformers, and saved)
    const headBias = load.variable(`${head}.bias`, [vocabSize]) as tf.Variable<tf.Rank.R1>;
    return {
      transform: load.linear(transform, d, d, 'linear', true),
      act: family === 'bert' ? this.act : activation('gelu', 'RobertaLMHead'),
      norm: {
        weight: load.variable(`${normName}.weight`, [d]) as tf.Variable<tf.Rank.R1>,
        bias: load.variable(`${normName}.bias`, [d]) as tf.Variable<tf.Rank.R1>,
      },
      decoder,
      bias: untiedBias ? (load.variable(`${head}.decoder.bias`, [vocabSize]) as tf.Variable<tf.Rank.R1>) : headBias,
    };
  }

  protected embedTokens(ids: tf.Tensor2D): tf.Tensor3D {
    return tf.gather(this.wordEmbeddings, ids) as tf.Tensor as tf.Tensor3D; // [B, T, d]
  }

  protected override get perTokenHead(): boolean {
    return this.bert.task !== 'sequence-classification';
  }

  /**
   * RoBERTa (fairseq's make_positions): a token that is not padding at padding_idx + its count of such
   * tokens so far (+ the prefix's length), padding at padding_idx; embeddings given whole (virtual
   * tokens in front) counted from padding_idx + 1, as transformers does for inputs_embeds. BERT: 0, 1, ...
   */
  protected override positionIds(ids: tf.Tensor2D, past: number, queries: number, prepended: number): tf.Tensor2D {
    const pad = this.bert.paddingIdx;
    if (pad === null) return super.positionIds(ids, past, queries, prepended);
    if (prepended > 0) return super.positionIds(ids, pad + 1, queries, prepended);
    const real = tf.cast(tf.notEqual(ids, pad), 'int32'); // [B, T]
    const counted = tf.add(tf.cumsum(real, 1), tf.scalar(past, 'int32')); // [B, T]
    return tf.add(tf.mul(counted, real), tf.scalar(pad, 'int32')) as tf.Tensor2D; // [B, T]
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

  /**
   * Sequence classification: [B, numLabels] from the first token; token classification: [B, T,
   * numLabels]; masked LM: [B, T, V] (no dropout in the head, as transformers).
   */
  protected head(hidden: tf.Tensor3D, { context }: LayerState): tf.Tensor {
    if (this.maskedLm) return this.maskedLmLogits(hidden, context);
    const classifier = this.classifier!;
    const rate = this.dropoutRates.classifier;
    if (!this.pooler) return classifier.apply(this.dropout(hidden, rate, context, -1, DropoutSite.Classifier), context);
    const [batch, , d] = hidden.shape;
    const first = tf.reshape(tf.slice(hidden, [0, 0, 0], [batch, 1, d]), [batch, d]);
    const pooled = tf.tanh(this.pooler.apply(first, context)); // [B, d]
    return classifier.apply(this.dropout(pooled, rate, context, -1, DropoutSite.Classifier), context);
  }

  /** The masked LM's logits [B, T, V]: dense, activation, LayerNorm, then hᵀ·decoder + bias. */
  private maskedLmLogits(hidden: tf.Tensor3D, context: ForwardContext): tf.Tensor3D {
    const { transform, act, norm, decoder, bias } = this.maskedLm!;
    const [batch, length, d] = hidden.shape;
    const rows = tf.reshape(hidden, [batch * length, d]); // [B·T, d]
    const transformed = layerNorm(
      act(transform.apply(rows, context)),
      norm.weight,
      norm.bias,
      this.bert.layerNormEpsilon,
    );
    const logits = tf.add(tf.matMul(transformed as tf.Tensor2D, decoder, false, true), bias); // [B·T, V]
    return tf.reshape(logits, [batch, length, this.bert.vocabSize]) as tf.Tensor3D; // [B, T, V]
  }
}
