// `pnpm bench perf`: the work it charges a step with, the ceiling arithmetic, and the harness end to
// end on the tiny shape (our side only: CI has no Python).
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';
import { randomModel } from '@peft/models';

import { medianResult, runPerf } from '../src/perf/perf.js';
import { rateFlag } from '../src/cli.js';
import {
  PERF_METHODS,
  PERF_MODELS,
  forwardMatmuls,
  matmulCeiling,
  perfConfig,
  trainingFlops,
} from '../src/perf/workloads.js';

const gpt2 = PERF_MODELS.find((m) => m.name === 'gpt2')!;
const llama = PERF_MODELS.find((m) => m.name === 'llama')!;
const method = (name: string) => PERF_METHODS.find((m) => m.name === name)!;

describe('training FLOPs', () => {
  // GPT-2 small: 12 blocks of 12·768² linear weights, the 768 x 50,257 head, attention 2 products of
  // 128 x 128 x 768 per sample and layer; 4 x 128 tokens
  const tokens = 512;
  const linear = 2 * tokens * 12 * 12 * 768 * 768;
  const head = 2 * tokens * 768 * 50257;
  const attention = 12 * 2 * 2 * 4 * 128 * 128 * 768;

  it('charges full fine-tuning 3 forwards and a frozen body 2', () => {
    expect(trainingFlops(gpt2, method('full'), 4, 128, 20)).toBe(3 * (linear + head + attention));
    expect(trainingFlops(gpt2, method('lora'), 4, 128, 20)).toBe(2 * (linear + head + attention));
  });

  it('adds virtual tokens to the keys (prefix) or to the whole sequence (prompts)', () => {
    const prefixAttention = 12 * 2 * 2 * 4 * 128 * 148 * 768;
    expect(trainingFlops(gpt2, method('prefix'), 4, 128, 20)).toBe(2 * (linear + head + prefixAttention));
    const rows = 4 * 148;
    const prompt = 2 * (2 * rows * 12 * 12 * 768 * 768 + 2 * rows * 768 * 50257 + 12 * 2 * 2 * 4 * 148 * 148 * 768);
    expect(trainingFlops(gpt2, method('prompt'), 4, 128, 20)).toBe(prompt);
  });

  it('counts grouped-query projections at their own width', () => {
    // Llama: q, o 768², k, v 768·256, gate/up/down 768·2048 each
    const perLayer = 2 * 768 * 768 + 2 * 768 * 256 + 3 * 768 * 2048;
    const expected = 2 * (2 * tokens * 12 * perLayer + 2 * tokens * 768 * 32000 + attention);
    expect(trainingFlops(llama, method('lora'), 4, 128, 20)).toBe(expected);
  });
});

describe('matmul ceiling', () => {
  it('lists each distinct product once with its count per forward', () => {
    expect(forwardMatmuls(llama, 512).map((m) => [...m.shape, m.count])).toEqual([
      [512, 768, 768, 24],
      [512, 768, 256, 24],
      [512, 768, 2048, 24],
      [512, 2048, 768, 12],
      [512, 768, 32000, 1],
    ]);
  });

  it('weighs each product by how often a forward runs it', () => {
    const matmuls = [
      { shape: [10, 10, 10] as [number, number, number], count: 3 },
      { shape: [20, 10, 10] as [number, number, number], count: 1 },
    ];
    // 3 x 2000 + 4000 FLOPs over 3 x 1 + 1 x 4 seconds
    expect(matmulCeiling(matmuls, [1, 4])).toBeCloseTo(10000 / 7, 9);
  });
});

describe('medians over repetitions', () => {
  it('takes the middle of an odd count and the mean of the two middle values of an even one', () => {
    const rep = (seconds: number, rss: number) => ({
      step_seconds: seconds,
      tokens_per_second: 512 / seconds,
      peak_rss_mb: rss,
      runtime: 'x',
    });
    expect(medianResult([rep(1, 10), rep(3, 30), rep(2, 20)])).toMatchObject({
      step_seconds: 2,
      tokens_per_second: 256,
      peak_rss_mb: 20,
      runtime: 'x',
    });
    const even = medianResult([rep(1, 10), rep(2, 20)])!;
    expect(even.step_seconds).toBe(1.5);
    expect(even.peak_rss_mb).toBe(15);
    // throughput from the same median step, not a median of its own
    expect(even.tokens_per_second).toBeCloseTo(512 / 1.5, 10);
    expect(medianResult([])).toBeNull();
  });
});

