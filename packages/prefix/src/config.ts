// PrefixTuningConfig: Li & Liang (2021) prefix tuning with peft's names and defaults. The fields,
// their validation and peft's JSON come from @peft/core's PrefixConfig, which P-tuning v2 shares.
import { PrefixConfig, type PrefixOptions } from '@peft/core';

export interface PrefixTuningConfigOptions extends PrefixOptions {
  /** Prefix tuning trains the prefix through an MLP (the paper's reparameterisation); peft's default is off. */
  prefixProjection?: boolean;
}

export class PrefixTuningConfig extends PrefixConfig {
  constructor(options: PrefixTuningConfigOptions) {
    super(options, 'PrefixTuningConfig');
  }
}
