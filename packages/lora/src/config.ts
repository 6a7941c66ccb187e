// LoraConfig: Hugging Face peft's LoraConfig fields, camelCase, with its defaults and validation.
import { preview, type PeftConfig, type PeftHost } from '@peft/core';

export type TargetModules = readonly string[] | string | 'all-linear';
export type LoraInit = boolean | 'gaussian';

export interface LoraConfigOptions {
  /** Rank of the update (default 8). */
  r?: number;
  /** Scale numerator: the update is scaled by loraAlpha / r (default 8). */
  loraAlpha?: number;
  /** Dropout on the LoRA input during training (default 0). */
  loraDropout?: number;
  /** Module names (exact or suffix), a regex (full match), or 'all-linear'. Default per model type, as peft. */
  targetModules?: TargetModules | null;
  /** Modules never targeted (same matching rules). */
  excludeModules?: TargetModules | null;
  /** GPT-2 Conv1D stores weights [in, out]; forced true there, as peft does. */
  fanInFanOut?: boolean;
  /** Which base biases train: only 'none' is supported. */
  bias?: 'none';
  /** Scale by loraAlpha / sqrt(r) (rank-stabilised LoRA). */
  useRslora?: boolean;
  /** true: A kaiming-uniform, B zero (peft); 'gaussian': A ~ N(0, 1/r), B zero (the paper); false: B random too (tests). */
  initLoraWeights?: LoraInit;
  /** Only these layer indices. */
  layersToTransform?: number | readonly number[] | null;
  /** Per-module rank, keys are regexes matched at the end of the module path. */
  rankPattern?: Readonly<Record<string, number>>;
  /** Per-module alpha, as rankPattern. */
  alphaPattern?: Readonly<Record<string, number>>;
  /** Heads trained in full and saved with the adapter. */
  modulesToSave?: readonly string[] | null;
  /** peft's task_type: CAUSAL_LM, SEQ_CLS, TOKEN_CLS, ... */
  taskType?: string | null;
  /** Seed of the initial A (and B when initLoraWeights is false). Default 0. */
  initSeed?: number;
}

/** peft's default targets per model type (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING). */
export const DEFAULT_TARGET_MODULES: Readonly<Record<string, readonly string[]>> = {
  gpt2: ['c_attn'],
  llama: ['q_proj', 'v_proj'],
  mistral: ['q_proj', 'v_proj'],
  qwen2: ['q_proj', 'v_proj'],
  qwen3: ['q_proj', 'v_proj'],
  gemma2: ['q_proj', 'v_proj'],
  gemma3_text: ['q_proj', 'v_proj'],
  bert: ['query', 'value'],
  roberta: ['query', 'value'],
};

function fail(field: string, expected: string, got: unknown): never {
  const shown = preview(got);
  throw new Error(`LoraConfig.${field}: expected ${expected}, got ${shown}`);
}

/** rankPattern / alphaPattern: an object of module-path regexes to numbers that `valid` accepts. */
function checkPattern(
  field: string,
  patterns: unknown,
  valid: (value: unknown) => boolean,
  expected: string,
): Record<string, number> {
  if (typeof patterns !== 'object' || patterns === null || Array.isArray(patterns))
    fail(field, `an object of module-path patterns to values (${expected} each)`, patterns);
  for (const [key, value] of Object.entries(patterns)) {
    try {
      new RegExp(key);
    } catch {
      fail(`${field} key ${preview(key)}`, 'a valid regular expression', key);
    }
    if (!valid(value)) fail(`${field}[${preview(key)}]`, expected, value);
  }
  return { ...(patterns as Record<string, number>) };
}

