// The host contract (DESIGN.md §3): the four places where a PEFT method changes a frozen model.
// A host (a model from @peft/models, or a user's own) owns its weights and its forward pass; it
// exposes its linear projections as HostLinear objects and consults a HostHooks object at the
// three other places. Methods attach through these only.
import * as tf from '@tensorflow/tfjs-core';

import type { GraphBuilder } from './graph.js';
import { addReleasing } from './nn.js';

/** What a method needs to know of a host's shape. */
export interface HostConfig {
  /** Hugging Face `model_type`: `gpt2`, `llama`, `bert`, ... */
  modelType: string;
  numLayers: number;
  hiddenSize: number;
  numAttentionHeads: number;
  /** Equal to numAttentionHeads without grouped-query attention. */
  numKeyValueHeads: number;
  headDim: number;
  vocabSize: number;
  /** Length of the position table; Infinity for rotary positions. */
  maxPositions: number;
  /** Classes of a classification head (sequence or token); absent for language models. */
  numLabels?: number;
  /** The transformers class of the checkpoint (config.json `architectures[0]`), e.g. GPT2LMHeadModel. */
  architecture?: string;
}

/** Facts about the forward pass in progress, passed to every delta and hook. */
export interface ForwardContext {
  training: boolean;
  batchSize: number;
  /** Tokens of this call (after the input-embedding hook). */
  sequenceLength: number;
  /** Positions already in the key/value cache (generation), 0 otherwise. */
  cacheLength: number;
  /** Per-sample adapter names, for methods that allow mixed batches. */
  sampleAdapters?: readonly string[];
  /** Training: a seed for this step's randomness (dropout), derived from the run's seed and step. */
  seed?: number;
  /** Multi-task prompts: the task of each sample. */
  taskIds?: readonly number[];
}

/**
 * An extra path beside a frozen projection: y = base(x) + delta(x). `x` is [N, in] (N = B·T, rows
 * sample-major), result [N, out], or null when the path contributes nothing to this pass.
 */
export type LinearDelta = ((x: tf.Tensor2D, context: ForwardContext) => tf.Tensor2D | null) & {
  /**
   * The path for a host that runs a pass as one graph (decoding; see GRAPH_KERNEL): what it adds in
   * this context as graph ops, or null when it adds nothing (merged, its adapter inactive). Without
   * it the host runs every pass op by op while the path is attached. Hosts ask only for inference
   * passes of one adapter (no training, no sampleAdapters); a path may throw for other contexts.
   */
  graphForm?: (context: ForwardContext) => LinearDeltaGraph | null;
};

/** A delta path as graph ops (LinearDelta.graphForm). */
export interface LinearDeltaGraph {
  /** Names the ops `write` adds: equal keys write the same ops (a host reuses a graph built for them). */
  key: string;
  /** Adds the path's ops on the rows x [N, in]; returns its [N, out]. `weight` feeds a tensor to the graph. */
  write(graph: GraphBuilder, x: string, weight: (tensor: tf.Tensor) => string): string;
}

/**
 * A frozen linear projection with a Hugging Face module path. The weight is held as [out, in], as
 * nn.Linear stores it, whatever the checkpoint layout (GPT-2's Conv1D stores [in, out] and is
 * transposed once at load): the forward product is x·Wᵀ, as torch computes it, which libtensorflow's
 * oneDNN product runs faster than x·W at a forward pass's 128 rows (bench README, "Weights held
 * [out, in]").
 */
export class HostLinear {
  private readonly deltas = new Map<string, LinearDelta>();

  constructor(
    /** Module path, e.g. `transformer.h.0.attn.c_attn` or `model.layers.3.self_attn.q_proj`. */
    readonly name: string,
    /** [out, in], frozen. */
    readonly weight: tf.Variable<tf.Rank.R2>,
    /** [out] or null, frozen. */
    readonly bias: tf.Variable<tf.Rank.R1> | null,
    /** How the checkpoint stores the weight: `linear` = [out, in], `conv1d` = [in, out]. */
    readonly layout: 'linear' | 'conv1d',
  ) {}

  get inFeatures(): number {
    return this.weight.shape[1];
  }

  get outFeatures(): number {
    return this.weight.shape[0];
  }

