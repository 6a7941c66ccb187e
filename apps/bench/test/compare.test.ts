// `pnpm bench compare`: what it gives Python (the batches of every step), how it judges a difference,
// its table, and what it refuses before any work. The Python side itself needs the oracle's virtual
// environments, which CI does not have: the comparison's figures are in the README, made with them.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import type { Example } from '@peft/core';
import { describe, expect, it } from 'vitest';

import {
  compareTable,
  differs,
  keptInReport,
  runCompare,
  type ComparedMethod,
  stepBatches,
  type CompareResults,
  type SideRun,
} from '../src/compare/compare.js';

const examples: Example[] = Array.from({ length: 37 }, (_, i) => ({
  inputIds: Array.from({ length: 2 + ((i * 5) % 11) }, (_, t) => t + 1),
  labels: i % 2,
}));

describe('stepBatches', () => {
  it('names the examples of each step: an epoch covers every example once, the seed orders them', async () => {
    const batches = await stepBatches(examples, 8, 3, 12);
    expect(batches).toHaveLength(12);
    // 37 examples in batches of 8: 5 batches an epoch (the last of 5), then the next epoch
    expect(
      batches
        .slice(0, 5)
        .map((b) => b.length)
        .sort(),
    ).toEqual([5, 8, 8, 8, 8]);
    expect(
      batches
        .slice(0, 5)
        .flat()
        .sort((a, b) => a - b),
    ).toEqual(examples.map((_, i) => i));
    expect(
      batches
        .slice(5, 10)
        .flat()
        .sort((a, b) => a - b),
    ).toEqual(examples.map((_, i) => i));
    expect(batches.slice(5, 10)).not.toEqual(batches.slice(0, 5)); // each epoch its own order
    expect(await stepBatches(examples, 8, 3, 12)).toEqual(batches);
    expect(await stepBatches(examples, 8, 4, 12)).not.toEqual(batches);
    // grouped by length: a batch's lengths are closer together than the data's
    const spread = (ids: number[]) => {
      const lengths = ids.map((i) => examples[i]!.inputIds.length);
      return Math.max(...lengths) - Math.min(...lengths);
    };
    expect(Math.max(...batches.slice(0, 5).map(spread))).toBeLessThan(spread(examples.map((_, i) => i)));
  });
});

describe('keptInReport', () => {
  const entry = (method: string): ComparedMethod => ({
    method,
    label: method,
    kind: 'peft',
    ours: [],
    theirs: [],
    theirLibrary: '',
  });
  const earlier = new Map(['lora', 'houlsby', 'pfeiffer'].map((m) => [m, entry(m)]));
  it('keeps every finished method of the earlier run, asked for again or not, before anything runs', () => {
    // an interrupted run must not write a report without the methods it would have kept further on
    expect(keptInReport(earlier, ['houlsby', 'ptuning-v2'], false).map((m) => m.method)).toEqual([
      'lora',
      'houlsby',
      'pfeiffer',
    ]);
  });
  it('with --fresh keeps only the methods not asked for (the others run again)', () => {
    expect(keptInReport(earlier, ['houlsby', 'ptuning-v2'], true).map((m) => m.method)).toEqual(['lora', 'pfeiffer']);
  });
});

describe('differs', () => {
  it('says yes when the means are further apart than twice the larger spread over seeds', () => {
    expect(differs([0.9, 0.91, 0.92], [0.9, 0.92, 0.91])).toBe(false);
    expect(differs([0.9, 0.91, 0.92], [0.8, 0.81, 0.82])).toBe(true);
    expect(differs([0.9, 0.7, 0.8], [0.85, 0.95, 0.75])).toBe(false); // wide spread: not a difference
    expect(differs([0.9], [0.905])).toBe(false); // one seed: more than 0.01
    expect(differs([0.9], [0.92])).toBe(true);
    expect(differs([0.9], [])).toBe(false);
  });
});

describe('compareTable', () => {
  const run = (seed: number, metric: number, trainable: number, tokensPerSecond: number): SideRun => ({
    seed,
    metric,
    trainable,
    seconds: 10,
    tokens: tokensPerSecond * 10,
    tokensPerSecond,
    losses: [0.7 + seed / 100, 0.5],
  });
  it('shows both sides, whether they differ, the first losses, the trainable counts and the speed ratio', () => {
    const results = {
      task: { metric: 'accuracy' },
      methods: [
        {
          method: 'lora',
          label: 'LoRA r=8',
          kind: 'peft',
          ours: [run(0, 0.9, 100, 300), run(1, 0.92, 100, 300)],
          theirs: [run(0, 0.8, 100, 200), run(1, 0.81, 100, 200)],
          theirLibrary: 'peft',
        },
        {
          method: 'full',
          label: 'full',
          kind: 'full',
          ours: [run(0, 0.9, 5, 100)],
          theirs: [run(0, 0.9, 6, 100)],
          theirLibrary: 't',
        },
      ],
    } as unknown as CompareResults;
    const [, , lora, full] = compareTable(results).split('\n');
    expect(lora).toBe(
      '| LoRA r=8 | 0.910 ± 0.014 | 0.805 ± 0.007 | yes | 0.7050 ± 0.0071 / 0.7050 ± 0.0071 | 100 / 100 | 300 / 200 (1.50x) |',
    );
    expect(full).toContain('| 5 / 6 NOT THE SAME |');
  });
});

