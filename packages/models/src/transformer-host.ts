// What every architecture's forward pass shares: input checks, the input-embedding hook, virtual
// tokens in the mask, positions, the key/value prefix and the generation cache. An architecture
// implements its embeddings, one layer and its head; everything here follows Hugging Face's
// handling of inputs_embeds and past_key_values.
//
// Notes the model files (gpt2.ts, llama.ts, bert.ts) refer to:
//
// Shapes in comments. B batch, T this pass's tokens (the queries, virtual tokens included), S the
// keys they attend (prefix or cache, then T), d hidden size, H query heads, Hkv key/value heads, hd
// head size, V vocabulary. Projections take rows [B·T, in] (HostLinear.apply then reshapes
// nothing): a layer reshapes once in front of its attention projections and once in front of its
// MLP, and back to [B, T, d] after each output projection.
//
// Releasing ops. Residual adds are addReleasing and the LM head's reshape of the logits is
// reshapeReleasing (@peft/core nn.ts): the values of tf.add and tf.reshape, with gradients that keep
// no inputs. tfjs's Add and Reshape gradients hold their inputs until the backward pass reaches
// them, for their shapes only: the residual stream twice per layer, and the logits (a Llama step at
// batch 4 x 128 and 32,000 tokens: 65 MB).
import {
  HostHooks,
  addReleasing,
  checkpoint,
  graphKernelAvailable,
  recordingGradients,
  runGraph,
  deriveSeed,
  rmsNorm,
  seededDropout,
  type ForwardContext,
  type HostConfig,
  type HostForwardInput,
  type HostForwardOutput,
  type FileStore,
  type HostLinear,
  type KeyValueCache,
  type LinearDeltaGraph,
  type LmHead,
  type PeftHost,
} from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

import { DECODE_INPUTS, type DecodeGraph, deltaKey } from './decode-graph.js';
import { attentionBias } from './ops.js';

import type { RawConfig } from './config.js';

/**
 * A host's dropout as transformers has it, from config.json (each architecture names its fields);
 * applied in training passes only, seeded by the pass's seed. 0 = none.
 */
export interface DropoutRates {
  /** On the embeddings' output (GPT-2 embd_pdrop; BERT hidden_dropout_prob after the embedding norm). */
  embedding: number;
  /** On the attention probabilities (attn_pdrop, attention_probs_dropout_prob, attention_dropout). */
  attention: number;
  /** On each sublayer's output, before the hook and the residual add (resid_pdrop, hidden_dropout_prob). */
  residual: number;
  /** On the head's input (classifier_dropout and its fallbacks); 0 for heads transformers gives none. */
  classifier: number;
}

export const NO_DROPOUT: Readonly<DropoutRates> = Object.freeze({
  embedding: 0,
  attention: 0,
  residual: 0,
  classifier: 0,
});

/** Where in a pass a dropout mask is drawn: with the layer, it picks the mask's seed. */
export const DropoutSite = {
  Embedding: 1,
  Attention: 2,
  AttentionOutput: 3,
  FeedForwardOutput: 4,
  Classifier: 5,
} as const;
export type DropoutSite = (typeof DropoutSite)[keyof typeof DropoutSite];

/** Mixed into every host dropout seed, apart from the adapters' own streams (LoRA, prefix). */
const HOST_DROPOUT_STREAM = 0x64726f70;

/** Where a host came from, as far as savePretrained needs to know to write it back. */
export interface PretrainedOrigin {
  /** config.json as the host was built from it (with the head LoadOptions.architecture put on). */
  config: RawConfig;
  /** The folder it was read from (its tokenizer files are copied on save); null for a Checkpoint in memory. */
  store: FileStore | null;
}

/**
 * Rotary positions of one forward pass: the cos/sin tables for its positions, computed once and
 * held by the two ops that apply them to [B, H, T, hd]. The queries' tables carry the attention
 * scale 1/√hd, so attention over rotated queries scales by 1.
 */
export interface RotaryEmbedding {
  queries: (x: tf.Tensor4D) => tf.Tensor4D;
  keys: (x: tf.Tensor4D) => tf.Tensor4D;
}

