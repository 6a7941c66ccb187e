// End to end: the bench on a tiny random GPT-2 (with a tokenizer trained here) and a few steps per
// method: every output file is written with its schema, failures are contained. Not accuracy.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { selectBackend } from '@peft/backend';
import { loadTokenizer } from '@peft/models';
import { describe, expect, it } from 'vitest';

import {
  METHODS,
  RESULTS_SCHEMA,
  parseBudget,
  parseLearningRates,
  htmlReport,
  jsonlTask,
  markdownReport,
  runBench,
  writeReports,
  type TaskSplits,
} from '../src/index.js';
import { tinyModel } from './fixtures/tiny-model.js';

describe('bench --quick', () => {
  it('runs every method, writes results.json (schema), report.md and report.html', async () => {
    const model = await tinyModel();
    const tokenizer = await loadTokenizer(model);
    const lines = Array.from({ length: 40 }, (_, i) =>
      JSON.stringify({ text: i % 2 ? `win money now ${i}` : `meeting notes for ${i}`, label: i % 2 ? 'spam' : 'ham' }),
    );
    const task: TaskSplits = jsonlTask('toy.jsonl', lines.join('\n'), { tokenizer, maxLength: 40 });
    const out = mkdtempSync(path.join(tmpdir(), 'peft-bench-out-'));
    const backend = await selectBackend({ backend: 'cpu', warnIfSlow: false });
    const results = await runBench(
      {
        modelDirectory: model,
        task,
        methods: METHODS.map((m) => m.name),
        seeds: 1,
        steps: 2,
        batchSize: 4,
        latencyExamples: 1,
        out,
        backend,
      },
      (partial) => writeReports(out, partial),
    );
    expect(results.schema).toBe(RESULTS_SCHEMA);
    const written = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8'));
    expect(written).toMatchObject({
      schema: RESULTS_SCHEMA,
      complete: true,
      budget: { steps: 2, batchSize: 4, seeds: 1 },
    });
    expect(Object.keys(written.runs[0]).sort()).toEqual(
      expect.arrayContaining([
        'method',
        'seed',
        'status',
        'metric',
        'trainableParameters',
        'latencyMs',
        'virtualTokens',
        'adapterBytes',
        'losses',
      ]),
    );
    expect(readFileSync(path.join(out, 'report.md'), 'utf8')).toContain('# @peft bench: toy.jsonl');
    expect(readFileSync(path.join(out, 'report.html'), 'utf8')).toContain('<svg');
    expect(results.complete).toBe(true);
    expect(results.runs.map((r) => r.method)).toEqual(METHODS.map((m) => m.name));
    for (const run of results.runs) {
      expect(run.status, `${run.method}: ${run.error}`).toBe('ok');
      expect(run.metric).toBeGreaterThanOrEqual(0);
      expect(run.latencyMs).toBeGreaterThan(0);
    }
    const summary = Object.fromEntries(results.summary.map((s) => [s.method, s]));
    expect(summary.prompt!.virtualTokens).toBe(10);
    expect(summary.lora!.virtualTokens).toBe(0);
    expect(summary.lora!.mergedLatencyOverheadPct).toBeDefined();
    expect(summary.frozen!.trainableParameters).toBe(0);
    expect(summary.full!.trainableShare).toBeCloseTo(1, 5);
    expect(summary.lora!.adapterBytes).toBeGreaterThan(0);
    // saved adapters reload
    const loraRun = results.runs.find((r) => r.method === 'lora')!;
    expect(readFileSync(path.join(out, loraRun.adapterPath!, 'adapter_config.json'), 'utf8')).toContain(
      '"peft_type": "LORA"',
    );
    expect(markdownReport(results)).toContain('| method | metric |');
    const html = htmlReport(results);
    expect(html).toContain('<svg');
    expect(html).not.toMatch(/https?:\/\/(?!www\.w3\.org)/);
  });

  it('contains a failing method: reported with its reason, the others run', async () => {
    const model = await tinyModel();
    const tokenizer = await loadTokenizer(model);
    const long = Array.from({ length: 20 }, (_, i) => JSON.stringify({ text: 'word '.repeat(60) + i, label: i % 2 }));
    const task = jsonlTask('long.jsonl', long.join('\n'), { tokenizer, maxLength: 60 }); // 60 + 10 virtual > 64 positions
    const out = mkdtempSync(path.join(tmpdir(), 'peft-bench-out-'));
    const backend = await selectBackend({ backend: 'cpu', warnIfSlow: false });
    const results = await runBench({
      modelDirectory: model,
      task,
      methods: ['lora', 'prompt'],
      seeds: 1,
      steps: 1,
      batchSize: 4,
      latencyExamples: 1,
      out,
      backend,
    });
    expect(results.runs.find((r) => r.method === 'lora')!.status).toBe('ok');
    const prompt = results.runs.find((r) => r.method === 'prompt')!;
    expect(prompt.status).toBe('failed');
    expect(prompt.error).toContain("plus the adapter's 10 virtual tokens");
  });
});

