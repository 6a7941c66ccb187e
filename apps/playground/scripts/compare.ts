// Steps per second of the same training run in headless Chromium (the playground page, each browser
// backend) and in Node (each Node backend), alternating, medians of --reps. Same model (brown-gpt),
// method, data (the page's sample text), batch 4 x 48 tokens, seed.
//
//   pnpm --filter @peft/playground compare [--methods lora,prompt] [--steps 16] [--reps 3]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { BACKEND_NAMES, loadBackend } from '@peft/backend';

import { findMethod } from '../src/session.js';
import { openPage, PAGE_SETTINGS, startSite, trainInNode, trainOnPage } from './driver.js';

const BROWSER_BACKENDS = ['wasm', 'webgl'] as const;

function positiveInteger(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: expected a positive integer, got "${value}"`);
  return n;
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

const { values } = parseArgs({
  options: {
    methods: { type: 'string', default: 'lora,prompt' },
    steps: { type: 'string', default: '16' },
    reps: { type: 'string', default: '3' },
  },
});
const methods = values.methods.split(',').map((name) => findMethod(name.trim()).name);
const steps = positiveInteger('steps', values.steps);
const reps = positiveInteger('reps', values.reps);

const scratch = mkdtempSync(path.join(tmpdir(), 'peft-compare-'));
const site = await startSite(path.join(scratch, 'site'));
const nodeBackends: string[] = [];
for (const name of BACKEND_NAMES) {
  try {
    await loadBackend(name);
    nodeBackends.push(name);
  } catch (error) {
    console.log(`Node ${name}: not available (${(error as Error).message})`);
  }
}
const results = new Map<string, number[]>(); // `${method} ${runtime} ${backend}` -> steps/s per rep
const record = (key: string, value: number): void => void results.set(key, [...(results.get(key) ?? []), value]);
let browserDetail = '';
try {
  for (let rep = 0; rep < reps; rep++) {
    for (const method of methods) {
      let text = '';
      for (const backend of BROWSER_BACKENDS) {
        const page = await openPage(site, backend);
        const run = await trainOnPage(page, { method, steps, probeText: 'the' });
        await page.close();
        if (run.error) throw new Error(`Chromium ${backend}, ${method}: ${run.error}`);
        text = run.text;
        browserDetail ||= run.backendText;
        record(`${method} Chromium ${run.backend}`, run.stepsPerSecond);
        console.log(`rep ${rep + 1} ${method} Chromium ${run.backend}: ${run.stepsPerSecond.toFixed(2)} steps/s`);
      }
      for (const backend of nodeBackends) {
        await loadBackend(backend as (typeof BACKEND_NAMES)[number]);
        const run = await trainInNode(method, text, steps);
        record(`${method} Node ${backend}`, run.stepsPerSecond);
        console.log(`rep ${rep + 1} ${method} Node ${backend}: ${run.stepsPerSecond.toFixed(2)} steps/s`);
      }
    }
  }
} finally {
  await site.close();
  rmSync(scratch, { recursive: true, force: true });
}

console.log(
  `\nbrown-gpt, ${steps} steps of ${PAGE_SETTINGS.batchSize} x ${PAGE_SETTINGS.blockSize} tokens, median of ${reps}; ratio to Node tensorflow`,
);
console.log('| method | runtime | backend | steps/s | ratio |\n|---|---|---|---|---|');
for (const method of methods) {
  const reference = median(results.get(`${method} Node tensorflow`) ?? [Number.NaN]);
  for (const [key, runs] of results) {
    if (!key.startsWith(`${method} `)) continue;
    const [, runtime, backend] = key.split(' ');
    const value = median(runs);
    console.log(`| ${method} | ${runtime} | ${backend} | ${value.toFixed(2)} | ${(value / reference).toFixed(2)}x |`);
  }
}
console.log(`\n${browserDetail}`);
