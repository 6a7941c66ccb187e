// tfjs-node made unloadable, as on a machine where provisioning failed: auto must fall back
// with the reason, and a request for it by name must fail instead of falling back.
import { describe, expect, it, vi } from 'vitest';

import { selectBackend } from '../src/index.js';

vi.mock('@tensorflow/tfjs-node', () => {
  throw new Error('libtensorflow.so.2: cannot open shared object file: No such file or directory');
});

describe('without the native backend', () => {
  it('auto falls back to wasm and says why, once', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const selection = await selectBackend({ backend: 'auto' });
    expect(selection.name).toBe('wasm');
    expect(selection.unavailable).toEqual([
      { name: 'tensorflow', reason: expect.stringContaining('libtensorflow.so.2: cannot open shared object file') },
    ]);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]?.[0])).toMatch(/SLOW 'wasm'.*libtensorflow\.so\.2/);
  });

  it('a forced tensorflow backend throws rather than falling back', async () => {
    vi.stubEnv('PEFT_BACKEND', 'tensorflow');
    await expect(selectBackend()).rejects.toThrow(
      /PEFT_BACKEND=tensorflow was requested, but the tensorflow backend cannot be used: .*libtensorflow\.so\.2/,
    );
    vi.unstubAllEnvs();
  });
});
