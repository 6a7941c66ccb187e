// PrefixTuningConfig: Li & Liang (2021) prefix tuning with peft's names and defaults. The prefix
// machinery itself lives in @peft/core (P-tuning v2 shares it and peft's file format).
import { PrefixConfig, type PeftModel, type PrefixOptions, type PrefixTuner } from '@peft/core';

export interface PrefixTuningConfigOptions extends PrefixOptions {
  /** Prefix tuning trains the prefix through an MLP (the paper's reparameterisation); peft's default is off. */
  prefixProjection?: boolean;
}

export class PrefixTuningConfig extends PrefixConfig {
  constructor(options: PrefixTuningConfigOptions) {
    super(options, 'PrefixTuningConfig');
  }
}

/**
 * Replaces the reparameterisation MLP of a prefix adapter by the prefix it produces: the file and
 * the outputs stay the same, inference needs no MLP, and the adapter holds P·L·2·kvDim values.
 */
export function bake(model: PeftModel, adapterName = model.activeAdapter ?? 'default'): void {
  const tuner = model.tuner(adapterName) as PrefixTuner;
  if (typeof tuner.bake !== 'function') throw new Error(`adapter "${adapterName}" is not a prefix adapter`);
  tuner.bake();
}
