// The prefix tuner is @peft/core's PrefixTuner (prefixMethod, PREFIX_TUNING), shared with P-tuning
// v2; what only prefix tuning offers is dropping the reparameterisation MLP once trained.
import type { PeftModel, PrefixTuner } from '@peft/core';

/**
 * Replaces the reparameterisation MLP of a prefix adapter by the prefix it produces: the file and
 * the outputs stay the same, inference needs no MLP, and the adapter holds P·L·2·kvDim values.
 */
export function bake(model: PeftModel, adapterName = model.activeAdapter ?? 'default'): void {
  const tuner = model.tuner(adapterName) as PrefixTuner;
  if (typeof tuner.bake !== 'function') throw new Error(`adapter "${adapterName}" is not a prefix adapter`);
  tuner.bake();
}
