// PromptTuningConfig: Lester et al. (2021) prompt tuning with peft's names: a few trainable "soft"
// token embeddings in front of the input, the model untouched.
import {
  preview,
  promptFromTokens,
  promptLearningJson,
  seededNormal,
  type PeftConfig,
  type PeftHost,
} from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

export type PromptTuningInit = 'RANDOM' | 'TEXT' | 'SAMPLE_VOCAB';

/** What TEXT initialisation needs of a tokenizer (@peft/models' HfTokenizer has it). */
export interface PromptTokenizer {
  encode(text: string): { ids: number[] };
}

export interface PromptTuningConfigOptions {
  numVirtualTokens: number;
  /** RANDOM: N(0, 1) (torch's nn.Embedding); TEXT: the embeddings of a text's tokens; SAMPLE_VOCAB: random vocabulary rows. */
  promptTuningInit?: PromptTuningInit;
  promptTuningInitText?: string | null;
  /** The host's tokenizer, for TEXT. */
  tokenizer?: PromptTokenizer;
  taskType?: string | null;
  modulesToSave?: readonly string[] | null;
  initSeed?: number;
}

export class PromptTuningConfig implements PeftConfig {
  readonly peftType = 'PROMPT_TUNING';
  readonly numVirtualTokens: number;
  readonly promptTuningInit: PromptTuningInit;
  readonly promptTuningInitText: string | null;
  readonly tokenizer: PromptTokenizer | null;
  readonly taskType: string | null;
  readonly modulesToSave: readonly string[] | null;
  readonly initSeed: number;

  constructor(options: PromptTuningConfigOptions) {
    this.numVirtualTokens = options.numVirtualTokens;
    if (!(Number.isInteger(this.numVirtualTokens) && this.numVirtualTokens > 0)) {
      throw new Error(
        `PromptTuningConfig.numVirtualTokens: expected a positive integer, got ${preview(this.numVirtualTokens)}`,
      );
    }
    this.promptTuningInit = options.promptTuningInit ?? 'RANDOM';
    if (!['RANDOM', 'TEXT', 'SAMPLE_VOCAB'].includes(this.promptTuningInit)) {
      throw new Error(
        `PromptTuningConfig.promptTuningInit: expected RANDOM, TEXT or SAMPLE_VOCAB, got ${preview(this.promptTuningInit)}`,
      );
    }
    this.promptTuningInitText = options.promptTuningInitText ?? null;
    this.tokenizer = options.tokenizer ?? null;
    if (this.promptTuningInit === 'TEXT' && (!this.promptTuningInitText || !this.tokenizer)) {
      throw new Error('PromptTuningConfig: promptTuningInit TEXT needs promptTuningInitText and the tokenizer');
    }
    this.taskType = options.taskType ?? null;
    this.modulesToSave = options.modulesToSave ?? null;
    this.initSeed = options.initSeed ?? 0;
  }

  /** The starting prompt [P, d]. */
  initialPrompt(host: PeftHost): tf.Tensor2D {
    const P = this.numVirtualTokens;
    if (this.promptTuningInit === 'TEXT')
      return promptFromTokens(host, this.tokenizer!.encode(this.promptTuningInitText!).ids, P);
    if (this.promptTuningInit === 'SAMPLE_VOCAB') {
      const ids = tf.tidy(() =>
        Array.from(tf.randomUniform([P], 0, host.config.vocabSize, 'int32', this.initSeed).dataSync()),
      );
      return promptFromTokens(host, ids, P);
    }
    return seededNormal([P, host.config.hiddenSize], 0, 1, this.initSeed) as tf.Tensor2D;
  }

  toJson(host: PeftHost): Record<string, unknown> {
    return {
      ...promptLearningJson(host, this),
      prompt_tuning_init: this.promptTuningInit,
      prompt_tuning_init_text: this.promptTuningInitText,
      tokenizer_kwargs: null,
      tokenizer_name_or_path: null,
    };
  }

  static fromJson(json: Record<string, unknown>, source = 'adapter_config.json'): PromptTuningConfig {
    try {
      // a saved prompt is the trained table: its initialisation no longer matters
      return new PromptTuningConfig({
        numVirtualTokens: json.num_virtual_tokens as number,
        taskType: (json.task_type as string | null) ?? null,
        modulesToSave: (json.modules_to_save as string[] | null) ?? null,
      });
    } catch (error) {
      throw new Error(`${source}: ${(error as Error).message}`);
    }
  }
}
