// The multi-task prompt-tuning tuner: @peft/core's PromptTuner over a MultitaskPrompt.
import { PROMPT_EMBEDDINGS, promptMethod, type PeftMethod } from '@peft/core';

import { MultitaskPromptTuningConfig } from './multitask-config.js';
import { MultitaskPrompt } from './multitask-encoder.js';

export const multitaskMethod: PeftMethod<MultitaskPromptTuningConfig> = promptMethod(
  'MULTITASK_PROMPT_TUNING',
  (json, source) => MultitaskPromptTuningConfig.fromJson(json, source),
  (host, config) => new MultitaskPrompt(host, config),
  () => 'prepend',
  (host, { numVirtualTokens: P, numTasks, numRanks }) => {
    const d = host.config.hiddenSize;
    return [
      { key: PROMPT_EMBEDDINGS, shape: [P, d], fields: `num_virtual_tokens ${P} x the model's hidden size ${d}` },
      {
        key: 'prefix_task_cols',
        shape: [numTasks, P, numRanks],
        fields: `num_tasks ${numTasks} x num_virtual_tokens ${P} x num_ranks ${numRanks}`,
      },
      {
        key: 'prefix_task_rows',
        shape: [numTasks, numRanks, d],
        fields: `num_tasks ${numTasks} x num_ranks ${numRanks} x hidden size ${d}`,
      },
    ];
  },
);
