import * as tf from '@tensorflow/tfjs-core';
import { afterEach, describe, expect, it, vi } from 'vitest';

import {
  availableBackends,
  parseBackendRequest,
  selectBackend,
  slowBackendWarning,
  type BackendSelection,
} from '../src/index.js';

afterEach(() => {
  vi.unstubAllEnvs();
  vi.restoreAllMocks();
});

describe('parseBackendRequest', () => {
  it.each(['auto', 'tensorflow', 'wasm', 'cpu'])('accepts %s', (name) => {
    expect(parseBackendRequest(name, 'test')).toBe(name);
  });

  it('names the source and the allowed values on a bad value', () => {
    expect(() => parseBackendRequest('gpu', 'environment variable PEFT_BACKEND')).toThrow(
      'environment variable PEFT_BACKEND: expected one of auto, tensorflow, wasm, cpu, got "gpu"',
    );
  });
});

describe('selectBackend', () => {
  it('uses a backend named in the options and makes it current', async () => {
    const selection = await selectBackend({ backend: 'cpu', warnIfSlow: false });
    expect(selection).toMatchObject({ name: 'cpu', requested: 'cpu', source: 'option' });
    expect(tf.getBackend()).toBe('cpu');
  });

  it('reads PEFT_BACKEND when no option is given', async () => {
    vi.stubEnv('PEFT_BACKEND', 'cpu');
    const selection = await selectBackend({ warnIfSlow: false });
    expect(selection).toMatchObject({ name: 'cpu', source: 'PEFT_BACKEND' });
  });

  it('rejects a bad PEFT_BACKEND instead of guessing', async () => {
    vi.stubEnv('PEFT_BACKEND', 'webgpu');
    await expect(selectBackend()).rejects.toThrow('got "webgpu"');
  });

  it('prints exactly one loud line, with the reason, on a slow backend', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    await selectBackend({ backend: 'wasm' });
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]?.[0])).toMatch(/SLOW 'wasm' .*chosen by the caller/);
  });

  it('auto lands on the first backend that loads', async () => {
    const available = await availableBackends();
    const selection = await selectBackend({ backend: 'auto', warnIfSlow: false });
    expect(selection.name).toBe(available[0]);
    expect(tf.getBackend()).toBe(available[0]);
  });
});

describe('slowBackendWarning', () => {
  it('gives every reason the faster backends were not used', () => {
    const selection: BackendSelection = {
      name: 'cpu',
      requested: 'auto',
      source: 'default',
      detail: 'pure JavaScript',
      unavailable: [
        { name: 'tensorflow', reason: 'libtensorflow.so.2: cannot open shared object file' },
        { name: 'wasm', reason: 'module not found' },
      ],
    };
    const line = slowBackendWarning(selection);
    expect(line).not.toContain('\n');
    expect(line).toContain("SLOW 'cpu'");
    expect(line).toContain('libtensorflow.so.2: cannot open shared object file; module not found');
  });
});

describe('availableBackends', () => {
  it('always has cpu and keeps the current backend', async () => {
    await selectBackend({ backend: 'cpu', warnIfSlow: false });
    const available = await availableBackends();
    expect(available).toContain('cpu');
    expect(tf.getBackend()).toBe('cpu');
  });
});
