// Ctrl-C with real signals to child processes: `pnpm bench` as a terminal interrupts it (SIGINT to
// the whole process group), the bench's node process alone, and the rules for copies of one Ctrl-C
// and a deliberate second one.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import type { BenchResults } from '../src/index.js';
import { tinyModel } from './fixtures/tiny-model.js';

const BENCH = path.resolve(import.meta.dirname, '..');
const PLANNED_STEPS = 100_000;

interface Child {
  process: ChildProcess;
  output: () => string;
  /** Resolves when the process and every process holding its output (pnpm's script) are done. */
  closed: Promise<number | null>;
}

/** Starts a command in a process group of its own, as a terminal starts a job. */
function start(command: string, args: string[]): Child {
  const child = spawn(command, args, { cwd: BENCH, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { process: child, output: () => output, closed };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits for `pattern` in the output; kills the group and fails after `timeoutMs`. */
async function waitFor(child: Child, pattern: RegExp, timeoutMs: number): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!pattern.test(child.output())) {
    if (performance.now() > end) {
      process.kill(-child.process.pid!, 'SIGKILL');
      throw new Error(`no ${pattern} within ${timeoutMs} ms; output:\n${child.output()}`);
    }
    await sleep(20);
  }
}

/** Waits for the end of the child (and its group's output); kills the group and fails after `timeoutMs`. */
async function ended(child: Child, timeoutMs: number): Promise<number | null> {
  const timeout = sleep(timeoutMs).then(() => 'timeout' as const);
  const result = await Promise.race([child.closed, timeout]);
  if (result === 'timeout') {
    process.kill(-child.process.pid!, 'SIGKILL');
    throw new Error(`still running ${timeoutMs} ms after the interrupt; output:\n${child.output()}`);
  }
  return result;
}

/** SIGINT `count` times, 15 ms apart: a terminal's copy plus relayed ones, or a user who presses twice at once. */
async function interrupt(pid: number, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    process.kill(pid, 'SIGINT');
    await sleep(15);
  }
}

describe('Ctrl-C on the bench', () => {
  let model: string;
  let data: string;
  beforeAll(async () => {
    model = await tinyModel();
    data = path.join(model, 'toy.jsonl');
    const lines = Array.from({ length: 60 }, (_, i) =>
      JSON.stringify({ text: i % 2 ? `win money now ${i}` : `meeting notes for ${i}`, label: i % 2 ? 'spam' : 'ham' }),
    );
    writeFileSync(data, lines.join('\n'));
  });
  const benchArgs = (out: string): string[] => [
    ...['--model', model, '--data', data, '--methods', 'lora,frozen', '--seeds', '1', '--batch', '2'],
    ...['--budget', String(PLANNED_STEPS), '--backend', 'cpu', '--out', out],
  ];

  /** The partial report of a run stopped a few steps after step 25 (when the test interrupted it). */
  function expectPartialReport(out: string, output: string): void {
    expect(output.match(/interrupted: finishing the current step and writing the partial report/g)).toHaveLength(1);
    const results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as BenchResults;
    expect(results.complete).toBe(false);
    expect(results.runs).toHaveLength(1); // frozen never started
    const [run] = results.runs;
    expect(run).toMatchObject({ method: 'lora', status: 'interrupted', steps: PLANNED_STEPS, metric: null });
    expect(run!.losses.length).toBeGreaterThanOrEqual(25);
    expect(run!.losses.length).toBeLessThan(75);
    const report = readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(report).toContain('**Partial report: the run was interrupted.**');
    expect(report).toContain(`- lora seed 0: interrupted after step ${run!.losses.length} of ${PLANNED_STEPS}`);
    expect(output).toContain(`interrupted after step ${run!.losses.length} of ${PLANNED_STEPS}`);
  }

  it('`pnpm bench` in a terminal (SIGINT to the process group, three times): stops after the current step and writes the partial report', async () => {
    const out = mkdtempSync(path.join(tmpdir(), 'peft-bench-ctrl-c-'));
    const bench = start('pnpm', ['bench', ...benchArgs(out)]);
    await waitFor(bench, new RegExp(`25/${PLANNED_STEPS}`), 30_000);
    await interrupt(-bench.process.pid!, 3);
    await ended(bench, 10_000);
    expectPartialReport(out, bench.output());
  });

  it("SIGINT to the bench's node process alone (three times): stops after the current step, exit status 130", async () => {
    const out = mkdtempSync(path.join(tmpdir(), 'peft-bench-ctrl-c-'));
    const bench = start(process.execPath, ['--import', 'tsx', 'src/main.ts', ...benchArgs(out)]);
    await waitFor(bench, new RegExp(`25/${PLANNED_STEPS}`), 30_000);
    await interrupt(bench.process.pid!, 3);
    expect(await ended(bench, 10_000)).toBe(130);
    expectPartialReport(out, bench.output());
  });
});

describe('Interrupts', () => {
  const child = (): Child => start(process.execPath, ['--import', 'tsx', 'test/fixtures/interrupt-child.ts']);

  it('takes the copies of one Ctrl-C (within a second of the first) as one: the run finishes its stop', async () => {
    const run = child();
    await waitFor(run, /ready/, 15_000);
    await interrupt(run.process.pid!, 4);
    expect(await ended(run, 10_000)).toBe(130);
    expect(run.output()).toBe('ready\nfirst\nfinished\n');
  });

  it('a second Ctrl-C more than a second after the first exits at once, and says so', async () => {
    const run = child();
    await waitFor(run, /ready/, 15_000);
    process.kill(run.process.pid!, 'SIGINT');
    await waitFor(run, /first/, 5_000);
    await sleep(1_200);
    const second = performance.now();
    process.kill(run.process.pid!, 'SIGINT');
    expect(await ended(run, 5_000)).toBe(131);
    expect(performance.now() - second).toBeLessThan(500);
    expect(run.output()).toBe('ready\nfirst\nsecond\n');
  });
});
