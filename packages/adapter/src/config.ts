// BottleneckConfig: AdapterHub's BnConfig (adapters library) fields in camelCase, with its
// defaults, presets and JSON layout, so that its users recognise the files and it loads ours.
import { activation, preview, type PeftConfig, type PeftHost } from '@peft/core';

export type AdapterInit = 'bert' | 'mam_adapter' | 'houlsby';

export interface BottleneckConfigOptions {
  /** Adapter after the attention sublayer (Houlsby). */
  mhAdapter: boolean;
  /** Adapter after the feed-forward sublayer (Houlsby and Pfeiffer). */
  outputAdapter: boolean;
  /** Bottleneck size = hidden size / reductionFactor (floored, at least 1); per layer: { "3": 8, default: 16 }. */
  reductionFactor?: number | Readonly<Record<string, number>>;
  /** Ours: an explicit bottleneck size instead of reductionFactor (saved as the equivalent factor). */
  bottleneckSize?: number;
  /** relu, swish (silu), gelu, gelu_new, tanh, sigmoid, leakyrelu. */
  nonLinearity: string;
  /** Add the residual (and the host's post-LN norm) before the adapter (Pfeiffer). */
  originalLnBefore?: boolean;
  /** The host's residual and norm after the adapter (default true; false is not supported). */
  originalLnAfter?: boolean;
  /** The adapter's own residual is the sublayer output (true) or its input after originalLnBefore (false). */
  residualBeforeLn?: boolean;
  /** Add the adapter's residual before its lnAfter norm. */
  adapterResidualBeforeLn?: boolean;
  /** Trainable LayerNorm at the adapter input / output. */
  lnBefore?: boolean;
  lnAfter?: boolean;
  /** 'bert': N(0, 0.02), biases 0 (AdapterHub's default, near identity); 'mam_adapter': zero up projection (exact identity); 'houlsby': truncated N(0, 0.01). */
  initWeights?: AdapterInit;
  /** Adapter input is the sublayer input, its output added to the sublayer output (ParBn). */
  isParallel?: boolean;
  /** Multiplies the up projection's output. */
  scaling?: number;
  /** Dropout on the adapter output during training. */
  dropout?: number;
  /** Layers without adapters. */
  leaveOut?: readonly number[];
  /** Heads trained in full with the adapter (kept in memory; AdapterHub saves heads separately). */
  modulesToSave?: readonly string[] | null;
  /** Ours: seed of the initial weights. */
  initSeed?: number;
  /** The adapter's name in the file it was read from (adapter_config.json's "name"); set by fromJson. */
  savedName?: string | null;
}

/** The BnConfig fields we do not implement, with the value that means "off". */
const UNSUPPORTED_OFF: Readonly<Record<string, unknown>> = {
  use_gating: false,
  phm_layer: false,
  inv_adapter: null,
  cross_adapter: false,
  stochastic_depth: 0,
};

function fail(field: string, expected: string, got: unknown): never {
  const shown = preview(got);
  throw new Error(`BottleneckConfig.${field}: expected ${expected}, got ${shown}`);
}

export class BottleneckConfig implements PeftConfig {
  readonly peftType = 'BOTTLENECK';
  readonly taskType = null;
  readonly mhAdapter: boolean;
  readonly outputAdapter: boolean;
  readonly reductionFactor: number | Readonly<Record<string, number>>;
  readonly bottleneckSize: number | null;
  readonly nonLinearity: string;
  readonly originalLnBefore: boolean;
  readonly originalLnAfter: boolean;
  readonly residualBeforeLn: boolean;
  readonly adapterResidualBeforeLn: boolean;
  readonly lnBefore: boolean;
  readonly lnAfter: boolean;
  readonly initWeights: AdapterInit;
  readonly isParallel: boolean;
  readonly scaling: number;
  readonly dropout: number;
  readonly leaveOut: readonly number[];
  readonly modulesToSave: readonly string[] | null;
  readonly initSeed: number;
  /** AdapterHub's "name": the adapter loads under it unless given another, and its tensor keys carry it. */
  readonly savedName: string | null;