/** Per forward pass, what a layer needs besides its input. */
export interface LayerState {
  context: ForwardContext;
  /** [B, 1, T, S] additive. */
  bias: tf.Tensor4D;
  /** [B, 1, T, S] additive, with the window of slidingLayersWindow(): for the layers that slide; null = none. */
  slidingBias: tf.Tensor4D | null;
  /** [B, T] int32 positions of the queries. */
  positions: tf.Tensor2D;
  /** Architectures with rotary positions (Llama): this pass's tables, for every layer; null for the others. */
  rotary: RotaryEmbedding | null;
  /** The sliding layers' own tables where they rotate by another base (Gemma 3's local layers); null = rotary. */
  slidingRotary: RotaryEmbedding | null;
  /** Prepend the key/value prefix (first pass only: later passes find it in the cache). */
  usePrefix: boolean;
  cacheIn?: KeyValueCache;
  /** Filled by extendKeys when a cache is requested. */
  cacheOut?: KeyValueCache['layers'];
  /** [B, T] the real token ids (heads that pool at the last real token read them). */
  inputIds: tf.Tensor2D;
  /** Virtual tokens the input-embedding hook put in front. */
  prepended: number;
}

/** The caller's position ids, [B, T] as the pass needs them. */
function checkedPositions(positionIds: tf.Tensor2D | number[][], batch: number, queries: number): tf.Tensor2D {
  const positions = asTensor(positionIds, 'int32', 'positionIds');
  if (positions.shape[0] !== batch || positions.shape[1] !== queries) {
    throw new Error(`positionIds: expected shape [${batch}, ${queries}], got [${positions.shape}]`);
  }
  return positions;
}

/** Decoding graphs a host keeps (one per combination of active delta paths). */
const DECODE_GRAPHS_KEPT = 4;

function asTensor(value: tf.Tensor2D | number[][], dtype: 'int32' | 'float32', field: string): tf.Tensor2D {
  if (value instanceof tf.Tensor) {
    if (value.rank !== 2) throw new Error(`${field}: expected a [batch, length] tensor, got shape [${value.shape}]`);
    return value.dtype === dtype ? value : tf.cast(value, dtype);
  }
  if (!Array.isArray(value) || value.length === 0 || !value.every((row) => Array.isArray(row))) {
    throw new Error(`${field}: expected a non-empty [batch, length] array of arrays`);
  }
  const width = value[0]!.length;
  if (!value.every((row) => row.length === width)) {
    throw new Error(`${field}: rows have different lengths (${value.map((r) => r.length).join(', ')}); pad them`);
  }
  return tf.tensor2d(value, [value.length, width], dtype);
}

export abstract class TransformerHost implements PeftHost {
  readonly hooks: HostHooks;
  protected readonly linearMap = new Map<string, HostLinear>();
  protected readonly parameterMap = new Map<string, tf.Variable>();
  /** Set by loadPretrained and hostFromCheckpoint; null for a host built by hand (`new Gpt2Model`). */
  origin: PretrainedOrigin | null = null;
  /**
   * The model's dropout in training passes (config.json's rates; LoadOptions.dropout overrides them).
   * Masks follow the pass's seed: a recomputed block (gradient checkpointing) draws the same ones.
   */
  dropoutRates: Readonly<DropoutRates> = NO_DROPOUT;

  protected constructor(
    readonly config: HostConfig,
    /** Causal (decoder) attention, or bidirectional (encoder). */
    protected readonly causal: boolean,
  ) {
    this.hooks = new HostHooks(config.numLayers);
  }

  abstract readonly headModules: readonly string[];
  abstract readonly layerPaths: readonly string[];
  abstract readonly wordEmbeddings: tf.Variable<tf.Rank.R2>;

  get linears(): ReadonlyMap<string, HostLinear> {
    return this.linearMap;
  }

  get parameters(): ReadonlyMap<string, tf.Variable> {
    return this.parameterMap;
  }

