// LoRA on a GPT-2-small-shaped model (124M parameters, random weights), batch 4 x 128, r=8 on
// c_attn, on the fastest backend, beside Python peft + torch on the same shapes and threads:
// training tokens/s and peak RSS against full fine-tuning, and inference latency of the base model,
// the unmerged adapter and the merged one. Each configuration runs in its own process, so each peak
// RSS is its own. A benchmark, not a test.
//
//   pnpm bench:lora
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { selectBackend } from '@peft/backend';
import { fullFineTuning, getPeftModel, train, type Example, type TrainableModel } from '@peft/core';
import { GPT2_SMALL, randomGpt2 } from '@peft/models';

import { LoraConfig } from '../src/index.js';

const BATCH = 4;
const SEQUENCE = 128;
const STEPS = 5;
const root = path.resolve(import.meta.dirname, '../../..');

type Mode = 'lora' | 'full' | 'inference';
interface Figures {
  tokens_per_second?: number;
  trainable?: number;
  base_ms?: number;
  unmerged_ms?: number;
  merged_ms?: number;
  peak_rss_mb: number;
  backend?: string;
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function worker(mode: Mode): Promise<Figures> {
  const backend = await selectBackend();
  const host = randomGpt2(GPT2_SMALL);
  const figures: Figures = { peak_rss_mb: 0, backend: backend.name };
  if (mode === 'inference') {
    const ids = [Array.from({ length: SEQUENCE }, (_, i) => (i * 7919) % GPT2_SMALL.vocab)];
    const once = (): number => {
      const start = performance.now();
      const { logits } = host.forward({ inputIds: ids });
      logits.dataSync();
      logits.dispose();
      return performance.now() - start;
    };
    const model = getPeftModel(host, new LoraConfig({ r: 8, loraAlpha: 16, targetModules: ['c_attn'], initLoraWeights: false }));
    // interleaved rounds, so that drift of the machine falls on all three alike
    const base: number[] = [];
    const unmerged: number[] = [];
    const merged: number[] = [];
    for (let round = 0; round < 25; round++) {
      const b = model.withAdapterDisabled(once);
      const u = once();
      model.merge();
      const m = once();
      model.unmerge();
      if (round >= 3) {
        base.push(b);
        unmerged.push(u);
        merged.push(m);
      }
    }
    figures.base_ms = median(base);
    figures.unmerged_ms = median(unmerged);
    figures.merged_ms = median(merged);
  } else {
    const model: TrainableModel =
      mode === 'lora' ? getPeftModel(host, new LoraConfig({ r: 8, loraAlpha: 16, targetModules: ['c_attn'] })) : fullFineTuning(host);
    figures.trainable = [...model.trainableVariables().values()].reduce((n, v) => n + v.size, 0);
    const data: Example[] = Array.from({ length: BATCH * (STEPS + 1) }, (_, i) => {
      const ids = Array.from({ length: SEQUENCE }, (_, t) => (t * 31 + i * 17) % GPT2_SMALL.vocab);
      return { inputIds: ids, labels: ids };
    });
    const seconds: number[] = [];
    await train(model, {
      data,
      task: 'causal-lm',
      padTokenId: 0,
      batchSize: BATCH,
      learningRate: 1e-4,
      schedule: 'constant',
      bucketByLength: false,
      onStep: ({ step, seconds: s }) => step > 1 && seconds.push(s),
    });
    figures.tokens_per_second = (BATCH * SEQUENCE * seconds.length) / seconds.reduce((a, b) => a + b, 0);
  }
  figures.peak_rss_mb = process.resourceUsage().maxRSS / 1024;
  return figures;
}

function run(command: string, args: string[]): Figures {
  const result = spawnSync(command, args, { encoding: 'utf8', env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '3' }, maxBuffer: 1 << 26 });
  const line = result.stdout.trim().split('\n').at(-1) ?? '';
  if (result.status !== 0 || !line.startsWith('{')) throw new Error(`${command} ${args.join(' ')} failed: ${result.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  return JSON.parse(line) as Figures;
}

async function main(): Promise<void> {
  const mode = process.argv[2] as Mode | undefined;
  if (mode) {
    console.log(JSON.stringify(await worker(mode)));
    return;
  }
  const self = [path.join(root, 'node_modules/.bin/tsx'), import.meta.filename];
  const ours = Object.fromEntries((['lora', 'full', 'inference'] as const).map((m) => [m, run(self[0]!, [self[1]!, m])])) as Record<Mode, Figures>;
  const python = path.join(root, 'oracle/.venv/bin/python');
  const threads = String(os.availableParallelism());
  const theirs = existsSync(python)
    ? (Object.fromEntries((['lora', 'full', 'inference'] as const).map((m) => [m, run(python, [path.join(root, 'oracle/bench_lora.py'), '--mode', m, '--threads', threads])])) as Record<Mode, Figures>)
    : null;
  console.log(`GPT-2 small shape (124M, random weights), batch ${BATCH} x ${SEQUENCE}, LoRA r=8 on c_attn, AdamW; ${threads} CPUs; ours on ${ours.lora.backend}`);
  const row = (label: string, a: number | undefined, b: number | undefined, unit: string): void =>
    console.log(`  ${label.padEnd(34)}${`${a?.toFixed(1)} ${unit}`.padStart(16)}${b === undefined ? '' : `${`${b.toFixed(1)} ${unit}`.padStart(16)}${`${(a! / b).toFixed(2)}x`.padStart(9)}`}`);
  console.log(`  ${''.padEnd(34)}${'@peft (tfjs)'.padStart(16)}${theirs ? `${'peft (torch)'.padStart(16)}${'ratio'.padStart(9)}` : ''}`);
  row('LoRA training', ours.lora.tokens_per_second, theirs?.lora.tokens_per_second, 'tok/s');
  row('full fine-tuning', ours.full.tokens_per_second, theirs?.full.tokens_per_second, 'tok/s');
  row('LoRA peak RSS', ours.lora.peak_rss_mb, theirs?.lora.peak_rss_mb, 'MB');
  row('full fine-tuning peak RSS', ours.full.peak_rss_mb, theirs?.full.peak_rss_mb, 'MB');
  row('forward, base (1 x 128)', ours.inference.base_ms, theirs?.inference.base_ms, 'ms');
  row('forward, LoRA unmerged', ours.inference.unmerged_ms, theirs?.inference.unmerged_ms, 'ms');
  row('forward, LoRA merged', ours.inference.merged_ms, theirs?.inference.merged_ms, 'ms');
  const i = ours.inference;
  console.log(`  ours: LoRA/full throughput ${(ours.lora.tokens_per_second! / ours.full.tokens_per_second!).toFixed(2)}x, ` +
    `LoRA/full peak RSS ${((100 * ours.lora.peak_rss_mb) / ours.full.peak_rss_mb).toFixed(0)}%, ` +
    `unmerged overhead ${((100 * (i.unmerged_ms! - i.base_ms!)) / i.base_ms!).toFixed(1)}%, merged ${((100 * (i.merged_ms! - i.base_ms!)) / i.base_ms!).toFixed(1)}%; ` +
    `trainable ${ours.lora.trainable!.toLocaleString('en-US')} of ${ours.full.trainable!.toLocaleString('en-US')}`);
}

await main();