describe('runCompare refuses before any work', () => {
  const out = () => path.join(mkdtempSync(path.join(tmpdir(), 'compare-')), 'out');
  it.each([
    [['--budget', '2m'], '--budget: compare needs a number of steps'],
    [['--no-dropout', '--budget', '2m'], '--budget: compare needs a number of steps'], // its own flag, taken
    [['--suite', 'full'], '--suite: compare runs one task at a time'],
    [['--task', 'email-lm'], '--task: compare runs the classification tasks (spam, genre, pos), not email-lm'],
    [['--seeds', '0'], '--seeds: expected a positive integer'],
  ])('%j', async (args, message) => {
    await expect(runCompare([...args, '--out', out()])).rejects.toThrow(message);
  });

  it("without the oracle's Python it says how to make it; without AdapterHub, how to leave it out", async () => {
    const oracle = mkdtempSync(path.join(tmpdir(), 'no-oracle-'));
    await expect(runCompare(['--methods', 'lora', '--out', out()], { oracle })).rejects.toThrow(
      /Python peft not found \(.*\/\.venv\/bin\/python\): python3 -m venv oracle\/\.venv/,
    );
    await expect(runCompare(['--methods', 'houlsby', '--out', out()], { oracle })).rejects.toThrow(
      /AdapterHub not found .*leave houlsby and pfeiffer out of --methods/,
    );
  });
});

