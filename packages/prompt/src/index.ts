export { PromptTuningConfig, promptTuningMethod } from './config.js';
export type { PromptTokenizer, PromptTuningConfigOptions, PromptTuningInit } from './config.js';
export { MultitaskPromptTuningConfig, balanceTasks, evaluatePerTask, multitaskMethod } from './multitask.js';
export type { MultitaskPromptTuningConfigOptions } from './multitask.js';
