// The P-tuning v1 tuner: @peft/core's PromptTuner over the prompt encoder, or over a plain table
// for a loaded adapter; the virtual tokens are prepended (peft) or fill the template's placeholders.
import { PromptTable, promptMethod, type PeftMethod } from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

import { PTuningConfig } from './config.js';
import { PromptEncoder } from './encoder.js';

export const pTuningMethod: PeftMethod<PTuningConfig> = promptMethod(
  'P_TUNING',
  (json, source) => PTuningConfig.fromJson(json, source),
  (host, config) =>
    config.baked
      ? new PromptTable(tf.zeros([config.numVirtualTokens, host.config.hiddenSize]) as tf.Tensor2D)
      : new PromptEncoder(host, config),
  (config) => (config.placeholderTokenId === null ? 'prepend' : { placeholderTokenId: config.placeholderTokenId }),
);