describe('--budget', () => {
  it('reads steps or a wall time per run, and refuses anything else', () => {
    expect(parseBudget('150')).toEqual({ steps: 150 });
    expect(parseBudget('90s')).toEqual({ seconds: 90 });
    expect(parseBudget('1.5m')).toEqual({ seconds: 90 });
    for (const bad of ['0', '-3', '1.5', 'ten', '5h', '']) expect(() => parseBudget(bad), bad).toThrow(/--budget/);
  });

  it('--lr reads method=rate pairs, and runBench refuses an unknown method', async () => {
    expect(parseLearningRates('prefix=5e-3, lora=0.001')).toEqual({ prefix: 5e-3, lora: 1e-3 });
    expect(parseLearningRates('')).toEqual({});
    for (const bad of ['prefix', 'prefix=', 'prefix=-1', 'prefix=abc'])
      expect(() => parseLearningRates(bad), bad).toThrow(/--lr/);
    const backend = await selectBackend({ backend: 'cpu', warnIfSlow: false });
    const model = await tinyModel();
    const tokenizer = await loadTokenizer(model);
    const task = jsonlTask(
      'toy.jsonl',
      [0, 1, 0, 1, 0, 1, 0, 1, 0, 1].map((l, i) => JSON.stringify({ text: `text ${i}`, label: l })).join('\n'),
      { tokenizer, maxLength: 20 },
    );
    await expect(
      runBench({
        modelDirectory: model,
        task,
        methods: ['lora'],
        learningRates: { lorra: 1e-3 },
        seeds: 1,
        steps: 1,
        batchSize: 2,
        out: tmpdir(),
        backend,
      }),
    ).rejects.toThrow('--lr: unknown method lorra');
  });

  it('a time budget calibrates each method to its own step time', async () => {
    const model = await tinyModel();
    const tokenizer = await loadTokenizer(model);
    const lines = Array.from({ length: 40 }, (_, i) =>
      JSON.stringify({ text: i % 2 ? `win money now ${i}` : `meeting notes for ${i}`, label: i % 2 }),
    );
    const task = jsonlTask('toy.jsonl', lines.join('\n'), { tokenizer, maxLength: 40 });
    const out = mkdtempSync(path.join(tmpdir(), 'peft-bench-out-'));
    const backend = await selectBackend({ backend: 'cpu', warnIfSlow: false });
    const results = await runBench({
      modelDirectory: model,
      task,
      methods: ['head-only', 'frozen'],
      seeds: 1,
      steps: 0,
      seconds: 0.5,
      batchSize: 4,
      latencyExamples: 1,
      out,
      backend,
    });
    expect(results.budget).toMatchObject({ steps: null, seconds: 0.5 });
    const head = results.runs.find((r) => r.method === 'head-only')!;
    expect(head.status).toBe('ok');
    expect(head.steps).toBeGreaterThan(1);
    expect(head.losses).toHaveLength(head.steps);
    expect(results.runs.find((r) => r.method === 'frozen')!.steps).toBe(0);
  });
});
