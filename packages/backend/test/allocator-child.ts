// Run by allocator.test.ts in a fresh process: selects the tensorflow backend, then makes a 64 MB
// result ten times and prints the allocator's line and the page faults of the last eight as JSON.
import * as tf from '@tensorflow/tfjs-core';

import { ALLOCATOR_ENV, allocatorChoice } from '../src/allocator.js';
import { selectBackend } from '../src/index.js';

await selectBackend({ backend: 'tensorflow', warnIfSlow: false });
const x = tf.zeros([16, 2 ** 20]);
const make = (): void => tf.add(x, 1).dispose(); // eager: libtensorflow ran the op before add returns
make();
make();
const before = process.resourceUsage().minorPageFault;
for (let i = 0; i < 8; i++) make();
const faults = process.resourceUsage().minorPageFault - before;
console.log(JSON.stringify({ line: allocatorChoice(), env: process.env[ALLOCATOR_ENV] ?? null, faults }));
