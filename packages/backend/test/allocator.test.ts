import { execFileSync } from 'node:child_process';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { ALLOCATOR_ENV, allocatorDecision } from '../src/allocator.js';
import { availableBackends } from '../src/index.js';

describe('allocatorDecision', () => {
  it("sets the pool only when nobody chose: the user's value stands, a loaded tfjs-node or a worker thread is said", () => {
    expect(allocatorDecision(undefined, false, true)).toMatchObject({
      set: true,
      line: expect.stringMatching(/^BFC pool/),
    });
    expect(allocatorDecision('false', false, true)).toEqual({
      set: false,
      line: `malloc, from your ${ALLOCATOR_ENV}=false`,
    });
    expect(allocatorDecision('1', false, true).line).toMatch(/^BFC pool, from your/);
    expect(allocatorDecision(undefined, true, true)).toMatchObject({
      set: false,
      line: expect.stringContaining('loaded before'),
    });
    expect(allocatorDecision(undefined, false, false)).toMatchObject({
      set: false,
      line: expect.stringContaining('worker thread'),
    });
  });
});

const hasTensorflow = (await availableBackends()).includes('tensorflow');

/** allocator-child.ts in a new Node process with ALLOCATOR_ENV as given (undefined: unset). */
function child(value: string | undefined): { line: string; env: string | null; faults: number } {
  const env = { ...process.env };
  delete env[ALLOCATOR_ENV];
  if (value !== undefined) env[ALLOCATOR_ENV] = value;
  const root = path.resolve(import.meta.dirname, '../../..');
  const out = execFileSync(
    process.execPath,
    ['--import', 'tsx', path.join(import.meta.dirname, 'allocator-child.ts')],
    {
      cwd: root,
      env,
      encoding: 'utf8',
    },
  );
  return JSON.parse(out.trim().split('\n').at(-1)!);
}

describe.runIf(hasTensorflow)('the allocator of the tensorflow backend', () => {
  it('selectBackend asks for the pool before tfjs-node loads: a 64 MB result made again takes no fresh pages', () => {
    const pooled = child(undefined);
    expect(pooled.env).toBe('true');
    expect(pooled.line).toMatch(/^BFC pool \(.*set by @peft\/backend/);
    // the user's false stands: malloc maps each 64 MB result afresh, 16k faults (4 KB pages) each,
    // 131k for the eight; the pool took 0 or once 16k (a region it adds) in repeated runs
    const malloc = child('false');
    expect(malloc.line).toBe(`malloc, from your ${ALLOCATOR_ENV}=false`);
    expect(malloc.faults).toBeGreaterThan(100_000);
    expect(pooled.faults).toBeLessThan(40_000);
  }, 120_000);
});
