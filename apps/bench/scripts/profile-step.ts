// Where a training step's time goes: tfjs's profiler over steps of one perf workload (random
// weights, batch 4 x 128), kernel time summed per kernel and input shapes, the top rows printed
// beside the step's wall time and allocations. Used to choose what to make fast (#11).
//
//   pnpm --filter @peft/bench profile-step [model=gpt2] [method=lora|decode|forward|forward-<method>] [steps=2] [backend=tensorflow]
// `decode`: the base model generating `steps` tokens after a 128-token prompt, per token (the
// prompt's pass, measured alone, subtracted). `forward`: the base model's pass over one 128-token
// prompt, `steps` times (the perf harness's forward row); `forward-lora` (or another method): the
// same with the method's adapter attached, unmerged.
import { parseBackendRequest, selectBackend } from '@peft/backend';
import { train } from '@peft/core';
import { generate, randomModel } from '@peft/models';
import * as tf from '@tensorflow/tfjs-core';

import { PERF_METHODS, PERF_MODELS, perfConfig, stepExamples } from '../src/perf/workloads.js';

const [modelName = 'gpt2', methodName = 'lora', stepsArg = '2', backendName = 'tensorflow'] = process.argv.slice(2);
await selectBackend({ backend: parseBackendRequest(backendName, 'backend'), warnIfSlow: false });
const model = PERF_MODELS.find((m) => m.name === modelName);
const decode = methodName === 'decode';
// forward: the base model's pass; forward-<method>: with the method's adapter attached (unmerged)
const adapted = methodName.startsWith('forward-') ? methodName.slice('forward-'.length) : null;
const forwardOnly = methodName === 'forward' || adapted !== null;
/** No adapter at all: the base model decoding or running its forward pass. */
const baseOnly = decode || methodName === 'forward';
const method = baseOnly ? PERF_METHODS[0] : PERF_METHODS.find((m) => m.name === (adapted ?? methodName));
if (!model || !method)
  throw new Error(
    `usage: profile-step [${PERF_MODELS.map((m) => m.name).join('|')}] [${PERF_METHODS.map((m) => m.name).join('|')}] [steps]`,
  );
const steps = Number(stepsArg);
const vocab = model.config.vocab_size as number;
const host = randomModel(perfConfig(model, 0)); // dropout off, as the harness by default
const trainable = baseOnly ? { host, trainableVariables: () => new Map() } : method.make(host, model);
const data = stepExamples(4 * (steps + 1), vocab);
const options = {
  task: 'causal-lm' as const,
  padTokenId: 0,
  batchSize: 4,
  learningRate: 1e-4,
  schedule: 'constant' as const,
  bucketByLength: false,
};
const prompt = [data[0]!.inputIds];
const forwardPass = (): void => {
  const { logits } = host.forward({ inputIds: prompt });
  logits.dataSync();
  logits.dispose();
};
// warm-up, not profiled
if (decode) generate(host, { inputIds: prompt, maxNewTokens: 2 });
else if (forwardOnly) for (let i = 0; i < 2; i++) forwardPass();
else await train(trainable, { ...options, data: data.slice(0, 4) });

interface Entry {
  name: string;
  shapes: string;
  ms: number;
  calls: number;
  bytes: number;
}
const byKernel = new Map<string, Entry>();
const byName = new Map<string, Entry>();
let total = 0;
let kernelCalls = 0;

/** Profiles `run`, adding each kernel's time, calls and bytes (times `sign`: -1 subtracts a run). */
async function census(run: () => Promise<void>, sign: 1 | -1): Promise<{ wall: number; peakBytes: number }> {
  const started = performance.now();
  const profile = await tf.profile(run);
  const wall = performance.now() - started;
  for (const kernel of profile.kernels) {
    const ms = (await kernel.kernelTimeMs) as number;
    total += sign * ms;
    kernelCalls += sign;
    const shapes = kernel.inputShapes.map((s) => `[${s}]`).join(' ');
    for (const [map, key] of [
      [byKernel, `${kernel.name} ${shapes}`],
      [byName, kernel.name],
    ] as const) {
      const entry = map.get(key) ?? {
        name: kernel.name,
        shapes: map === byKernel ? shapes : '',
        ms: 0,
        calls: 0,
        bytes: 0,
      };
      entry.ms += sign * ms;
      entry.calls += sign;
      entry.bytes += sign * Math.max(0, kernel.bytesAdded);
      map.set(key, entry);
    }
  }
  return { wall, peakBytes: profile.peakBytes };
}

tf.env().set('CHECK_COMPUTATION_FOR_ERRORS', false); // the check reads every kernel's output back
const usageBefore = process.resourceUsage();
let wall: number;
let peakBytes: number;
if (decode) {
  // per new token: generating steps + 1 tokens less generating 1 (the prompt's pass and its token),
  // as the perf worker measures decoding
  const prefill = await census(async () => void generate(host, { inputIds: prompt, maxNewTokens: 1 }), -1);
  const whole = await census(async () => void generate(host, { inputIds: prompt, maxNewTokens: steps + 1 }), 1);
  wall = whole.wall - prefill.wall;
  peakBytes = whole.peakBytes;
} else if (forwardOnly) {
  ({ wall, peakBytes } = await census(async () => {
    for (let i = 0; i < steps; i++) forwardPass();
  }, 1));
} else {
  ({ wall, peakBytes } = await census(() => train(trainable, { ...options, data: data.slice(4) }).then(() => {}), 1));
}
const usage = process.resourceUsage();

const perStep = (x: number): number => x / steps;
console.log(
  `${model.name} ${decode ? 'decode (per new token, the prompt pass excluded)' : forwardOnly ? `forward (1 x 128 prompt${adapted ? `, ${adapted} attached` : ''})` : method.name} on ${tf.getBackend()}: ${steps} steps, wall ${perStep(wall).toFixed(0)} ms/step, ` +
    `kernels ${perStep(total).toFixed(0)} ms/step (${kernelCalls / steps} kernel calls/step), ` +
    (decode || forwardOnly
      ? '' // the usage counters cover both generations
      : `user ${((usage.userCPUTime - usageBefore.userCPUTime) / 1000 / steps).toFixed(0)} ms, system ${((usage.systemCPUTime - usageBefore.systemCPUTime) / 1000 / steps).toFixed(0)} ms, ` +
        `minor page faults ${((usage.minorPageFault - usageBefore.minorPageFault) / steps).toFixed(0)} per step; `) +
    `tfjs peak tensor bytes ${(peakBytes / 2 ** 20).toFixed(0)} MB (views such as reshapes count again), process RSS now ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MB`,
);
const print = (title: string, entries: Entry[], count: number): void => {
  console.log(`\n${title}`);
  for (const e of entries.sort((a, b) => b.ms - a.ms).slice(0, count)) {
    console.log(
      `  ${perStep(e.ms).toFixed(1).padStart(8)} ms ${((100 * e.ms) / total).toFixed(1).padStart(5)}%  x${String(perStep(e.calls)).padEnd(5)} ${e.name} ${e.shapes}`,
    );
  }
};
print('per kernel:', [...byName.values()], 25);
print('per kernel and input shapes:', [...byKernel.values()], Number(process.env.PROFILE_TOP ?? 30));
