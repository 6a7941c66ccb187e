import { registerPeftMethod } from '@peft/core';

import { bottleneckMethod } from './model.js';

export { BottleneckConfig, HoulsbyConfig, PfeifferConfig } from './config.js';
export type { AdapterInit, BottleneckConfigOptions } from './config.js';
export { BottleneckModule } from './layer.js';
export { ADAPTERHUB_WEIGHTS_FILE, BottleneckTuner, adapterPath, bottleneckMethod } from './model.js';

registerPeftMethod(bottleneckMethod);
