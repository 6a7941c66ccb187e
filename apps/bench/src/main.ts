#!/usr/bin/env node
// `pnpm bench`: which PEFT method, for my task and budget? Trains every method and the baselines on
// one base model (default: brown-gpt), task (default: spam) and backend, over several seeds, and
// writes results.json, report.md and report.html.
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { selectBackend, parseBackendRequest } from '@peft/backend';
import { loadTokenizer } from '@peft/models';

import { readBrown, splitBrown } from './data/brown.js';
import { readEmails } from './data/email.js';
import { benchUsage, parseBenchArgs, parseBudget, parseLearningRates, perfUsage, positiveIntegerFlag } from './cli.js';
import { METHODS } from './methods.js';
import { loadUsage, runLoad } from './load/load.js';
import { runPerf } from './perf/perf.js';
import { consoleTable, writeReports } from './report.js';
import { runBench, type ProgressEvent } from './run.js';
import { emailLmTask, genreTask, jsonlTask, posTask, spamTask, type TaskSplits } from './tasks/tasks.js';

async function taskFor(
  name: string,
  data: string | undefined,
  tokenizerDirectory: string,
  limit: number,
): Promise<TaskSplits> {
  const tokenizer = await loadTokenizer(tokenizerDirectory);
  const config = JSON.parse(readFileSync(path.join(tokenizerDirectory, 'config.json'), 'utf8')) as {
    n_positions?: number;
    max_position_embeddings?: number;
  };
  const positions = Math.min(config.n_positions ?? config.max_position_embeddings ?? 512, 512);
  // every method sees the same examples: room is left for the most virtual tokens a method adds
  const virtualTokens = Math.max(...METHODS.map((method) => method.virtualTokens));
  const options = { tokenizer, maxLength: positions - virtualTokens, limit };
  if (data) return jsonlTask(path.basename(data), readFileSync(data, 'utf8'), options);
  switch (name) {
    case 'spam':
      return spamTask(readEmails(), options);
    case 'email-lm':
      return emailLmTask(readEmails(), options);
    case 'pos':
      return posTask(splitBrown(readBrown()).heldOut, options);
    case 'genre':
      return genreTask(splitBrown(readBrown()).heldOut, options);
    default:
      throw new Error(`--task: unknown task "${name}" (spam, pos, genre, email-lm)`);
  }
}

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
        `${tty ? '\n' : ''}  ${r.status}${r.error ? ` (${r.error})` : ''}: metric ${r.metric === null ? '-' : r.metric.toFixed(4)}\n`,
      );
    }
  };
}

async function main(): Promise<number> {
  if (process.argv[2] === 'perf') return runPerf(process.argv.slice(3));
  if (process.argv[2] === 'load') return runLoad(process.argv.slice(3));
  const values = parseBenchArgs(process.argv.slice(2));
  if (values.help) {
    console.log(benchUsage);
    return 0;
  }
  const budget = parseBudget(values.budget!);
  const learningRates = parseLearningRates(values.lr ?? '');
  const backend = await selectBackend({ backend: parseBackendRequest(values.backend!, '--backend') });
  console.log(`backend: ${backend.name} (${backend.detail})`);
  const quick = values.quick!;
  const tasks = values.suite === 'full' ? ['spam', 'pos', 'genre', 'email-lm'] : [values.task!];
  if (values.suite !== undefined && values.suite !== 'full')
    throw new Error(`--suite: expected "full", got "${values.suite}"`);
  const controller = new AbortController();
  const interrupt = (): void => {
    console.log('\ninterrupted: finishing the current step and writing the partial report');
    controller.abort();
  };
  process.once('SIGINT', interrupt);
  let status = 0;
  for (const name of tasks) {
    const task = await taskFor(
      name,
      values.data,
      values.model!,
      quick ? 120 : positiveIntegerFlag('limit', values.limit!),
    );
    const out = path.resolve(
      values.out ?? path.join('bench-results', task.name),
      tasks.length > 1 && values.out ? task.name : '',
    );
    console.log(
      `task ${task.name} (${task.task}): train ${task.train.length}, validation ${task.validation.length}, test ${task.test.length}; output ${out}`,
    );
    const started = performance.now();
    const results = await runBench(
      {
        modelDirectory: values.model!,
        task,
        methods: values
          .methods!.split(',')
          .map((m) => m.trim())
          .filter(Boolean),
        seeds: quick ? 1 : positiveIntegerFlag('seeds', values.seeds!),
        steps: quick ? 3 : (budget.steps ?? 0),
        ...(!quick && budget.seconds ? { seconds: budget.seconds } : {}),
        learningRates,
        batchSize: quick ? 4 : positiveIntegerFlag('batch', values.batch!),
        latencyExamples: quick ? 2 : 10,
        out,
        backend,
        signal: controller.signal,
        onProgress: progressPrinter(),
      },
      (partial) => writeReports(out, partial),
    );
    console.log(
      `\n${consoleTable(results)}\n\n${((performance.now() - started) / 60000).toFixed(1)} minutes; reports in ${out}`,
    );
    if (results.runs.some((r) => r.status === 'failed')) status = 1;
    if (controller.signal.aborted) return 130;
  }
  process.removeListener('SIGINT', interrupt);
  return status;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(
      `bench: ${error instanceof Error ? error.message : String(error)}\n${process.argv[2] === 'perf' ? perfUsage : process.argv[2] === 'load' ? loadUsage : benchUsage}`,
    );
    process.exit(2);
  },
);
