// The prompt-tuning tuner: @peft/core's PromptTuner over a trainable table [P, d], started from the
// config's initialisation; saved and loaded as that table (peft's prompt_embeddings).
import { PromptTable, promptMethod, type PeftMethod } from '@peft/core';

import { PromptTuningConfig } from './config.js';

export const promptTuningMethod: PeftMethod<PromptTuningConfig> = promptMethod(
  'PROMPT_TUNING',
  (json, source) => PromptTuningConfig.fromJson(json, source),
  (host, config) => new PromptTable(config.initialPrompt(host)),
);