export class LoraConfig implements PeftConfig {
  readonly peftType = 'LORA';
  readonly r: number;
  readonly loraAlpha: number;
  readonly loraDropout: number;
  readonly targetModules: TargetModules | null;
  readonly excludeModules: TargetModules | null;
  readonly fanInFanOut: boolean;
  readonly bias: 'none';
  readonly useRslora: boolean;
  readonly initLoraWeights: LoraInit;
  readonly layersToTransform: readonly number[] | null;
  readonly rankPattern: Readonly<Record<string, number>>;
  readonly alphaPattern: Readonly<Record<string, number>>;
  readonly modulesToSave: readonly string[] | null;
  readonly taskType: string | null;
  readonly initSeed: number;

  constructor(options: LoraConfigOptions = {}) {
    const positiveInteger = (value: unknown): boolean => Number.isInteger(value) && (value as number) > 0;
    this.r = options.r ?? 8;
    if (!positiveInteger(this.r)) fail('r', 'a positive integer', this.r);
    this.loraAlpha = options.loraAlpha ?? 8;
    if (!(typeof this.loraAlpha === 'number' && Number.isFinite(this.loraAlpha)))
      fail('loraAlpha', 'a finite number', this.loraAlpha);
    this.loraDropout = options.loraDropout ?? 0;
    if (!(this.loraDropout >= 0 && this.loraDropout < 1)) fail('loraDropout', 'a number in [0, 1)', this.loraDropout);
    this.targetModules = options.targetModules ?? null;
    this.excludeModules = options.excludeModules ?? null;
    for (const [field, value] of [
      ['targetModules', this.targetModules],
      ['excludeModules', this.excludeModules],
    ] as const) {
      if (value === null || typeof value === 'string') {
        if (typeof value === 'string' && value !== 'all-linear') {
          try {
            new RegExp(value);
          } catch {
            fail(field, 'a valid regular expression', value);
          }
        }
        continue;
      }
      if (!Array.isArray(value) || value.length === 0 || !value.every((v) => typeof v === 'string' && v !== '')) {
        fail(field, "a non-empty list of module names, a regex or 'all-linear'", value);
      }
    }
    this.fanInFanOut = options.fanInFanOut ?? false;
    if (typeof this.fanInFanOut !== 'boolean') fail('fanInFanOut', 'true or false', this.fanInFanOut);
    this.bias = options.bias ?? 'none';
    if (this.bias !== 'none') fail('bias', '"none" (training base biases with LoRA is not supported yet)', this.bias);
    this.useRslora = options.useRslora ?? false;
    if (typeof this.useRslora !== 'boolean') fail('useRslora', 'true or false', this.useRslora);
    this.initLoraWeights = options.initLoraWeights ?? true;
    if (![true, false, 'gaussian'].includes(this.initLoraWeights))
      fail('initLoraWeights', "true, false or 'gaussian'", this.initLoraWeights);
    const layers = options.layersToTransform ?? null;
    this.layersToTransform = layers === null ? null : typeof layers === 'number' ? [layers] : [...layers];
    if (this.layersToTransform && !this.layersToTransform.every((l) => Number.isInteger(l) && l >= 0)) {
      fail('layersToTransform', 'layer indices (non-negative integers)', layers);
    }
    if (this.layersToTransform && typeof this.targetModules === 'string' && this.targetModules !== 'all-linear') {
      throw new Error('LoraConfig.layersToTransform: cannot be combined with a regex targetModules (as in peft)');
    }
    this.rankPattern = checkPattern('rankPattern', options.rankPattern ?? {}, positiveInteger, 'a positive integer');
    // a scale alpha / r of NaN or Infinity would give NaN logits with no error
    this.alphaPattern = checkPattern(
      'alphaPattern',
      options.alphaPattern ?? {},
      (value) => typeof value === 'number' && Number.isFinite(value) && value > 0,
      'a finite positive number',
    );
    this.modulesToSave = options.modulesToSave ?? null;
    this.taskType = options.taskType ?? null;
    this.initSeed = options.initSeed ?? 0;
  }