  /**
   * y = x·Wᵀ + b + Σ deltas(x), for x of shape [..., in]. Rows [N, in] come back as [N, out]
   * without a reshape on either side (a layer that keeps its activations 2-D saves a reshape and
   * its gradient per projection).
   */
  apply(x: tf.Tensor, context: ForwardContext): tf.Tensor {
    const leading = x.shape.slice(0, -1);
    const flat = (x.rank === 2 ? x : tf.reshape(x, [-1, this.inFeatures])) as tf.Tensor2D; // [N, in]
    let y: tf.Tensor2D = tf.matMul(flat, this.weight, false, true);
    if (this.bias) y = addReleasing(y, this.bias) as tf.Tensor2D;
    for (const delta of this.deltas.values()) {
      const extra = delta(flat, context);
      if (extra) y = addReleasing(y, extra) as tf.Tensor2D;
    }
    return x.rank === 2 ? y : tf.reshape(y, [...leading, this.outFeatures]);
  }

  addDelta(key: string, delta: LinearDelta): void {
    if (this.deltas.has(key)) throw new Error(`${this.name}: a delta path "${key}" is already attached`);
    this.deltas.set(key, delta);
  }

  removeDelta(key: string): void {
    if (!this.deltas.delete(key)) throw new Error(`${this.name}: no delta path "${key}" to remove`);
  }

  deltaKeys(): string[] {
    return [...this.deltas.keys()];
  }

  /**
   * What the delta paths add to a pass with this context as graph ops, the idle ones left out; null
   * when a path that may add something has no graph form (the pass then runs op by op).
   */
  deltaGraphs(context: ForwardContext): LinearDeltaGraph[] | null {
    const forms: LinearDeltaGraph[] = [];
    for (const delta of this.deltas.values()) {
      if (!delta.graphForm) return null;
      const form = delta.graphForm(context);
      if (form) forms.push(form);
    }
    return forms;
  }

  /** Throws, naming this projection, when ΔW holds NaN or Inf (check every layer before merging any). */
  assertMergeable(deltaWeight: tf.Tensor2D): void {
    const finite = tf.tidy(() => tf.all(tf.isFinite(deltaWeight)).dataSync()[0] === 1);
    if (!finite) throw new Error(`${this.name}: ΔW holds NaN or Inf; refusing to merge it into the weight`);
  }

  /**
   * Adds a dense ΔW ([out, in], as the weight) into the frozen weight (`sign` -1 takes it out
   * again). Refuses a ΔW holding NaN or Inf: a merged weight cannot be repaired afterwards.
   */
  merge(deltaWeight: tf.Tensor2D, sign: 1 | -1 = 1): void {
    const [outFeatures, inFeatures] = deltaWeight.shape;
    if (inFeatures !== this.inFeatures || outFeatures !== this.outFeatures) {
      throw new Error(`${this.name}: ΔW has shape [${deltaWeight.shape}], the weight [${this.weight.shape}]`);
    }
    this.assertMergeable(deltaWeight);
    tf.tidy(() => this.weight.assign(sign === 1 ? tf.add(this.weight, deltaWeight) : tf.sub(this.weight, deltaWeight)));
  }
}

/**
 * What surrounds a sublayer's output: after the hook the host computes `norm(output + residual)`
 * (post-LN hosts such as BERT), `residual + norm(output)` (Gemma's sandwich blocks, whose post norm
 * follows the sublayer) or `output + residual` (pre-LN hosts, no norm).
 */
export interface SublayerSurroundings {
  /** The sublayer's input, added back after the hook: [B, T, d]. */
  residual: tf.Tensor3D;
  /**
   * The host's norm after the hook (around the residual add on post-LN hosts, before it on Gemma's);
   * null for pre-LN hosts. AdapterHub's `original_ln_before` adapters take norm(output + residual).
   */
  norm: ((x: tf.Tensor3D) => tf.Tensor3D) | null;
}

/** Output of a sublayer (attention or feed-forward) before its residual add, [B, T, d] -> [B, T, d]. */
export type SublayerHook = (
  hidden: tf.Tensor3D,
  layer: number,
  context: ForwardContext,
  surroundings: SublayerSurroundings,
) => tf.Tensor3D;
export type SublayerPoint = 'afterAttention' | 'afterFfn';

/** Keys and values every query of a layer may attend to before the real tokens. */
export interface KeyValuePrefix {
  /** [B, numKeyValueHeads, P, headDim], used as given (as Hugging Face uses past_key_values). */
  key: tf.Tensor4D;
  value: tf.Tensor4D;
}
export interface KeyValuePrefixProvider {
  /** P, the same for every layer. */
  readonly length: number;
  prefix(layer: number, context: ForwardContext): KeyValuePrefix;
}

/**
 * Token embeddings [B, T, d] before position embeddings and the first layer. May prepend virtual
 * tokens (reported in `prepended`, the host then prepends ones to the mask and the caller -100 to
 * the labels) or replace rows in place.
 */
