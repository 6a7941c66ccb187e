// Key/value prefixes in every layer, shared by prefix tuning (@peft/prefix) and P-tuning v2
// (@peft/ptuning), which peft both saves as PREFIX_TUNING: a table (or an MLP over a smaller
// embedding) gives, per virtual token, every layer's keys and values; peft's flat layout is
// prompt_embeddings[t, ((l·2 + kv)·H + h)·headDim + d] with H the key/value heads. Both packages
// register prefixMethod; both configs take the MLP (prefixProjection), so it lives here too.
import * as tf from '@tensorflow/tfjs-core';

import type { Disposer, ForwardContext, KeyValuePrefix, PeftHost } from './host.js';
import { expectTensorShape, type AdapterTuner, type PeftConfig, type PeftMethod } from './peft-model.js';
import { preview } from './preview.js';
import { checkVirtualTokens, PROMPT_EMBEDDINGS } from './prompt.js';
import { deriveSeed, seededDropout, seededNormal } from './random.js';
import type { SafetensorsFile, TensorToWrite } from './safetensors.js';
import { ownVariable } from './variables.js';

export interface PrefixOptions {
  /** Virtual tokens P: positions of context every layer gains. */
  numVirtualTokens: number;
  /** Generate the prefix through Linear-Tanh-Linear from a smaller embedding (reparameterisation). */
  prefixProjection?: boolean;
  /** Hidden size of that MLP (default: tokenDim). */
  encoderHiddenSize?: number | null;
  /** Dropout on the prefix during training (THUDM's P-tuning v2; peft has none). */
  prefixDropout?: number;
  /** null: random (N(0, 1), as torch's nn.Embedding); 'zero': zero keys and values. */
  initWeights?: 'zero' | null;
  taskType?: string | null;
  modulesToSave?: readonly string[] | null;
  initSeed?: number;
}

/** The prefix a host needs: per layer keys and values of its key/value heads. */
export function prefixShape(host: PeftHost): { numLayers: number; kvHeads: number; headDim: number; tokenDim: number } {
  const { numLayers, numKeyValueHeads: kvHeads, headDim } = host.config;
  return { numLayers, kvHeads, headDim, tokenDim: kvHeads * headDim };
}

/** PREFIX_TUNING settings; @peft/prefix and @peft/ptuning extend it with their defaults. */
export class PrefixConfig implements PeftConfig {
  readonly peftType: string = 'PREFIX_TUNING';
  readonly numVirtualTokens: number;
  readonly prefixProjection: boolean;
  readonly encoderHiddenSize: number | null;
  readonly prefixDropout: number;
  readonly initWeights: 'zero' | null;
  readonly taskType: string | null;
  readonly modulesToSave: readonly string[] | null;
  readonly initSeed: number;

  constructor(
    options: PrefixOptions,
    protected readonly configName = 'PrefixConfig',
  ) {
    const fail = (field: string, expected: string, got: unknown): never => {
      throw new Error(`${configName}.${field}: expected ${expected}, got ${preview(got)}`);
    };
    this.numVirtualTokens = options.numVirtualTokens;
    if (!(Number.isInteger(this.numVirtualTokens) && this.numVirtualTokens > 0))
      fail('numVirtualTokens', 'a positive integer', this.numVirtualTokens);
    this.prefixProjection = options.prefixProjection ?? false;
    this.encoderHiddenSize = options.encoderHiddenSize ?? null;
    if (this.encoderHiddenSize !== null && !(Number.isInteger(this.encoderHiddenSize) && this.encoderHiddenSize > 0)) {
      fail('encoderHiddenSize', 'a positive integer', this.encoderHiddenSize);
    }
    this.prefixDropout = options.prefixDropout ?? 0;
    if (!(this.prefixDropout >= 0 && this.prefixDropout < 1))
      fail('prefixDropout', 'a number in [0, 1)', this.prefixDropout);
    this.initWeights = options.initWeights ?? null;
    if (this.initWeights !== null && this.initWeights !== 'zero')
      fail('initWeights', "null or 'zero'", this.initWeights);
    this.taskType = options.taskType ?? null;
    this.modulesToSave = options.modulesToSave ?? null;
    this.initSeed = options.initSeed ?? 0;
  }

  /** peft's adapter_config.json, with the fields peft fills from the model (GQA: key/value heads). */
  toJson(host: PeftHost): Record<string, unknown> {
    const { numLayers, kvHeads, tokenDim } = prefixShape(host);
    return {
      auto_mapping: null,
      base_model_name_or_path: null,
      encoder_hidden_size: this.encoderHiddenSize ?? tokenDim,
      inference_mode: true,
      init_weights: this.initWeights,
      modules_to_save: this.modulesToSave ? [...this.modulesToSave] : null,
      num_attention_heads: kvHeads,
      num_layers: numLayers,
      num_transformer_submodules: 1,
      num_virtual_tokens: this.numVirtualTokens,
      peft_type: 'PREFIX_TUNING',
      peft_version: '0.21.0',
      prefix_projection: this.prefixProjection,
      revision: null,
      task_type: this.taskType,
      token_dim: tokenDim,
      // ours (peft ignores unknown keys): THUDM's prefix dropout of P-tuning v2
      ...(this.prefixDropout ? { prefix_dropout: this.prefixDropout } : {}),
    };
  }

