import { registerPeftMethod } from '@peft/core';

import { multitaskMethod } from './multitask-model.js';
import { promptTuningMethod } from './model.js';

export { PromptTuningConfig } from './config.js';
export type { PromptTokenizer, PromptTuningConfigOptions, PromptTuningInit } from './config.js';
export { promptTuningMethod } from './model.js';
export { MultitaskPromptTuningConfig } from './multitask-config.js';
export type { MultitaskPromptTuningConfigOptions } from './multitask-config.js';
export { multitaskMethod } from './multitask-model.js';
export { balanceTasks, evaluatePerTask } from './multitask-training.js';

registerPeftMethod(promptTuningMethod);
registerPeftMethod(multitaskMethod);
