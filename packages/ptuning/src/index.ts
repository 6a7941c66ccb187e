export { PTuningConfig, pTuningMethod, templateExample } from './v1.js';
export type { EncoderType, PTuningConfigOptions, TemplatePart } from './v1.js';
export { PTuningV2Config } from './v2.js';
export type { PTuningV2ConfigOptions } from './v2.js';