describe('runCompare goes on from an earlier run into the same folder', () => {
  // a stand-in for the oracle's Python: says which method it was asked for, fails for those in `fail`
  const fakeOracle = (): { oracle: string; calls: () => string[]; fail: (methods: string) => void } => {
    const oracle = mkdtempSync(path.join(tmpdir(), 'fake-oracle-'));
    const log = path.join(oracle, 'calls');
    const failing = path.join(oracle, 'fail');
    writeFileSync(log, '');
    writeFileSync(failing, '');
    mkdirSync(path.join(oracle, '.venv/bin'), { recursive: true });
    const python = path.join(oracle, '.venv/bin/python');
    const run = '{"seed":0,"metric":0.5,"trainable":1,"seconds":1,"tokens":1,"tokensPerSecond":1,"losses":[1]}';
    writeFileSync(
      python,
      `#!/bin/sh\necho "$3" >> ${log}\nif grep -qx "$3" ${failing}; then echo "no $3" >&2; exit 1; fi\necho '{"library":"fake","runs":[${run}]}'\n`,
    );
    chmodSync(python, 0o755);
    return {
      oracle,
      calls: () => readFileSync(log, 'utf8').split('\n').filter(Boolean),
      fail: (methods) => writeFileSync(failing, `${methods}\n`),
    };
  };
  const report = (out: string): CompareResults => JSON.parse(readFileSync(path.join(out, 'compare.json'), 'utf8'));

  it('keeps the methods finished on both sides, runs the rest; other settings are refused; --fresh runs all', async () => {
    const { oracle, calls, fail } = fakeOracle();
    const out = path.join(mkdtempSync(path.join(tmpdir(), 'compare-')), 'out');
    const args = ['--quick', '--out', out];
    fail('frozen');
    expect(await runCompare([...args, '--methods', 'head-only,frozen'], { oracle })).toBe(1);
    expect(calls()).toEqual(['head-only', 'frozen']);
    const first = report(out);
    expect(first.methods.map((m) => [m.method, m.error === undefined])).toEqual([
      ['head-only', true],
      ['frozen', false],
    ]);
    fail('');
    // the failed method runs again, the finished one is kept as it was
    expect(await runCompare([...args, '--methods', 'frozen,head-only'], { oracle })).toBe(0);
    expect(calls()).toEqual(['head-only', 'frozen', 'frozen']);
    const second = report(out);
    expect(second.complete).toBe(true);
    expect(second.methods[0]).toEqual(first.methods[0]);
    expect(second.methods[1]!.error).toBeUndefined();
    // --fresh runs the methods asked for again; a method not asked for stays in the report
    expect(await runCompare([...args, '--methods', 'frozen', '--fresh'], { oracle })).toBe(0);
    expect(calls()).toEqual(['head-only', 'frozen', 'frozen', 'frozen']);
    expect(report(out).methods.map((m) => m.method)).toEqual(['head-only', 'frozen']);
    expect(report(out).methods[0]).toEqual(first.methods[0]);
    // other settings: refused before any work, the earlier report left as it is; --fresh starts over
    const lr = ['--lr', 'head-only=0.5'];
    await expect(runCompare([...args, '--methods', 'frozen', ...lr], { oracle })).rejects.toThrow(
      `${path.join(out, 'compare.json')}: holds a comparison of other settings (budget differ); pass --fresh to run the methods asked for again, or choose another --out`,
    );
    expect(calls()).toHaveLength(4);
    expect(report(out).methods).toHaveLength(2);
    expect(await runCompare([...args, '--methods', 'frozen', ...lr, '--fresh'], { oracle })).toBe(0);
    expect(report(out).methods.map((m) => m.method)).toEqual(['frozen']);
  }, 120_000);

  it('keeps the seeds finished on either side of a method stopped part-way; --fresh runs them again', async () => {
    // a stand-in for bench_compare.py: runs the seeds plan.json asks for, writing each one's
    // theirs.json as it finishes, and stops after the first while `stop` exists
    const oracle = mkdtempSync(path.join(tmpdir(), 'fake-oracle-'));
    const log = path.join(oracle, 'calls');
    const stop = path.join(oracle, 'stop');
    writeFileSync(log, '');
    mkdirSync(path.join(oracle, '.venv/bin'), { recursive: true });
    const python = path.join(oracle, '.venv/bin/python');
    writeFileSync(
      python,
      `#!/usr/bin/env node
const fs = require('node:fs');
const path = require('node:path');
const [exportDir, method] = process.argv.slice(3);
const plan = JSON.parse(fs.readFileSync(path.join(exportDir, method, 'plan.json'), 'utf8'));
const runs = [];
for (const { seed } of plan.runs) {
  fs.appendFileSync(${JSON.stringify(log)}, method + ':' + seed + '\\n');
  const run = { seed, metric: 0.5, trainable: 1, seconds: 1, tokens: 1, tokensPerSecond: 1, losses: [1] };
  const done = { fingerprint: plan.fingerprint, library: 'fake', run };
  fs.writeFileSync(path.join(exportDir, method, 'seed-' + seed, 'theirs.json'), JSON.stringify(done));
  runs.push(run);
  if (fs.existsSync(${JSON.stringify(stop)})) { console.error('stopped'); process.exit(1); }
}
console.log(JSON.stringify({ library: 'fake', runs }));
`,
    );
    chmodSync(python, 0o755);
    const calls = () => readFileSync(log, 'utf8').split('\n').filter(Boolean);
    const out = path.join(mkdtempSync(path.join(tmpdir(), 'compare-')), 'out');
    const args = ['--methods', 'head-only', '--seeds', '2', '--budget', '2', '--batch', '4', '--limit', '120'];
    writeFileSync(stop, '');
    expect(await runCompare([...args, '--out', out], { oracle })).toBe(1);
    expect(calls()).toEqual(['head-only:0']);
    const [stopped] = report(out).methods;
    expect(stopped!.error).toMatch(/stopped/);
    expect(stopped!.ours.map((run) => run.seed)).toEqual([0, 1]);
    rmSync(stop);
    // both of ours kept (the same seconds), Python asked for seed 1 only
    expect(await runCompare([...args, '--out', out], { oracle })).toBe(0);
    expect(calls()).toEqual(['head-only:0', 'head-only:1']);
    const [finished] = report(out).methods;
    expect(finished!.error).toBeUndefined();
    expect(finished!.ours).toEqual(stopped!.ours);
    expect(finished!.theirs.map((run) => run.seed)).toEqual([0, 1]);
    // --fresh: both seeds again on both sides
    expect(await runCompare([...args, '--out', out, '--fresh'], { oracle })).toBe(0);
    expect(calls()).toEqual(['head-only:0', 'head-only:1', 'head-only:0', 'head-only:1']);
    expect(report(out).methods[0]!.ours[0]!.seconds).not.toBe(stopped!.ours[0]!.seconds);
    // a fresh run stopped after Python's first seed: seed 1's earlier Python result went with its ours
    writeFileSync(stop, '');
    expect(await runCompare([...args, '--out', out, '--fresh'], { oracle })).toBe(1);
    rmSync(stop);
    expect(await runCompare([...args, '--out', out], { oracle })).toBe(0);
    expect(calls().slice(4)).toEqual(['head-only:0', 'head-only:1']);
  }, 120_000);
});
