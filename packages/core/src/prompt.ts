// Soft prompts at the input, shared by prompt tuning and multi-task prompt tuning (@peft/prompt)
// and P-tuning v1 (@peft/ptuning): a source yields the virtual tokens' embeddings [P, d] (or one
// set per sample), the tuner prepends them to the token embeddings through the host's
// input-embedding hook; saved as peft's `prompt_embeddings` [P, d].
import * as tf from '@tensorflow/tfjs-core';

import type { Disposer, ForwardContext, PeftHost } from './host.js';
import { expectTensorShape, type AdapterTuner, type PeftConfig, type PeftMethod } from './peft-model.js';
import type { SafetensorsFile, TensorToWrite } from './safetensors.js';
import { ownVariable } from './variables.js';

export const PROMPT_EMBEDDINGS = 'prompt_embeddings';

/** Where a soft prompt comes from: a table, an encoder (P-tuning), a task-modulated table (MPT). */
export interface PromptSource {
  /** P: virtual tokens put in front of every input. */
  readonly virtualTokens: number;
  /** [P, d], or [B, P, d] when samples differ (per-task prompts). */
  embeddings(context: ForwardContext): tf.Tensor;
  trainableVariables(): ReadonlyMap<string, tf.Variable>;
  /** Tensors as peft saves them (`prompt_embeddings` and any extra). */
  stateDict(): Promise<Record<string, TensorToWrite>>;
  loadStateDict(file: SafetensorsFile): void;
  dispose(): void;
}

/** The simplest source, and what every saved prompt loads as: a table [P, d]. */
export class PromptTable implements PromptSource {
  readonly table: tf.Variable<tf.Rank.R2>;

  constructor(initial: tf.Tensor2D) {
    this.table = ownVariable(initial, true) as tf.Variable<tf.Rank.R2>;
  }

  get virtualTokens(): number {
    return this.table.shape[0];
  }

  embeddings(): tf.Tensor {
    return this.table;
  }

  trainableVariables(): ReadonlyMap<string, tf.Variable> {
    return new Map([['prompt_encoder.embedding.weight', this.table as tf.Variable]]);
  }

  async stateDict(): Promise<Record<string, TensorToWrite>> {
    return { [PROMPT_EMBEDDINGS]: { shape: this.table.shape, values: (await this.table.data()) as Float32Array } };
  }

  loadStateDict(file: SafetensorsFile): void {
    const entry = file.entries.get(PROMPT_EMBEDDINGS);
    if (!entry) throw new Error(`${file.source}: tensor "${PROMPT_EMBEDDINGS}" is missing`);
    if (entry.shape.join() !== this.table.shape.join()) {
      throw new Error(
        `${file.source}: tensor "${PROMPT_EMBEDDINGS}" has shape [${entry.shape}], expected [${this.table.shape}] (virtual tokens x token dim)`,
      );
    }
    const data = file.tensor(PROMPT_EMBEDDINGS);
    tf.tidy(() => this.table.assign(tf.tensor2d(data.values as Float32Array, this.table.shape)));
  }

  dispose(): void {
    this.table.dispose();
  }
}

/**
 * Initial prompt rows: the host's embeddings of the tokens (peft's TEXT and SAMPLE_VOCAB inits), with
 * the host's embedding scale (Gemma's √d) as peft's `word_embeddings(ids)` has it.
 */
export function promptFromTokens(host: PeftHost, tokenIds: readonly number[], virtualTokens: number): tf.Tensor2D {
  if (tokenIds.length === 0) throw new Error('prompt initialisation: no token ids');
  const vocabulary = host.config.vocabSize;
  const bad = tokenIds.find((id) => !Number.isInteger(id) || id < 0 || id >= vocabulary);
  if (bad !== undefined)
    throw new Error(`prompt initialisation: token id ${bad} is outside the vocabulary (0..${vocabulary - 1})`);
  // as peft: repeated until long enough, then cut to P
  const ids = Array.from({ length: virtualTokens }, (_, i) => tokenIds[i % tokenIds.length]!);
  const scale = host.wordEmbeddingScale ?? 1;
  return tf.tidy(() => {
    const rows = tf.gather(host.wordEmbeddings, tf.tensor1d(ids, 'int32')) as tf.Tensor2D; // [P, d]
    return scale === 1 ? rows : (tf.mul(rows, scale) as tf.Tensor2D);
  });
}

/**
 * Where the virtual tokens go: in front of the input (peft), or into template slots: each row's
 * k-th `placeholderTokenId` is replaced by prompt row k (P-tuning's templates, pseudo tokens
 * anywhere).
 */
export type PromptPlacement = 'prepend' | { placeholderTokenId: number };

export class PromptTuner implements AdapterTuner {
  private installed: Disposer | null = null;

  constructor(
    readonly host: PeftHost,
    readonly adapterName: string,
    readonly config: PeftConfig,
    public source: PromptSource,
    readonly placement: PromptPlacement = 'prepend',
  ) {}

  get virtualTokens(): number {
    return this.source.virtualTokens;
  }

  private prepend(embeddings: tf.Tensor3D, context: ForwardContext): { embeddings: tf.Tensor3D; prepended: number } {
    const [batch] = embeddings.shape;
    let prompt = this.source.embeddings(context);
    if (prompt.rank === 2) prompt = tf.tile(tf.expandDims(prompt, 0), [batch, 1, 1]);
    return { embeddings: tf.concat([prompt as tf.Tensor3D, embeddings], 1), prepended: this.source.virtualTokens };
  }