export type InputEmbeddingHook = (
  embeddings: tf.Tensor3D,
  context: ForwardContext,
  /** [B, T] int32: the token ids the embeddings came from (templates find their placeholders here). */
  inputIds: tf.Tensor2D,
) => { embeddings: tf.Tensor3D; prepended: number };

export interface Disposer {
  remove(): void;
}

/**
 * The hook points a host consults in its forward pass. The host applies them; methods install
 * them. One prefix provider and one input-embedding hook at a time (two would fight over the
 * positions); any number of sublayer hooks, applied in the order added.
 */
export class HostHooks {
  private readonly sublayer = new Map<string, SublayerHook[]>();
  private prefixProvider: KeyValuePrefixProvider | null = null;
  private inputHook: InputEmbeddingHook | null = null;
  private prepends = 0;

  constructor(private readonly numLayers: number) {}

  addSublayerHook(point: SublayerPoint, layer: number, hook: SublayerHook): Disposer {
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.numLayers) {
      throw new Error(`${point} hook: layer ${layer} is outside 0..${this.numLayers - 1}`);
    }
    const key = `${point}:${layer}`;
    const hooks = this.sublayer.get(key) ?? [];
    hooks.push(hook);
    this.sublayer.set(key, hooks);
    return {
      remove: () => {
        const index = hooks.indexOf(hook);
        if (index >= 0) hooks.splice(index, 1);
      },
    };
  }

  /** Applied by the host to a sublayer's output before the residual add. */
  applySublayer(
    point: SublayerPoint,
    layer: number,
    hidden: tf.Tensor3D,
    context: ForwardContext,
    surroundings: SublayerSurroundings,
  ): tf.Tensor3D {
    let h = hidden;
    for (const hook of this.sublayer.get(`${point}:${layer}`) ?? []) h = hook(h, layer, context, surroundings);
    return h;
  }

  setKeyValuePrefix(provider: KeyValuePrefixProvider): Disposer {
    if (this.prefixProvider) throw new Error('a key/value prefix is already installed on this host');
    this.prefixProvider = provider;
    return { remove: () => (this.prefixProvider = this.prefixProvider === provider ? null : this.prefixProvider) };
  }

  get keyValuePrefix(): KeyValuePrefixProvider | null {
    return this.prefixProvider;
  }

  /** `prepends`: the virtual tokens the hook adds in front (0 when it replaces rows in place). */
  setInputEmbeddingHook(hook: InputEmbeddingHook, prepends = 0): Disposer {
    if (this.inputHook) throw new Error('an input-embedding hook is already installed on this host');
    this.inputHook = hook;
    this.prepends = prepends;
    return {
      remove: () => {
        if (this.inputHook !== hook) return;
        this.inputHook = null;
        this.prepends = 0;
      },
    };
  }

  /** Whether any afterAttention / afterFfn hook is installed. */
  hasSublayerHooks(): boolean {
    for (const hooks of this.sublayer.values()) if (hooks.length > 0) return true;
    return false;
  }

  /** Positions of context the installed hooks consume in front of the real tokens. */
  get virtualTokens(): number {
    return (this.prefixProvider?.length ?? 0) + (this.inputHook ? this.prepends : 0);
  }

  get inputEmbedding(): InputEmbeddingHook | null {
    return this.inputHook;
  }

  /** What methods have installed, for messages (`afterFfn hook on layer 3`); empty when nothing is. */
  installed(): string[] {
    const out: string[] = [];
    for (const [key, hooks] of this.sublayer) {
      const [point, layer] = key.split(':');
      if (hooks.length > 0) out.push(`${point} hook on layer ${layer}`);
    }
    if (this.prefixProvider) out.push(`key/value prefix of ${this.prefixProvider.length} positions`);
    if (this.inputHook) out.push('input-embedding hook');
    return out;
  }
}

/** A key/value cache for generation: per layer [B, kvHeads, S, headDim]. */
export interface KeyValueCache {
  layers: { key: tf.Tensor4D; value: tf.Tensor4D }[];
  /** Positions held: virtual ones (prefix, prepended prompt) and real tokens. */
  length: number;
  /** Of those, the virtual positions at the front; the caller's attention mask never covers them. */
  virtual: number;
}