  static fromJson(json: Record<string, unknown>, source = 'adapter_config.json'): PrefixConfig {
    if (
      json.num_transformer_submodules !== undefined &&
      json.num_transformer_submodules !== null &&
      json.num_transformer_submodules !== 1
    ) {
      throw new Error(
        `${source}: num_transformer_submodules ${preview(json.num_transformer_submodules)} (encoder-decoder models) is not supported`,
      );
    }
    try {
      // a saved prefix is always the evaluated table (peft drops the MLP): load it without projection
      return new PrefixConfig({
        numVirtualTokens: json.num_virtual_tokens as number,
        prefixProjection: false,
        prefixDropout: (json.prefix_dropout as number) ?? 0,
        taskType: (json.task_type as string | null) ?? null,
        modulesToSave: (json.modules_to_save as string[] | null) ?? null,
      });
    } catch (error) {
      throw new Error(`${source}: ${(error as Error).message}`);
    }
  }
}

/** The reparameterisation: Linear(tokenDim, hidden) - tanh - Linear(hidden, L·2·tokenDim). */
interface PrefixProjection {
  embedding: tf.Variable<tf.Rank.R2>; // [P, tokenDim]
  first: tf.Variable<tf.Rank.R2>; // [tokenDim, hidden]
  firstBias: tf.Variable<tf.Rank.R1>;
  second: tf.Variable<tf.Rank.R2>; // [hidden, L·2·tokenDim]
  secondBias: tf.Variable<tf.Rank.R1>;
}

export class PrefixTuner implements AdapterTuner {
  /** The flat prefix [P, L·2·tokenDim] when held directly (no projection, or baked). */
  table: tf.Variable<tf.Rank.R2> | null = null;
  projection: PrefixProjection | null = null;
  private active = false;
  private installed: Disposer | null = null;
  /** The flat prefix of the forward pass in progress, computed once for all its layers. */
  private readonly perPass = new WeakMap<ForwardContext, tf.Tensor2D>();
  private readonly shape: ReturnType<typeof prefixShape>;

  constructor(
    readonly host: PeftHost,
    readonly adapterName: string,
    readonly config: PrefixConfig,
  ) {
    checkVirtualTokens(host, config.numVirtualTokens, `${config.constructor.name}.numVirtualTokens`);
    this.shape = prefixShape(host);
    const { numLayers, tokenDim } = this.shape;
    const P = config.numVirtualTokens;
    const flatWidth = numLayers * 2 * tokenDim;
    const seed = config.initSeed;
    const kaiming = (inputs: number, outputs: number, s: number): tf.Variable<tf.Rank.R2> =>
      ownVariable(
        tf.randomUniform([inputs, outputs], -1 / Math.sqrt(inputs), 1 / Math.sqrt(inputs), 'float32', s),
        true,
      ) as tf.Variable<tf.Rank.R2>;
    if (config.prefixProjection) {
      const hidden = config.encoderHiddenSize ?? tokenDim;
      const zero = config.initWeights === 'zero';
      this.projection = {
        embedding: ownVariable(seededNormal([P, tokenDim], 0, 1, seed), true) as tf.Variable<tf.Rank.R2>,
        first: kaiming(tokenDim, hidden, deriveSeed(seed, 1)),
        firstBias: ownVariable(
          tf.randomUniform([hidden], -1 / Math.sqrt(tokenDim), 1 / Math.sqrt(tokenDim), 'float32', deriveSeed(seed, 2)),
          true,
        ) as tf.Variable<tf.Rank.R1>,
        second: zero
          ? (ownVariable(tf.zeros([hidden, flatWidth]), true) as tf.Variable<tf.Rank.R2>)
          : kaiming(hidden, flatWidth, deriveSeed(seed, 3)),
        secondBias: ownVariable(
          zero
            ? tf.zeros([flatWidth])
            : tf.randomUniform(
                [flatWidth],
                -1 / Math.sqrt(hidden),
                1 / Math.sqrt(hidden),
                'float32',
                deriveSeed(seed, 4),
              ),
          true,
        ) as tf.Variable<tf.Rank.R1>,
      };
    } else {
      const init = config.initWeights === 'zero' ? tf.zeros([P, flatWidth]) : seededNormal([P, flatWidth], 0, 1, seed);
      this.table = ownVariable(init, true) as tf.Variable<tf.Rank.R2>;
    }
  }

  /** Virtual positions every layer's attention gains (context the prefix consumes). */
  get virtualTokens(): number {
    return this.config.numVirtualTokens;
  }

  /** The flat prefix [P, L·2·tokenDim]: the table, or the projection's output. */
  flat(): tf.Tensor2D {
    if (this.table) return this.table;
    const { embedding, first, firstBias, second, secondBias } = this.projection!;
    return tf.add(
      tf.matMul(tf.tanh(tf.add(tf.matMul(embedding, first), firstBias)), second),
      secondBias,
    ) as tf.Tensor2D;
  }

