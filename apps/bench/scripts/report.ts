// Rewrites report.md and report.html from a bench output folder's results.json (after a change to
// the report, or to look at a partial run again).
//
//   pnpm --filter @peft/bench report bench-results/spam
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { RESULTS_SCHEMA, writeReports, type BenchResults } from '../src/index.js';

const out = process.argv[2];
if (!out) throw new Error('usage: pnpm --filter @peft/bench report <bench output folder>');
const results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as BenchResults;
if (results.schema !== RESULTS_SCHEMA)
  throw new Error(`${out}/results.json: schema ${String(results.schema)}, expected ${RESULTS_SCHEMA}`);
await writeReports(out, results);
console.log(`wrote ${path.join(out, 'report.md')} and report.html`);
