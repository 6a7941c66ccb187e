// Child of adapter-kill.test.ts: saves two versions of a LoRA adapter (A: alpha 8, B: alpha 16,
// other weights) over one folder in turn, until it is killed. Says on stdout `ready`, then
// `saving <version>` and `saved <version>` around each save.
import { getPeftModel } from '@peft/core';
import { LoraConfig } from '@peft/lora';
import { loadPretrained } from '@peft/models';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';

import { killLoopAdapter, type Version } from './versions.js';

const [folder, fixture, first] = process.argv.slice(2) as [string, string, Version];
await tf.setBackend('cpu');
const models = {
  A: getPeftModel(await loadPretrained(fixture), new LoraConfig(killLoopAdapter('A'))),
  B: getPeftModel(await loadPretrained(fixture), new LoraConfig(killLoopAdapter('B'))),
};
process.stdout.write('ready\n');
for (let version: Version = first; ; version = version === 'A' ? 'B' : 'A') {
  process.stdout.write(`saving ${version}\n`);
  await models[version].saveAdapter(folder);
  process.stdout.write(`saved ${version}\n`);
}
