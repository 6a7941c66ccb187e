// The browser build of the libraries holds no Node built-ins: I/O goes through core's FileStore.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { build } from 'vite';
import { afterAll, describe, expect, it } from 'vitest';

import { PLAYGROUND_ROOT } from '../scripts/driver.js';

describe('the playground bundle', () => {
  const outDir = mkdtempSync(path.join(tmpdir(), 'peft-bundle-'));
  afterAll(() => rmSync(outDir, { recursive: true, force: true }));

  it('imports no Node built-in and needs no stand-in for one', async () => {
    const warnings: string[] = [];
    await build({
      root: PLAYGROUND_ROOT,
      configFile: path.join(PLAYGROUND_ROOT, 'vite.config.ts'),
      logLevel: 'silent',
      build: { outDir, emptyOutDir: true, rollupOptions: { onwarn: (warning) => void warnings.push(warning.message) } },
      customLogger: {
        info() {},
        warn: (message) => void warnings.push(message),
        warnOnce: (message) => void warnings.push(message),
        error() {},
        clearScreen() {},
        hasErrorLogged: () => false,
        hasWarned: false,
      },
    });
    const scripts = readdirSync(path.join(outDir, 'assets')).filter((name) => name.endsWith('.js'));
    expect(scripts.length).toBeGreaterThan(0);
    for (const name of scripts) {
      const code = readFileSync(path.join(outDir, 'assets', name), 'utf8');
      // Vite swaps a Node built-in for `__vite-browser-external` (and warns "externalized for browser compatibility")
      expect(code, name).not.toContain('__vite-browser-external');
      expect(code.match(/["']node:[a-z_/]+["']/g) ?? [], name).toEqual([]);
    }
    expect(warnings.filter((w) => /externalized for browser compatibility|node:/.test(w))).toEqual([]);
    // the shipped model is part of the site
    expect(readdirSync(path.join(outDir, 'models/brown-gpt')).sort()).toEqual([
      'config.json',
      'model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
  });
});
