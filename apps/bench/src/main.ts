#!/usr/bin/env node
// `pnpm bench`: which PEFT method, for my task and budget? Trains every method and the baselines on
// one base model (default: brown-gpt), task (default: spam) and backend, over several seeds, and
// writes results.json, report.md and report.html.

import { selectBackend } from '@peft/backend';

import { clozeUsage, runCloze } from './cloze/cloze.js';
import { compareUsage, runCompare } from './compare/compare.js';
import { benchPlan, benchUsage, parseBenchArgs, perfUsage, prepareOutFolder } from './cli.js';
import { Interrupts } from './interrupt.js';
import { loadUsage, runLoad } from './load/load.js';
import { runPerf } from './perf/perf.js';
import { consoleTable, runStatus, writeReports } from './report.js';
import { runBench, type ProgressEvent } from './run.js';
import { taskFor } from './tasks/task-for.js';

function progressPrinter(): (event: ProgressEvent) => void {
  let started = performance.now();
  const tty = process.stdout.isTTY;
  return (event) => {
    if (event.kind === 'start') {
      started = performance.now();
      process.stdout.write(`[${event.run}/${event.runs}] ${event.method} seed ${event.seed}\n`);
    } else if (event.kind === 'step') {
      const seconds = (performance.now() - started) / 1000;
      const eta = (seconds / event.step) * (event.steps - event.step);
      const width = 30;
      const filled = Math.round((width * event.step) / event.steps);
      const line = `  ${'█'.repeat(filled)}${'░'.repeat(width - filled)} ${event.step}/${event.steps} loss ${event.loss.toFixed(4)} ETA ${eta.toFixed(0)} s`;
      if (tty) process.stdout.write(`\r${line}`);
      else if (event.step % 25 === 0 || event.step === event.steps) process.stdout.write(`${line}\n`);
    } else {
      const r = event.result;
      process.stdout.write(
        `${tty ? '\n' : ''}  ${runStatus(r)}: metric ${r.metric === null ? '-' : r.metric.toFixed(4)}\n`,
      );
    }
  };
}

async function main(): Promise<number> {
  if (process.argv[2] === 'perf') return runPerf(process.argv.slice(3));
  if (process.argv[2] === 'load') return runLoad(process.argv.slice(3));
  if (process.argv[2] === 'compare') return runCompare(process.argv.slice(3));
  if (process.argv[2] === 'cloze') return runCloze(process.argv.slice(3));
  const values = parseBenchArgs(process.argv.slice(2));
  if (values.help) {
    console.log(benchUsage);
    return 0;
  }
  const plan = benchPlan(values);
  for (const { out } of plan.tasks) prepareOutFolder('--out', out);
  const backend = await selectBackend({ backend: plan.backend });
  console.log(`backend: ${backend.name} (${backend.detail})`);
  let lastReport: string | null = null;
  const interrupts = new Interrupts({
    onFirst: () =>
      console.log(
        '\ninterrupted: finishing the current step and writing the partial report (Ctrl-C again: exit at once)',
      ),
    onSecond: () => {
      console.log(
        `\nsecond Ctrl-C: exiting at once, ${lastReport ? `the report in ${lastReport} has the runs finished before` : 'no report written'}`,
      );
      return process.exit(130);
    },
  });
  try {
    let status = 0;
    for (const { name, out } of plan.tasks) {
      const task = await taskFor(name, plan.data, plan.model, plan.limit, plan.maxLength);
      console.log(
        `task ${task.name} (${task.task}): train ${task.train.length}, validation ${task.validation.length}, test ${task.test.length}; output ${out}`,
      );
      const started = performance.now();
      const results = await runBench(
        {
          modelDirectory: plan.model,
          task,
          methods: plan.methods,
          seeds: plan.seeds,
          steps: plan.steps,
          ...(plan.seconds ? { seconds: plan.seconds } : {}),
          learningRates: plan.learningRates,
          batchSize: plan.batchSize,
          latencyExamples: plan.latencyExamples,
          out,
          backend,
          signal: interrupts.signal,
          onProgress: progressPrinter(),
        },
        async (partial) => {
          await writeReports(out, partial);
          lastReport = out;
        },
      );
      console.log(
        `\n${consoleTable(results)}\n\n${((performance.now() - started) / 60000).toFixed(1)} minutes; ${results.complete ? 'reports' : 'partial reports'} in ${out}`,
      );
      if (results.runs.some((r) => r.status === 'failed')) status = 1;
      if (interrupts.signal.aborted) return 130;
    }
    return status;
  } finally {
    // after a Ctrl-C its copies (a terminal's, a wrapper's relay) can still be on their way: with no
    // listener left, one arriving before process.exit would kill the bench by the signal (exit
    // status null, not 130), so the listener that ignores them stays until the process exits
    if (!interrupts.signal.aborted) interrupts.dispose();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(
      `bench: ${error instanceof Error ? error.message : String(error)}\n${{ perf: perfUsage, load: loadUsage, compare: compareUsage, cloze: clozeUsage }[process.argv[2] ?? ''] ?? benchUsage}`,
    );
    process.exit(2);
  },
);
