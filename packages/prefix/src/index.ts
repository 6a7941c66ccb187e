export { PrefixTuningConfig, bake } from './config.js';
export type { PrefixTuningConfigOptions } from './config.js';
