// The browser entry's error paths, reachable without a browser: a name it does not know, and a
// backend asked for by name that cannot load here (Node has no WebGPU).
import { describe, expect, it } from 'vitest';

import { selectBrowserBackend } from '../src/browser.js';

describe('selectBrowserBackend', () => {
  it('refuses a backend name it does not know, listing the ones it does', async () => {
    await expect(selectBrowserBackend({ backend: 'webgl2' as never })).rejects.toThrow(
      'backend: expected one of auto, webgpu, webgl, wasm, cpu, got "webgl2"',
    );
  });

  it('a backend asked for by name that cannot load is an error with the reason, not a fallback', async () => {
    await expect(selectBrowserBackend({ backend: 'webgpu' })).rejects.toThrow(
      "backend 'webgpu' was requested, but it cannot be used: this browser has no WebGPU (navigator.gpu is absent)",
    );
  });
});
