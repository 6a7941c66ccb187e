import { registerPeftMethod } from '@peft/core';

import { loraMethod } from './model.js';

export { DEFAULT_TARGET_MODULES, LoraConfig } from './config.js';
export type { LoraConfigOptions, LoraInit, TargetModules } from './config.js';
export { LoraLayer } from './layer.js';
export type { LoraLayerOptions } from './layer.js';
export { LoraTuner, loraMethod, resolveTargets } from './model.js';

registerPeftMethod(loraMethod);