  /** Template mode: the placeholders of each row become the prompt rows, in order. */
  private fill(
    embeddings: tf.Tensor3D,
    context: ForwardContext,
    inputIds: tf.Tensor2D,
    placeholder: number,
  ): { embeddings: tf.Tensor3D; prepended: number } {
    const [batch, length, width] = embeddings.shape;
    const P = this.source.virtualTokens;
    const ids = inputIds.arraySync();
    const slots = new Float32Array(batch * length * P);
    const keep = new Float32Array(batch * length).fill(1);
    ids.forEach((row, b) => {
      let k = 0;
      row.forEach((id, t) => {
        if (id !== placeholder) return;
        if (k < P) slots[(b * length + t) * P + k] = 1;
        keep[b * length + t] = 0;
        k += 1;
      });
      if (k !== P) {
        throw new Error(
          `template: row ${b} has ${k} placeholder tokens (id ${placeholder}), the prompt ${P}; build inputs with the template`,
        );
      }
    });
    let prompt = this.source.embeddings(context);
    if (prompt.rank === 3) throw new Error('template placement takes one prompt for the batch, not one per sample');
    const filled = tf.reshape(tf.matMul(tf.tensor2d(slots, [batch * length, P]), prompt as tf.Tensor2D), [
      batch,
      length,
      width,
    ]);
    const kept = tf.mul(embeddings, tf.tensor3d(keep, [batch, length, 1]));
    prompt = tf.add(kept, filled);
    return { embeddings: prompt as tf.Tensor3D, prepended: 0 };
  }

  setActive(active: boolean): void {
    if (active === (this.installed !== null)) return;
    if (active) {
      const placement = this.placement;
      this.installed =
        placement === 'prepend'
          ? this.host.hooks.setInputEmbeddingHook((e, c) => this.prepend(e, c), this.source.virtualTokens)
          : this.host.hooks.setInputEmbeddingHook((e, c, ids) => this.fill(e, c, ids, placement.placeholderTokenId), 0);
    } else {
      this.installed!.remove();
      this.installed = null;
    }
  }

  trainableVariables(): ReadonlyMap<string, tf.Variable> {
    return this.source.trainableVariables();
  }

  stateDict(): Promise<Record<string, TensorToWrite>> {
    return this.source.stateDict();
  }

  loadStateDict(file: SafetensorsFile): void {
    this.source.loadStateDict(file);
  }

  dispose(): void {
    this.setActive(false);
    this.source.dispose();
  }
}

/**
 * Virtual tokens take the positions before the input's (prompt tuning, P-tuning) or the ones the
 * input's start after (prefix tuning): a host with a position table needs room for them and one
 * token. Checked before any tensor is made; `where` names the config field.
 */
export function checkVirtualTokens(host: PeftHost, virtualTokens: number, where: string): void {
  const positions = host.config.maxPositions;
  if (virtualTokens < positions) return;
  throw new Error(
    `${where}: ${virtualTokens} virtual tokens, but this ${host.config.modelType} model has ${positions} positions ` +
      `(at most ${positions - 1} virtual tokens, to leave room for one token of input)`,
  );
}

/** What prompt-learning configs share in peft's adapter_config.json. */
export function promptLearningJson(
  host: PeftHost,
  config: PeftConfig & { numVirtualTokens: number },
): Record<string, unknown> {
  return {
    auto_mapping: null,
    base_model_name_or_path: null,
    inference_mode: true,
    modules_to_save: config.modulesToSave ? [...config.modulesToSave] : null,
    num_attention_heads: host.config.numAttentionHeads,
    num_layers: host.config.numLayers,
    num_transformer_submodules: 1,
    num_virtual_tokens: config.numVirtualTokens,
    peft_type: config.peftType,
    peft_version: '0.21.0',
    revision: null,
    task_type: config.taskType,
    token_dim: host.config.hiddenSize,
  };
}

/** A tensor a saved prompt holds: its key, shape, and the config fields that give the shape. */
export interface SavedPromptTensor {
  key: string;
  shape: readonly number[];
  /** e.g. "num_virtual_tokens 20 x token_dim 768". */
  fields: string;
}

/**
 * The method object of a prompt-learning config whose saved form is a plain table [P, d] (peft's
 * `prompt_embeddings`), or the tensors `saved` lists (multi-task prompts).
 */
export function promptMethod<C extends PeftConfig & { numVirtualTokens: number }>(
  peftType: string,
  fromJson: (json: Record<string, unknown>, source: string) => C,
  source: (host: PeftHost, config: C) => PromptSource,
  placement: (config: C) => PromptPlacement = () => 'prepend',
  saved: (host: PeftHost, config: C) => SavedPromptTensor[] = (host, config) => [
    {
      key: PROMPT_EMBEDDINGS,
      shape: [config.numVirtualTokens, host.config.hiddenSize],
      fields: `num_virtual_tokens ${config.numVirtualTokens} x the model's hidden size ${host.config.hiddenSize}`,
    },
  ],
): PeftMethod<C> {
  return {
    peftType,
    stateDictPrefix: 'base_model.',
    fromJson,
    checkWeights(host, config, file, adapter) {
      checkVirtualTokens(host, config.numVirtualTokens, `${adapter.configSource}: num_virtual_tokens`);
      for (const { key, shape, fields } of saved(host, config))
        expectTensorShape(file, key, shape, `${adapter.configSource} (${fields})`);
    },
    attach(host, adapterName, config) {
      checkVirtualTokens(host, config.numVirtualTokens, `${config.constructor.name}.numVirtualTokens`);
      return new PromptTuner(host, adapterName, config, source(host, config), placement(config));
    },
  };
}