describe('the harness', () => {
  it('measures the tiny shape in worker processes and writes the report (our side alone)', async () => {
    const out = mkdtempSync(path.join(os.tmpdir(), 'perf-'));
    const code = await runPerf([
      '--models',
      'tiny',
      '--methods',
      'lora,prompt',
      '--reps',
      '1',
      '--steps',
      '1',
      '--rounds',
      '1',
      '--no-python',
      '--out',
      out,
    ]);
    expect(code).toBe(0);
    const json = JSON.parse(readFileSync(path.join(out, 'perf.json'), 'utf8'));
    expect(json.complete).toBe(true);
    const train = json.rows.filter((r: { kind: string }) => r.kind === 'train');
    expect(train.map((r: { method: string }) => r.method)).toEqual(['lora', 'prompt']);
    for (const row of train) {
      expect(row.ours.tokens_per_second).toBeGreaterThan(0);
      expect(row.ours.peak_rss_mb).toBeGreaterThan(0);
      expect(row.python).toBeNull();
    }
    // LoRA r=8 on c_attn of 2 layers of 64: 2 x 8 x (64 + 192); prompt: 20 x 64
    expect(train[0].ours.trainable).toBe(4096);
    expect(train[1].ours.trainable).toBe(1280);
    const lora = json.rows.find((r: { kind: string; method: string }) => r.kind === 'infer' && r.method === 'lora');
    for (const key of [
      'base_forward_ms',
      'adapted_forward_ms',
      'merged_forward_ms',
      'base_decode_ms',
      'merged_decode_ms',
    ])
      expect(lora.ours[key]).toBeGreaterThan(0);
    const report = readFileSync(path.join(out, 'perf.md'), 'utf8');
    expect(report).toContain('Python not run (--no-python): our side alone');
    expect(report).toMatch(/\| LoRA r=8 \(attention\) \| 4,096 \| \d+\.\d \| - \| - \|/);
    // the same work on both sides, said so; and the public-API row beside the worker's
    expect(report).toContain('dropout off on both sides (embd_pdrop, attn_pdrop, resid_pdrop, attention_dropout = 0');
    const check = json.rows.find((r: { kind: string }) => r.kind === 'public');
    expect(check.ours.trainable).toBe(4096);
    expect(check.ours.tokens_per_second).toBeGreaterThan(0);
    expect(check.python).toBeNull();
    expect(report).toMatch(
      /Independent check: LoRA trained as the README does .* ran at \d+\.\d tok\/s, the worker's LoRA row \d+\.\d \(\d+\.\d\dx\)/,
    );
  }, 120_000);
});

describe('--dropout: the models configs both sides build', () => {
  it('sets every dropout field of the architecture, 0 by default; refuses a rate outside [0, 1)', () => {
    const gpt2 = PERF_MODELS.find((m) => m.name === 'gpt2')!;
    const qwen = PERF_MODELS.find((m) => m.name === 'qwen3-0.6b')!;
    expect(perfConfig(gpt2, 0)).toEqual({ ...gpt2.config, embd_pdrop: 0, attn_pdrop: 0, resid_pdrop: 0 });
    expect(perfConfig(qwen, 0.1)).toEqual({ ...qwen.config, attention_dropout: 0.1 });
    // the host reads them: GPT-2 without the fields would train with transformers' default 0.1
    expect(randomModel(perfConfig(gpt2, 0)).dropoutRates).toEqual({
      embedding: 0,
      attention: 0,
      residual: 0,
      classifier: 0,
    });
    expect(randomModel(gpt2.config).dropoutRates.residual).toBe(0.1);
    expect(rateFlag('dropout', '0.1')).toBe(0.1);
    for (const bad of ['1', '-0.1', 'x', ''])
      expect(() => rateFlag('dropout', bad)).toThrow(
        `--dropout: expected a rate from 0 up to (not including) 1, got "${bad}"`,
      );
  });
});
