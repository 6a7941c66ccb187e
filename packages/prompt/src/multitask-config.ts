// MultitaskPromptTuningConfig: multi-task prompt tuning (Wang et al., 2023; peft's
// MULTITASK_PROMPT_TUNING): one shared prompt modulated per task by a low-rank multiplicative
// matrix, prompt_t = P ⊙ (cols_t · rows_t); each sample of a batch uses its own task's prompt
// (taskIds), so one frozen model serves every task.
import { preview, promptLearningJson, type PeftConfig, type PeftHost } from '@peft/core';

export interface MultitaskPromptTuningConfigOptions {
  numVirtualTokens: number;
  numTasks: number;
  /** Rank of each task's modulation (default 1). */
  numRanks?: number;
  taskType?: string | null;
  modulesToSave?: readonly string[] | null;
  initSeed?: number;
}

export class MultitaskPromptTuningConfig implements PeftConfig {
  readonly peftType = 'MULTITASK_PROMPT_TUNING';
  readonly numVirtualTokens: number;
  readonly numTasks: number;
  readonly numRanks: number;
  readonly taskType: string | null;
  readonly modulesToSave: readonly string[] | null;
  readonly initSeed: number;

  constructor(options: MultitaskPromptTuningConfigOptions) {
    const positive = (field: string, value: unknown): void => {
      if (!(Number.isInteger(value) && (value as number) > 0)) {
        throw new Error(`MultitaskPromptTuningConfig.${field}: expected a positive integer, got ${preview(value)}`);
      }
    };
    this.numVirtualTokens = options.numVirtualTokens;
    this.numTasks = options.numTasks;
    this.numRanks = options.numRanks ?? 1;
    positive('numVirtualTokens', this.numVirtualTokens);
    positive('numTasks', this.numTasks);
    positive('numRanks', this.numRanks);
    this.taskType = options.taskType ?? null;
    this.modulesToSave = options.modulesToSave ?? null;
    this.initSeed = options.initSeed ?? 0;
  }

  toJson(host: PeftHost): Record<string, unknown> {
    return {
      ...promptLearningJson(host, this),
      num_ranks: this.numRanks,
      num_tasks: this.numTasks,
      prompt_tuning_init: 'RANDOM',
      prompt_tuning_init_state_dict_path: null,
      prompt_tuning_init_task: 0,
      prompt_tuning_init_text: null,
      tokenizer_kwargs: null,
      tokenizer_name_or_path: null,
    };
  }

  static fromJson(json: Record<string, unknown>, source = 'adapter_config.json'): MultitaskPromptTuningConfig {
    try {
      return new MultitaskPromptTuningConfig({
        numVirtualTokens: json.num_virtual_tokens as number,
        numTasks: json.num_tasks as number,
        numRanks: (json.num_ranks as number) ?? 1,
        taskType: (json.task_type as string | null) ?? null,
        modulesToSave: (json.modules_to_save as string[] | null) ?? null,
      });
    } catch (error) {
      throw new Error(`${source}: ${(error as Error).message}`);
    }
  }
}
