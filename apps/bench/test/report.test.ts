// The bench's outputs are replaced whole: a kill while writing leaves the previous report intact.
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { RESULTS_SCHEMA, writeReports, type BenchResults } from '../src/index.js';

const results = (complete: boolean): BenchResults => ({
  schema: RESULTS_SCHEMA,
  createdAt: '2026-12-01T00:00:00.000Z',
  complete,
  machine: { backend: 'cpu', backendDetail: 'pure JavaScript', cpus: 2, node: 'v20' },
  model: { directory: 'tiny', parameters: 1000 },
  task: { name: 'toy', metric: 'accuracy' },
  budget: { steps: 10, seconds: null, batchSize: 2, seeds: 1 },
  baselines: [],
  runs: [],
  summary: [],
});

describe('writeReports', () => {
  it('replaces each file whole (written beside it and renamed over it), leaving no temporary file', async () => {
    const out = mkdtempSync(path.join(tmpdir(), 'peft-bench-report-'));
    await writeReports(out, results(false));
    const files = ['report.html', 'report.md', 'results.json'];
    const before = files.map((name) => statSync(path.join(out, name)).ino);
    await writeReports(out, results(true));
    // a file rewritten in place keeps its inode, and a kill in the middle leaves half of it; the
    // new file is made while the old one still exists, so it cannot get the old one's inode
    for (const [i, name] of files.entries()) expect(statSync(path.join(out, name)).ino, name).not.toBe(before[i]);
    expect(readdirSync(out).sort()).toEqual(files);
    expect(JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')).complete).toBe(true);
    expect(readFileSync(path.join(out, 'report.md'), 'utf8')).not.toContain('Partial report');
  });
});
