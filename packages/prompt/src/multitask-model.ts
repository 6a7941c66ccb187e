// The multi-task prompt-tuning tuner: @peft/core's PromptTuner over a MultitaskPrompt.
import { promptMethod, type PeftMethod } from '@peft/core';

import { MultitaskPromptTuningConfig } from './multitask-config.js';
import { MultitaskPrompt } from './multitask-encoder.js';

export const multitaskMethod: PeftMethod<MultitaskPromptTuningConfig> = promptMethod(
  'MULTITASK_PROMPT_TUNING',
  (json, source) => MultitaskPromptTuningConfig.fromJson(json, source),
  (host, config) => new MultitaskPrompt(host, config),
);