export interface HostForwardInput {
  /** [B, T] token ids. */
  inputIds: tf.Tensor2D | number[][];
  /**
   * Ones for real tokens, zeros for padding: [B, T], or [B, cached real tokens + T] with a cache
   * (as Hugging Face passes it). Never covers virtual tokens: the host adds their ones itself.
   * Default all ones.
   */
  attentionMask?: tf.Tensor2D | number[][];
  /** BERT segment ids, [B, T]; default zeros. */
  tokenTypeIds?: tf.Tensor2D | number[][];
  /** [B, T]; default cacheLength + arange(T). */
  positionIds?: tf.Tensor2D | number[][];
  /** Continue from a cache (generation); its mask columns are part of `attentionMask` when given. */
  cache?: KeyValueCache;
  /** Return a cache extended by this call. */
  useCache?: boolean;
  outputHiddenStates?: boolean;
  training?: boolean;
  /** With training: seed of this step's randomness (see ForwardContext.seed). */
  seed?: number;
  /**
   * Gradient checkpointing: each transformer layer keeps only its input for the backward pass and is
   * computed again there (see `checkpoint`). Less memory, a second forward pass of each layer.
   */
  checkpointLayers?: boolean;
  /** Multi-task prompt tuning: the task of each sample. */
  taskIds?: readonly number[];
  sampleAdapters?: readonly string[];
  /**
   * The training engine's causal-LM loss: where the host has a language-model head, leave it out and
   * return its input in `logits`, the head in `lmHead` (fusedCausalLmLoss then computes the head and
   * the loss in chunks of tokens: the [tokens, vocabulary] logits never exist whole). A host without
   * one returns its logits as always, and no `lmHead`; so does a decoding step the host runs as one
   * graph (its head is inside).
   */
  headless?: boolean;
  /**
   * Per-token heads (a token classifier, a masked or causal LM): the head computed only at these
   * rows of the flattened [B, prepended + T] positions (row b·(prepended + T) + t); `logits` is then
   * [rows, outputs]. Training's token-classification loss asks for its labelled positions (a masked
   * LM's 15%): the rest of the head is never computed. A host with a per-sequence head refuses it.
   */
  headRows?: readonly number[];
}

/** A language-model head: logits = input · weightᵀ, soft-capped as c·tanh(x / c) where `softCap` is set. */
export interface LmHead {
  /** [vocabulary, d] (the token embeddings where tied). */
  weight: tf.Tensor2D;
  softCap: number | null;
}

export interface HostForwardOutput {
  /** [B, prepended + T, vocabulary or labels] (per-token heads), or [B, labels] (sequence heads). */
  logits: tf.Tensor;
  /**
   * As transformers' `hidden_states`: the embedding output and each layer's output, numLayers + 1
   * of [B, prepended + T, d], the last one after the final norm where the architecture has one.
   */
  hiddenStates?: tf.Tensor3D[];
  cache?: KeyValueCache;
  /** Virtual tokens the input-embedding hook put in front of the real ones. */
  prepended: number;
  /** Set when the pass ran `headless`: `logits` then holds the head's input [B, prepended + T, d]. */
  lmHead?: LmHead;
}

/** A model PEFT methods can attach to. */
export interface PeftHost {
  readonly config: HostConfig;
  readonly hooks: HostHooks;
  /** Every linear projection a delta path can attach to, by module path. */
  readonly linears: ReadonlyMap<string, HostLinear>;
  /** Every weight by its Hugging Face name, frozen. */
  readonly parameters: ReadonlyMap<string, tf.Variable>;
  /** The token embedding table [vocabulary, d] (prompt initialisation from words). */
  readonly wordEmbeddings: tf.Variable<tf.Rank.R2>;
  /**
   * What the host's embedding multiplies each row of wordEmbeddings by (Gemma: √hidden_size, in
   * float32, inside its embed_tokens); 1 when absent. Prompts initialised from words start from the
   * scaled rows, as peft's do (it calls embed_tokens).
   */
  readonly wordEmbeddingScale?: number;
  /** Module paths of task heads (`lm_head`, `classifier`, `score`): candidates for modules_to_save. */
  readonly headModules: readonly string[];
  /** Module path of each transformer layer: `transformer.h.3`, `model.layers.3`, `bert.encoder.layer.3`. */
  readonly layerPaths: readonly string[];
  forward(input: HostForwardInput): HostForwardOutput;
  dispose(): void;
}

/**
 * A host, or a model that wraps one (a `PeftModel`, a training baseline): what an API that runs a
 * model accepts. The wrapper's adapters act through the host's hook points, so running the host
 * runs the active adapter.
 */
export type HostSource = PeftHost | { readonly host: PeftHost };

export function hostOf(model: HostSource): PeftHost {
  return 'hooks' in model ? model : model.host;
}
