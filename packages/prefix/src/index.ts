import { prefixMethod, registerPeftMethod } from '@peft/core';

export { PrefixTuningConfig } from './config.js';
export type { PrefixTuningConfigOptions } from './config.js';
export { bake } from './model.js';

registerPeftMethod(prefixMethod);
