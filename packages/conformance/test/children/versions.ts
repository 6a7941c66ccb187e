// The two adapters adapter-kill.test.ts and its child save: the alpha changes, as in issue 23's
// probe, where a mix of one version's weights and the other's config loaded with logits off by 6.6.
import type { LoraConfigOptions } from '@peft/lora';

export type Version = 'A' | 'B';

export function killLoopAdapter(version: Version): LoraConfigOptions {
  return {
    r: 64,
    loraAlpha: version === 'A' ? 8 : 16,
    targetModules: 'all-linear',
    initLoraWeights: false,
    initSeed: version === 'A' ? 1 : 2,
  };
}