  /** Token ids [B, T] -> token embeddings [B, T, d] (before the input-embedding hook). */
  protected abstract embedTokens(ids: tf.Tensor2D): tf.Tensor3D;
  /** Adds what depends on positions and segments (learned positions, token types, norms). */
  protected abstract embedPositions(
    embeddings: tf.Tensor3D,
    positions: tf.Tensor2D,
    tokenTypes: tf.Tensor2D,
  ): tf.Tensor3D;
  /**
   * The positions [B, T] of a pass without explicit positionIds: past, past + 1, ... for the `queries`
   * rows (the prefix's or cache's `past` keys before them). `ids` are the real tokens, `prepended`
   * virtual tokens in front of them (RoBERTa counts its positions from the ids).
   */
  protected positionIds(ids: tf.Tensor2D, past: number, queries: number, _prepended: number): tf.Tensor2D {
    const row = tf.reshape(tf.range(past, past + queries, 1, 'int32'), [1, queries]);
    return tf.tile(row, [ids.shape[0], 1]) as tf.Tensor2D; // [B, T]
  }
  /** Whether the head maps each position on its own (LM heads, token classifiers), so that `headRows` may pick positions. */
  protected get perTokenHead(): boolean {
    return true;
  }

  /** The head at `rows` of the flattened positions only: [rows, outputs] (HostForwardInput.headRows). */
  private headAtRows(normed: tf.Tensor3D, rows: readonly number[], state: LayerState): tf.Tensor2D {
    if (!this.perTokenHead)
      throw new Error(
        `headRows: the ${this.config.architecture ?? this.config.modelType} head is per sequence, not per token`,
      );
    const [batch, length, d] = normed.shape;
    const bad = rows.findIndex((row) => !(Number.isInteger(row) && row >= 0 && row < batch * length));
    if (bad >= 0) throw new Error(`headRows[${bad}]: ${rows[bad]} is not a row of the ${batch} x ${length} positions`);
    const picked = tf.gather(tf.reshape(normed, [batch * length, d]), tf.tensor1d(Int32Array.from(rows), 'int32')); // [N, d]
    const logits = this.head(tf.reshape(picked, [1, rows.length, d]) as tf.Tensor3D, state); // [1, N, C]
    return tf.reshape(logits, [rows.length, logits.shape[2]!]) as tf.Tensor2D; // [N, C]
  }
  /** Rotary tables for these positions [B, T] (architectures that rotate queries and keys); null = none. */
  protected rotaryEmbedding(_positions: tf.Tensor2D): RotaryEmbedding | null {
    return null;
  }
  /** Rotary tables for the layers that slide, where they differ from rotaryEmbedding's; null = the same. */
  protected slidingRotaryEmbedding(_positions: tf.Tensor2D): RotaryEmbedding | null {
    return null;
  }
  protected abstract layer(index: number, hidden: tf.Tensor3D, state: LayerState): tf.Tensor3D;
  /**
   * The pre-norm block of the Llama family: x + attention(norm(x)), then x + mlp(norm(x)), RMSNorm
   * before each sublayer. The sublayer hooks see each output before its residual add.
   */
  protected preNormLayer(
    index: number,
    hidden: tf.Tensor3D,
    state: LayerState,
    norms: { input: tf.Variable<tf.Rank.R1>; postAttention: tf.Variable<tf.Rank.R1>; epsilon: number },
    attend: (normed: tf.Tensor3D) => tf.Tensor3D,
    feedForward: (normed: tf.Tensor3D) => tf.Tensor3D,
  ): tf.Tensor3D {
    const { context } = state;
    const inputNormed = rmsNorm(hidden, norms.input, norms.epsilon) as tf.Tensor3D;
    const residualRate = this.dropoutRates.residual; // Phi-3's resid_pdrop; none in the others
    let attentionOutput = this.dropout(attend(inputNormed), residualRate, context, index, DropoutSite.AttentionOutput);
    attentionOutput = this.hooks.applySublayer('afterAttention', index, attentionOutput, context, {
      residual: hidden,
      norm: null,
    });
    const afterAttention = addReleasing(hidden, attentionOutput) as tf.Tensor3D; // [B, T, d]

    const postAttentionNormed = rmsNorm(afterAttention, norms.postAttention, norms.epsilon) as tf.Tensor3D;
    let ffn = this.dropout(
      feedForward(postAttentionNormed),
      residualRate,
      context,
      index,
      DropoutSite.FeedForwardOutput,
    );
    ffn = this.hooks.applySublayer('afterFfn', index, ffn, context, { residual: afterAttention, norm: null });
    return addReleasing(afterAttention, ffn) as tf.Tensor3D; // [B, T, d]
  }
  /** The attention probabilities' dropout of layer `index` for ops.attention; null when it does nothing. */
  protected attentionDropout(index: number, context: ForwardContext): ((p: tf.Tensor4D) => tf.Tensor4D) | null {
    const rate = this.dropoutRates.attention;
    if (rate === 0 || !context.training) return null;
    return (probabilities) => this.dropout(probabilities, rate, context, index, DropoutSite.Attention);
  }