  private prefix(layer: number, context: ForwardContext): KeyValuePrefix {
    let flat = this.perPass.get(context);
    if (!flat) {
      flat = this.flat();
      if (context.training && this.config.prefixDropout > 0) {
        flat = seededDropout(flat, this.config.prefixDropout, deriveSeed(this.config.initSeed, context.seed ?? 0));
      }
      this.perPass.set(context, flat);
    }
    const { numLayers, kvHeads, headDim } = this.shape;
    const P = this.config.numVirtualTokens;
    const grid = tf.reshape(flat, [P, numLayers * 2, kvHeads, headDim]);
    const take = (kv: number): tf.Tensor4D => {
      const slice = tf.reshape(tf.slice(grid, [0, layer * 2 + kv, 0, 0], [P, 1, kvHeads, headDim]), [
        P,
        kvHeads,
        headDim,
      ]);
      const heads = tf.expandDims(tf.transpose(slice, [1, 0, 2]), 0); // [1, H, P, hd]
      return tf.tile(heads, [context.batchSize, 1, 1, 1]) as tf.Tensor4D;
    };
    return { key: take(0), value: take(1) };
  }

  setActive(active: boolean): void {
    if (active === this.active) return;
    this.active = active;
    if (active)
      this.installed = this.host.hooks.setKeyValuePrefix({
        length: this.config.numVirtualTokens,
        prefix: (l, c) => this.prefix(l, c),
      });
    else {
      this.installed?.remove();
      this.installed = null;
    }
  }

  trainableVariables(): ReadonlyMap<string, tf.Variable> {
    if (this.table) return new Map([['prompt_encoder.embedding.weight', this.table as tf.Variable]]);
    const p = this.projection!;
    return new Map<string, tf.Variable>([
      ['prompt_encoder.embedding.weight', p.embedding],
      ['prompt_encoder.transform.0.weight', p.first],
      ['prompt_encoder.transform.0.bias', p.firstBias],
      ['prompt_encoder.transform.2.weight', p.second],
      ['prompt_encoder.transform.2.bias', p.secondBias],
    ]);
  }

  /** Replaces the projection MLP by its output: inference needs only the table (same outputs). */
  bake(): void {
    if (!this.projection) return;
    const table = tf.tidy(() => this.flat());
    const p = this.projection;
    tf.dispose([p.embedding, p.first, p.firstBias, p.second, p.secondBias]);
    this.projection = null;
    this.table = tf.variable(table, true) as tf.Variable<tf.Rank.R2>;
    table.dispose();
  }

  async stateDict(): Promise<Record<string, TensorToWrite>> {
    const flat = this.table ?? tf.tidy(() => this.flat());
    const out = { [PROMPT_EMBEDDINGS]: { shape: flat.shape, values: (await flat.data()) as Float32Array } };
    if (flat !== this.table) flat.dispose();
    return out;
  }

  loadStateDict(file: SafetensorsFile): void {
    const { numLayers, tokenDim } = this.shape;
    const expected = [this.config.numVirtualTokens, numLayers * 2 * tokenDim];
    const entry = file.entries.get(PROMPT_EMBEDDINGS);
    if (!entry) throw new Error(`${file.source}: tensor "${PROMPT_EMBEDDINGS}" is missing`);
    if (entry.shape.join() !== expected.join()) {
      throw new Error(
        `${file.source}: tensor "${PROMPT_EMBEDDINGS}" has shape [${entry.shape}], expected [${expected}] ` +
          `(${this.config.numVirtualTokens} virtual tokens x ${numLayers} layers x 2 x ${tokenDim})`,
      );
    }
    const unknown = [...file.entries.keys()].filter((key) => key !== PROMPT_EMBEDDINGS);
    if (unknown.length) throw new Error(`${file.source}: tensors a prefix does not have: ${unknown.join(', ')}`);
    this.bake();
    const data = file.tensor(PROMPT_EMBEDDINGS);
    tf.tidy(() => this.table!.assign(tf.tensor2d(data.values as Float32Array, expected as [number, number])));
  }

  dispose(): void {
    this.setActive(false);
    this.table?.dispose();
    if (this.projection) tf.dispose(Object.values(this.projection));
  }
}

export const prefixMethod: PeftMethod<PrefixConfig> = {
  peftType: 'PREFIX_TUNING',
  stateDictPrefix: 'base_model.',
  fromJson: (json, source) => PrefixConfig.fromJson(json, source),
  checkWeights(host, config, file, adapter) {
    const P = config.numVirtualTokens;
    checkVirtualTokens(host, P, `${adapter.configSource}: num_virtual_tokens`);
    const { numLayers, tokenDim } = prefixShape(host);
    expectTensorShape(
      file,
      PROMPT_EMBEDDINGS,
      [P, numLayers * 2 * tokenDim],
      `${adapter.configSource} (num_virtual_tokens ${P} x the model's ${numLayers} layers x 2 x key/value width ${tokenDim})`,
    );
  },
  attach: (host, adapterName, config) => new PrefixTuner(host, adapterName, config),
};
