// A LoRA training step on the wasm backend (random GPT-2, 4 layers x 256, batch 8 x 64): ms per
// step, to compare wasm changes against (#11). Not part of the bench.
//
//   pnpm --filter @peft/bench wasm-step
import { selectBackend } from '@peft/backend';
import { getPeftModel, train } from '@peft/core';
import { LoraConfig } from '@peft/lora';
import { randomGpt2 } from '@peft/models';
await selectBackend({ backend: 'wasm', warnIfSlow: false });
const host = randomGpt2({ layers: 4, hidden: 256, heads: 4, vocab: 4096, positions: 128 });
const model = getPeftModel(host, new LoraConfig({ r: 8, loraAlpha: 16, targetModules: ['c_attn'], taskType: 'CAUSAL_LM' }));
const data = Array.from({ length: 64 }, (_, i) => ({ inputIds: Array.from({ length: 64 }, (_, t) => (i * 7 + t * 13) % 4096), labels: Array.from({ length: 64 }, (_, t) => (i * 7 + t * 13 + 1) % 4096) }));
const stamps: number[] = [];
const r = await train(model, { data, task: 'causal-lm', padTokenId: 0, batchSize: 8, maxSteps: 6, learningRate: 1e-3, onStep: () => stamps.push(performance.now()) });
const gaps = stamps.slice(1).map((t, i) => t - stamps[i]!);
console.log(`wasm LoRA step (4x256, batch 8x64): ${gaps.map((g) => g.toFixed(0)).join(' ')} ms; tok/s ${r.tokensPerSecond.toFixed(0)}`);
