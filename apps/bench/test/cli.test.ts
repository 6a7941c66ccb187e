// `pnpm bench`'s flags, every one checked before anything is trained, and `--out` above all: a
// folder where the results cannot be written is found before the first method trains, not after.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { EMBEDDED_MODELS, benchPlan, parseBenchArgs, prepareOutFolder } from '../src/cli.js';

const plan = (...args: string[]) => benchPlan(parseBenchArgs(args));
const linux = process.platform === 'linux';
const root = process.getuid?.() === 0;

describe('benchPlan', () => {
  it.each([
    [['--seeds', '0'], '--seeds: expected a positive integer, got "0"'],
    [['--batch', 'x'], '--batch: expected a positive integer, got "x"'],
    [['--limit=-5'], '--limit: expected a positive integer, got "-5"'],
    [['--max-length', '0'], '--max-length: expected a positive integer, got "0"'],
    [['--methods', 'lora,lorra'], '--methods: unknown "lorra"'],
    [['--methods', ','], '--methods: expected at least one method'],
    [['--lr', 'lorra=1e-3'], '--lr: unknown method lorra'],
    [['--budget', '5h'], '--budget: expected optimizer steps (150) or a wall time per run (90s, 2m), got "5h"'],
    [['--backend', 'gpu'], '--backend: expected one of auto'],
    [['--suite', 'all'], '--suite: expected "full", got "all"'],
    [['--suite', 'full', '--data', 'package.json'], '--suite: full runs the embedded tasks, not --data'],
    [['--task', 'sentiment'], '--task: unknown task "sentiment" (spam, pos, genre, email-lm)'],
    [
      ['--model', '/nonexistent'],
      '--model: expected a Hugging Face model folder with config.json (or one of brown-gpt, brown-bert, minilm), found none in /nonexistent',
    ],
    [['--data', '/nonexistent.jsonl'], '--data: expected a JSONL file, /nonexistent.jsonl is missing'],
    [['--data', tmpdir()], `--data: expected a JSONL file, ${tmpdir()} is not a file`],
    [['--quick', '--seeds', 'three'], '--seeds: expected a positive integer, got "three"'],
  ])('%j: %s', (args, message) => {
    expect(() => plan(...args)).toThrow(message);
  });

  it('takes a shipped model by name: brown-gpt is the default, its results under bench-results/<task>', () => {
    const byName = plan('--model', 'brown-gpt');
    expect(byName.model).toBe(EMBEDDED_MODELS['brown-gpt']);
    expect(byName.model).toBe(plan().model);
    expect(byName.tasks).toEqual([{ name: 'spam', out: path.resolve('bench-results/spam') }]);
  });

  it('gives each task of --suite full its folder under --out; --quick replaces the sizes', () => {
    const suite = plan('--suite', 'full', '--out', '/tmp/results', '--seeds', '2');
    expect(suite.tasks).toEqual([
      { name: 'spam', out: '/tmp/results/spam' },
      { name: 'pos', out: '/tmp/results/pos' },
      { name: 'genre', out: '/tmp/results/genre' },
      { name: 'email-lm', out: '/tmp/results/email-lm' },
    ]);
    expect(suite).toMatchObject({ seeds: 2, steps: 100, batchSize: 16, limit: 2000, maxLength: undefined });
    expect(plan('--max-length', '128').maxLength).toBe(128);
    expect(plan('--quick', '--methods', 'lora')).toMatchObject({
      tasks: [{ name: 'spam', out: path.resolve('bench-results/spam') }],
      methods: ['lora'],
      seeds: 1,
      steps: 3,
      batchSize: 4,
    });
  });
});

describe('--out', () => {
  it('creates the folder, and leaves nothing of its probe there', () => {
    const folder = path.join(mkdtempSync(path.join(tmpdir(), 'peft-bench-out-')), 'a', 'b');
    prepareOutFolder('--out', folder);
    expect(readdirSync(folder)).toEqual([]);
  });

  it('refuses a file, and a folder under a file', () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'peft-bench-out-')), 'results.txt');
    writeFileSync(file, 'x');
    expect(() => prepareOutFolder('--out', file)).toThrow(`--out: ${file} is a file, not a folder`);
    expect(() => prepareOutFolder('--out', path.join(file, 'run'))).toThrow(
      `--out: cannot create ${path.join(file, 'run')}: ${file} is a file`,
    );
  });

  it.runIf(linux)('refuses /proc, /sys and /dev/pts before touching them (mkdir -p under /proc spins forever)', () => {
    expect(() => prepareOutFolder('--out', '/proc/peft-bench')).toThrow(
      "--out: /proc/peft-bench is on proc, a filesystem of the kernel's: choose a folder on a disk",
    );
    expect(() => prepareOutFolder('--out', '/proc')).toThrow('--out: /proc is on proc');
    expect(() => prepareOutFolder('--out', '/sys/kernel/peft-bench')).toThrow(
      '--out: /sys/kernel/peft-bench is on sysfs',
    );
  });

  it.skipIf(root)('refuses a folder it cannot write in, with the reason', () => {
    const folder = mkdtempSync(path.join(tmpdir(), 'peft-bench-out-'));
    mkdirSync(path.join(folder, 'locked'));
    chmodSync(path.join(folder, 'locked'), 0o500);
    expect(() => prepareOutFolder('--out', path.join(folder, 'locked', 'run'))).toThrow(
      `--out: cannot write in ${path.join(folder, 'locked', 'run')}: EACCES`,
    );
  });

  it.runIf(linux)('`pnpm bench --out /proc/...` stops at once with exit status 2, before any training', () => {
    const started = performance.now();
    const bench = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'src/main.ts', '--quick', '--methods', 'head-only', '--out', '/proc/peft-bench'],
      { cwd: path.resolve(import.meta.dirname, '..'), encoding: 'utf8', timeout: 30_000 },
    );
    expect(bench.status, bench.stdout + bench.stderr).toBe(2);
    expect(bench.stderr).toContain("bench: --out: /proc/peft-bench is on proc, a filesystem of the kernel's");
    expect(bench.stdout).not.toContain('[1/1]');
    expect(performance.now() - started).toBeLessThan(15_000);
  });

  it.each([
    ['perf', ['--models', 'tiny', '--methods', 'lora', '--no-python']],
    ['load', ['--models', 'qwen2.5-0.5b', '--no-python']],
  ])('`pnpm bench %s --out` under a file stops before any work, with exit status 2', (command, flags) => {
    const folder = mkdtempSync(path.join(tmpdir(), 'peft-bench-out-'));
    writeFileSync(path.join(folder, 'a-file'), 'not a folder\n');
    const out = path.join(folder, 'a-file', 'reports');
    const bench = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', command, ...flags, '--out', out], {
      cwd: path.resolve(import.meta.dirname, '..'),
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(bench.status, bench.stdout + bench.stderr).toBe(2);
    expect(bench.stderr).toContain(`--out: cannot create ${out}: ${path.join(folder, 'a-file')} is a file`);
    expect(bench.stdout).not.toContain('making');
  });
});
