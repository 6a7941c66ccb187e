// The bench's outputs are replaced whole or not at all (results.json, report.md, perf.json, load.json).
import fs, { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterEach, describe, expect, it, vi } from 'vitest';

import { replaceFile } from '../src/files.js';

afterEach(() => {
  vi.restoreAllMocks();
  syncBuiltinESMExports();
});

describe('replaceFile', () => {
  it('replaces the file whole, leaving nothing beside it', () => {
    const folder = mkdtempSync(path.join(tmpdir(), 'peft-bench-files-'));
    const file = path.join(folder, 'results.json');
    writeFileSync(file, 'old');
    replaceFile(file, 'new');
    expect(readFileSync(file, 'utf8')).toBe('new');
    expect(readdirSync(folder)).toEqual(['results.json']);
  });

  it('a write that fails part-way (a full disk) leaves the old file as it was, and nothing beside it', () => {
    const folder = mkdtempSync(path.join(tmpdir(), 'peft-bench-files-'));
    const file = path.join(folder, 'results.json');
    writeFileSync(file, 'old results');
    const fsync = vi.spyOn(fs, 'fsyncSync').mockImplementation(() => {
      throw Object.assign(new Error('ENOSPC: no space left on device, fsync'), { code: 'ENOSPC' });
    });
    syncBuiltinESMExports(); // the named import in src/files.ts sees the mock
    expect(() => replaceFile(file, 'new results, half written')).toThrow('ENOSPC');
    expect(fsync).toHaveBeenCalled();
    expect(readFileSync(file, 'utf8')).toBe('old results');
    expect(readdirSync(folder)).toEqual(['results.json']);
  });
});
