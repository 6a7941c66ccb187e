import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { defineConfig, type UserConfig } from 'vitest/config';

const root = path.dirname(fileURLToPath(import.meta.url));

// libtensorflow's start-up notices (oneDNN, CPU features) would repeat in every test file; the
// forked test processes inherit this. It must be in the environment before the process starts.
process.env.TF_CPP_MIN_LOG_LEVEL ??= '3';

/**
 * `@peft/<name>` -> packages/<name>/src/index.ts and `@peft/<name>/<entry>` -> src/<entry>.ts:
 * tests run against the sources, no build needed.
 */
export const workspaceAliases = [
  { find: /^@peft\/([a-z-]+)$/, replacement: path.join(root, 'packages/$1/src/index.ts') },
  // the one entry whose source is named otherwise (see packages/lora/tsup.config.ts)
  { find: /^@peft\/lora\/layers$/, replacement: path.join(root, 'packages/lora/src/tfjs-layers.ts') },
  { find: /^@peft\/([a-z-]+)\/([a-z-]+)$/, replacement: path.join(root, 'packages/$1/src/$2.ts') },
];

/** The vitest configuration every package uses (its vitest.config.ts re-exports this). */
export function peftTestConfig(overrides: UserConfig['test'] = {}): UserConfig {
  return defineConfig({
    resolve: { alias: workspaceAliases },
    test: {
      // The native tfjs-node addon crashes at exit in worker threads; forked processes are safe.
      pool: 'forks',
      globalSetup: [path.join(root, 'vitest.global-setup.ts')],
      setupFiles: [path.join(root, 'vitest.setup.ts')],
      include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
      testTimeout: 60_000,
      ...overrides,
    },
  });
}