  /** `x` with dropout at `rate` in a training pass (a mask of its own for each layer and site); `x` otherwise. */
  protected dropout<T extends tf.Tensor>(
    x: T,
    rate: number,
    context: ForwardContext,
    layer: number,
    site: DropoutSite,
  ): T {
    if (rate === 0 || !context.training) return x;
    return seededDropout(x, rate, deriveSeed(HOST_DROPOUT_STREAM, context.seed ?? 0, layer, site));
  }

  /** The norm after the last layer (identity where there is none). */
  protected abstract finalNorm(hidden: tf.Tensor3D): tf.Tensor3D;
  /** Normalised last hidden state [B, T, d] -> logits. */
  protected abstract head(normed: tf.Tensor3D, state: LayerState): tf.Tensor;
  /** The language-model head `head` applies, for a `headless` pass; null for other heads. */
  protected languageModelHead(): LmHead | null {
    return null;
  }
  /** Keys a causal query may see, counting back from itself, on every layer (Mistral); null = all. */
  protected slidingWindow(): number | null {
    return null;
  }
  /**
   * The window of the layers that slide where the others do not (Gemma 2: every other layer); null =
   * none. Its mask is built once per pass beside the full one (LayerState.slidingBias).
   */
  protected slidingLayersWindow(): number | null {
    return null;
  }

  /**
   * One decoding step of this host as a graph (decode-graph.ts), built once, for backends that run
   * graphs; null: the host decodes op by op (the default; a head or config the graph does not cover).
   */
  protected buildDecodeGraph(_deltas: ReadonlyMap<HostLinear, readonly LinearDeltaGraph[]>): DecodeGraph | null {
    return null;
  }

  /** Refuses positions a decoding step cannot take (Phi-3's LongRoPE past its short range); [B, 1] int32. */
  protected checkStepPositions(_positions: tf.Tensor2D): void {}

  /** Decoding graphs built, by the delta paths they include (DecodeGraphBuilder.deltaKey); null: none can be. */
  private readonly decodeGraphs = new Map<string, DecodeGraph | null>();

