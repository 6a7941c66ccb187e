export { PTuningV2Config } from './v2.js';
export type { PTuningV2ConfigOptions } from './v2.js';