  constructor(options: BottleneckConfigOptions) {
    this.mhAdapter = options.mhAdapter;
    this.outputAdapter = options.outputAdapter;
    if (typeof this.mhAdapter !== 'boolean') fail('mhAdapter', 'true or false', this.mhAdapter);
    if (typeof this.outputAdapter !== 'boolean') fail('outputAdapter', 'true or false', this.outputAdapter);
    if (!this.mhAdapter && !this.outputAdapter)
      throw new Error('BottleneckConfig: mhAdapter and outputAdapter are both false: no adapter to place');
    this.reductionFactor = options.reductionFactor ?? 16;
    const factors =
      typeof this.reductionFactor === 'number' ? [this.reductionFactor] : Object.values(this.reductionFactor);
    if (typeof this.reductionFactor === 'object' && !('default' in this.reductionFactor)) {
      fail('reductionFactor', 'a number, or per-layer factors with a "default"', this.reductionFactor);
    }
    if (!factors.every((f) => typeof f === 'number' && Number.isFinite(f) && f > 0))
      fail('reductionFactor', 'finite positive numbers', this.reductionFactor);
    this.bottleneckSize = options.bottleneckSize ?? null;
    if (this.bottleneckSize !== null && !(Number.isInteger(this.bottleneckSize) && this.bottleneckSize > 0)) {
      fail('bottleneckSize', 'a positive integer', this.bottleneckSize);
    }
    this.nonLinearity = options.nonLinearity;
    activation(this.nonLinearity, 'BottleneckConfig.nonLinearity'); // an unknown one is refused here, not at attach
    this.originalLnBefore = options.originalLnBefore ?? false;
    this.originalLnAfter = options.originalLnAfter ?? true;
    if (!this.originalLnAfter)
      fail('originalLnAfter', 'true (the host always adds its residual and norm after the adapter)', false);
    this.residualBeforeLn = options.residualBeforeLn ?? true;
    this.adapterResidualBeforeLn = options.adapterResidualBeforeLn ?? false;
    this.lnBefore = options.lnBefore ?? false;
    this.lnAfter = options.lnAfter ?? false;
    this.initWeights = options.initWeights ?? 'bert';
    if (!['bert', 'mam_adapter', 'houlsby'].includes(this.initWeights))
      fail('initWeights', "'bert', 'mam_adapter' or 'houlsby'", this.initWeights);
    this.isParallel = options.isParallel ?? false;
    this.scaling = options.scaling ?? 1;
    if (typeof this.scaling !== 'number' || !Number.isFinite(this.scaling))
      fail('scaling', 'a finite number (learned scalings are not supported)', this.scaling);
    this.dropout = options.dropout ?? 0;
    if (!(this.dropout >= 0 && this.dropout < 1)) fail('dropout', 'a number in [0, 1)', this.dropout);
    const leaveOut = options.leaveOut ?? [];
    if (!Array.isArray(leaveOut) || !leaveOut.every((layer) => Number.isSafeInteger(layer) && layer >= 0))
      fail('leaveOut', 'a list of layer indices (integers from 0)', leaveOut);
    this.leaveOut = [...leaveOut];
    this.modulesToSave = options.modulesToSave ?? null;
    this.initSeed = options.initSeed ?? 0;
    this.savedName = options.savedName ?? null;
  }

  /** Bottleneck size at `layer` for hidden size `hidden` (AdapterHub: int(hidden // factor), at least 1). */
  bottleneck(layer: number, hidden: number): number {
    if (this.bottleneckSize !== null) return this.bottleneckSize;
    const factor =
      typeof this.reductionFactor === 'number'
        ? this.reductionFactor
        : (this.reductionFactor[String(layer)] ?? this.reductionFactor.default!);
    return Math.max(1, Math.floor(hidden / factor));
  }