  /**
   * The step's graph when this pass may run as one: a cached step of one token that returns its
   * cache, run with nothing the graph leaves out (hooks, gradients, extra outputs, a delta path
   * without a graph form).
   */
  private graphFor(
    input: HostForwardInput,
    length: number,
    context: ForwardContext,
  ): (DecodeGraph & { key: string }) | null {
    if (!input.cache || !input.useCache || length !== 1) return null;
    // a headless pass gets the logits and no lmHead, as from a host without a language-model head
    if (input.training || input.outputHiddenStates || input.checkpointLayers) return null;
    if (input.tokenTypeIds || input.sampleAdapters || input.taskIds || input.headRows) return null;
    if (this.slidingLayersWindow() !== null || recordingGradients() || !graphKernelAvailable()) return null;
    // (only the native backend runs graphs: Node, where `process` exists)
    if (
      (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env.PEFT_DECODE_GRAPH === '0'
    )
      return null;
    if (this.hooks.hasSublayerHooks()) return null;
    const deltas = new Map<HostLinear, LinearDeltaGraph[]>();
    for (const linear of this.linearMap.values()) {
      const forms = linear.deltaGraphs(context);
      if (forms === null) return null;
      if (forms.length > 0) deltas.set(linear, forms);
    }
    const key = deltaKey(deltas);
    let graph = this.decodeGraphs.get(key);
    if (graph === undefined) graph = this.buildDecodeGraph(deltas);
    // least recently used out first: adapters switched on and off, merged and unmerged, keep their graphs
    this.decodeGraphs.delete(key);
    if (this.decodeGraphs.size >= DECODE_GRAPHS_KEPT) this.decodeGraphs.delete(this.decodeGraphs.keys().next().value!);
    this.decodeGraphs.set(key, graph);
    return graph === null ? null : { ...graph, key };
  }

  /**
   * forwardIds for one cached token, as one graph run: the same outputs. A graph libtensorflow
   * cannot load (an unwritable temporary folder, an op this build lacks) is said once and dropped:
   * the host decodes op by op from then on; null tells the caller to run this step so.
   */
  private graphStep(
    graph: DecodeGraph & { key: string },
    ids: tf.Tensor2D,
    input: HostForwardInput,
    cache: KeyValueCache,
  ): HostForwardOutput | null {
    const first = !this.graphsRun.has(graph.spec);
    try {
      const output = this.runGraphStep(graph, ids, input, cache);
      this.graphsRun.add(graph.spec);
      return output;
    } catch (error) {
      if (!first) throw error;
      this.decodeGraphs.set(graph.key, null);
      console.warn(
        `@peft/models: decoding ${this.config.modelType} as one graph failed, decoding op by op instead (slower; PEFT_DECODE_GRAPH=0 skips the attempt): ${(error as Error).message}`,
      );
      return null;
    }
  }

  /** Graphs that have run once: a later failure is an error of that step, not of the graph. */
  private readonly graphsRun = new WeakSet<object>();

  private runGraphStep(
    graph: DecodeGraph,
    ids: tf.Tensor2D,
    input: HostForwardInput,
    cache: KeyValueCache,
  ): HostForwardOutput {
    const batch = ids.shape[0];
    const keys = cache.length + 1;
    this.checkLength(keys, cache.virtual);
    const [logits, ...layers] = tf.tidy(() => {
      const keyMask = this.keyMask(input, batch, cache.virtual, keys - cache.virtual, true);
      const positions = input.positionIds
        ? checkedPositions(input.positionIds, batch, 1)
        : (tf.fill([batch, 1], cache.length, 'int32') as tf.Tensor2D);
      this.checkStepPositions(positions);
      const feeds: Record<string, tf.Tensor> = {
        [DECODE_INPUTS.ids]: ids,
        [DECODE_INPUTS.positions]: positions,
        [DECODE_INPUTS.bias]: attentionBias(keyMask, 1, this.causal, this.slidingWindow()),
      };
      for (const [name, variable] of graph.weights) feeds[name] = variable;
      cache.layers.forEach((layer, i) => {
        feeds[DECODE_INPUTS.pastKey(i)] = layer.key;
        feeds[DECODE_INPUTS.pastValue(i)] = layer.value;
      });
      return runGraph(graph.spec, feeds);
    });
    const cacheLayers = Array.from({ length: graph.numLayers }, (_, i) => ({
      key: layers[2 * i] as tf.Tensor4D,
      value: layers[2 * i + 1] as tf.Tensor4D,
    }));
    return { logits: logits!, prepended: 0, cache: { layers: cacheLayers, length: keys, virtual: cache.virtual } };
  }

  /** Refuses a pass longer than the position table. */
  private checkLength(keys: number, virtual: number): void {
    if (keys > this.config.maxPositions) {
      throw new Error(
        `sequence of ${keys} positions (${virtual} virtual + ${keys - virtual} real) is longer than ` +
          `the model's position table (max_position_embeddings ${this.config.maxPositions})`,
      );
    }
  }

  /** [B, S] ones for the keys a query may attend: the virtual ones, then the attention mask's (all ones without one). */
  private keyMask(
    input: HostForwardInput,
    batch: number,
    virtual: number,
    realKeys: number,
    cached: boolean,
  ): tf.Tensor2D {
    const realMask = input.attentionMask
      ? asTensor(input.attentionMask, 'float32', 'attentionMask')
      : tf.ones([batch, realKeys]);
    if (realMask.shape[0] !== batch || realMask.shape[1] !== realKeys) {
      throw new Error(
        `attentionMask: expected shape [${batch}, ${realKeys}] (${cached ? 'cached and new' : 'one per'} real token), got [${realMask.shape}]`,
      );
    }
    return (virtual > 0 ? tf.concat([tf.ones([batch, virtual]), realMask], 1) : realMask) as tf.Tensor2D; // [B, S]
  }

  forward(input: HostForwardInput): HostForwardOutput {
    const ids = asTensor(input.inputIds, 'int32', 'inputIds');
    try {
      return this.forwardIds(ids, input);
    } finally {
      if (ids !== input.inputIds) ids.dispose();
    }
  }

  private forwardIds(ids: tf.Tensor2D, input: HostForwardInput): HostForwardOutput {
    const { config } = this;
    const [batch, length] = ids.shape;
    const cache = input.cache;
    if (cache && cache.layers.length !== config.numLayers) {
      throw new Error(`cache: has ${cache.layers.length} layers, the model ${config.numLayers}`);
    }
    this.checkIds(input.inputIds);
    const context: ForwardContext = {
      training: input.training ?? false,
      batchSize: batch,
      sequenceLength: length,
      cacheLength: cache?.length ?? 0,
      ...(input.sampleAdapters ? { sampleAdapters: input.sampleAdapters } : {}),
      ...(input.seed !== undefined ? { seed: input.seed } : {}),
      ...(input.taskIds ? { taskIds: input.taskIds } : {}),
    };
    if (input.sampleAdapters && input.sampleAdapters.length !== batch) {
      throw new Error(`sampleAdapters: ${input.sampleAdapters.length} names for a batch of ${batch}`);
    }
    const graph = this.graphFor(input, length, context);
    const stepped = graph ? this.graphStep(graph, ids, input, cache!) : null;
    if (stepped) return stepped;

    const lmHead = input.headless ? this.languageModelHead() : null;
    const result = tf.tidy(() => {
      let embeddings = this.embedTokens(ids); // [B, T, d] (real tokens)
      let prepended = 0;
      const inputHook = this.hooks.inputEmbedding;
      if (inputHook && !cache) {
        const hooked = inputHook(embeddings, context, ids);
        embeddings = hooked.embeddings; // [B, prepended + T, d]
        prepended = hooked.prepended;
      }
      const queries = embeddings.shape[1];
      context.sequenceLength = queries;
      const prefix = this.hooks.keyValuePrefix;
      const usePrefix = prefix !== null && !cache;
      const past = cache ? cache.length : usePrefix ? prefix.length : 0;
      const virtual = cache ? cache.virtual : (usePrefix ? prefix.length : 0) + prepended;
      const keys = past + queries;
      this.checkLength(keys, virtual);
      const keyMask = this.keyMask(input, batch, virtual, keys - virtual, cache !== undefined); // [B, S]
      const bias = attentionBias(keyMask, queries, this.causal, this.slidingWindow()); // [B, 1, T, S]
      const layersWindow = this.slidingLayersWindow();
      // a window that reaches back to the first key masks nothing the full mask does not
      const slidingBias =
        layersWindow === null
          ? null
          : layersWindow >= keys
            ? bias
            : attentionBias(keyMask, queries, this.causal, layersWindow); // [B, 1, T, S]

      const positions = input.positionIds
        ? checkedPositions(input.positionIds, batch, queries)
        : this.positionIds(ids, past, queries, prepended);
      let tokenTypes: tf.Tensor2D = input.tokenTypeIds
        ? asTensor(input.tokenTypeIds, 'int32', 'tokenTypeIds')
        : tf.zeros([batch, length], 'int32');
      if (prepended > 0) tokenTypes = tf.concat([tf.zeros([batch, prepended], 'int32'), tokenTypes], 1);

      let hidden = this.embedPositions(embeddings, positions, tokenTypes); // [B, T, d]
      hidden = this.dropout(hidden, this.dropoutRates.embedding, context, -1, DropoutSite.Embedding);
      const state: LayerState = {
        context,
        bias,
        slidingBias,
        positions,
        rotary: this.rotaryEmbedding(positions),
        slidingRotary: this.slidingRotaryEmbedding(positions),
        usePrefix,
        inputIds: ids,
        prepended,
        ...(cache ? { cacheIn: cache } : {}),
        ...(input.useCache ? { cacheOut: [] } : {}),
      };
      const hiddenStates: tf.Tensor3D[] = input.outputHiddenStates ? [hidden] : [];
      const checkpointing = input.checkpointLayers === true && !cache && !input.useCache;
      // a per-pass prefix is made once, outside the layers, so that every recomputation reads the same tensor
      if (checkpointing && usePrefix) prefix?.prefix(0, context);
      for (let i = 0; i < config.numLayers; i++) {
        const layerInput = hidden;
        hidden = checkpointing ? checkpoint(() => this.layer(i, layerInput, state)) : this.layer(i, layerInput, state);
        if (input.outputHiddenStates) hiddenStates.push(hidden);
      }
      const normed = this.finalNorm(hidden);
      // as transformers reports them: the last hidden state is the normalised one
      if (input.outputHiddenStates) hiddenStates[hiddenStates.length - 1] = normed;
      const logits = lmHead
        ? normed
        : input.headRows
          ? this.headAtRows(normed, input.headRows, state)
          : this.head(normed, state);
      return {
        logits,
        hiddenStates,
        cacheLayers: state.cacheOut ?? [],
        prepended,
        cacheLength: keys,
        virtual,
      };
    });

    const output: HostForwardOutput = { logits: result.logits, prepended: result.prepended };
    if (lmHead) output.lmHead = lmHead;
    if (input.outputHiddenStates) output.hiddenStates = result.hiddenStates;
    if (input.useCache)
      output.cache = { layers: result.cacheLayers, length: result.cacheLength, virtual: result.virtual };
    return output;
  }

  /**
   * Concatenates the prefix (first pass) or the cached keys/values in front of this pass's, and
   * records the result for the next pass when a cache is requested. k, v: [B, Hkv, T, hd].
   */
  protected extendKeys(
    layer: number,
    k: tf.Tensor4D,
    v: tf.Tensor4D,
    state: LayerState,
  ): { key: tf.Tensor4D; value: tf.Tensor4D } {
    let key = k;
    let value = v;
    if (state.cacheIn) {
      const cached = state.cacheIn.layers[layer]!;
      key = tf.concat([cached.key, k], 2); // [B, Hkv, cached + T, hd]
      value = tf.concat([cached.value, v], 2);
    } else if (state.usePrefix) {
      const prefix = this.hooks.keyValuePrefix!.prefix(layer, state.context);
      const expected = [k.shape[0], k.shape[1], this.hooks.keyValuePrefix!.length, k.shape[3]];
      if (prefix.key.shape.some((d, i) => d !== expected[i]) || prefix.value.shape.some((d, i) => d !== expected[i])) {
        throw new Error(
          `key/value prefix of layer ${layer}: expected [${expected}] ([batch, kvHeads, P, headDim]), got key [${prefix.key.shape}], value [${prefix.value.shape}]`,
        );
      }
      key = tf.concat([prefix.key, k], 2); // [B, Hkv, P + T, hd]
      value = tf.concat([prefix.value, v], 2);
    }
    if (state.cacheOut) state.cacheOut[layer] = { key: tf.keep(key), value: tf.keep(value) };
    return { key, value };
  }

  /**
   * Token ids outside the vocabulary are an error, not a silent zero row. Arrays are checked in
   * JavaScript; a tensor costs two reductions and a read back.
   */
  private checkIds(ids: tf.Tensor2D | number[][]): void {
    let min = Infinity;
    let max = -Infinity;
    if (ids instanceof tf.Tensor) {
      [min, max] = tf
        .tidy(() => [tf.min(ids), tf.max(ids)])
        .map((t) => {
          const value = t.dataSync()[0]!;
          t.dispose();
          return value;
        }) as [number, number];
    } else {
      for (const row of ids) {
        for (const id of row) {
          if (!Number.isInteger(id)) throw new Error(`inputIds: token id ${id} is not an integer`);
          if (id < min) min = id;
          if (id > max) max = id;
        }
      }
    }
    if (min < 0 || max >= this.config.vocabSize) {
      throw new Error(
        `inputIds: token id ${min < 0 ? min : max} is outside the vocabulary (0..${this.config.vocabSize - 1})`,
      );
    }
  }

  dispose(): void {
    this.decodeGraphs.clear();
    for (const variable of this.parameterMap.values()) variable.dispose();
    this.parameterMap.clear();
    this.linearMap.clear();
  }
}