  /** The adapter_config.json peft 0.21 writes for this config (every field, snake_case). */
  toJson(host: PeftHost, _adapterName?: string): Record<string, unknown> {
    const targets = this.targetModules ?? DEFAULT_TARGET_MODULES[host.config.modelType] ?? null;
    const conv1d = [...host.linears.values()].some((l) => l.layout === 'conv1d');
    return {
      alora_invocation_tokens: null,
      alpha_pattern: { ...this.alphaPattern },
      arrow_config: null,
      auto_mapping: null,
      base_model_name_or_path: null,
      bias: this.bias,
      corda_config: null,
      ensure_weight_tying: false,
      eva_config: null,
      exclude_modules: Array.isArray(this.excludeModules) ? [...this.excludeModules].sort() : this.excludeModules,
      fan_in_fan_out: this.fanInFanOut || conv1d,
      inference_mode: true,
      init_lora_weights: this.initLoraWeights,
      kasa_config: null,
      layer_replication: null,
      layers_pattern: null,
      layers_to_transform: this.layersToTransform ? [...this.layersToTransform] : null,
      loftq_config: {},
      lora_alpha: this.loraAlpha,
      lora_bias: false,
      lora_dropout: this.loraDropout,
      lora_ga_config: null,
      megatron_config: null,
      megatron_core: 'megatron.core',
      modules_to_save: this.modulesToSave ? [...this.modulesToSave] : null,
      monteclora_config: null,
      peft_type: this.peftType,
      peft_version: '0.21.0',
      qalora_group_size: 16,
      r: this.r,
      rank_pattern: { ...this.rankPattern },
      revision: null,
      target_modules: Array.isArray(targets) ? [...targets].sort() : targets,
      target_parameters: null,
      task_type: this.taskType,
      trainable_token_indices: null,
      use_bdlora: null,
      use_dora: false,
      use_qalora: false,
      use_rslora: this.useRslora,
      velora_config: null,
    };
  }

  /** Reads an adapter_config.json written by peft or by us; features we lack are refused by name. */
  static fromJson(json: Record<string, unknown>, source = 'adapter_config.json'): LoraConfig {
    const unsupported: [string, (v: unknown) => boolean][] = [
      ['use_dora', (v) => v === true],
      ['lora_bias', (v) => v === true],
      ['use_qalora', (v) => v === true],
      ['layer_replication', (v) => v != null],
      ['trainable_token_indices', (v) => v != null],
      ['target_parameters', (v) => v != null],
      ['alora_invocation_tokens', (v) => v != null],
      ['bias', (v) => v != null && v !== 'none'],
    ];
    for (const [field, present] of unsupported) {
      if (present(json[field]))
        throw new Error(`${source}: "${field}": ${preview(json[field])} is not supported by @peft/lora`);
    }
    // data-dependent inits (pissa, olora, ...) only shape the start of training: a saved adapter
    // of any init is plain A and B, so they read as the default
    const init = json.init_lora_weights;
    try {
      return new LoraConfig({
        r: json.r as number,
        loraAlpha: json.lora_alpha as number,
        loraDropout: (json.lora_dropout as number) ?? 0,
        targetModules: (json.target_modules as TargetModules | null) ?? null,
        excludeModules: (json.exclude_modules as TargetModules | null) ?? null,
        fanInFanOut: (json.fan_in_fan_out as boolean) ?? false,
        useRslora: (json.use_rslora as boolean) ?? false,
        initLoraWeights: init === true || init === false || init === 'gaussian' ? init : true,
        layersToTransform: (json.layers_to_transform as number[] | number | null) ?? null,
        rankPattern: (json.rank_pattern as Record<string, number>) ?? {},
        alphaPattern: (json.alpha_pattern as Record<string, number>) ?? {},
        modulesToSave: (json.modules_to_save as string[] | null) ?? null,
        taskType: (json.task_type as string | null) ?? null,
      });
    } catch (error) {
      throw new Error(`${source}: ${(error as Error).message}`);
    }
  }
}
