// The tiny Hugging Face models every method's tests attach to (oracle/make_model_fixtures.py).
import path from 'node:path';

import { loadPretrained, type LoadOptions, type TransformerHost } from '@peft/models';
import { afterEach } from 'vitest';

/** packages/models/test/fixtures: gpt2-tied, llama-gqa-untied, bert-sequence-classification, ... */
export const MODEL_FIXTURES = path.resolve(import.meta.dirname, '../../models/test/fixtures');

/**
 * A loader of fixture hosts for one test file: each host it loads is disposed after the test that
 * loaded it, so a failing test leaks no host into the next. Call it once at the top of the file.
 *
 * ```ts
 * const host = fixtureHosts();
 * it('...', async () => { const base = await host('gpt2-tied'); ... });
 * ```
 */
export function fixtureHosts(): (name: string, options?: LoadOptions) => Promise<TransformerHost> {
  const loaded: TransformerHost[] = [];
  afterEach(() => {
    for (const host of loaded.splice(0)) host.dispose();
  });
  return async (name, options) => {
    const host = await loadPretrained(path.join(MODEL_FIXTURES, name), options);
    loaded.push(host);
    return host;
  };
}