  /** AdapterHub's adapter_config.json: the BnConfig nested under "config", with the model's facts. */
  toJson(host: PeftHost, adapterName: string): Record<string, unknown> {
    const reduction =
      this.bottleneckSize !== null ? host.config.hiddenSize / this.bottleneckSize : this.reductionFactor;
    return {
      config: {
        adapter_residual_before_ln: this.adapterResidualBeforeLn,
        cross_adapter: false,
        dropout: this.dropout,
        factorized_phm_W: true,
        factorized_phm_rule: false,
        hypercomplex_nonlinearity: 'glorot-uniform',
        init_weights: this.initWeights,
        init_weights_seed: null,
        inv_adapter: null,
        inv_adapter_reduction_factor: null,
        is_parallel: this.isParallel,
        learn_phm: true,
        leave_out: [...this.leaveOut],
        ln_after: this.lnAfter,
        ln_before: this.lnBefore,
        mh_adapter: this.mhAdapter,
        non_linearity: this.nonLinearity,
        original_ln_after: this.originalLnAfter,
        original_ln_before: this.originalLnBefore,
        output_adapter: this.outputAdapter,
        phm_bias: true,
        phm_c_init: 'normal',
        phm_dim: 4,
        phm_init_range: 0.0001,
        phm_layer: false,
        phm_rank: 1,
        reduction_factor: typeof reduction === 'number' ? reduction : { ...reduction },
        residual_before_ln: this.residualBeforeLn,
        scaling: this.scaling,
        shared_W_phm: false,
        shared_phm_rule: true,
        stochastic_depth: 0.0,
        use_gating: false,
      },
      hidden_size: host.config.hiddenSize,
      model_class: host.config.architecture ?? null,
      model_name: '',
      model_type: host.config.modelType,
      name: adapterName,
      version: 'adapters.1.2.0',
    };
  }

  /** Reads AdapterHub's adapter_config.json (or a bare BnConfig dict); features we lack are refused by name. */
  static fromJson(json: Record<string, unknown>, source = 'adapter_config.json'): BottleneckConfig {
    const config = (typeof json.config === 'object' && json.config !== null ? json.config : json) as Record<
      string,
      unknown
    >;
    if (config.architecture != null && config.architecture !== 'bottleneck') {
      throw new Error(`${source}: an AdapterHub ${preview(config.architecture)} adapter, not a bottleneck adapter`);
    }
    for (const [field, off] of Object.entries(UNSUPPORTED_OFF)) {
      if (config[field] !== undefined && config[field] !== off) {
        throw new Error(`${source}: "${field}": ${preview(config[field])} is not supported by @peft/adapter`);
      }
    }
    if (config.residual_before_ln === 'post_add')
      throw new Error(`${source}: "residual_before_ln": "post_add" is not supported by @peft/adapter`);
    const savedName = config === json ? null : (json.name ?? null);
    if (savedName !== null && (typeof savedName !== 'string' || savedName === '')) {
      throw new Error(`${source}: "name": expected the adapter's name (a non-empty string), got ${preview(savedName)}`);
    }
    try {
      return new BottleneckConfig({
        mhAdapter: config.mh_adapter as boolean,
        outputAdapter: config.output_adapter as boolean,
        reductionFactor: config.reduction_factor as number | Record<string, number>,
        nonLinearity: config.non_linearity as string,
        originalLnBefore: (config.original_ln_before as boolean) ?? false,
        originalLnAfter: (config.original_ln_after as boolean) ?? true,
        residualBeforeLn: (config.residual_before_ln as boolean) ?? true,
        adapterResidualBeforeLn: (config.adapter_residual_before_ln as boolean) ?? false,
        lnBefore: (config.ln_before as boolean) ?? false,
        lnAfter: (config.ln_after as boolean) ?? false,
        initWeights: (config.init_weights as AdapterInit) ?? 'bert',
        isParallel: (config.is_parallel as boolean) ?? false,
        scaling: (config.scaling as number) ?? 1,
        dropout: (config.dropout as number) ?? 0,
        leaveOut: (config.leave_out as number[]) ?? [],
        savedName: savedName as string | null,
      });
    } catch (error) {
      throw new Error(`${source}: ${(error as Error).message}`);
    }
  }
}

/** Houlsby et al. 2019 (AdapterHub "double_seq_bn"): after attention and after the FFN, swish. */
export function HoulsbyConfig(options: Partial<BottleneckConfigOptions> = {}): BottleneckConfig {
  return new BottleneckConfig({
    mhAdapter: true,
    outputAdapter: true,
    reductionFactor: 16,
    nonLinearity: 'swish',
    originalLnBefore: false,
    originalLnAfter: true,
    residualBeforeLn: true,
    ...options,
  });
}

/** Pfeiffer et al. 2020 (AdapterHub "seq_bn"): after the FFN only, relu, on the residual stream. */
export function PfeifferConfig(options: Partial<BottleneckConfigOptions> = {}): BottleneckConfig {
  return new BottleneckConfig({
    mhAdapter: false,
    outputAdapter: true,
    reductionFactor: 16,
    nonLinearity: 'relu',
    originalLnBefore: true,
    originalLnAfter: true,
    residualBeforeLn: true,
    ...options,
  });
}
