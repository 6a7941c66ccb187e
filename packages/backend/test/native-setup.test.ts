import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import {
  detectPackageManager,
  fixAdvice,
  formatDoctorReport,
  inspectNativeSetup,
  nativeFixCommand,
  type DoctorReport,
} from '../src/index.js';

describe('detectPackageManager', () => {
  it('believes the running package manager first, then the nearest lockfile, then says npm', () => {
    const project = mkdtempSync(path.join(os.tmpdir(), 'peft-pm-'));
    const nested = path.join(project, 'packages', 'app');
    mkdirSync(nested, { recursive: true });
    expect(detectPackageManager(nested, undefined)).toBe('npm');
    writeFileSync(path.join(project, 'yarn.lock'), '');
    expect(detectPackageManager(nested, undefined)).toBe('yarn');
    writeFileSync(path.join(nested, 'pnpm-lock.yaml'), '');
    expect(detectPackageManager(nested, undefined)).toBe('pnpm');
    expect(detectPackageManager(nested, 'npm/11.19.1 node/v20.20.2 linux x64 workspaces/false')).toBe('npm');
  });
});

describe('nativeFixCommand', () => {
  it.each([
    ['npm', '/p/node_modules/@tensorflow/tfjs-node', 'npx peft-doctor --fix'],
    ['pnpm', '/p/node_modules/@tensorflow/tfjs-node', 'pnpm exec peft-doctor --fix'],
    ['yarn', '/p/node_modules/@tensorflow/tfjs-node', 'yarn peft-doctor --fix'],
    ['npm', null, 'npm ci'],
    ['pnpm', null, 'pnpm install --force'],
    ['yarn', null, null],
  ] as const)('%s with tfjs-node at %s: `%s`', (packageManager, tfjsNode, command) => {
    expect(nativeFixCommand({ packageManager, tfjsNode, workspace: false })).toBe(command);
  });

  it('says why there is no command for yarn 1 without tfjs-node, and the command otherwise', () => {
    expect(fixAdvice({ packageManager: 'yarn', tfjsNode: null, workspace: false })).toMatch(
      /^yarn 1 removes tfjs-node .* install with npm or pnpm/,
    );
    expect(fixAdvice({ packageManager: 'npm', tfjsNode: null, workspace: false })).toBe('run `npm ci`');
  });

  it('in the monorepo, the root script', () => {
    expect(nativeFixCommand({ packageManager: 'pnpm', tfjsNode: null, workspace: true })).toBe(
      'pnpm peft:doctor --fix',
    );
  });
});

describe('the doctor on a slow backend', () => {
  it("shows the provisioning's recorded failure for the installed tfjs-node, and the fix", () => {
    const cache = mkdtempSync(path.join(os.tmpdir(), 'peft-cache-'));
    const found = inspectNativeSetup({ PEFT_TFJS_CACHE: cache }, process.cwd());
    expect(found.tfjsNode).toMatch(/@tensorflow[/+]tfjs-node/);
    expect(found.status).toBeNull();
    const failure = {
      time: '2026-12-06T07:00:00.000Z',
      ok: false,
      failures: ['wheel: `pip download` exited with 1:\n!! no network'],
    };
    writeFileSync(path.join(cache, 'status.json'), JSON.stringify({ [found.tfjsNode!]: failure }));
    const native = inspectNativeSetup({ PEFT_TFJS_CACHE: cache }, process.cwd());
    expect(native.status).toEqual(failure);

    const report: DoctorReport = {
      node: 'v20',
      platform: 'linux x64',
      cpus: 2,
      cpu: 'AMD EPYC (AVX2, FMA)',
      tfjsCore: '4.22.0',
      kernels: [],
      selection: {
        name: 'cpu',
        requested: 'auto',
        source: 'default',
        detail: 'pure JavaScript',
        unavailable: [{ name: 'tensorflow', reason: 'addon missing' }],
      },
      backends: [],
      hugePages: null,
      native,
    };
    const text = formatDoctorReport(report);
    expect(text).toContain('!! not on the native backend: addon missing');
    expect(text).toContain('!! the set-up of @tensorflow/tfjs-node failed on 2026-12-06T07:00:00.000Z:');
    expect(text).toContain('!!   - wheel: `pip download` exited with 1:\n  !!     !! no network');
    expect(text).toContain('!! fix (pnpm): run `pnpm peft:doctor --fix`');
  });
});
