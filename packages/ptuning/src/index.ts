import { prefixMethod, registerPeftMethod } from '@peft/core';

import { pTuningMethod } from './model.js';

export { PTuningConfig } from './config.js';
export type { EncoderType, PTuningConfigOptions } from './config.js';
export { pTuningMethod } from './model.js';
export { templateExample } from './template.js';
export type { TemplateOptions, TemplatePart } from './template.js';
export { PTuningV2Config } from './v2-config.js';
export type { PTuningV2ConfigOptions } from './v2-config.js';

registerPeftMethod(pTuningMethod);
// P-tuning v2 is saved as PREFIX_TUNING: the same method @peft/prefix registers
registerPeftMethod(prefixMethod);
