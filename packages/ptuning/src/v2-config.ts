// P-tuning v2 (Liu et al., 2022): deep prompts, a trainable key/value prefix in every layer, with
// no reparameterisation by default, dropout on the prefix, and a classification head instead of a
// verbaliser (sequence or token classification). Saved as peft's PREFIX_TUNING plus the head, so
// Python peft loads it. The prefix machinery comes from @peft/core.
import { PrefixConfig, preview, type PrefixOptions } from '@peft/core';

export interface PTuningV2ConfigOptions extends Omit<PrefixOptions, 'taskType'> {
  /** The head trained with the prompts (default sequence classification, the paper's setting). */
  task?: 'sequence-classification' | 'token-classification' | 'causal-lm';
}

const TASK_TYPES = {
  'sequence-classification': 'SEQ_CLS',
  'token-classification': 'TOKEN_CLS',
  'causal-lm': 'CAUSAL_LM',
} as const;

export class PTuningV2Config extends PrefixConfig {
  constructor(options: PTuningV2ConfigOptions) {
    const task = options.task ?? 'sequence-classification';
    if (!(task in TASK_TYPES))
      throw new Error(
        `PTuningV2Config.task: expected one of ${Object.keys(TASK_TYPES).join(', ')}, got ${preview(task)}`,
      );
    // THUDM's P-tuning v2 applies the model's hidden dropout (0.1) to the prefix
    super({ prefixDropout: 0.1, ...options, taskType: TASK_TYPES[task] }, 'PTuningV2Config');
  }
}
