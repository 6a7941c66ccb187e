// A LoRA training step (random GPT-2, 4 layers x 256, batch 8 x 64) on one backend: ms per step,
// to compare backend changes against (#11). Not part of the bench.
//
//   pnpm --filter @peft/bench lora-step [wasm|tensorflow|cpu] [steps]
import { parseBackendRequest, selectBackend } from '@peft/backend';
import { getPeftModel, train } from '@peft/core';
import { LoraConfig } from '@peft/lora';
import { randomGpt2 } from '@peft/models';
const backend = await selectBackend({
  backend: parseBackendRequest(process.argv[2] ?? 'wasm', 'backend'),
  warnIfSlow: false,
});
const steps = Number(process.argv[3] ?? 6);
const host = randomGpt2({ layers: 4, hidden: 256, heads: 4, vocab: 4096, positions: 128 });
const model = getPeftModel(
  host,
  new LoraConfig({ r: 8, loraAlpha: 16, targetModules: ['c_attn'], taskType: 'CAUSAL_LM' }),
);
const data = Array.from({ length: 64 }, (_, i) => ({
  inputIds: Array.from({ length: 64 }, (_, t) => (i * 7 + t * 13) % 4096),
  labels: Array.from({ length: 64 }, (_, t) => (i * 7 + t * 13 + 1) % 4096),
}));
const stamps: number[] = [];
const r = await train(model, {
  data,
  task: 'causal-lm',
  padTokenId: 0,
  batchSize: 8,
  maxSteps: steps,
  learningRate: 1e-3,
  onStep: () => stamps.push(performance.now()),
});
const gaps = stamps.slice(1).map((t, i) => t - stamps[i]!);
console.log(
  `${backend.name} LoRA step (4x256, batch 8x64), steps after the first: ${gaps.map((g) => g.toFixed(0)).join(' ')} ms; tok/s ${r.tokensPerSecond.toFixed(0)}`,
);
